"""Time as the ledger and the token vault see it: an injectable clock, card-expiry months,
Redis' own clock (the ledger's deadline fences are written in it), and the test clock every
worker of a switch served with --test-clock follows (docs/testing.md "A test clock")."""

from __future__ import annotations

import asyncio
import datetime
import functools
import math
import re
import time
from typing import Protocol

import redis
import redis.asyncio as aioredis

from switch import limits
from switch.announce import announce, listen_for_versions, subscribers

DAY_MS = 24 * 3600 * 1000


class Clock(Protocol):
    def now_ms(self) -> int: ...


class SystemClock:
    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000


def month_of(now_ms: int) -> str:
    """YYMM of a UTC instant, the form of card expiry dates."""
    return _month_of_minute(now_ms // 60_000)


@functools.lru_cache(maxsize=4)  # asked on every request; changes once a month
def _month_of_minute(minute: int) -> str:
    return time.strftime("%y%m", time.gmtime(minute * 60))


def months_later(now_ms: int, months: int) -> str:
    """YYMM `months` after the month of a UTC instant (a card or token good through then)."""
    year, month = time.gmtime(now_ms / 1000)[:2]
    index = year * 12 + month - 1 + months
    return f"{index // 12 % 100:02d}{index % 12 + 1:02d}"


class RedisClock:
    """Redis' clock (its TIME) as seen from this process's monotonic clock (the event loop's).

    Each measurement is one TIME round trip: Redis read its clock at some instant between
    our send and our receipt of the reply, so `offset_ms` (Redis ms - our ms) is taken at
    the receipt: the smallest offset the round trip allows. A fence translated with it falls
    at or before the local instant it stands for; `uncertainty_ms`, half the round trip, is
    how much earlier at most (kept for the operator). A reading whose round trip took longer
    than `limits.redis_clock_round_trip_max_ms` is poor: a stalled event loop puts every
    fence early by the stall, so the switch would answer 91 calls that had time. A poor
    reading is taken only over a poorer one (or none), and its owner reads again soon.
    """

    def __init__(self) -> None:
        self.offset_ms = 0
        self.uncertainty_ms = 0.0
        self.measured = False

    @property
    def poor(self) -> bool:
        """No reading yet, or one whose round trip passed the bound."""
        return not self.measured or self.uncertainty_ms * 2 > limits.redis_clock_round_trip_max_ms

    def measure(self, redis_time: list | tuple, sent_s: float, received_s: float) -> bool:
        """Take Redis' TIME reply [seconds, microseconds], asked at local `sent_s` (monotonic
        seconds) and received at `received_s`; False when it was dropped."""
        uncertainty_ms = (received_s - sent_s) * 500
        if (self.measured and uncertainty_ms * 2 > limits.redis_clock_round_trip_max_ms
                and uncertainty_ms > self.uncertainty_ms):
            return False
        seconds, micros = int(redis_time[0]), int(redis_time[1])
        redis_ms = seconds * 1000 + micros // 1000
        self.offset_ms = redis_ms - math.ceil(received_s * 1000)
        self.uncertainty_ms = uncertainty_ms
        self.measured = True
        return True

    def fence_ms(self, local_s: float) -> int:
        """The instant of Redis' clock (ms) that local monotonic instant `local_s` stands for."""
        return int(local_s * 1000) + self.offset_ms


# --- the test clock (`switch serve --test-clock`, `switch clock ...`) ---------------------
# Its state is one Redis hash (offset_ms, version); each change is announced on a pub/sub
# channel as "version offset_ms", and every worker listening acknowledges the version by
# incrementing its ack key. Each command touches one key, so none spans Redis Cluster slots.
TEST_CLOCK_KEY = "{test-clock}"
TEST_CLOCK_CHANNEL = "test-clock"
UNITS_MS = {"d": DAY_MS, "h": 3_600_000, "m": 60_000, "s": 1_000}


def ack_key(version: int) -> str:
    return f"{TEST_CLOCK_KEY}:ack:{version}"


class TestClock:
    """The system clock moved by the test clock's offset: what every worker of a switch
    served with --test-clock reads (ledger: hold expiry, velocity windows, card months).
    `listen` keeps the offset current: it follows the channel and acknowledges each change
    once it is applied, so a `switch clock` command returns only when every worker has it."""

    __test__ = False  # not a pytest test class, whatever its name

    def __init__(self) -> None:
        self.offset_ms = 0
        self.version = 0
        self._task: asyncio.Task | None = None

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000 + self.offset_ms

    def _take(self, version: int, offset_ms: int, state: bool = False) -> None:
        """`state`: read from Redis (on start, on subscribing again): taken whatever its
        version (a Redis restarted without its data starts counting again)."""
        if state or version > self.version:  # announcements of concurrent changes may cross
            self.version, self.offset_ms = version, offset_ms

    async def listen(self, client: aioredis.Redis) -> None:
        """Read the current offset, then follow the changes in a task until `close`."""
        self._task = await listen_for_versions(client, TEST_CLOCK_CHANNEL, self._apply, ack_key)

    async def _apply(self, client: aioredis.Redis, message: str) -> None:
        """An announcement "version offset_ms", or "" for the state in Redis."""
        if message:
            version, offset_ms = (int(part) for part in message.split())
        else:
            state = await client.hgetall(TEST_CLOCK_KEY)
            version, offset_ms = int(state.get("version", 0)), int(state.get("offset_ms", 0))
        self._take(version, offset_ms, state=not message)

    async def drain(self) -> None:  # the ledger closes it with its pipelines
        return None

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()


class TestClockOff(Exception):
    """No switch with --test-clock listens on this Redis: a clock command changes nothing."""

    __test__ = False


def duration_ms(text: str) -> int:
    """"36h", "30d", "1d12h", "90m", "45s" in ms; ValueError for anything else."""
    parts = re.fullmatch(r"(?:\d+[dhms])+", text.strip())
    if not parts:
        raise ValueError(f"{text!r} is not a duration such as 36h, 30d, 1d12h, 90m, 45s")
    return sum(int(n) * UNITS_MS[unit] for n, unit in re.findall(r"(\d+)([dhms])", text))


def instant_ms(text: str) -> int:
    """An ISO date and time in UTC ("2026-12-24T10:00", seconds optional) in ms."""
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a date and time such as 2026-12-24T10:00 "
                         "(UTC)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return int(moment.timestamp() * 1000)


class TestClockControl:
    """What `switch clock` and a scenario's `advance_clock` do, on the switch's Redis."""

    __test__ = False

    def __init__(self, client: aioredis.Redis) -> None:
        self.client = client

    async def listeners(self) -> int:
        """Workers following the test clock (every worker of a switch with --test-clock)."""
        return await subscribers(self.client, TEST_CLOCK_CHANNEL)

    async def offset_ms(self) -> int:
        """The test clock's offset from real time (ms; 0 when it was never moved)."""
        return int(await self.client.hget(TEST_CLOCK_KEY, "offset_ms") or 0)

    async def show(self) -> tuple[int, int, int]:
        """(the test clock's now in ms, its offset from real time in ms, workers following)."""
        workers = await self._required()
        offset_ms = await self.offset_ms()
        return time.time_ns() // 1_000_000 + offset_ms, offset_ms, workers

    async def advance(self, by_ms: int) -> int:
        """Move the clock forward `by_ms`; returns the new offset once every worker has it."""
        if not 1_000 <= by_ms <= limits.test_clock_offset_max_ms:
            raise ValueError(f"advance by 1s..{limits.test_clock_offset_max_ms // DAY_MS}d")
        return await self._change(lambda offset: offset + by_ms)

    async def set(self, at_ms: int) -> int:
        """Put the clock at `at_ms` (not before its current time); returns the new offset."""
        return await self._change(lambda offset: self._not_back(offset, at_ms))

    async def reset(self) -> int:
        """Back to real time (holds already expired stay expired)."""
        return await self._change(lambda offset: 0)

    @staticmethod
    def _not_back(offset_ms: int, at_ms: int) -> int:
        now_ms = time.time_ns() // 1_000_000
        if at_ms < now_ms + offset_ms:
            raise ValueError("the test clock does not go back (holds and counters assume "
                             "it never does); `switch clock reset` returns to real time")
        return at_ms - now_ms

    async def _required(self) -> int:
        workers = await self.listeners()
        if not workers:
            raise TestClockOff("no switch started with --test-clock listens on this Redis "
                               "(start one with `switch serve --test-clock`); nothing changed")
        return workers

    async def _change(self, new_offset) -> int:
        await self._required()
        async with self.client.pipeline(transaction=True) as pipe:
            while True:  # optimistic: another command's change between read and write retries
                try:
                    await pipe.watch(TEST_CLOCK_KEY)
                    offset_ms = new_offset(int(await pipe.hget(TEST_CLOCK_KEY, "offset_ms")
                                               or 0))
                    if abs(offset_ms) > limits.test_clock_offset_max_ms:
                        raise ValueError("the test clock may be at most "
                                         f"{limits.test_clock_offset_max_ms // DAY_MS} days "
                                         "from real time")
                    pipe.multi()
                    pipe.hset(TEST_CLOCK_KEY, "offset_ms", offset_ms)
                    pipe.hincrby(TEST_CLOCK_KEY, "version", 1)
                    version = (await pipe.execute())[1]
                    break
                except redis.exceptions.WatchError:
                    continue
        await announce(self.client, TEST_CLOCK_CHANNEL, f"{version} {offset_ms}",
                       ack_key(version))
        return offset_ms


def offset_text(offset_ms: int) -> str:
    """An offset in words: "+1d 12h 0m 0s"."""
    sign, rest = ("-" if offset_ms < 0 else "+"), abs(offset_ms) // 1000
    days, rest = divmod(rest, 86_400)
    hours, rest = divmod(rest, 3_600)
    return f"{sign}{days}d {hours}h {rest // 60}m {rest % 60}s"
