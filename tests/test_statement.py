"""The card's month on a real Redis: repayments (switch/lua/repay.lua) and the statement
cycle closed lazily by the card's next call or read (switch/lua/statement.lua), against the
Python calendar of switch/statement.py; the ledger's clock is a FakeClock moved by hand."""

from __future__ import annotations

import asyncio
import datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.ledger_layout import card_key
from protocols.messages import AuthRequest, MessageClass
from protocols.statement_calendar import next_close_ms, previous_close_ms
from switch import limits, statement
from switch.clock import DAY_MS
from switch.ledger import Ledger
from switch.redis_client import connect
from switch.statement import minimum_payment
from tests.support import FakeClock, make_card
from tests.test_policy_support import new_ref

LUA = (Path(__file__).resolve().parent.parent / "switch" / "lua" / "statement.lua").read_text()


def at(text: str) -> int:
    return int(datetime.datetime.fromisoformat(text).replace(tzinfo=datetime.UTC)
               .timestamp() * 1000)


def day_of(ms: int) -> datetime.date:
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC).date()


@pytest.fixture
async def timed(redis_url):
    """A ledger whose clock stands at 2026-12-07 10:00 UTC."""
    clock = FakeClock(at("2026-12-07T10:00"))
    ledger = Ledger(connect(redis_url), clock)
    await ledger.start()
    yield ledger, clock
    await ledger.aclose()


def sale(pan: str, amount: int) -> AuthRequest:
    ref = new_ref("S")
    return AuthRequest(message_class=MessageClass.SALE, channel="jd", card=pan,
                       amount_fen=amount, mcc="5411", txn_ref=ref, idempotency_key=ref)


async def buy(ledger: Ledger, pan: str, amount: int) -> str:
    return (await ledger.execute(sale(pan, amount), auth_id="000001")).response_code


# --- the calendar -------------------------------------------------------------------------------

def test_the_python_constants_are_the_lua_s():
    assert f"local DUE_DAYS = {statement.DUE_DAYS}\n" in LUA
    assert f"local MIN_PAYMENT_PERCENT = {statement.MIN_PAYMENT_PERCENT} " in LUA


def test_a_statement_closes_at_the_end_of_its_day():
    assert next_close_ms(at("2026-12-07T10:00"), 5) == at("2027-01-06T00:00")
    assert next_close_ms(at("2026-12-05T23:59:59.999"), 5) == at("2026-12-06T00:00")
    assert next_close_ms(at("2026-12-06T00:00"), 5) == at("2027-01-06T00:00")  # just closed
    assert next_close_ms(at("2027-01-31T12:00"), 28) == at("2027-03-01T00:00")  # no leap year
    assert next_close_ms(at("2028-02-28T12:00"), 28) == at("2028-02-29T00:00")  # a leap year
    assert next_close_ms(at("2026-12-28T12:00"), 20) == at("2027-01-21T00:00")  # year end
    assert previous_close_ms(at("2027-01-06T00:00"), 5) == at("2026-12-06T00:00")


def test_a_purchase_the_day_after_the_statement_is_due_50_days_later():
    """The card's promise: up to 50 days interest-free (a 31-day month)."""
    purchase = at("2027-01-06T09:00")  # the day after the 5 January statement
    close = next_close_ms(purchase, 5)
    last_day_to_pay = day_of(close + statement.DUE_DAYS * DAY_MS - DAY_MS)
    assert last_day_to_pay == datetime.date(2027, 2, 25)
    assert (last_day_to_pay - day_of(purchase)).days == 50


@pytest.mark.parametrize(("balance", "past_due", "minimum"), [
    (0, 0, 0), (-500, 0, 0), (10_000, 0, 1_000), (10_001, 0, 1_001), (9, 0, 1),
    (10_000, 400, 1_400), (1_000, 950, 1_000)])
def test_the_minimum_payment(balance, past_due, minimum):
    assert minimum_payment(balance, past_due) == minimum


@settings(max_examples=60, deadline=None)
@given(start=st.integers(at("2026-01-01T00:00"), at("2030-12-31T00:00")),
       later=st.integers(0, 400 * DAY_MS), day=st.integers(1, 28))
