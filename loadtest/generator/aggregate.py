"""The parent's side of a run: merges the workers' one-second snapshots as they arrive.

It keeps each channel's totals (counters and merged HDR histograms), a time series of one
point per second (for the report's charts) and, when given a `progress` callback, reports
each second once every worker has sent it. The parts of a run made on several hosts are
merged by the same code: each part's seconds come in as totals instead of snapshots
(parts.py), one source per part where a run has one per worker.
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from loadtest.generator.stats import Interval, Totals, TotalsRecord

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


class SecondRecord(msgspec.Struct, kw_only=True):
    """One second of a run (or of a part of one): every channel's totals as plain data."""

    second: int
    channels: dict[str, TotalsRecord]


class Aggregator:
    """`workers`: the sources each second waits for (a run's workers, or its parts). With
    `keep_seconds`, each second that saw something is kept in `seconds`, for a part's file."""

    def __init__(self, channels: list[str], workers: int,
                 progress: Callable[[int, Totals], None] | None = None,
                 keep_seconds: bool = False) -> None:
        self.channels = channels
        self.workers = workers
        self.progress = progress
        self.totals = {ch: Totals() for ch in channels}
        self.series: dict[str, list[Point]] = {ch: [] for ch in [*channels, OVERALL]}
        self.seconds: list[SecondRecord] | None = [] if keep_seconds else None
        self._open: dict[int, tuple[dict[str, Totals], set[int]]] = {}

    def add(self, interval: Interval) -> None:
        """A worker's snapshot of one second."""
        per_channel = self._open_second(interval.index, interval.worker)
        for channel, snapshot in interval.channels.items():
            per_channel[channel].add_snapshot(snapshot)
        self._close_complete()

    def add_totals(self, second: int, source: int,
                   channels: dict[str, Totals | TotalsRecord]) -> None:
        """A source's totals of one second (a part of a run: parts.py)."""
        per_channel = self._open_second(second, source)
        for channel, totals in channels.items():
            per_channel[channel].add(totals)
        self._close_complete()

    def _open_second(self, second: int, source: int) -> dict[str, Totals]:
        per_channel, reported = self._open.setdefault(
            second, ({ch: Totals() for ch in self.channels}, set()))
        reported.add(source)
        return per_channel

    def _close_complete(self) -> None:
        # A worker's last snapshot may carry the next index early: close seconds in order.
        while self._open and len(self._open[min(self._open)][1]) == self.workers:
            self._close(min(self._open))

    def finish(self) -> None:
        """Close the seconds some source never reported (its run ended before them)."""
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
        if self.seconds is not None:
            self.seconds.append(SecondRecord(second=second, channels={
                channel: totals.record() for channel, totals in per_channel.items()}))
        if self.progress is not None:
            self.progress(second, overall)

    def overall(self) -> Totals:
        overall = Totals()
        for totals in self.totals.values():
            overall.add(totals)
        return overall
