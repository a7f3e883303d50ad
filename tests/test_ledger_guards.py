"""The ledger's Python side: its checks on card administration and what it reads back.

Tables of values at, below and above each bound of `set_card` and `upgrade`, the card view
(history bound, open-to-buy floor, a transaction's fields) and what `reset_card` clears,
on a real Redis with the ledger called directly.
"""

from __future__ import annotations

import pytest

from protocols.messages import AuthRequest
from protocols.messages import MessageClass as C
from switch import limits
from switch.ledger import (
    CARD_STATUSES,
    HISTORY_SHOWN_MAX,
    UPGRADE_ATTEMPTS_MAX,
    Ledger,
    upgrade_pan,
)
from switch.redis_client import connect
from tests.support import FakeClock, make_card, new_pan
from tests.test_policy_support import T0_MS, new_ref

MAX_FEN = limits.amount_max_fen


def sale(pan: str, amount_fen: int = 100, ref: str | None = None, cls: C = C.SALE,
         **fields) -> AuthRequest:
    """A sale (or another class), under a fresh idempotency key."""
    fields = {"mcc": "5411", "txn_ref": ref or new_ref("L")} | fields
    return AuthRequest(message_class=cls, channel="jd", card=pan, amount_fen=amount_fen,
                       idempotency_key=new_ref("K"), **fields)


# --- set_card ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("fields", "error"), [
    ({"limit_fen": -1}, "limit must be 0..10000000 fen"),
    ({"limit_fen": MAX_FEN + 1}, "limit must be 0..10000000 fen"),
    ({"expiry": "3013"}, "expiry must be YYMM"),
    ({"expiry": "3000"}, "expiry must be YYMM"),
    ({"expiry": "301"}, "expiry must be YYMM"),
    ({"expiry": "30121"}, "expiry must be YYMM"),
    ({"expiry": "3O12"}, "expiry must be YYMM"),
    ({"status": "closed"}, "status must be one of"),
    ({"status": ""}, "status must be one of"),
    ({"limit_fen": None}, "a new card needs a limit"),
])
async def test_set_card_refuses_values_out_of_bounds(ledger, fields, error):
    pan = new_pan()
    with pytest.raises(ValueError, match=error):
        await ledger.set_card(pan, **({"limit_fen": 100, "expiry": "3012"} | fields))
    assert await ledger.card(pan) is None  # nothing was written


async def test_a_new_card_without_an_expiry_is_good_for_three_years(redis_url):
    clock = FakeClock(now_ms=1_796_083_200_000)  # 2026-12-01 UTC
    ledger = Ledger(connect(redis_url), clock)
    await ledger.start()
    try:
        pan = new_pan()
        await ledger.set_card(pan, limit_fen=100)
        assert (await ledger.card(pan)).expiry == "2912"
        await ledger.set_card(pan, limit_fen=200)  # an existing card keeps its expiry
        assert (await ledger.card(pan)).expiry == "2912"
    finally:
        await ledger.aclose()


@pytest.mark.parametrize(("limit_fen", "expiry"), [(0, "3001"), (MAX_FEN, "3112")])
async def test_set_card_takes_values_at_the_bounds(ledger, limit_fen, expiry):
    pan = new_pan()
    await ledger.set_card(pan, limit_fen=limit_fen, expiry=expiry)
    view = await ledger.card(pan)
    assert (view.limit, view.expiry, view.status, view.open_to_buy) == (
        limit_fen, expiry, "active", limit_fen)
    assert (view.posted, view.held, view.pending_credit, view.beans, view.account) == (
        0, 0, 0, 0, "")


@pytest.mark.parametrize("status", CARD_STATUSES)
async def test_set_card_takes_every_status(ledger, status):
    pan = await make_card(ledger, status=status)
    assert (await ledger.card(pan)).status == status


async def test_set_card_on_a_card_keeps_what_it_is_not_given(ledger):
    pan = await make_card(ledger, limit_fen=10_000)
    assert (await ledger.execute(sale(pan, 3000), "000001", beans_per_yuan=2)).beans == 60
    await ledger.set_card(pan, status="frozen")
    await ledger.set_card(pan, limit_fen=20_000)
    view = await ledger.card(pan)
    assert (view.limit, view.status, view.expiry, view.posted, view.beans, view.open_to_buy) == (
        20_000, "frozen", "3012", 3000, 60, 17_000)


