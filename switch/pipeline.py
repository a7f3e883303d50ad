"""Auto-pipelining of Redis script calls.

Ledger calls made in the same event-loop tick are queued and sent together as one
non-transactional pipeline of EVALSHAs, so under load the switch makes far fewer than one
round trip per authorization. Each script is still atomic on its own; the pipeline only
saves round trips. Scripts are loaded once; a NOSCRIPT answer (Redis restarted and lost its
script cache) reloads them and retries just the calls that failed.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError

from switch import limits


class ScriptPipeline:
    def __init__(self, client: aioredis.Redis, sources: dict[str, str]) -> None:
        self.client = client
        self.sources = sources
        self.shas = {name: hashlib.sha1(src.encode()).hexdigest() for name, src in sources.items()}
        self._queue: list[tuple[str, tuple[str, ...], tuple[Any, ...], asyncio.Future]] = []
        self._flush_scheduled = False
        self._sending: set[asyncio.Task] = set()
        # Counters for the operator (and the round-trips-per-authorization figure).
        self.calls = 0
        self.round_trips = 0

    async def load(self) -> None:
        for name, source in self.sources.items():
            sha = await self.client.script_load(source)
            assert sha == self.shas[name], f"Redis hashed script {name} differently"

    def call(self, name: str, keys: tuple[str, ...], args: tuple[Any, ...]) -> asyncio.Future:
        """Queue one script call; the future resolves with its result."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._queue.append((name, keys, args, future))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        self._flush_scheduled = False
        queue, self._queue = self._queue, []
        for start in range(0, len(queue), limits.pipeline_batch_max):
            task = asyncio.get_running_loop().create_task(
                self._send(queue[start : start + limits.pipeline_batch_max])
            )
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def _send(self, batch: list) -> None:
        try:
            results = await self._execute(batch)
            missing = [i for i, result in enumerate(results) if isinstance(result, NoScriptError)]
            if missing:
                await self.load()
                retried = await self._execute([batch[i] for i in missing])
                for i, result in zip(missing, retried, strict=True):
                    results[i] = result
            for (*_, future), result in zip(batch, results, strict=True):
                if future.done():  # the request's deadline passed; its answer went out as 91
                    continue
                if isinstance(result, Exception):
                    future.set_exception(result)
                else:
                    future.set_result(result)
        except Exception as error:  # connection lost, timeout: every caller gets the error
            for *_, future in batch:
                if not future.done():
                    future.set_exception(error)

    async def _execute(self, batch: list) -> list[Any]:
        self.round_trips += 1
        self.calls += len(batch)
        async with self.client.pipeline(transaction=False) as pipe:
            for name, keys, args, _ in batch:
                pipe.evalsha(self.shas[name], len(keys), *keys, *args)
            return await pipe.execute(raise_on_error=False)

    async def drain(self) -> None:
        """Wait for every batch already sent (used at shutdown)."""
        if self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)
