"""The switch's own authorize call, as the bench's Redis measurement and reference server use it.

The bench is a harness, not a client: to measure Redis' rate for the very script the switch
runs, with the very keys and arguments, it asks the switch's engine and ledger to build the
call (through a stand-in for its script pipeline) instead of copying an argument layout that
changes as the ledger grows. The load generator itself never imports switch/.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from protocols.messages import AuthRequest, MessageClass
from switch.engine import Engine
from switch.ledger import Ledger
from switch.lua_library import ledger_library
from switch.policy import Policy
from switch.policy_file import load_policy

# How long a captured call may be replayed into Redis: its fence (the instant of Redis' clock
# past which the function refuses to act) is this far ahead.
REPLAY_WINDOW_MS = 24 * 3600 * 1000


class Capture:
    """Stands in for the ledger's ScriptPipeline: records the call, answers a dummy result."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[str, ...], tuple[Any, ...]]] = []

    def call(self, name: str, keys: tuple[str, ...], args: tuple[Any, ...],
             transform: Any = None, fence_s: float | None = None) -> asyncio.Future:
        if fence_s is not None:  # replayed for minutes: the fence a day ahead, in this host's
            # clock (the bench's Redis runs here)
            args = (*args, time.time_ns() // 1_000_000 + REPLAY_WINDOW_MS)
        self.calls.append((name, tuple(keys), tuple(args)))
        future = asyncio.get_running_loop().create_future()
        result = 1 if name == "claim" else ["00", 0, 0, "", "", 0, 0]  # the id is the card's
        future.set_result(transform(result) if transform else result)
        return future


async def script_call(request: AuthRequest) -> tuple[str, str, tuple[str, ...], tuple[str, ...]]:
    """(Redis function name, its library's code, KEYS, ARGV) of the card's ledger call the
    switch makes for `request`: judged by its engine under the default policy (rules,
    velocity counters), the call captured unsent. (The id's claim before it, a SET NX in a
    one-line function, is left out: the card's call is the one whose cost grows.)"""
    capture = Capture()
    library = ledger_library()
    ledger = Ledger(client=None, scripts=capture)
    await Engine(ledger, Policy(load_policy(None))).decide(request)
    (claim, _, _), (name, keys, args) = capture.calls
    assert claim == "claim", capture.calls
    return library.function(name), library.code, keys, tuple(
        a.decode() if isinstance(a, bytes) else str(a) for a in args)



def sale(pan: str, ref: str, amount_fen: int = 1000, channel: str = "pos") -> AuthRequest:
    return AuthRequest(message_class=MessageClass.SALE, channel=channel, card=pan,
                       amount_fen=amount_fen, mcc="5411", txn_ref=ref, idempotency_key=ref,
                       transmitted_at="20260101000000")
