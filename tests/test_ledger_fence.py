"""The deadline fence of the ledger's calls: past its fence, in Redis' clock, a call answers 91
and writes nothing; the fence is the request's deadline less the guard, translated by the
offset measured on every link the pipeline opens. Against the tests' real redis-server.
"""

from __future__ import annotations

import asyncio
import gc
import math
import time

import pytest
import redis.asyncio as aioredis

from protocols.ledger_layout import card_key
from protocols.messages import AuthRequest, AuthResponse, MessageClass
from switch import limits
from switch.app import open_ledger
from switch.clock import RedisClock
from switch.config import ServerLimits
from switch.engine import Engine
from switch.ledger import Ledger, fence_guard_ms
from switch.policy import Policy
from switch.policy_file import load_policy
from switch.redis_client import connect
from switch.redis_link import LINK_NAME
from tests.support import ANSWER_WAIT_S, make_card, switch_config
from tests.test_ledger_guards import sale
from tests.test_policy_support import new_ref

TOO_LATE = ("91", "issuer_timeout")


def now_s() -> float:
    return asyncio.get_running_loop().time()


async def footprint(ledger: Ledger, pan: str) -> tuple:
    """Everything a call on the card could have written: the card, and every key it has."""
    keys = sorted(await ledger.client.keys(f"{card_key(pan)}*"))
    return await ledger.client.hgetall(card_key(pan)), keys


# --- the clock --------------------------------------------------------------------------------

def test_the_offset_is_taken_at_the_reply_and_the_uncertainty_is_half_the_round_trip():
    clock = RedisClock()
    clock.measure([b"1700000000", b"123999"], sent_s=100.0, received_s=100.010)
    assert clock.offset_ms == 1_700_000_000_123 - 100_010
    assert clock.uncertainty_ms == pytest.approx(5.0)
    assert clock.fence_ms(100.010) == 1_700_000_000_123  # the receipt maps to Redis' reading
    assert clock.fence_ms(101.0) == 1_700_000_001_113


def test_a_fractional_receipt_rounds_the_offset_down():
    """Redis read its clock before the reply arrived: a fence must not fall later than the
    instant it stands for, so the receipt's fraction of a millisecond counts whole."""
    clock = RedisClock()
    clock.measure(["1700000000", "0"], sent_s=5.0, received_s=5.0001)
    assert clock.offset_ms == 1_700_000_000_000 - 5001


async def test_the_ledger_and_its_link_measure_redis_clock(ledger):
    pan = await make_card(ledger)
    await ledger.execute(sale(pan), "000001")  # the pipeline's link is open
    seconds, micros = await ledger.client.time()
    redis_ms = seconds * 1000 + micros // 1000
    local_ms = time.monotonic() * 1000
    assert ledger.scripts.lane.redis_clock.measured
    # The tests' Redis shares this host's clock: the offset is what the two clocks say now.
    assert abs(ledger.scripts.lane.redis_clock.offset_ms - (redis_ms - local_ms)) < 200
    assert 0 <= ledger.scripts.lane.redis_clock.uncertainty_ms < 200


async def test_a_new_link_measures_the_clock_again(ledger, redis_url):
    """A Redis failover (or a clock step) shows on the next link: a stale offset that puts
    every fence in the past heals when the link is opened again."""
    pan = await make_card(ledger)
    await ledger.execute(sale(pan), "000001")
    ledger.scripts.lane.redis_clock.offset_ms -= 3_600_000  # Redis' clock jumped back an hour
    assert (await ledger.execute(sale(pan), "000001")).response_code == "91"
    admin = aioredis.Redis.from_url(redis_url)
    try:
        for client in await admin.client_list():
            if client["name"] == LINK_NAME:
                await admin.client_kill_filter(_id=client["id"])
    finally:
        await admin.aclose()
    async with asyncio.timeout(ANSWER_WAIT_S):  # the kill shows as a failed call, then a new link
        while (answer := await _try_sale(ledger, pan)) is None:
            pass
    assert answer.response_code == "00"


async def _try_sale(ledger: Ledger, pan: str) -> AuthResponse | None:
    try:
        return await ledger.execute(sale(pan), "000001")
    except ConnectionError:
        return None


# --- the fence in the Lua -----------------------------------------------------------------------

