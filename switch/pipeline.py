"""Auto-pipelining of calls to our Lua functions in Redis (switch/lua_library.py).

Calls made in the same event-loop tick are queued and sent together, as one write of
FCALLs on one connection of our own (switch/redis_link.py), so under load the switch makes
far fewer than one round trip per authorization. Each function call is still atomic on its
own; the pipeline only saves round trips. We pack the FCALL commands ourselves (their shape
is fixed, so a packer for that one shape does much less than redis-py's general one);
replies are matched to calls in order as they arrive. A "function not found" answer (Redis
restarted without the library) reloads it and retries just the calls that failed, once.
redis-py still loads the library and serves everything off the hot path.

A Lane is one Redis server's link, queue and clock; LanePipeline writes a lane's queue
(batches, fences, clock readings, counting) for both pipelines: ScriptPipeline here, one
lane, and switch/cluster_pipeline.py, one lane per master with routing around it.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Iterable
from typing import Any

import hiredis
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from switch import limits
from switch.clock import RedisClock
from switch.lua_library import Library
from switch.redis_client import Client, link_settings
from switch.redis_link import RedisLink, open_link, resp_command

# (function, keys, args, future, transform, fence): fence, when not None, is a local instant
# (event-loop seconds) sent as one more argument in Redis' clock (ms), translated as the
# call is written, with the offset measured on the link that carries it.
Call = tuple[str, tuple[str, ...], tuple[Any, ...], asyncio.Future, Callable[[Any], Any] | None,
             float | None]
FUNCTION_MISSING = "ERR Function not found"  # Redis' answer to an FCALL of an unknown function
TIME_COMMAND = resp_command("TIME")


def pack_fcall(function: bytes, keys: tuple[str, ...], args: tuple[Any, ...]) -> bytes:
    """One FCALL in RESP: *N, then $len + bytes per part."""
    # One %-formatting of the whole command, not one per part plus a join: this runs for
    # every request (docs/performance.md has the difference).
    parts = [str(len(keys)).encode(), *[k.encode() for k in keys],
             *[a if type(a) is bytes else str(a).encode() for a in args]]
    template = b"*%d\r\n$5\r\nFCALL\r\n$%d\r\n%s\r\n" + b"$%d\r\n%s\r\n" * len(parts)
    values = [len(parts) + 2, len(function), function]
    for part in parts:
        values.append(len(part))
        values.append(part)
    return template % tuple(values)


def resolve(call: Call, reply: Any) -> None:
    """Hand the call its reply (passed through its transform), or its error."""
    _, _, _, future, transform, _ = call
    if future.done():  # the request's deadline passed; its answer went out as 91
        return
    if isinstance(reply, hiredis.ReplyError):
        reply = ResponseError(str(reply))
    if isinstance(reply, Exception):
        future.set_exception(reply)
        return
    try:
        future.set_result(transform(reply) if transform else reply)
    except Exception as error:  # a reply our transform cannot read: that call fails
        future.set_exception(error)


class Lane:
    """One Redis server: our connection to it, the calls queued for it this loop tick, and its
    clock (the fences of the calls written on it are in it). A single Redis is one lane; a
    cluster has one per master (switch/cluster_pipeline.py)."""

    def __init__(self, address: tuple[str, int] | None = None) -> None:
        self.address = address  # a cluster's master; None: the client's own Redis
        self.link: RedisLink | None = None
        self.opening: asyncio.Task | None = None
        self.queue: list[Any] = []  # what the pipeline's _settle takes (a Call, or it wrapped)
        self.flush_scheduled = False
        # Measured as the link opens, and every redis_clock_check_interval_s on it.
        self.redis_clock = RedisClock()
        self.clock_due = 0.0


class LanePipeline:
    """What every auto-pipeline does with its lanes: open the link, write the queue in batches
    (FCALLs, each fence in the lane's clock), read the clock when due, count, drain, close.
    A subclass puts calls on lanes (`_enqueue`) and reads their replies (`_settle`)."""

    def __init__(self, client: Client, library: Library, timeout_s: float) -> None:
        self.client = client
        self.library = library
        self._names: dict[str, bytes] = {}  # our function name -> its Redis name
        self._pending = 0  # calls away from every lane for a while (waiting to be sent again)
        # Replies of calls whose link went quiet this long are given up (the request has
        # long been answered 91 by then): the request deadline.
        self.timeout_s = timeout_s
        # Counters for the operator (and the round-trips-per-authorization figure).
        self.calls = 0
        self.round_trips = 0

    async def load(self) -> None:
        """Load the library (again: REPLACE is a no-op for the same version)."""
        try:
            await self.client.function_load(self.library.code, replace=True)
        except ResponseError as error:
            if "unknown command" in str(error).lower():
                raise RuntimeError("the switch needs Redis 7.0 or newer (FUNCTION LOAD); "
                                   f"this Redis answered: {error}") from None
            raise

    def redis_name(self, name: str) -> bytes:
        function = self._names.get(name)
        if function is None:
            function = self._names[name] = self.library.function(name).encode()
        return function

    def call(self, name: str, keys: tuple[str, ...], args: tuple[Any, ...],
             transform: Callable[[Any], Any] | None = None,
             fence_s: float | None = None) -> asyncio.Future:
        """Queue one function call; the future resolves with its result (passed through
        `transform` when given). Cancelling the future drops the answer, not the call.
        `fence_s` (event-loop time): sent last, in Redis' clock, for the function to refuse
        to act after it."""
        future = asyncio.get_running_loop().create_future()
        self._enqueue((name, keys, args, future, transform, fence_s))
        return future

    # --- for the subclass ------------------------------------------------------------------

    def _enqueue(self, call: Call) -> None:
        raise NotImplementedError

    def _settle(self, item: Any, reply: Any) -> None:
        """A reply (or the error that ended the link) for what was sent for `item`."""
        raise NotImplementedError

    def _item(self, call: Call) -> Any:
        """`call` as a lane's queue holds it (what `_settle` takes)."""
        return call

    def _lanes(self) -> Iterable[Lane]:
        raise NotImplementedError

    def _busy(self) -> list[asyncio.Task]:
        """Tasks under way that will queue calls or settle them (drain waits for them)."""
        return [lane.opening for lane in self._lanes() if lane.opening]

    # --- writing ---------------------------------------------------------------------------

    def _queue_on(self, lane: Lane, item: Any) -> None:
        """Queue `item` on `lane`; the lane's queue goes out once this loop tick is over."""
        lane.queue.append(item)
        if not lane.flush_scheduled:
            lane.flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush, lane)

    def _flush(self, lane: Lane) -> None:
        lane.flush_scheduled = False
        link = lane.link
        if link is None or link.closed:
            if lane.opening is None:  # the queue waits for the link
                lane.opening = asyncio.get_running_loop().create_task(self._open(lane))
            return
        queue, lane.queue = lane.queue, []
        if asyncio.get_running_loop().time() >= lane.clock_due:
            self._read_clock(lane)
        fence_ms = lane.redis_clock.fence_ms
        for start in range(0, len(queue), limits.pipeline_batch_max):
            batch = queue[start : start + limits.pipeline_batch_max]
            self.round_trips += 1
            self.calls += len(batch)
            self._send(link, batch, fence_ms)

    def _send(self, link: RedisLink, batch: list[Call], fence_ms: Callable[[float], int]) -> None:
        """One batch's FCALLs in one write, each settled with its reply."""
        link.send(batch, b"".join([
            pack_fcall(self.redis_name(name), keys,
                       args if fence is None else (*args, fence_ms(fence)))
            for name, keys, args, _, _, fence in batch]))

    def _read_clock(self, lane: Lane) -> None:
        """Measure Redis' clock again, ahead of the calls about to be written on the lane."""
        loop = asyncio.get_running_loop()
        lane.clock_due = loop.time() + limits.redis_clock_check_interval_s  # one at a time
        reading = loop.create_future()
        reading.add_done_callback(functools.partial(self._clock_read, lane, time.monotonic()))
        lane.link.send([self._item(("", (), (), reading, None, None))], TIME_COMMAND)

    def _clock_read(self, lane: Lane, sent_s: float, reading: asyncio.Future) -> None:
        if reading.exception() is None:  # a lost link: the next one measures on opening
            lane.redis_clock.measure(reading.result(), sent_s, time.monotonic())
            self._schedule_clock(lane)

    def _schedule_clock(self, lane: Lane) -> None:
        """The next reading: after the interval, or with the next calls while the reading in
        use is poor (taken in a stall, it would answer 91 what had time)."""
        lane.clock_due = 0.0 if lane.redis_clock.poor else (
            asyncio.get_running_loop().time() + limits.redis_clock_check_interval_s)

    async def _open(self, lane: Lane) -> None:
        try:
            lane.link = await open_link(self._link_settings(lane), self._settle,
                                        self.timeout_s, lane.redis_clock)
            self._schedule_clock(lane)
        except Exception as error:  # that Redis is down: the calls waiting for it fail now
            self._open_failed(lane, error)
            return
        finally:
            lane.opening = None
        self._flush(lane)

    def _link_settings(self, lane: Lane) -> dict[str, Any]:
        """How to open the lane's link: the client's settings (switch/redis_client.py)."""
        return link_settings(self.client)

    def _open_failed(self, lane: Lane, error: Exception) -> None:
        queue, lane.queue = lane.queue, []
        self._settle_all(queue, error)

    def _settle_all(self, items: list[Any], reply: Any) -> None:
        for item in items:
            self._settle(item, reply)

    # --- shutdown --------------------------------------------------------------------------

    async def drain(self) -> None:
        """Wait until every call made so far has its reply (a call sent again too)."""
        while True:
            lanes = list(self._lanes())
            if busy := self._busy():
                await asyncio.gather(*busy, return_exceptions=True)
            elif self._pending or any(lane.queue for lane in lanes):
                # A queue goes out with the flush already scheduled; a call waiting to be
                # sent again (TRYAGAIN) comes back after its delay.
                await asyncio.sleep(limits.cluster_tryagain_delay_s if self._pending else 0)
            elif any(lane.link and lane.link.waiting for lane in lanes):
                for lane in lanes:
                    if lane.link is not None:
                        await lane.link.idle()
            else:
                return

    def close(self) -> None:
        """Close our connections (the redis-py client is its owner's to close)."""
        for lane in self._lanes():
            if lane.link is not None:
                lane.link.close()


