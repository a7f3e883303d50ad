"""Time as the ledger and the token vault see it: an injectable clock, card-expiry months, and
Redis' own clock (the ledger's deadline fences are written in it)."""

from __future__ import annotations

import functools
import math
import time
from typing import Protocol

from switch import limits

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
