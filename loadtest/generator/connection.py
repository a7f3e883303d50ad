"""One client connection to a channel: many requests in flight, answers in any order.

Requests wait in `pending` under the channel's correlation id until their answer comes
back; frames written in one scheduler tick go out in one write. Flow control: when the
kernel and transport buffers are full (`pause_writing`), the connection takes no new
requests, so a server that stops reading makes the sends fall behind instead of piling
bytes up in our memory.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from loadtest.generator.adapters.base import ClientAdapter
from protocols.framing import Framer, FramingError

if TYPE_CHECKING:
    from loadtest.generator.workload import Txn

ANSWER_SIZE_MAX_BYTES = 1 << 20  # far above any channel's answer; a bigger header is garbage
EXPIRED_REMEMBERED_MAX = 10_000  # enough to recognise the late answers of a stall


class AnswerReader:
    """What every client connection does with the server's bytes: whole frames decoded and
    matched to the requests waiting under their correlation ids. A connection provides
    `framer`, `decode`, `pending` (correlation id -> (ns, txn)), `transport`, and says how
    it counts a bad or late answer and whether an id timed out lately."""

    framer: Framer
    decode: Callable[[bytes], tuple[str, str]]
    pending: dict[str, tuple[int, Txn]]
    transport: asyncio.Transport | None

    def count_bad(self, kind: str) -> None:  # kind: bad_answers or late_answers
        raise NotImplementedError

    def was_expired(self, correlation_id: str) -> bool:
        raise NotImplementedError

    def read_answers(self, data: bytes) -> list[tuple[tuple[int, Txn], str]] | None:
        """(pending entry, code) of each whole answer in `data`; None when the stream is
        broken (the connection is aborted)."""
        try:
            frames = self.framer.feed(data)
        except FramingError:
            self.count_bad("bad_answers")
            self.transport.abort()
            return None
        answers = []
        for body in frames:
            try:
                correlation_id, code = self.decode(body)
            except ValueError:  # msgspec, ISO 8583 and framing errors are all ValueErrors
                self.count_bad("bad_answers")
                continue
            entry = self.pending.pop(correlation_id, None)
            if entry is None:
                self.count_bad("late_answers" if self.was_expired(correlation_id)
                               else "bad_answers")
                continue
            answers.append((entry, code))
        return answers


class Connection(AnswerReader, asyncio.Protocol):
    def __init__(self, adapter: ClientAdapter, inflight_max: int,
                 on_answer: Callable[[Txn, str, int], None],
                 on_bad_answer: Callable[[str, str], None],
                 on_lost: Callable[[Connection], None]) -> None:
        self.adapter = adapter
        self.decode = adapter.decode
        self.inflight_max = inflight_max
        self.on_answer = on_answer  # (txn, ISO code, latency ns from intended time)
        self.on_bad_answer = on_bad_answer  # (counter name): bad_answers or late_answers
        self.on_lost = on_lost
        self.framer = Framer(adapter.header, ANSWER_SIZE_MAX_BYTES)
        self.pending: dict[str, tuple[int, Txn]] = {}  # correlation id -> (intended ns, txn)
        self.expired: dict[str, None] = {}  # ids timed out lately, to tell a late answer
        self.outgoing: list[bytes] = []  # frames of this tick, written by `flush`
        self.transport: asyncio.Transport | None = None
        self.writable = False
        self.closed = False

    # --- sending ------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self.writable and len(self.pending) < self.inflight_max

    def add(self, correlation_id: str, body: bytes, intended_ns: int, txn: Txn) -> bool:
        """Queue one request for this tick's write; False when its id is still in flight."""
        if correlation_id in self.pending:
            return False
        self.pending[correlation_id] = (intended_ns, txn)
        self.outgoing.append(self.adapter.header.encode(len(body)) + body)
        return True

    def flush(self) -> None:
        if self.outgoing and not self.closed:
            self.transport.write(b"".join(self.outgoing))
        self.outgoing.clear()

    def expire(self, correlation_id: str, intended_ns: int) -> Txn | None:
        """Forget a request whose answer is overdue; None when it was answered already."""
        entry = self.pending.get(correlation_id)
        if entry is None or entry[0] != intended_ns:  # answered (the id may be reused since)
            return None
        del self.pending[correlation_id]
        if len(self.expired) >= EXPIRED_REMEMBERED_MAX:
            del self.expired[next(iter(self.expired))]
        self.expired[correlation_id] = None
        return entry[1]

    # --- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.transport = transport
        self.writable = True

    def pause_writing(self) -> None:
        self.writable = False

    def resume_writing(self) -> None:
        self.writable = True

    def data_received(self, data: bytes) -> None:
        received_ns = time.monotonic_ns()  # one reading for every answer in this chunk
        for (intended_ns, txn), code in self.read_answers(data) or ():
            self.on_answer(txn, code, received_ns - intended_ns)

    def count_bad(self, kind: str) -> None:
        self.on_bad_answer(self.adapter.name, kind)

    def was_expired(self, correlation_id: str) -> bool:
        return self.expired.pop(correlation_id, 0) is None  # counted as a timeout

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.writable = False
        self.on_lost(self)

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.close()
