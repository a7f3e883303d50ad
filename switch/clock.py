"""Time as the ledger and the token vault see it: an injectable clock and card-expiry months."""

from __future__ import annotations

import functools
import time
from typing import Protocol

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
