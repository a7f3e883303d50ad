"""Ledger.advise: a stand-in approval booked as it was answered, whatever the card's status,
expiry and open-to-buy; idempotent by the advice id; never over another decision of the
same request. On the tests' real redis-server."""

from __future__ import annotations

import pytest

from protocols.ledger_layout import card_key
from protocols.messages import MessageClass as C
from switch import limits
from switch.ledger import ADVICE_OUTCOMES, Ledger
from tests.support import make_card
from tests.test_ledger_guards import sale
from tests.test_policy_support import new_ref


async def advise(ledger: Ledger, request, approved_fen: int, advice_id: str | None = None,
                 auth_id: str = "770001") -> str:
    outcome = await ledger.advise(request, auth_id, approved_fen, advice_id or new_ref("ADV"),
                                  beans_per_yuan=2)
    assert outcome in ADVICE_OUTCOMES
    return outcome


async def test_an_advised_sale_is_posted_and_a_repeat_gets_the_stand_in_answer(ledger):
    pan = await make_card(ledger)
    request = sale(pan, 3_000)
    assert await advise(ledger, request, 3_000) == "applied"
    view = await ledger.card(pan)
    assert (view.posted, view.held, view.beans, view.open_to_buy) == (3_000, 0, 60, 7_000)
    (record,) = view.transactions
    assert (record.kind, record.state, record.posted, record.auth_id) == (
        "sale", "captured", 3_000, "770001")
    repeat = await ledger.execute(request, "000002")
    assert (repeat.response_code, repeat.approved_fen, repeat.auth_id, repeat.repeat) == (
        "00", 3_000, "770001", True)
    assert (await ledger.card(pan)).posted == 3_000


async def test_an_advised_auth_is_a_hold_its_capture_finds(ledger):
    pan = await make_card(ledger)
    ref = new_ref("A")
    assert await advise(ledger, sale(pan, 3_000, ref=ref, cls=C.AUTH), 3_000) == "applied"
    view = await ledger.card(pan)
    assert (view.held, view.transactions[0].state) == (3_000, "pending")
    capture = await ledger.execute(sale(pan, 3_000, cls=C.CAPTURE, original_ref=ref), "000002")
    assert capture.response_code == "00"
    view = await ledger.card(pan)
    assert (view.posted, view.held) == (3_000, 0)


@pytest.mark.parametrize("fields", [
    {"limit_fen": 1_000}, {"status": "lost"}, {"status": "frozen"}, {"expiry": "1901"}])
async def test_an_advice_applies_past_the_limit_status_and_expiry(ledger, fields):
    pan = await make_card(ledger, **({"limit_fen": 10_000} | fields))
    assert await advise(ledger, sale(pan, 5_000), 5_000) == "applied"
    view = await ledger.card(pan)
    assert view.posted == 5_000
    assert view.open_to_buy == max(0, view.limit - 5_000)  # 0 when over, never below


async def test_an_advice_seen_before_changes_nothing(ledger):
    pan = await make_card(ledger)
    request = sale(pan, 3_000)
    assert await advise(ledger, request, 3_000, "ADV-1") == "applied"
    before = await ledger.card(pan)
    assert await advise(ledger, request, 3_000, "ADV-1") == "repeat"
    assert await ledger.card(pan) == before


async def test_an_advice_over_another_decision_of_the_request_changes_nothing(ledger):
    pan = await make_card(ledger)
    request = sale(pan, 3_000)
    await ledger.execute(request, "000001")  # decided by the ledger, and not voided
    before = await ledger.card(pan)
    assert await advise(ledger, request, 3_000, "ADV-2") == "conflict"
    assert await ledger.card(pan) == before
    assert await advise(ledger, request, 3_000, "ADV-2") == "repeat"  # the verdict is kept


async def test_an_advice_naming_a_taken_reference_changes_nothing(ledger):
    pan = await make_card(ledger)
    ref = new_ref("T")
    await ledger.execute(sale(pan, 500, ref=ref), "000001")
    before = await ledger.card(pan)
    assert await advise(ledger, sale(pan, 3_000, ref=ref), 3_000) == "conflict"
    assert await ledger.card(pan) == before


async def test_after_the_void_of_the_ledgers_own_attempt_the_advice_applies_once(ledger):
    """The stand-in journal's order: the attempt answered by stand-in is voided, then its
    advice is booked; the books hold the one answer the client got."""
    pan = await make_card(ledger)
    request = sale(pan, 3_000)
    await ledger.execute(request, "000001")  # ran in Redis; the client was answered by stand-in
    assert await ledger.void(pan, request.idempotency_key, "000001") == "voided"
    assert await advise(ledger, request, 3_000) == "applied"
    view = await ledger.card(pan)
    assert view.posted == 3_000 and [t.state for t in view.transactions] == ["captured"]
    assert await ledger.void(pan, request.idempotency_key, "770001") == "served"


async def test_an_advice_for_an_unknown_card_changes_nothing(ledger):
    request = sale("6253990000000001", 3_000)
    assert await advise(ledger, request, 3_000) == "no_card"
    assert not await ledger.client.keys(f"{card_key(request.card)}*")


@pytest.mark.parametrize("cls", [C.CAPTURE, C.REVERSAL, C.REFUND, C.INQUIRY])
async def test_only_auths_and_sales_are_advised(ledger, cls):
    with pytest.raises(ValueError, match="only auths and sales are advised"):
        await ledger.advise(sale("6253990000000001", 100, cls=cls), "770001", 100, "ADV")


@pytest.mark.parametrize("amount", [0, limits.amount_max_fen + 1])
async def test_an_advised_amount_out_of_bounds_is_refused(ledger, amount):
    with pytest.raises(ValueError, match="approved amount must be"):
        await ledger.advise(sale("6253990000000001", 100), "770001", amount, "ADV")


@pytest.mark.parametrize("amount", [1, limits.amount_max_fen])
async def test_an_advised_amount_at_the_bounds_is_booked(ledger, amount):
    pan = await make_card(ledger)
    assert await advise(ledger, sale(pan, amount), amount) == "applied"
    assert (await ledger.card(pan)).posted == amount


async def test_an_advice_past_its_own_fence_writes_nothing_and_says_so(ledger):
    pan = await make_card(ledger)
    await ledger.card(pan)  # the link is open and its clock measured
    ledger.scripts.lane.redis_clock.offset_ms -= 3_600_000  # every fence an hour in the past
    before = await ledger.card(pan)
    with pytest.raises(TimeoutError, match="nothing was written"):
        await advise(ledger, sale(pan, 3_000), 3_000, "ADV-3")
    assert await ledger.card(pan) == before
    ledger.scripts.lane.redis_clock.offset_ms += 3_600_000
    assert await advise(ledger, sale(pan, 3_000), 3_000, "ADV-3") == "applied"


async def test_an_advice_over_a_remembered_decline_changes_nothing(ledger):
    """Even a decline is a decision the books hold for the key: the stand-in journal voids
    the ledger's attempt before it advises."""
    pan = await make_card(ledger, limit_fen=1_000)
    request = sale(pan, 3_000)
    assert (await ledger.execute(request, "000001")).response_code == "51"
    assert await advise(ledger, request, 3_000) == "conflict"
    assert (await ledger.card(pan)).posted == 0
