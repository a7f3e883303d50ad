"""Counters and latencies: recorded in a worker, shipped counted, merged in the parent.

Latencies are in microseconds. A worker keeps one `ChannelStats` per channel for the current
one-second interval and ships it as a `ChannelSnapshot`, each latency with how often it
occurred; the parent adds the snapshots of every worker into `Totals`, whose HDR histograms
give the percentiles. The worker only counts: building and encoding a histogram each second
took it ~3 ms, during which its sends waited and the wait was counted as latency.
"""

from __future__ import annotations

import collections
import zlib

import msgspec
from hdrh.codec import HdrCookieException, HdrHistogramSettingsException, HdrLengthException
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
    approved: dict[str, int] = {}  # approving answers, by transaction kind
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

    __slots__ = COUNTERS + ("codes", "kinds", "approved", "latency_us", "send_lag_us")

    def __init__(self) -> None:
        for name in COUNTERS:
            setattr(self, name, 0)
        self.codes: dict[str, int] = {}
        self.kinds: dict[str, int] = {}
        self.approved: dict[str, int] = {}
        self.latency_us: list[int] = []
        self.send_lag_us: list[int] = []

    def snapshot(self) -> ChannelSnapshot:
        return ChannelSnapshot(
            **{name: getattr(self, name) for name in COUNTERS}, codes=self.codes,
            kinds=self.kinds, approved=self.approved,
            latency=dict(collections.Counter(self.latency_us)),
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
        self.approved: dict[str, int] = {}
        self.latency = new_histogram()
        self.send_lag = new_histogram()

    def add_snapshot(self, snap: ChannelSnapshot) -> None:
        for name in COUNTERS:
            self.counts[name] += getattr(snap, name)
        self._add_tallies(snap)
        record_counts(self.latency, snap.latency)
        record_counts(self.send_lag, snap.send_lag)

    def add(self, other: Totals | TotalsRecord) -> None:
        """Another channel's (or another part's) totals; a record's histograms decoded. HDR
        histograms add bucket by bucket: the sum is the histogram of every value of both."""
        if isinstance(other, TotalsRecord):
            other = other.totals()
        for name in COUNTERS:
            self.counts[name] += other.counts[name]
        self._add_tallies(other)
        self.latency.add(other.latency)
        self.send_lag.add(other.send_lag)

    def _add_tallies(self, other: ChannelSnapshot | Totals) -> None:
        _add_counts(self.codes, other.codes)
        _add_counts(self.kinds, other.kinds)
        _add_counts(self.approved, other.approved)

    def record(self) -> TotalsRecord:
        """These totals as plain data (histograms in HdrHistogram's compressed base64), to
        write to a file and add elsewhere (loadtest/generator/parts.py)."""
        return TotalsRecord(counts=dict(self.counts), codes=self.codes, kinds=self.kinds,
                            approved=self.approved, latency=self.latency.encode().decode(),
                            send_lag=self.send_lag.encode().decode())

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


class TotalsRecord(msgspec.Struct, kw_only=True):
    """`Totals` as plain data: what a part of a run writes for each of its seconds."""

    counts: dict[str, int]
    codes: dict[str, int]
    kinds: dict[str, int]
    approved: dict[str, int]
    latency: str  # HdrHistogram's encoding (compressed, base64): exact, bucket for bucket
    send_lag: str

    def totals(self) -> Totals:
        totals = Totals()
        totals.counts = {name: self.counts.get(name, 0) for name in COUNTERS}
        totals.codes, totals.kinds = dict(self.codes), dict(self.kinds)
        totals.approved = dict(self.approved)
        totals.latency = _decoded(self.latency)
        totals.send_lag = _decoded(self.send_lag)
        return totals


def _decoded(encoded: str) -> HdrHistogram:
    """A histogram from its encoding, with this module's range and precision (a record made
    with other settings is refused: its buckets would not add up with ours)."""
    try:
        histogram = HdrHistogram.decode(encoded)
    except (ValueError, zlib.error, HdrCookieException, HdrLengthException,
            HdrHistogramSettingsException) as error:
        raise ValueError(f"not an HdrHistogram encoding ({error})") from None
    expected = new_histogram()
    if (histogram.highest_trackable_value, histogram.significant_figures) != (
            expected.highest_trackable_value, expected.significant_figures):
        raise ValueError("a latency histogram of other range or precision than "
                         f"1 us..{LATENCY_MAX_US} us, {SIGNIFICANT_FIGURES} digits")
    return histogram


def _label(percentile: float) -> str:
    return "max" if percentile == 100.0 else f"p{percentile:g}"


def _add_counts(into: dict[str, int], more: dict[str, int]) -> None:
    for key, n in more.items():
        into[key] = into.get(key, 0) + n