def test_the_lua_calendar_is_the_python_one(redis_url, start, later, day):
    """A card made at `start` is read at `start + later`: the cycle the Lua closed up to is
    the Python calendar's, across month ends, year ends and leap years."""

    async def read():
        clock = FakeClock(start)
        ledger = Ledger(connect(redis_url), clock)
        await ledger.start()
        try:
            pan = await make_card(ledger, statement_day=day)
            clock.now = start + later
            return (await ledger.card(pan)).cycle
        finally:
            await ledger.aclose()

    cycle = asyncio.run(read())
    first = next_close_ms(start, day)
    assert cycle.end_ms == next_close_ms(start + later, day)
    if start + later < first:
        assert cycle.statement_ms == 0
    else:
        assert cycle.statement_ms == previous_close_ms(cycle.end_ms, day) == cycle.start_ms
        assert day_of(cycle.statement_ms - DAY_MS).day == day


# --- repayments ---------------------------------------------------------------------------------

async def test_a_repayment_lowers_posted_and_restores_open_to_buy_at_once(timed):
    ledger, _ = timed
    pan = await make_card(ledger, limit_fen=10_000)
    assert await buy(ledger, pan, 8_000) == "00"
    assert await buy(ledger, pan, 3_000) == "51"  # over the limit
    repayment = await ledger.repay(pan, 5_000, "pay-1")
    assert (repayment.outcome, repayment.ref, repayment.amount) == ("repaid", "pay-1", 5_000)
    view = await ledger.card(pan)
    assert (view.posted, view.open_to_buy, view.repaid) == (3_000, 7_000, 5_000)
    record = next(t for t in view.transactions if t.kind == "repay")
    assert (record.ref, record.state, record.amount, record.posted) == (
        "repay:pay-1", "repaid", 5_000, -5_000)
    assert await buy(ledger, pan, 3_000) == "00"  # the open-to-buy is spendable at once


async def test_a_repeated_ref_changes_nothing_and_another_amount_is_refused(timed):
    ledger, _ = timed
    pan = await make_card(ledger)
    await buy(ledger, pan, 6_000)
    assert (await ledger.repay(pan, 2_000, "r")).outcome == "repaid"
    before = await ledger.card(pan)
    assert (await ledger.repay(pan, 2_000, "r")).outcome == "repeat"
    mismatch = await ledger.repay(pan, 2_001, "r")
    assert (mismatch.outcome, mismatch.amount) == ("mismatch", 2_000)
    assert await ledger.card(pan) == before
    assert (await ledger.repay(pan, 2_000, "r2")).outcome == "repaid"  # a new ref is new


async def test_repayments_without_a_ref_are_each_their_own(timed):
    ledger, _ = timed
    pan = await make_card(ledger)
    first, second = await ledger.repay(pan, 100), await ledger.repay(pan, 100)
    assert first.ref != second.ref and {first.outcome, second.outcome} == {"repaid"}
    assert (await ledger.card(pan)).repaid == 200


async def test_an_overpayment_is_a_spendable_credit_balance(timed):
    """溢缴款: posted below zero, open-to-buy above the limit by as much."""
    ledger, _ = timed
    pan = await make_card(ledger, limit_fen=10_000)
    await buy(ledger, pan, 1_000)
    await ledger.repay(pan, 3_000)
    view = await ledger.card(pan)
    assert (view.posted, view.open_to_buy) == (-2_000, 12_000)
    assert await buy(ledger, pan, 12_001) == "51"
    assert await buy(ledger, pan, 12_000) == "00"
    assert (await ledger.card(pan)).open_to_buy == 0


@pytest.mark.parametrize(("amount", "ref"), [
    (0, "r"), (limits.amount_max_fen + 1, "r"), (-5, "r"), (100, ""), (100, "a:b"),
    (100, "x" * (limits.repayment_ref_max_chars + 1)), (100, "a b")])
async def test_a_bad_repayment_is_refused_and_changes_nothing(timed, amount, ref):
    ledger, _ = timed
    pan = await make_card(ledger)
    before = await ledger.card(pan)
    with pytest.raises(ValueError):
        await ledger.repay(pan, amount, ref)
    assert await ledger.card(pan) == before


async def test_the_bounds_of_a_repayment_are_accepted(timed):
    ledger, _ = timed
    pan = await make_card(ledger)
    assert (await ledger.repay(pan, 1, "x" * limits.repayment_ref_max_chars)).outcome == "repaid"
    assert (await ledger.repay(pan, limits.amount_max_fen, "A_-9")).outcome == "repaid"


