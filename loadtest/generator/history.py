"""What a run sent and what it was answered, request by request, and the sending again of
the requests left unanswered (`loadtest chaos` checks the history against the ledger).

One entry per distinct request: a repeat of the very same bytes (the workload's `repeat`
kind, or `resend`) joins its original's entry. An entry keeps the transaction (kind, card,
amount, the earlier transaction it names, and its wire bytes, so the check can read it as
the switch does and a request left unanswered can go out again unchanged), how often it
was sent and every answer seen, in order: an answer that came after the request timed out
too (the client counted a timeout, then saw the answer all the same).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import NamedTuple

from loadtest.generator.adapters.base import ClientAdapter
from loadtest.generator.client import LoadClient, LoadTestError, Target
from loadtest.generator.connection import Connection
from loadtest.generator.workload import Txn
from protocols.codes import APPROVING, Code
from protocols.messages import AuthResponse

RESEND_POLL_S = 0.01  # how often a resend round looks for answers and timeouts
UNDECIDED = frozenset({Code.ISSUER_UNAVAILABLE, Code.SYSTEM_MALFUNCTION})


class Answer(NamedTuple):
    code: str
    approved_fen: int
    auth_id: str

    @property
    def approved(self) -> bool:
        return self.code in APPROVING


class Entry:
    __slots__ = ("txn", "sends", "answers", "first_sent_ns")

    def __init__(self, txn: Txn) -> None:
        self.txn = txn
        self.sends = 0
        self.answers: list[Answer] = []
        self.first_sent_ns = time.monotonic_ns()  # to tell which fault it met

    @property
    def last(self) -> Answer | None:
        """The answer that stands: the last decision seen, else the last answer (None: never
        answered). 91 and 96 say the switch could not decide: a repeat answered so (Redis
        frozen when it came) leaves the earlier decision standing."""
        decided = [answer for answer in self.answers if answer.code not in UNDECIDED]
        return (decided or self.answers or [None])[-1]


def key_of(txn: Txn) -> tuple[str, str]:
    """An entry's key: the channel and the request's correlation id on it."""
    return txn.channel, txn.wire[0]


class History:
    def __init__(self) -> None:
        self.entries: dict[tuple[str, str], Entry] = {}

    def sent(self, txn: Txn) -> None:
        key = key_of(txn)
        entry = self.entries.get(key)
        if entry is None:
            entry = self.entries[key] = Entry(txn)
        entry.sends += 1

    def answered(self, txn: Txn, response: AuthResponse) -> None:
        self.entries[key_of(txn)].answers.append(
            Answer(response.response_code, response.approved_fen, response.auth_id))

    def unanswered(self) -> list[Entry]:
        return [entry for entry in self.entries.values() if not entry.answers]

    def undecided(self) -> list[Entry]:
        """Requests with no decision: unanswered, or every answer 91 or 96."""
        return [entry for entry in self.entries.values()
                if entry.last is None or entry.last.code in UNDECIDED]


class Resender(LoadClient):
    """Sends requests again, the very same bytes, on one connection per channel, at most
    `inflight` at a time per channel; their answers go into the history."""

    def __init__(self, history: History, adapters: dict[str, ClientAdapter],
                 targets: dict[str, Target], timeout_s: float, inflight: int) -> None:
        super().__init__(list(adapters), timeout_s)
        self.history = history
        self.adapters = adapters
        self.targets = targets
        self.inflight = inflight

    async def resend(self, entries: Iterable[Entry]) -> int:
        """Send each entry once more and wait (bounded by the timeout) for the answers;
        returns how many got one."""
        waiting: dict[str, list[Entry]] = {channel: [] for channel in self.adapters}
        for entry in entries:
            waiting[entry.txn.channel].append(entry)
        before = sum(len(entry.answers) for batch in waiting.values() for entry in batch)
        try:
            await self.connect({ch: 1 for ch, batch in waiting.items() if batch}, self.targets,
                               lambda ch: Connection(self, self.adapters[ch], self.inflight))
            await asyncio.gather(*(self._send_all(ch, batch) for ch, batch in waiting.items()
                                   if batch))
        finally:
            self.close_connections()
        after = sum(len(entry.answers) for batch in waiting.values() for entry in batch)
        return after - before

    async def _send_all(self, channel: str, entries: list[Entry]) -> None:
        for start in range(0, len(entries), self.inflight):
            conns = self.conns[channel]
            if not conns:
                raise LoadTestError(f"lost the connection to {channel} while sending again")
            conn = conns[0]
            now = time.monotonic_ns()
            for entry in entries[start:start + self.inflight]:
                correlation_id, body = entry.txn.wire
                if conn.add(correlation_id, body, now, entry.txn):
                    self.sent(conn, correlation_id, now, entry.txn)
            conn.flush()
            while conn.pending and not conn.closed:
                await asyncio.sleep(RESEND_POLL_S)
                self.expire_overdue(time.monotonic_ns())
