"""The parent's side of a run: merges the workers' one-second snapshots as they arrive.

It keeps each channel's totals (counters and merged HDR histograms), a time series of one
point per second (for the report's charts) and, when given a `progress` callback, reports
each second once every worker has sent it.
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from loadtest.generator.stats import Interval, Totals

OVERALL = "all"  # the key of the whole run, next to the channel names


class Point(msgspec.Struct, kw_only=True):
    """One second of the run, for one channel or for all of them."""

    second: int
    sent: int
    answered: int
    failures: int
    behind: int
    p50_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None


def point_of(second: int, totals: Totals) -> Point:
    pct = totals.percentiles_ms()
    return Point(second=second, sent=totals.counts["sent"], answered=totals.counts["answered"],
                 failures=totals.failures, behind=totals.counts["behind"],
                 p50_ms=pct.get("p50"), p99_ms=pct.get("p99"), max_ms=pct.get("max"))


class Aggregator:
    def __init__(self, channels: list[str], workers: int,
                 progress: Callable[[int, Totals], None] | None = None) -> None:
        self.channels = channels
        self.workers = workers
        self.progress = progress
        self.totals = {ch: Totals() for ch in channels}
        self.series: dict[str, list[Point]] = {ch: [] for ch in [*channels, OVERALL]}
        self._open: dict[int, tuple[dict[str, Totals], set[int]]] = {}

    def add(self, interval: Interval) -> None:
        per_channel, reported = self._open.setdefault(
            interval.index, ({ch: Totals() for ch in self.channels}, set()))
        for channel, snapshot in interval.channels.items():
            per_channel[channel].add_snapshot(snapshot)
        reported.add(interval.worker)
        # A worker's last snapshot may carry the next index early: close seconds in order.
        while self._open and len(self._open[min(self._open)][1]) == self.workers:
            self._close(min(self._open))

    def finish(self) -> None:
        """Close the seconds some worker never reported (its run ended before them)."""
        for second in sorted(self._open):
            self._close(second)

    def _close(self, second: int) -> None:
        per_channel, _ = self._open.pop(second)
        overall = Totals()
        for totals in per_channel.values():
            overall.add(totals)
        for channel, totals in per_channel.items():
            self.totals[channel].add(totals)
        if not any(overall.counts.values()):
            return  # nothing happened (the quiet end of a run): no point on the charts
        for channel, totals in per_channel.items():
            self.series[channel].append(point_of(second, totals))
        self.series[OVERALL].append(point_of(second, overall))
        if self.progress is not None:
            self.progress(second, overall)

    def overall(self) -> Totals:
        overall = Totals()
        for totals in self.totals.values():
            overall.add(totals)
        return overall
