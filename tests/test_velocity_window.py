"""The ledger's approval counters (authorize.lua) against a plain list of approvals.

authorize.lua keeps, per counter, the latest bucket and the window's totals, and subtracts
finished buckets as they leave the window. Hypothesis drives sales through the real script
on a real redis-server with a fake clock that jumps by amounts around the bucket size, the
window and many windows (so buckets roll one at a time, several at once, and reuse a slot
of an older bucket); the model keeps every approval and sums the window from scratch.
"""

from __future__ import annotations

import asyncio
import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.messages import AuthRequest, MessageClass
from switch.ledger import Ledger
from switch.redis_client import connect
from switch.terms import Counter, Terms
from tests.support import FakeClock, new_pan

T0_MS = 1_795_953_600_000
_refs = itertools.count()


def sale(pan: str, amount_fen: int) -> AuthRequest:
    ref = f"VW{next(_refs)}"
    return AuthRequest(message_class=MessageClass.SALE, channel="jd", card=pan,
                       amount_fen=amount_fen, mcc="5411", txn_ref=ref, idempotency_key=ref)


def expected_code(approvals: list[tuple[int, int]], counter: Counter, now_ms: int,
                  amount: int) -> str:
    current = (now_ms + counter.offset_ms) // counter.bucket_ms
    inside = [fen for bucket, fen in approvals if current - counter.buckets < bucket <= current]
    if counter.count_max and len(inside) + 1 > counter.count_max:
        return "65"
    if counter.amount_max_fen and sum(inside) + amount > counter.amount_max_fen:
        return "61"
    return "00"


@settings(max_examples=60, deadline=None)
@given(buckets=st.sampled_from([1, 2, 3, 5, 10]),
       bucket_ms=st.sampled_from([100, 1_000]),
       offset_ms=st.sampled_from([0, 250]),
       count_max=st.integers(0, 6),
       amount_max=st.sampled_from([0, 900, 2_500]),
       steps=st.lists(st.tuples(st.sampled_from([0, 1, 99, 100, 250, 999, 1_000, 2_900,
                                                 10_000, 35_000]),
                                st.integers(1, 700)), min_size=1, max_size=40))
def test_counter_window_matches_a_list_of_approvals(redis_url, buckets, bucket_ms, offset_ms,
                                                    count_max, amount_max, steps):
    counter = Counter("v:test", bucket_ms, buckets, offset_ms, count_max, amount_max,
                      "velocity_count:test", "velocity_amount:test")
    terms = Terms().with_counters((counter,))

    async def run() -> None:
        clock = FakeClock(T0_MS)
        ledger = Ledger(connect(redis_url), clock)
        await ledger.start()
        pan = new_pan()
        await ledger.set_card(pan, limit_fen=10_000_000, expiry="3012")
        approvals: list[tuple[int, int]] = []  # (bucket, fen)
        try:
            for advance_ms, amount in steps:
                clock.now += advance_ms
                expected = expected_code(approvals, counter, clock.now, amount)
                answer = await ledger.execute(sale(pan, amount), auth_id="000001", terms=terms)
                assert answer.response_code == expected, (clock.now - T0_MS, approvals)
                if expected == "00":
                    approvals.append(((clock.now + offset_ms) // bucket_ms, amount))
        finally:
            await ledger.aclose()

    asyncio.run(run())


async def test_a_clock_stepped_back_counts_into_the_latest_bucket(ledger):
    """Workers' clocks differ a little and wall clocks step back: an approval stamped
    before the latest bucket is counted there, so the window never forgets it early."""
    counter = Counter("v:back", 1_000, 3, 0, 2, 0, "velocity_count:back", "")
    terms = Terms().with_counters((counter,))
    clock = FakeClock(T0_MS)
    ledger.clock = clock
    pan = new_pan()
    await ledger.set_card(pan, limit_fen=100_000, expiry="3012")
    clock.now = T0_MS + 5_000
    assert (await ledger.execute(sale(pan, 100), "000001", terms=terms)).response_code == "00"
    clock.now = T0_MS  # five buckets back
    assert (await ledger.execute(sale(pan, 100), "000001", terms=terms)).response_code == "00"
    clock.now = T0_MS + 7_000  # buckets 5 .. 7: both approvals still count
    assert (await ledger.execute(sale(pan, 100), "000001", terms=terms)).response_code == "65"
    clock.now = T0_MS + 8_000  # bucket 5 has left the window
    assert (await ledger.execute(sale(pan, 100), "000001", terms=terms)).response_code == "00"