def classes_on(pan: str, held: str, posted: str) -> list[AuthRequest]:
    """One request of every class; capture and reversal name the hold, the refund the sale."""
    return [
        sale(pan, 100, cls=MessageClass.AUTH),
        sale(pan, 100, cls=MessageClass.SALE),
        sale(pan, 100, cls=MessageClass.CAPTURE, original_ref=held),
        sale(pan, 0, cls=MessageClass.REVERSAL, original_ref=held),
        sale(pan, 100, cls=MessageClass.REFUND, original_ref=posted),
        sale(pan, 0, cls=MessageClass.INQUIRY),
    ]


@pytest.mark.parametrize("index", range(6))
async def test_a_call_past_its_fence_answers_91_and_writes_nothing(ledger, index):
    pan = await make_card(ledger)
    held, posted = new_ref("H"), new_ref("P")
    await ledger.execute(sale(pan, 500, ref=held, cls=MessageClass.AUTH), "000001")
    await ledger.execute(sale(pan, 500, ref=posted), "000001")
    request = classes_on(pan, held, posted)[index]
    before = await footprint(ledger, pan)
    late = await ledger.execute(request, "000002", deadline_s=now_s() - 0.001)
    assert (late.response_code, late.reason) == TOO_LATE
    assert await footprint(ledger, pan) == before  # not even the answer is remembered
    # In time, the same request acts: a repeat of the late one is decided afresh.
    fresh = await ledger.execute(request, "000003", deadline_s=now_s() + 5)
    assert fresh.response_code == "00" and not fresh.repeat


async def test_a_repeat_past_its_fence_is_not_served_the_first_answer(ledger):
    pan = await make_card(ledger)
    request = sale(pan, 100)
    assert (await ledger.execute(request, "000001")).response_code == "00"
    late = await ledger.execute(request, "000002", deadline_s=now_s() - 0.001)
    assert (late.response_code, late.reason, late.repeat) == (*TOO_LATE, False)


async def test_the_guard_keeps_the_fence_ahead_of_the_deadline(ledger):
    """A deadline closer than the guard has its fence already behind it."""
    pan = await make_card(ledger)
    guard_s = ledger.fence_guard_s
    assert guard_s == limits.ledger_fence_guard_ms / 1000
    inside = await ledger.execute(sale(pan), "000001", deadline_s=now_s() + guard_s * 0.6)
    assert (inside.response_code, inside.reason) == TOO_LATE
    beyond = await ledger.execute(sale(pan), "000001", deadline_s=now_s() + guard_s + 1.0)
    assert beyond.response_code == "00"


@pytest.mark.parametrize(("deadline_ms", "guard_ms"), [
    (2 * limits.ledger_fence_guard_ms, limits.ledger_fence_guard_ms),
    (2 * limits.ledger_fence_guard_ms - 2, limits.ledger_fence_guard_ms - 1),
    (200, 100),
    (2000, limits.ledger_fence_guard_ms),
])
def test_a_short_deadline_keeps_half_as_the_guard(deadline_ms, guard_ms):
    assert fence_guard_ms(deadline_ms) == guard_ms
    assert Ledger(None, request_deadline_ms=deadline_ms).fence_guard_s == guard_ms / 1000


@pytest.mark.parametrize(("guard_ms", "deadline_ms", "used_ms"), [
    (0, 2000, 0), (1500, 3000, 1500), (1501, 3000, 1500)])
def test_the_configured_guard_is_used_up_to_half_the_deadline(guard_ms, deadline_ms, used_ms):
    config = switch_config(server_limits=ServerLimits(request_deadline_ms=deadline_ms,
                                                      ledger_fence_guard_ms=guard_ms))
    assert open_ledger(config, "redis://127.0.0.1:1/0").fence_guard_s == used_ms / 1000


class Fences:
    """Stands in for the pipeline: records each call's fence (local time)."""

    def __init__(self) -> None:
        self.fences: list[float | None] = []

    def call(self, name, keys, args, transform=None, fence_s=None) -> asyncio.Future:
        future = asyncio.get_running_loop().create_future()
        if name == "claim":  # no fence; the id is the card's
            future.set_result(1)
        else:
            self.fences.append(fence_s)
        return future


