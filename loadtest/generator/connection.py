"""One open-loop client connection: many requests in flight, answers in any order.

Frames written in one scheduler tick go out in one write. Flow control: when the kernel and
transport buffers are full (`pause_writing`), the connection takes no new requests, so a
server that stops reading makes the sends fall behind instead of piling bytes up in our
memory. Reading and matching answers, deadlines and loss are client.py's, shared with the
closed loop.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from loadtest.generator.adapters.base import ClientAdapter
from loadtest.generator.client import ClientConnection, LoadClient

if TYPE_CHECKING:
    from loadtest.generator.workload import Txn


class Connection(ClientConnection):
    def __init__(self, client: LoadClient, adapter: ClientAdapter, inflight_max: int) -> None:
        super().__init__(client, adapter)
        self.inflight_max = inflight_max
        self.outgoing: list[bytes] = []  # frames of this tick, written by `flush`
        self.writable = False

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

    # --- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.writable = True

    def pause_writing(self) -> None:
        self.writable = False

    def resume_writing(self) -> None:
        self.writable = True

    def data_received(self, data: bytes) -> None:
        received_ns = time.monotonic_ns()  # one reading for every answer in this chunk
        answered = self.client.answered
        for (intended_ns, txn), response in self.read_answers(data) or ():
            answered(txn, response, received_ns - intended_ns)

    def connection_lost(self, exc: Exception | None) -> None:
        self.writable = False
        super().connection_lost(exc)