# --- reset_card -------------------------------------------------------------------------------

async def test_reset_card_forgets_every_transaction(ledger):
    pan = await make_card(ledger, limit_fen=10_000)
    refs = [new_ref("R") for _ in range(3)]
    for ref in refs:
        assert (await ledger.execute(sale(pan, 100, ref), "000001")).response_code == "00"
    await ledger.reset_card(pan, limit_fen=5_000, expiry="3101", status="frozen")
    view = await ledger.card(pan)
    assert (view.limit, view.expiry, view.status, view.posted, view.transactions) == (
        5_000, "3101", "frozen", 0, [])
    await ledger.reset_card(pan, limit_fen=5_000, expiry="3101")  # active unless told
    assert (await ledger.card(pan)).status == "active"
    for ref in refs:  # their records are gone too: the references are free again
        assert (await ledger.execute(sale(pan, 100, ref), "000001")).response_code == "00"


# --- the card view ----------------------------------------------------------------------------

async def test_the_view_of_an_unknown_card_is_none(ledger):
    assert await ledger.card(new_pan()) is None


async def test_the_view_shows_the_latest_transactions_only(ledger):
    pan = await make_card(ledger, limit_fen=100_000)
    clock = FakeClock(T0_MS)
    ledger.clock = clock
    refs = []
    for _ in range(HISTORY_SHOWN_MAX + 1):
        refs.append(new_ref("H"))
        clock.now += 1
        assert (await ledger.execute(sale(pan, 10, refs[-1]), "000001")).response_code == "00"
    view = await ledger.card(pan)
    assert [t.ref for t in view.transactions] == refs[1:]
    assert HISTORY_SHOWN_MAX == 50


async def test_a_transaction_as_the_view_shows_it(ledger):
    clock = FakeClock(T0_MS)
    ledger.clock = clock
    pan = await make_card(ledger, limit_fen=100_000)
    request = sale(pan, 12_345)
    await ledger.execute(request, "123456", beans_per_yuan=3)
    hold = sale(pan, 500, cls=C.AUTH)
    clock.now += 1
    await ledger.execute(hold, "654321")
    first, second = (await ledger.card(pan)).transactions
    assert (first.ref, first.kind, first.state, first.amount, first.hold, first.posted,
            first.refunded, first.auth_id, first.created_ms, first.beans, first.expires_ms) == (
        request.txn_ref, "sale", "captured", 12_345, 0, 12_345, 0, "123456", T0_MS, 369, 0)
    assert (second.kind, second.state, second.hold, second.expires_ms) == (
        "auth", "pending", 500, T0_MS + 1 + 30 * 24 * 3600 * 1000)


async def test_a_reference_may_hold_the_key_separator(ledger):
    pan = await make_card(ledger, limit_fen=10_000)
    ref = new_ref("S") + ":t:x"
    assert (await ledger.execute(sale(pan, 100, ref), "000001")).response_code == "00"
    assert [t.ref for t in (await ledger.card(pan)).transactions] == [ref]


async def test_an_inquiry_naming_an_original_says_its_state(ledger):
    pan = await make_card(ledger, limit_fen=10_000)
    first = sale(pan, 700)
    await ledger.execute(first, "000001")
    inquiry = sale(pan, 0, cls=C.INQUIRY, mcc="", original_ref=first.txn_ref)
    answer = await ledger.execute(inquiry, "")
    assert (answer.response_code, answer.state, answer.open_to_buy_fen) == (
        "00", "captured", 9_300)
    plain = await ledger.execute(sale(pan, 0, cls=C.INQUIRY), "")
    assert (plain.response_code, plain.state) == ("00", "")


async def test_open_to_buy_is_never_below_zero(ledger):
    pan = await make_card(ledger, limit_fen=10_000)
    assert (await ledger.execute(sale(pan, 8000), "000001")).response_code == "00"
    await ledger.set_card(pan, limit_fen=5_000)  # the limit cut below what is spent
    view = await ledger.card(pan)
    assert (view.limit, view.posted, view.open_to_buy) == (5_000, 8_000, 0)


async def test_a_sale_earns_no_beans_unless_the_policy_gives_a_rate(ledger):
    pan = await make_card(ledger, limit_fen=100_000)
    answer = await ledger.execute(sale(pan, 12_345), "000001")
    assert (answer.response_code, answer.beans) == ("00", 0)