async def test_the_default_deadline_is_the_requests_from_now():
    """Without a deadline given, the call's fence is the ledger's request deadline from now,
    less the guard."""
    fences = Fences()
    ledger = Ledger(None, scripts=fences, request_deadline_ms=1000)  # guard 250 ms
    before = now_s()
    ledger.submit(sale("6253990000000001"), "000001")
    after = now_s()
    ledger.submit(sale("6253990000000001"), "000001", deadline_s=before + 7.0)
    await asyncio.sleep(0)  # the claims' callbacks make the card calls
    assert before + 0.75 <= fences.fences[0] <= after + 0.75
    assert fences.fences[1] == before + 6.75


async def test_the_fence_goes_last_in_redis_clock_on_the_link_that_carries_it(ledger):
    """The pipeline writes the fence as it sends the call, with the offset of its link."""
    pan = await make_card(ledger)
    await ledger.execute(sale(pan), "000001")  # the link is open and measured
    clock = ledger.scripts.lane.redis_clock
    clock.offset_ms += 600_000  # Redis ten minutes ahead: a fence in the past is then not
    late = await ledger.execute(sale(pan), "000001", deadline_s=now_s() - 60)
    assert late.response_code == "00"
    clock.offset_ms -= 1_200_000  # ten minutes behind: a fence a minute ahead has passed
    late = await ledger.execute(sale(pan), "000001", deadline_s=now_s() + 60)
    assert (late.response_code, late.reason) == TOO_LATE


async def test_a_card_resolver_spends_the_requests_deadline_not_a_new_one(redis_url):
    """x-pay resolves the token first; the ledger call's fence still counts from the
    request's start, so a resolver slower than the fence leaves the call too late."""
    ledger = Ledger(connect(redis_url), request_deadline_ms=800)  # fence 600 ms after start
    await ledger.start()
    try:
        pan = await make_card(ledger)

        async def slow_resolver(request: AuthRequest) -> AuthRequest:
            await asyncio.sleep(0.7)
            return request

        engine = Engine(ledger, Policy(load_policy(None)), resolvers={"jd": slow_resolver})
        async with asyncio.timeout(ANSWER_WAIT_S):
            late = await engine.start(sale(pan))
        assert (late.response_code, late.reason) == TOO_LATE
        assert (await ledger.card(pan)).posted == 0
    finally:
        await ledger.aclose()


# --- the clock measured again while a link lives ----------------------------------------------

ROUND_TRIP_MAX_S = limits.redis_clock_round_trip_max_ms / 1000


@pytest.mark.parametrize(("round_trip_s", "taken"), [
    (ROUND_TRIP_MAX_S - 1e-6, True), (ROUND_TRIP_MAX_S + 1e-6, False)])
def test_a_slow_reading_is_dropped_once_there_is_a_better_one(round_trip_s, taken):
    clock = RedisClock()
    assert clock.measure(["1700000000", "0"], sent_s=10.0, received_s=10.001)
    assert clock.measure(["1700000100", "0"], 20.0, 20.0 + round_trip_s) == taken
    assert (clock.offset_ms == 1_700_000_100_000 - math.ceil((20.0 + round_trip_s) * 1000)
            ) == taken


def test_the_first_reading_is_taken_however_slow():
    clock = RedisClock()
    assert clock.measure(["1700000000", "0"], sent_s=10.0, received_s=12.0)
    assert clock.measured and clock.offset_ms == 1_700_000_000_000 - 12_000


async def test_a_living_link_measures_the_clock_again_when_due(ledger):
    """(The card's calls alone, claimed=True: a claim written first would bring the new
    reading before the card's call.)"""
    pan = await make_card(ledger)
    await ledger.execute(sale(pan), "000001", claimed=True)
    pipeline = ledger.scripts
    assert pipeline.lane.clock_due > now_s() + limits.redis_clock_check_interval_s - 5
    pipeline.lane.redis_clock.offset_ms -= 3_600_000  # Redis' clock stepped back an hour
    # Not due yet: the old offset stands.
    late = await ledger.execute(sale(pan), "000001", claimed=True)
    assert late.response_code == "91"
    pipeline.lane.clock_due = now_s()  # due: the next write reads the clock first
    before = now_s()
    late = await ledger.execute(sale(pan), "000001", claimed=True)  # written with the offset it had
    assert late.response_code == "91"
    assert before + limits.redis_clock_check_interval_s <= pipeline.lane.clock_due
    assert (await ledger.execute(sale(pan), "000001", claimed=True)).response_code == "00"