async def test_a_repayment_on_no_card_changes_nothing(timed):
    ledger, _ = timed
    pan = "6253680000000018"
    await ledger.client.delete(card_key(pan))
    assert (await ledger.repay(pan, 100, "r")).outcome == "no_card"
    assert not await ledger.client.exists(card_key(pan), f"{card_key(pan)}:t:repay:r")


async def test_a_blocked_card_is_still_repaid(timed):
    ledger, _ = timed
    pan = await make_card(ledger, status="lost")
    assert (await ledger.repay(pan, 100)).outcome == "repaid"


async def test_a_refund_settled_after_a_repayment_leaves_a_credit_balance(timed):
    ledger, _ = timed
    pan = await make_card(ledger, limit_fen=10_000)
    original = sale(pan, 2_000)
    await ledger.execute(original, auth_id="000001")
    await ledger.repay(pan, 2_000)
    refund = AuthRequest(message_class=MessageClass.REFUND, channel="jd", card=pan,
                         amount_fen=2_000, mcc="5411", txn_ref=new_ref("R"),
                         idempotency_key=new_ref("R"), original_ref=original.txn_ref)
    assert (await ledger.execute(refund, auth_id="000002")).response_code == "00"
    assert await ledger.settle(pan) == 2_000  # all of it, though posted was 0
    view = await ledger.card(pan)
    assert (view.posted, view.pending_credit, view.open_to_buy) == (-2_000, 0, 12_000)


async def test_a_credit_balance_beyond_the_repayments_fails_loudly(timed):
    """Posted below -repaid means our books are broken: the call errors (the engine answers
    96); at -repaid exactly it is a credit balance."""
    ledger, _ = timed
    pan = await make_card(ledger)
    await ledger.repay(pan, 1_000)
    # The books broken by hand: after a sale of 100, posted is one fen below -repaid.
    await ledger.client.hset(card_key(pan), "posted", -1_101)
    with pytest.raises(Exception, match="ledger invariant broken"):
        await buy(ledger, pan, 100)
    await ledger.client.hset(card_key(pan), "posted", -1_100)  # -repaid after the sale
    assert await buy(ledger, pan, 100) == "00"


# --- the statement, closed lazily ---------------------------------------------------------------

async def test_the_next_call_closes_the_cycle_before_it_changes_anything(timed):
    """No read in between: the sale after the close is the next cycle's, not the statement's."""
    ledger, clock = timed
    pan = await make_card(ledger, limit_fen=100_000)  # statement day 5: closes 2027-01-06
    await buy(ledger, pan, 10_000)
    clock.now = at("2027-01-06T00:00")  # the close itself
    await buy(ledger, pan, 2_500)
    cycle = (await ledger.card(pan)).cycle
    assert (cycle.statement_ms, cycle.statement_balance, cycle.minimum_payment) == (
        at("2027-01-06T00:00"), 10_000, 1_000)
    assert cycle.due_ms == at("2027-01-26T00:00")  # due the 25th, the last day to pay
    assert (cycle.start_ms, cycle.end_ms) == (at("2027-01-06T00:00"), at("2027-02-06T00:00"))
    assert (cycle.paid, cycle.still_due, cycle.overdue) == (0, 10_000, False)


async def test_a_sale_a_millisecond_before_the_close_is_on_the_statement(timed):
    ledger, clock = timed
    pan = await make_card(ledger, limit_fen=100_000)
    clock.now = at("2027-01-06T00:00") - 1
    await buy(ledger, pan, 700)
    clock.now += 1
    assert (await ledger.card(pan)).cycle.statement_balance == 700


@pytest.mark.parametrize(("paid", "overdue"), [(999, True), (1_000, False)])
async def test_overdue_when_the_minimum_is_not_paid_by_the_due_date(timed, paid, overdue):
    ledger, clock = timed
    pan = await make_card(ledger, limit_fen=100_000)
    await buy(ledger, pan, 10_000)
    clock.now = at("2027-01-10T00:00")
    await ledger.repay(pan, paid)
    clock.now = at("2027-01-26T00:00") - 1  # the due date's last instant
    assert not (await ledger.card(pan)).cycle.overdue
    clock.now += 1
    cycle = (await ledger.card(pan)).cycle
    assert (cycle.paid, cycle.still_due, cycle.overdue) == (paid, 10_000 - paid, overdue)


