"""Prometheus metrics, made at scrape time from the counters the switch keeps anyway.

The hot path only adds integers (switch/metrics.py); this collector reads a snapshot of them
when /metrics is asked for, so keeping the metrics costs nothing between scrapes. With
`--workers N`, the snapshot is the sum of every worker's (switch/admin/shared.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from switch.metrics import DECISION_BOUNDS_NS, Snapshot, channel_snapshot
from switch.server import Switch

# Switch-wide counters (switch/server.py Counters), as metric name -> (counter, help).
TOTALS = {
    "switch_connections_accepted_total": ("connections", "TCP connections accepted"),
    "switch_frames_total": ("requests", "whole frames read (requests taken)"),
    "switch_answers_total": ("answered", "answers written"),
    "switch_answers_late_total": (
        "timeouts", "requests whose ledger call missed its deadline (answered 91)"),
    "switch_errors_total": ("errors", "decisions that failed (Redis unavailable, or our bug)"),
    "switch_redis_errors_total": (
        "redis_errors", "ledger calls that failed because Redis was unreachable or not ready"),
    "switch_framing_errors_total": ("framing_errors", "connections cut for a bad frame header"),
    "switch_forced_answers_total": (
        "forced", "answers forced by a card's forced outcome (switch card force) or a fault "
        "rule, not decided as usual"),
    "switch_fault_answers_total": (
        "faults", "answers forced by a fault rule (switch fault add, switch serve --faults)"),
    "switch_redis_calls_total": ("redis_calls", "Lua function calls sent to Redis"),
    "switch_redis_batches_total": (
        "redis_batches", "pipelined writes to Redis (calls of one loop tick go together)"),
}
CUTS = {"frame_timeout": "frame_timeouts", "write_timeout": "write_timeouts"}


def snapshot_of(switch: Switch) -> Snapshot:
    """This process's counts now."""
    counters = switch.counters
    scripts = switch.engine.ledger.scripts
    totals = {name: getattr(counters, name) for name in counters.COUNTS}
    totals |= {"redis_calls": scripts.calls, "redis_batches": scripts.round_trips}
    snapshot = Snapshot(
        channels={name: channel_snapshot(listener.stats, list(listener.connections))
                  for name, listener in switch.listeners.items()},
        totals=totals)
    if switch.stand_in is not None:
        snapshot.stand_in = dict(switch.stand_in.counters)
        snapshot.saf_pending = len(switch.stand_in.journal.pending)
    if switch.forwarder is not None:
        snapshot.forwarded = dict(switch.forwarder.report)
    return snapshot


class SnapshotCollector(Collector):
    """A prometheus-client collector over `source()`, called once per scrape."""

    def __init__(self, source: Callable[[], Snapshot]) -> None:
        self.source = source

    def collect(self) -> Iterator[Metric]:
        snap = self.source()
        yield from channel_metrics(snap)
        for metric, (name, text) in TOTALS.items():
            family = CounterMetricFamily(metric.removesuffix("_total"), text)
            family.add_metric([], snap.totals.get(name, 0))
            yield family
        cuts = CounterMetricFamily("switch_connections_cut", "connections cut for overstaying "
                                   "a time bound", labels=["reason"])
        for reason, name in CUTS.items():
            cuts.add_metric([reason], snap.totals.get(name, 0))
        yield cuts
        yield from stand_in_metrics(snap)
        workers = GaugeMetricFamily("switch_workers", "worker processes in this scrape")
        workers.add_metric([], snap.workers)
        yield workers


def channel_metrics(snap: Snapshot) -> Iterator[Metric]:
    requests = CounterMetricFamily(
        "switch_requests", "answers with a decision, by channel, message class and ISO 8583 "
        "response code", labels=["channel", "message_class", "response_code"])
    refused = CounterMetricFamily(
        "switch_frames_refused", "frames the channel's codec answered itself (bad format or "
        "signature): no decision", labels=["channel"])
    decisions = HistogramMetricFamily(
        "switch_decision_seconds", "from a request's frame in to its answer ready",
        labels=["channel"], unit="")
    inflight = GaugeMetricFamily("switch_inflight", "requests decided but not yet answered",
                                 labels=["channel"])
    connections = GaugeMetricFamily("switch_connections", "open connections",
                                    labels=["channel"])
    for name, channel in sorted(snap.channels.items()):
        for cls, code, count in sorted(channel.answers):
            requests.add_metric([name, cls, code], count)
        refused.add_metric([name], channel.refused)
        cumulative, buckets = 0, []
        for bound_ns, count in zip((*DECISION_BOUNDS_NS, None), channel.buckets, strict=True):
            cumulative += count
            buckets.append(("+Inf" if bound_ns is None else f"{bound_ns / 1e9:g}", cumulative))
        decisions.add_metric([name], buckets, channel.sum_ns / 1e9)
        inflight.add_metric([name], channel.inflight)
        connections.add_metric([name], channel.connections)
    yield from (requests, refused, decisions, inflight, connections)


def stand_in_metrics(snap: Snapshot) -> Iterator[Metric]:
    stand_in = CounterMetricFamily(
        "switch_stand_in", "stand-in events while Redis was unreachable (docs/reliability.md)",
        labels=["event"])
    for event, count in sorted(snap.stand_in.items()):
        stand_in.add_metric([event], count)
    forwarded = CounterMetricFamily(
        "switch_saf_forwarded", "store-and-forward journal records replayed into the ledger",
        labels=["record", "outcome"])
    for name, count in sorted(snap.forwarded.items()):
        record, _, outcome = name.partition(":")
        forwarded.add_metric([record, outcome], count)
    pending = GaugeMetricFamily("switch_saf_pending", "journal records waiting to be forwarded")
    pending.add_metric([], snap.saf_pending)
    yield from (stand_in, forwarded, pending)