async def test_a_reading_lost_with_its_link_changes_nothing(ledger):
    pipeline = ledger.scripts
    pipeline.lane.redis_clock.measure(["1700000000", "0"], 1.0, 1.0)
    lost = asyncio.get_running_loop().create_future()
    lost.set_exception(ConnectionError("lost the connection to Redis"))
    pipeline._clock_read(pipeline.lane, 1.0, lost)  # no error: the next link measures as it opens
    assert pipeline.lane.redis_clock.offset_ms == 1_700_000_000_000 - 1000


def test_a_poor_reading_is_taken_over_a_poorer_one():
    clock = RedisClock()
    assert clock.measure(["1700000000", "0"], sent_s=10.0, received_s=12.0) and clock.poor
    assert clock.measure(["1700000100", "0"], 100.0, 100.2)  # poor, yet better
    assert clock.offset_ms == 1_700_000_100_000 - 100_200 and clock.poor
    assert not clock.measure(["1700000200", "0"], 200.0, 200.3)  # poorer than the one in use
    assert clock.measure(["1700000300", "0"], 300.0, 300.001) and not clock.poor


@pytest.mark.parametrize(("round_trip_s", "poor"), [
    (ROUND_TRIP_MAX_S - 1e-6, False), (ROUND_TRIP_MAX_S + 1e-6, True)])
def test_a_reading_is_poor_past_the_round_trip_bound(round_trip_s, poor):
    clock = RedisClock()
    assert clock.poor  # no reading yet
    clock.measure(["1700000000", "0"], 10.0, 10.0 + round_trip_s)
    assert clock.poor == poor


async def test_a_poor_reading_is_read_again_with_the_next_calls(ledger):
    """A reading taken while the loop stalled puts every fence early: the next calls bring a
    new reading instead of waiting out the interval."""
    pan = await make_card(ledger)
    await ledger.execute(sale(pan), "000001", claimed=True)
    pipeline = ledger.scripts
    pipeline.lane.redis_clock = RedisClock()
    pipeline.lane.redis_clock.measure(["0", "0"], sent_s=now_s() - 2.0, received_s=now_s())
    pipeline._schedule_clock(pipeline.lane)  # as after a reading: poor, so due now
    late = await ledger.execute(sale(pan), "000001", claimed=True)
    assert late.response_code == "91"  # the old offset
    assert not pipeline.lane.redis_clock.poor
    assert (await ledger.execute(sale(pan), "000001", claimed=True)).response_code == "00"


# --- a call given up on leaves nothing behind ---------------------------------------------------

NEVER_RETRIEVED = "exception was never retrieved"


async def test_a_call_given_up_on_leaves_no_exception_unretrieved(redis_url, caplog):
    """A request answered 91 at its deadline drops its answer (the server cancels it); its
    claim then fails when the link gives up on a stalled Redis
    (TimeoutError). That failure is the answer's, already given: it is consumed, not left
    for the garbage collector to log as "Future exception was never retrieved"."""
    ledger = Ledger(connect(redis_url, 300), request_deadline_ms=300)
    await ledger.start()
    admin = aioredis.Redis.from_url(redis_url)
    try:
        pan = await make_card(ledger)
        await ledger.card(pan)  # the pipeline's link is open
        await admin.execute_command("CLIENT", "PAUSE", 1_500, "ALL")
        link = ledger.scripts.lane.link
        answer = ledger.submit(sale(pan), "000001")
        await asyncio.sleep(0.05)
        answer.cancel()  # the server's deadline: answered 91, the answer no longer awaited
        async with asyncio.timeout(ANSWER_WAIT_S):
            while not link.closed:  # the link gives up on Redis: its calls fail
                await asyncio.sleep(0.02)
            await admin.ping()  # the pause is over
        del answer
        gc.collect()
        await asyncio.sleep(0)
        assert not [r for r in caplog.records if NEVER_RETRIEVED in r.getMessage()]
    finally:
        await admin.aclose()
        await ledger.aclose()