async def test_a_repayment_counts_towards_the_statement_it_follows(timed):
    ledger, clock = timed
    pan = await make_card(ledger, limit_fen=100_000)
    await buy(ledger, pan, 10_000)
    await ledger.repay(pan, 300)  # before the close: it lowers the statement balance
    clock.now = at("2027-01-07T00:00")  # the cycle ended: repay closes it first
    await ledger.repay(pan, 4_000)
    cycle = (await ledger.card(pan)).cycle
    assert (cycle.statement_balance, cycle.paid, cycle.still_due) == (9_700, 4_000, 5_700)


async def test_an_unpaid_minimum_is_carried_as_past_due(timed):
    """Cycles nobody used the card in close at once at its next call; each unpaid minimum is
    past due on the next statement, and the card stays overdue until it is paid."""
    ledger, clock = timed
    pan = await make_card(ledger, limit_fen=100_000)
    await buy(ledger, pan, 10_000)
    clock.now = at("2027-01-10T00:00")
    await ledger.repay(pan, 600)  # of a minimum of 1,000
    clock.now = at("2027-03-10T00:00")  # past the February and March statements
    cycle = (await ledger.card(pan)).cycle
    assert cycle.statement_ms == at("2027-03-06T00:00")
    # February: 9,400, minimum 940 + 400 past due; March: nothing paid, so 1,340 past due.
    assert (cycle.statement_balance, cycle.past_due) == (9_400, 1_340)
    assert cycle.minimum_payment == 940 + 1_340 and cycle.overdue  # before its due date
    await ledger.repay(pan, 1_339)
    assert (await ledger.card(pan)).cycle.overdue
    await ledger.repay(pan, 1)
    assert not (await ledger.card(pan)).cycle.overdue  # its own due date is still ahead


async def test_a_credit_statement_asks_for_nothing(timed):
    ledger, clock = timed
    pan = await make_card(ledger, limit_fen=100_000)
    await ledger.repay(pan, 500)
    clock.now = at("2027-02-01T00:00")
    cycle = (await ledger.card(pan)).cycle
    assert (cycle.statement_balance, cycle.minimum_payment, cycle.still_due) == (-500, 0, 0)
    clock.now = at("2027-02-02T00:00")  # past its due date
    assert not (await ledger.card(pan)).cycle.overdue


async def test_settle_closes_the_cycle_first(timed):
    ledger, clock = timed
    pan = await make_card(ledger, limit_fen=100_000)
    original = sale(pan, 2_000)
    await ledger.execute(original, auth_id="000001")
    refund = AuthRequest(message_class=MessageClass.REFUND, channel="jd", card=pan,
                         amount_fen=500, mcc="5411", txn_ref=new_ref("R"),
                         idempotency_key=new_ref("R"), original_ref=original.txn_ref)
    await ledger.execute(refund, auth_id="000002")
    clock.now = at("2027-01-07T00:00")
    assert await ledger.settle(pan) == 500
    assert (await ledger.card(pan)).cycle.statement_balance == 2_000  # the credit came after


async def test_a_new_statement_day_takes_effect_from_the_next_close(timed):
    ledger, clock = timed
    pan = await make_card(ledger, limit_fen=100_000)
    await buy(ledger, pan, 1_000)
    clock.now = at("2027-01-10T00:00")  # the 5 January statement is due to close
    await ledger.set_card(pan, statement_day=20)
    cycle = (await ledger.card(pan)).cycle
    assert cycle.statement_ms == at("2027-01-06T00:00")  # closed under the old day first
    assert (cycle.statement_day, cycle.start_ms, cycle.end_ms) == (
        20, at("2027-01-06T00:00"), at("2027-01-21T00:00"))
    for day in (0, 29):
        with pytest.raises(ValueError, match="statement day"):
            await ledger.set_card(pan, statement_day=day)
    assert (await ledger.card(pan)).cycle.statement_day == 20


async def test_a_new_card_gets_the_ledger_s_statement_day(redis_url):
    ledger = Ledger(connect(redis_url), FakeClock(at("2026-12-07T10:00")), statement_day=28)
    await ledger.start()
    try:
        pan = await make_card(ledger)
        upgraded, _ = await ledger.upgrade(new_ref("acct"), 10_000)
        for card in (pan, upgraded):
            cycle = (await ledger.card(card)).cycle
            assert (cycle.statement_day, cycle.end_ms) == (28, at("2026-12-29T00:00"))
    finally:
        await ledger.aclose()
    with pytest.raises(ValueError, match="statement day"):
        Ledger(connect(redis_url), statement_day=29)
