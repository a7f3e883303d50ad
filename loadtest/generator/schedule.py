"""The open-loop schedule: request i is due at start + i / rate, whatever the answers do.

Sans-IO: the worker asks, with the clock's reading, which requests are due. A request that
goes out late keeps its intended time, and its latency is counted from it; this is what
corrects coordinated omission (wrk2 -R, k6 constant-arrival-rate).
"""

from __future__ import annotations

NS_PER_S = 1_000_000_000


class Schedule:
    def __init__(self, rate_per_s: float, duration_s: float, start_ns: int) -> None:
        if rate_per_s <= 0 or duration_s <= 0:
            raise ValueError("rate and duration must be positive")
        self.start_ns = start_ns
        self.interval_ns = NS_PER_S / rate_per_s
        self.total = max(1, round(rate_per_s * duration_s))
        self.issued = 0  # requests handed out so far

    def intended_ns(self, index: int) -> int:
        return self.start_ns + int(index * self.interval_ns)

    def due(self, now_ns: int) -> range:
        """Indices of the requests due by `now_ns` and not handed out yet (in order)."""
        if now_ns < self.start_ns:
            return range(0)
        upto = min(self.total, int((now_ns - self.start_ns) / self.interval_ns) + 1)
        first, self.issued = self.issued, max(self.issued, upto)
        return range(first, self.issued)

    @property
    def finished(self) -> bool:
        return self.issued >= self.total

    def next_due_ns(self) -> int | None:
        return None if self.finished else self.intended_ns(self.issued)
