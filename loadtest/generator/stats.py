"""Counters and latencies: recorded in a worker, shipped counted, merged in the parent.

Latencies are in microseconds. A worker keeps one `ChannelStats` per channel for the current
one-second interval and ships it as a `ChannelSnapshot`, each latency with how often it
occurred; the parent adds the snapshots of every worker into `Totals`, whose HDR histograms
give the percentiles. The worker only counts: building and encoding a histogram each second
took it ~3 ms, during which its sends waited and the wait was counted as latency.
"""

from __future__ import annotations

import collections

import msgspec
from hdrh.histogram import HdrHistogram

LATENCY_MAX_US = 120_000_000  # above any timeout we allow; larger values are clamped
SIGNIFICANT_FIGURES = 3  # 0.1% value resolution, HdrHistogram's usual setting
PERCENTILES = (50.0, 90.0, 99.0, 99.9, 99.99, 100.0)
# Answers meaning the switch could not decide (issuer unavailable, system error): a run that
# gets them is failing, even though they are well-formed answers.
FAILURE_CODES = frozenset({"91", "96"})
COUNTERS = ("sent", "answered", "dropped", "behind", "timeouts", "errors", "bad_answers",
            "late_answers")


def new_histogram() -> HdrHistogram:
    return HdrHistogram(1, LATENCY_MAX_US, SIGNIFICANT_FIGURES)


class ChannelSnapshot(msgspec.Struct, kw_only=True):
    """One channel's counts over one interval of one worker, as shipped to the parent."""

    sent: int = 0  # requests written to a connection
    answered: int = 0  # answers matched to a request we sent
    dropped: int = 0  # never sent: no connection could take it before its timeout
    behind: int = 0  # sent later than `behind_threshold_us` after their intended time
    timeouts: int = 0  # sent, but no answer within the timeout (counted from intended time)
    errors: int = 0  # lost with their connection, or no connection to send on
    bad_answers: int = 0  # answers we could not read or match to any request
    late_answers: int = 0  # answers that came after their request timed out
    codes: dict[str, int] = {}
    kinds: dict[str, int] = {}  # sent, by transaction kind
    latency: dict[int, int] = {}  # microseconds from intended send time -> answers
    send_lag: dict[int, int] = {}  # microseconds from intended to actual send -> sends


class Interval(msgspec.Struct, kw_only=True):
    worker: int
    index: int  # whole seconds since the run's start; the last one may be partial
    channels: dict[str, ChannelSnapshot]


class ChannelStats:
    """The worker side: what happened on one channel in the current interval.

    Latencies are appended to plain lists (microseconds) and counted once per interval:
    recording each value in a histogram as it comes costs the generator a tenth of its time,
    and the values of one second repeat a lot.
    """

    __slots__ = COUNTERS + ("codes", "kinds", "latency_us", "send_lag_us")

    def __init__(self) -> None:
        for name in COUNTERS:
            setattr(self, name, 0)
        self.codes: dict[str, int] = {}
        self.kinds: dict[str, int] = {}
        self.latency_us: list[int] = []
        self.send_lag_us: list[int] = []

    def snapshot(self) -> ChannelSnapshot:
        return ChannelSnapshot(
            **{name: getattr(self, name) for name in COUNTERS}, codes=self.codes,
            kinds=self.kinds, latency=dict(collections.Counter(self.latency_us)),
            send_lag=dict(collections.Counter(self.send_lag_us)))


def record_counts(histogram: HdrHistogram, counts: dict[int, int]) -> None:
    for value, count in counts.items():
        histogram.record_value(min(max(value, 1), LATENCY_MAX_US), count)


def histogram_of(values_us: list[int]) -> HdrHistogram:
    histogram = new_histogram()
    record_counts(histogram, collections.Counter(values_us))
    return histogram


class Totals:
    """The parent side: a channel's (or the whole run's) sums and merged histograms."""

    def __init__(self) -> None:
        self.counts = dict.fromkeys(COUNTERS, 0)
        self.codes: dict[str, int] = {}
        self.kinds: dict[str, int] = {}
        self.latency = new_histogram()
        self.send_lag = new_histogram()

    def add_snapshot(self, snap: ChannelSnapshot) -> None:
        for name in COUNTERS:
            self.counts[name] += getattr(snap, name)
        _add_counts(self.codes, snap.codes)
        _add_counts(self.kinds, snap.kinds)
        record_counts(self.latency, snap.latency)
        record_counts(self.send_lag, snap.send_lag)

    def add(self, other: Totals) -> None:
        for name in COUNTERS:
            self.counts[name] += other.counts[name]
        _add_counts(self.codes, other.codes)
        _add_counts(self.kinds, other.kinds)
        self.latency.add(other.latency)
        self.send_lag.add(other.send_lag)

    @property
    def failures(self) -> int:
        """Everything that says the target could not keep up or broke."""
        c = self.counts
        failed_answers = sum(n for code, n in self.codes.items() if code in FAILURE_CODES)
        return c["dropped"] + c["timeouts"] + c["errors"] + c["bad_answers"] + failed_answers

    def percentiles_ms(self) -> dict[str, float]:
        """p50 ... p99.99 and max in milliseconds (empty when nothing was answered)."""
        if self.latency.get_total_count() == 0:
            return {}
        return {_label(p): self.latency.get_value_at_percentile(p) / 1000 for p in PERCENTILES}


def _label(percentile: float) -> str:
    return "max" if percentile == 100.0 else f"p{percentile:g}"


def _add_counts(into: dict[str, int], more: dict[str, int]) -> None:
    for key, n in more.items():
        into[key] = into.get(key, 0) + n