class ScriptPipeline(LanePipeline):
    """The auto-pipeline to a single Redis: one lane."""

    def __init__(self, client: aioredis.Redis, library: Library, timeout_s: float) -> None:
        super().__init__(client, library, timeout_s)
        self.lane = Lane()
        self._reloading: asyncio.Task | None = None
        self._to_retry: list[Call] = []
        self._retried: set[asyncio.Future] = set()  # calls already sent again once

    def _lanes(self) -> tuple[Lane]:
        return (self.lane,)

    def _busy(self) -> list[asyncio.Task]:
        return super()._busy() + ([self._reloading] if self._reloading else [])

    def _enqueue(self, call: Call) -> None:
        self._queue_on(self.lane, call)

    def _settle(self, call: Call, reply: Any) -> None:
        future = call[3]
        if isinstance(reply, hiredis.ReplyError):
            if str(reply).startswith(FUNCTION_MISSING) and future not in self._retried:
                self._retry_after_reload(call)
                return
        self._retried.discard(future)
        resolve(call, reply)

    def _retry_after_reload(self, call: Call) -> None:
        self._retried.add(call[3])
        self._to_retry.append(call)
        if self._reloading is None:
            self._reloading = asyncio.get_running_loop().create_task(self._reload())

    async def _reload(self) -> None:
        try:
            await self.load()
        except Exception as error:
            calls, self._to_retry = self._to_retry, []
            self._settle_all(calls, error)
            return
        finally:
            self._reloading = None
        calls, self._to_retry = self._to_retry, []
        for call in calls:
            self._enqueue(call)
