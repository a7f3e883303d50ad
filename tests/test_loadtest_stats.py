"""Latencies counted by several workers, shipped, merged into histograms in the parent."""

from __future__ import annotations

import random

import msgspec

from loadtest.generator.aggregate import OVERALL, Aggregator
from loadtest.generator.stats import ChannelStats, Interval, Totals, histogram_of


def interval(worker: int, index: int, latencies_us: list[int], **counts) -> Interval:
    stats = ChannelStats()
    stats.latency_us.extend(latencies_us)
    stats.send_lag_us.extend([10] * len(latencies_us))
    stats.answered = len(latencies_us)
    stats.sent = len(latencies_us) + counts.get("timeouts", 0)
    stats.codes = counts.pop("codes", {"00": len(latencies_us)})
    for name, value in counts.items():
        setattr(stats, name, value)
    # Through the wire form, as a worker process ships it.
    wire = msgspec.msgpack.encode(Interval(worker=worker, index=index,
                                           channels={"jd": stats.snapshot()}))
    return msgspec.msgpack.decode(wire, type=Interval)


def test_merged_histograms_equal_one_histogram_of_every_value():
    rng = random.Random(1)
    values = {(w, s): [int(rng.lognormvariate(7, 1.2)) + 1 for _ in range(3000)]
              for w in range(3) for s in range(4)}
    values[(1, 2)].append(9_000_000)  # one 9 s outlier in one worker's second
    aggregator = Aggregator(["jd"], workers=3)
    for (worker, second), latencies in values.items():
        aggregator.add(interval(worker, second, latencies))
    aggregator.finish()
    merged = aggregator.totals["jd"].latency
    everything = histogram_of([v for vs in values.values() for v in vs])
    assert merged.get_total_count() == everything.get_total_count() == 12 * 3000 + 1
    for percentile in (50, 90, 99, 99.9, 99.99, 100):
        assert merged.get_value_at_percentile(percentile) == \
            everything.get_value_at_percentile(percentile)
    assert merged.get_max_value() == everything.get_max_value()
    assert aggregator.overall().counts["answered"] == 12 * 3000 + 1


def test_a_second_is_reported_once_every_worker_sent_it_and_in_order():
    shown = []
    aggregator = Aggregator(["jd"], workers=2,
                            progress=lambda second, totals: shown.append(
                                (second, totals.counts["answered"])))
    aggregator.add(interval(0, 0, [100] * 5))
    aggregator.add(interval(0, 1, [100] * 6))
    assert shown == []  # worker 1 has not reported second 0 yet
    aggregator.add(interval(1, 0, [200] * 7))
    assert shown == [(0, 12)]
    aggregator.add(interval(1, 1, [200] * 8))
    aggregator.add(interval(1, 2, [200] * 1))  # worker 0 ended after second 1
    aggregator.finish()
    assert shown == [(0, 12), (1, 14), (2, 1)]
    assert [p.answered for p in aggregator.series[OVERALL]] == [12, 14, 1]
    assert aggregator.series["jd"][0].p50_ms == 0.2  # 5 x 100 us and 7 x 200 us


def test_failures_count_timeouts_errors_drops_and_system_error_answers():
    totals = Totals()
    totals.add_snapshot(interval(0, 0, [100] * 10, timeouts=2, errors=1, dropped=3,
                                 behind=4, codes={"00": 5, "51": 2, "91": 2, "96": 1})
                        .channels["jd"])
    assert totals.failures == 2 + 1 + 3 + 3  # behind is not a failure; 51 is a decision
    assert totals.percentiles_ms()["p99"] == 0.1
