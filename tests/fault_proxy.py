"""A TCP proxy between a client and a real Redis that cuts the way at one chosen command: a
network fault placed exactly, where a freeze or a kill of Redis could only be timed.

Every byte goes through unchanged until a client's write holds `trigger` (a function's name
in an FCALL, say). Then, by `mode`:
  HOLD     that write and everything after it is kept from Redis (a network that went
           silent): the client waits for a reply that never comes
  CUT      that write reaches Redis (which runs it), and the client's connection is closed
           before the reply is passed back: the call ran, its answer was lost
  FORWARD  the write goes on as usual, after `before_forward()` (e.g. SIGSTOP of Redis: the
           call is then in flight while Redis is frozen)
The trigger acts once; connections opened later pass everything.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

HOLD, CUT, FORWARD = "hold", "cut", "forward"


class FaultProxy:
    def __init__(self, redis_port: int, trigger: bytes, mode: str,
                 before_forward: Callable[[], None] | None = None) -> None:
        self.redis_port = redis_port
        self.trigger, self.mode, self.before_forward = trigger, mode, before_forward
        self.triggered = asyncio.Event()
        self.server: asyncio.Server | None = None
        self.port = 0
        self._tasks: set[asyncio.Task] = set()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def __aenter__(self) -> FaultProxy:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc) -> None:
        self.server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _serve(self, client_reader, client_writer) -> None:
        redis_reader, redis_writer = await asyncio.open_connection("127.0.0.1", self.redis_port)
        cut = asyncio.Event()
        to_redis = self._spawn(self._client_to_redis(client_reader, redis_writer, cut))
        to_client = self._spawn(self._redis_to_client(redis_reader, client_writer, cut))
        with contextlib.suppress(Exception):
            await asyncio.wait([to_redis, to_client], return_when=asyncio.FIRST_COMPLETED)
        for task in (to_redis, to_client):
            task.cancel()
        for writer in (client_writer, redis_writer):
            writer.close()

    def _spawn(self, work) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _client_to_redis(self, reader, writer, cut: asyncio.Event) -> None:
        while data := await reader.read(65536):
            if self.trigger in data and not self.triggered.is_set():
                self.triggered.set()
                if self.mode == HOLD:
                    await asyncio.Event().wait()  # until the connection is torn down
                if self.mode == CUT:
                    cut.set()
                if self.before_forward is not None:
                    self.before_forward()
            writer.write(data)
            await writer.drain()

    async def _redis_to_client(self, reader, writer, cut: asyncio.Event) -> None:
        while data := await reader.read(65536):
            if cut.is_set():  # the reply to the cut call and everything after it: dropped
                return
            writer.write(data)
            await writer.drain()
