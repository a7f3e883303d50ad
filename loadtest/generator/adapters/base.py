"""What a load-test channel adapter is: the interface of the table in adapters.py."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, NamedTuple

from protocols.framing import HeaderFormat
from protocols.messages import AuthResponse

if TYPE_CHECKING:
    from loadtest.generator.workload import Txn

EVERY_KIND = frozenset({"sale", "auth", "capture", "reversal", "refund", "inquiry", "repeat"})


class ClientAdapter(NamedTuple):
    name: str
    header: HeaderFormat
    default_port: int
    encode: Callable[[Txn], tuple[str, bytes]]  # transaction -> (correlation id, body)
    # answer body -> (correlation id, the answer: ISO code, approved fen, auth id, ...)
    decode: Callable[[bytes], tuple[str, AuthResponse]]
    kinds: frozenset[str] = EVERY_KIND  # the transaction kinds the channel has
    # A card's messages must reach the switch in the order they were made (x-pay: a token's
    # ATC only rises, and a lower one arriving late is a replay): each card keeps to one
    # connection, whose messages the switch decides in order.
    card_ordered: bool = False


class Context(NamedTuple):
    """What an adapter may need beyond its options: which worker it serves, the run's
    cards (in seeding order) and the prefix that makes this run's ids unique."""

    worker: int = 0
    pans: Sequence[str] = ()
    ref_prefix: str = "L"


Options = dict[str, str]  # per-channel settings from `--option CHANNEL.NAME=VALUE`
Factory = Callable[[Options, Context], ClientAdapter]
