"""What the listeners count on the hot path, per channel, and the snapshot the admin plane
reads at scrape time (switch/admin/exporter.py turns it into Prometheus metrics).

Counting is a few integer increments per answer: a dict entry per (message class, response
code) and one bucket of a fixed histogram. Nothing here formats, locks or allocates per
request beyond the key tuple; the exporter does the rest when asked.
"""

from __future__ import annotations

import bisect

import msgspec

# The decision-time histogram's upper bounds (inclusive, ns): from frame in to answer ready.
# A decision takes well under a millisecond on a quiet switch and up to the request deadline
# (switch/limits.py request_deadline_ms) on a loaded one; the bounds cover both ends.
DECISION_BOUNDS_NS = (
    50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000, 5_000_000, 10_000_000,
    25_000_000, 50_000_000, 100_000_000, 250_000_000, 500_000_000, 1_000_000_000,
    2_500_000_000)


class ChannelStats:
    """One listener's counts: answers by (message class, response code), decision times,
    and frames its codec answered itself (bad format, bad signature: no decision made)."""

    __slots__ = ("answers", "buckets", "sum_ns", "refused")

    def __init__(self) -> None:
        self.answers: dict[tuple[str, str], int] = {}
        self.buckets = [0] * (len(DECISION_BOUNDS_NS) + 1)  # the last one: above every bound
        self.sum_ns = 0
        self.refused = 0

    def record(self, message_class: str, response_code: str, elapsed_ns: int) -> None:
        key = (message_class, response_code)
        answers = self.answers
        answers[key] = answers.get(key, 0) + 1
        self.buckets[bisect.bisect_left(DECISION_BOUNDS_NS, elapsed_ns)] += 1
        self.sum_ns += elapsed_ns


class ChannelSnapshot(msgspec.Struct):
    answers: list[tuple[str, str, int]] = []  # (message class, response code, count)
    buckets: list[int] = msgspec.field(
        default_factory=lambda: [0] * (len(DECISION_BOUNDS_NS) + 1))
    sum_ns: int = 0
    refused: int = 0
    inflight: int = 0
    connections: int = 0


class Snapshot(msgspec.Struct):
    """One process's counts at one instant; the sum of several for `--workers N`."""

    channels: dict[str, ChannelSnapshot] = {}
    totals: dict[str, int] = {}  # switch-wide counters: name -> count
    stand_in: dict[str, int] = {}  # stand-in events: name -> count
    forwarded: dict[str, int] = {}  # store-and-forward outcomes: "kind:outcome" -> count
    saf_pending: int = 0  # journal records waiting to be forwarded
    workers: int = 1


def channel_snapshot(stats: ChannelStats, connections) -> ChannelSnapshot:
    """`connections`: the listener's open connections, each with its `inflight` count."""
    return ChannelSnapshot(
        answers=[(str(cls), code, count) for (cls, code), count in list(stats.answers.items())],
        buckets=list(stats.buckets), sum_ns=stats.sum_ns, refused=stats.refused,
        inflight=sum(c.inflight for c in connections), connections=len(connections))


def merged(snapshots: list[Snapshot]) -> Snapshot:
    """The sum of several processes' snapshots (gauges add up too: each is a share)."""
    total = Snapshot(channels={}, totals={}, stand_in={}, forwarded={}, workers=0)
    for snap in snapshots:
        total.workers += snap.workers
        total.saf_pending += snap.saf_pending
        for field in ("totals", "stand_in", "forwarded"):
            into = getattr(total, field)
            for name, count in getattr(snap, field).items():
                into[name] = into.get(name, 0) + count
        for name, channel in snap.channels.items():
            into = total.channels.setdefault(name, ChannelSnapshot())
            answers = {(cls, code): count for cls, code, count in into.answers}
            for cls, code, count in channel.answers:
                answers[cls, code] = answers.get((cls, code), 0) + count
            into.answers = [(cls, code, count) for (cls, code), count in answers.items()]
            into.buckets = [a + b for a, b in zip(into.buckets, channel.buckets, strict=True)]
            into.sum_ns += channel.sum_ns
            into.refused += channel.refused
            into.inflight += channel.inflight
            into.connections += channel.connections
    return total
