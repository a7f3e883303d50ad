"""The decision-time histogram against the exact percentiles of what it recorded."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from switch.latency import LatencyHistogram, bucket_of, upper_bound

times_ns = st.integers(0, 10**11)  # up to 100 s


@given(value=times_ns)
def test_a_value_lies_in_its_bucket_at_most_an_eighth_below_its_top(value):
    top = upper_bound(bucket_of(value))
    assert value <= top <= value + value // 8 + 1


@given(a=times_ns, b=times_ns)
def test_buckets_keep_the_order_of_values(a, b):
    if a <= b:
        assert bucket_of(a) <= bucket_of(b)


@given(values=st.lists(times_ns, min_size=1, max_size=300),
       percent=st.sampled_from([1, 50, 90, 99, 99.9, 100]))
def test_a_percentile_is_the_exact_one_or_at_most_an_eighth_above(values, percent):
    histogram = LatencyHistogram()
    for value in values:
        histogram.record(value)
    ordered = sorted(values)
    rank = max(1, -(-len(values) * percent // 100))  # nearest rank
    exact = ordered[int(rank) - 1]
    read = histogram.percentile(percent)
    assert exact <= read <= min(exact + exact // 8 + 1, max(values))
    assert histogram.percentile(100) == max(values) == histogram.largest


def test_an_empty_histogram_reads_zero():
    assert LatencyHistogram().percentile(99) == 0