# --- upgrade ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("account", "limit_fen", "status", "error"), [
    ("", 100, "active", "account must be"),
    ("a" * 65, 100, "active", "account must be"),
    ("jd user", 100, "active", "account must be"),
    ("jd.user", 100, "active", "account must be"),
    ("j\u00e4", 100, "active", "account must be"),  # a letter, but not ASCII
    ("jd_user", 0, "active", "limit must be 1..10000000 fen"),
    ("jd_user", MAX_FEN + 1, "active", "limit must be 1..10000000 fen"),
    ("jd_user", 100, "closed", "status must be one of"),
])
async def test_upgrade_refuses_values_out_of_bounds(ledger, account, limit_fen, status, error):
    with pytest.raises(ValueError, match=error):
        await ledger.upgrade(account, limit_fen, status)


@pytest.mark.parametrize(("account", "limit_fen", "status"), [
    ("a", 1, "active"),
    ("a" * 64, MAX_FEN, "frozen"),
    ("jd_user-2", 100, "inactive"),
])
async def test_upgrade_takes_values_at_the_bounds(redis_url, account, limit_fen, status):
    # 2026-11-29: the card is valid for five years, through November 2031
    ledger = Ledger(connect(redis_url), FakeClock(T0_MS))
    await ledger.start()
    try:
        pan, created = await ledger.upgrade(account, limit_fen, status)
        view = await ledger.card(pan)
        assert (created, view.limit, view.status, view.expiry, view.account) == (
            True, limit_fen, status, "3111", account)
    finally:
        await ledger.aclose()


async def test_upgrade_tries_a_bounded_number_of_candidates(ledger):
    account = new_ref("full")
    for attempt in range(UPGRADE_ATTEMPTS_MAX - 1):  # someone else holds all but the last
        await ledger.set_card(upgrade_pan(account, attempt), limit_fen=1, expiry="3012")
    pan, created = await ledger.upgrade(account, 100)
    assert (pan, created) == (upgrade_pan(account, UPGRADE_ATTEMPTS_MAX - 1), True)
    assert await ledger.upgrade(account, 100) == (pan, False)

    other = new_ref("full")
    for attempt in range(UPGRADE_ATTEMPTS_MAX):
        await ledger.set_card(upgrade_pan(other, attempt), limit_fen=1, expiry="3012")
    with pytest.raises(RuntimeError, match="no free card number"):
        await ledger.upgrade(other, 100)
    assert await ledger.card(upgrade_pan(other, UPGRADE_ATTEMPTS_MAX)) is None
    assert UPGRADE_ATTEMPTS_MAX == 8


# --- settle -----------------------------------------------------------------------------------

async def test_settle_gives_back_the_pending_credit_of_refunds(ledger):
    pan = await make_card(ledger, limit_fen=10_000)
    first = sale(pan, 4000)
    await ledger.execute(first, "000001")
    refund = sale(pan, 1500, cls=C.REFUND, mcc="", original_ref=first.txn_ref)
    assert (await ledger.execute(refund, "")).response_code == "00"
    assert (await ledger.card(pan)).pending_credit == 1500
    assert await ledger.settle(pan) == 1500
    view = await ledger.card(pan)
    assert (view.pending_credit, view.open_to_buy) == (0, 10_000 - 4000 + 1500)
    assert await ledger.settle(pan) == 0


async def test_the_request_deadline_reaches_the_pipeline_in_seconds(redis_url):
    ledger = Ledger(connect(redis_url), request_deadline_ms=250)
    assert ledger.scripts.timeout_s == 0.25
    await ledger.client.aclose()


@pytest.mark.parametrize(("user", "taken"), [
    ("u" * 64, True), ("u" * 65, False), ("jd.user-4_2@x", True), ("jd user", False),
    ("用户", False)])
async def test_a_jd_user_id_is_1_to_64_plain_characters(ledger, user, taken):
    pan = await make_card(ledger)
    if taken:
        await ledger.set_card(pan, jd_user=user)
    else:
        with pytest.raises(ValueError, match="a JD user id is 1-64"):
            await ledger.set_card(pan, jd_user=user)
    assert (await ledger.card(pan)).jd_user == (user if taken else "")
