"""Ledger.void: "the attempt with this auth id under this idempotency key did not happen".

Examples per message class and per refusal (served, other attempt, changed since, absent),
then a property: any sequence of operations, followed by voids of some of its approved
attempts, leaves the card as a run without those attempts does; a second void changes
nothing; an answer served to a repeat is never taken back. On the tests' real redis-server.
"""

from __future__ import annotations

import asyncio
import itertools

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from protocols.ledger_layout import answer_key, card_indexes, card_key
from protocols.messages import AuthRequest, AuthResponse
from protocols.messages import MessageClass as C
from switch.ledger import VOID_OUTCOMES, CardView, Ledger
from switch.redis_client import connect
from switch.terms import HOLD_EXPIRY_DEFAULT_MS
from tests.support import FakeClock, make_card, new_pan
from tests.test_ledger_guards import sale
from tests.test_policy_support import new_ref

RATE = 2  # beans per yuan, so that beans move too


async def decide(ledger: Ledger, request: AuthRequest, auth_id: str) -> AuthResponse:
    return await ledger.execute(request, auth_id, beans_per_yuan=RATE)


async def void(ledger: Ledger, request: AuthRequest, auth_id: str) -> str:
    outcome = await ledger.void(request.card, request.idempotency_key, auth_id)
    assert outcome in VOID_OUTCOMES
    return outcome


def balances(view: CardView) -> tuple[int, int, int, int]:
    return view.posted, view.held, view.pending_credit, view.beans


async def remembered(ledger: Ledger, request: AuthRequest) -> bool:
    key = card_key(request.card)
    return bool(await ledger.client.exists(answer_key(key, request.idempotency_key)))


async def pending_holds(ledger: Ledger, pan: str) -> list[str]:
    return await ledger.client.zrange(card_indexes(card_key(pan))[1], 0, -1)


# --- a new auth or sale -------------------------------------------------------------------------

@pytest.mark.parametrize("cls", [C.AUTH, C.SALE])
async def test_a_voided_auth_or_sale_leaves_a_voided_record_and_nothing_held_or_posted(
        ledger, cls):
    pan = await make_card(ledger)
    request = sale(pan, 3_000, cls=cls)
    assert (await decide(ledger, request, "000001")).response_code == "00"
    assert await void(ledger, request, "000001") == "voided"
    view = await ledger.card(pan)
    assert balances(view) == (0, 0, 0, 0) and view.voids == 1
    (record,) = view.transactions
    assert (record.state, record.hold, record.posted, record.beans, record.voids) == (
        "voided", 0, 0, 0, 1)
    assert record.amount == 3_000  # what was taken back stays on record
    assert await pending_holds(ledger, pan) == []
    assert not await remembered(ledger, request)


@pytest.mark.parametrize("cls", [C.AUTH, C.SALE])
async def test_a_voided_request_is_decided_afresh_and_approved_once(ledger, cls):
    pan = await make_card(ledger)
    request = sale(pan, 3_000, cls=cls)
    await decide(ledger, request, "000001")
    await void(ledger, request, "000001")
    again = await decide(ledger, request, "000002")
    assert (again.response_code, again.repeat, again.auth_id) == ("00", False, "000002")
    assert (await decide(ledger, request, "000003")).repeat
    view = await ledger.card(pan)
    assert view.posted + view.held == 3_000 and view.transactions[0].state != "voided"


async def test_a_second_void_of_the_same_attempt_changes_nothing(ledger):
    pan = await make_card(ledger)
    request = sale(pan, 3_000)
    await decide(ledger, request, "000001")
    await void(ledger, request, "000001")
    before = await ledger.card(pan)
    assert await void(ledger, request, "000001") == "absent"
    assert await ledger.card(pan) == before


async def test_an_answer_served_to_a_repeat_is_not_taken_back(ledger):
    pan = await make_card(ledger)
    request = sale(pan, 3_000)
    await decide(ledger, request, "000001")
    assert (await decide(ledger, request, "000002")).repeat  # the client saw the approval
    before = await ledger.card(pan)
    assert await void(ledger, request, "000001") == "served"
    assert await ledger.card(pan) == before and await remembered(ledger, request)


async def test_a_void_names_its_attempt(ledger):
    pan = await make_card(ledger)
    request = sale(pan, 3_000)
    await decide(ledger, request, "000001")
    before = await ledger.card(pan)
    assert await void(ledger, request, "000009") == "other"
    assert await ledger.card(pan) == before and await remembered(ledger, request)


async def test_a_void_with_nothing_remembered_changes_nothing(ledger):
    pan = await make_card(ledger)
    await decide(ledger, sale(pan, 500), "000001")
    before = await ledger.card(pan)
    assert await void(ledger, sale(pan, 3_000), "000002") == "absent"
    assert await ledger.card(pan) == before


async def test_a_void_after_a_later_call_changed_the_transaction_changes_nothing(ledger):
    pan = await make_card(ledger)
    ref = new_ref("A")
    auth = sale(pan, 3_000, ref=ref, cls=C.AUTH)
    await decide(ledger, auth, "000001")
    await decide(ledger, sale(pan, 2_000, cls=C.CAPTURE, original_ref=ref), "000002")
    before = await ledger.card(pan)
    assert await void(ledger, auth, "000001") == "changed"
    assert await ledger.card(pan) == before


async def test_a_voided_decline_is_forgotten_and_decided_afresh(ledger):
    pan = await make_card(ledger, limit_fen=1_000)
    request = sale(pan, 3_000)
    assert (await decide(ledger, request, "000001")).response_code == "51"
    assert await void(ledger, request, "000001") == "voided"
    await ledger.set_card(pan, limit_fen=10_000)
    assert (await decide(ledger, request, "000002")).response_code == "00"


async def test_a_refusal_submitted_without_an_auth_id_is_voided_by_the_empty_one(ledger):
    pan = await make_card(ledger)
    request = sale(pan, 3_000)
    await ledger.execute(request, "", rule_decline=("30", "mcc_missing"))
    assert await void(ledger, request, "") == "voided"
    assert not await remembered(ledger, request)


async def test_nothing_references_a_voided_transaction(ledger):
    pan = await make_card(ledger)
    ref = new_ref("V")
    auth = sale(pan, 3_000, ref=ref, cls=C.AUTH)
    await decide(ledger, auth, "000001")
    await void(ledger, auth, "000001")
    for cls, amount in ((C.CAPTURE, 1_000), (C.REVERSAL, 0), (C.REFUND, 1_000)):
        answer = await decide(ledger, sale(pan, amount, cls=cls, original_ref=ref), "000002")
        assert (answer.response_code, answer.reason) == ("25", "original_not_found")


# --- calls on an existing transaction -------------------------------------------------------

async def test_a_voided_capture_gives_the_hold_back_and_lists_it_again(ledger):
    clock = FakeClock()
    ledger.clock = clock
    pan = await make_card(ledger)
    ref = new_ref("A")
    await decide(ledger, sale(pan, 3_000, ref=ref, cls=C.AUTH), "000001")
    before = await ledger.card(pan)
    capture = sale(pan, 2_500, cls=C.CAPTURE, original_ref=ref)
    await decide(ledger, capture, "000002")
    assert await void(ledger, capture, "000002") == "voided"
    after = await ledger.card(pan)
    assert balances(after) == balances(before) == (0, 3_000, 0, 0)
    assert [(t.state, t.hold, t.posted, t.voids) for t in after.transactions] == [
        ("pending", 3_000, 0, 1)]
    assert len(await pending_holds(ledger, pan)) == 1
    clock.advance(HOLD_EXPIRY_DEFAULT_MS / 1000 + 1)  # the hold still lapses in its time
    assert (await ledger.card(pan)).transactions[0].state == "expired"


@pytest.mark.parametrize("amount", [0, 1_000])
@pytest.mark.parametrize("cls", [C.AUTH, C.SALE])
async def test_a_voided_reversal_puts_back_what_it_released(ledger, cls, amount):
    pan = await make_card(ledger)
    ref = new_ref("R")
    await decide(ledger, sale(pan, 3_000, ref=ref, cls=cls), "000001")
    before = await ledger.card(pan)
    reversal = sale(pan, amount, cls=C.REVERSAL, original_ref=ref)
    await decide(ledger, reversal, "000002")
    assert await void(ledger, reversal, "000002") == "voided"
    after = await ledger.card(pan)
    assert balances(after) == balances(before)
    assert [(t.state, t.hold, t.posted, t.beans) for t in after.transactions] == [
        (t.state, t.hold, t.posted, t.beans) for t in before.transactions]
    assert len(await pending_holds(ledger, pan)) == (cls == C.AUTH)


@pytest.mark.parametrize("instant", [False, True])
async def test_a_voided_refund_takes_back_its_credit(ledger, instant):
    pan = await make_card(ledger)
    ref = new_ref("S")
    await decide(ledger, sale(pan, 3_000, ref=ref), "000001")
    before = await ledger.card(pan)
    refund = sale(pan, 1_000, cls=C.REFUND, original_ref=ref, instant_refund=instant)
    await decide(ledger, refund, "000002")
    assert await void(ledger, refund, "000002") == "voided"
    after = await ledger.card(pan)
    assert balances(after) == balances(before) == (3_000, 0, 0, 60)
    assert after.transactions[0].refunded == 0


async def test_a_refund_whose_credit_was_cleared_since_is_not_taken_back(ledger):
    """Clearing moved the credit into posted along with any other: which part was this
    refund's is no longer known, so the refund stands (a repeat is served it)."""
    pan = await make_card(ledger)
    ref = new_ref("S")
    await decide(ledger, sale(pan, 3_000, ref=ref), "000001")
    refund = sale(pan, 1_000, cls=C.REFUND, original_ref=ref)
    await decide(ledger, refund, "000002")
    assert await ledger.settle(pan) == 1_000
    before = await ledger.card(pan)
    assert await void(ledger, refund, "000002") == "changed"
    assert await ledger.card(pan) == before


@pytest.mark.parametrize("settled", [False, True])
async def test_a_capture_refunded_since_is_not_taken_back(ledger, settled):
    """A later refund was approved against what the capture posted: the capture stands (it
    once broke the books' invariant when the refund's credit had been cleared meanwhile)."""
    pan = await make_card(ledger)
    ref = new_ref("A")
    await decide(ledger, sale(pan, 1, ref=ref, cls=C.AUTH), "000001")
    capture = sale(pan, 1, cls=C.CAPTURE, original_ref=ref)
    await decide(ledger, capture, "000002")
    assert (await decide(ledger, sale(pan, 1, cls=C.REFUND, original_ref=ref),
                         "000003")).response_code == "00"
    if settled:
        assert await ledger.settle(pan) == 1
    before = await ledger.card(pan)
    assert await void(ledger, capture, "000002") == "changed"
    assert await ledger.card(pan) == before


async def test_a_void_that_would_leave_a_balance_below_zero_fails_loudly(ledger):
    """An undo that leaves posted negative means our records disagree: a bug, not a void."""
    pan = await make_card(ledger)
    request = sale(pan, 3_000)
    await decide(ledger, request, "000001")
    await ledger.client.hset(card_key(pan), "posted", 1_000)  # the books broken by hand
    with pytest.raises(Exception, match="ledger invariant broken by a void"):
        await void(ledger, request, "000001")
    assert await remembered(ledger, request)  # the failed call wrote nothing


# --- the property ------------------------------------------------------------------------------

LIMIT_FEN = 10_000_000  # no sequence here reaches it: answers do not depend on open-to-buy
_ids = itertools.count()

operations = st.lists(st.tuples(
    st.sampled_from([C.AUTH, C.SALE, C.CAPTURE, C.REVERSAL, C.REFUND]),
    st.integers(1, 5_000),  # amount (a reversal of 5,000 or more reverses all)
    st.integers(0, 30),  # which earlier operation a capture, reversal or refund names
    st.booleans(),  # an instant refund
    st.booleans(),  # voided afterwards (when approved)
    st.booleans(),  # repeated before the void (the repeat is served the answer)
    st.booleans(),  # the card is cleared (settled) after it
), min_size=1, max_size=14)


def requests_of(pan: str, ops: list, run: str) -> list[AuthRequest]:
    requests: list[AuthRequest] = []
    for i, (cls, amount, target, instant, *_) in enumerate(ops):
        original = requests[target % i].txn_ref if cls in (C.CAPTURE, C.REVERSAL, C.REFUND) \
            and i else ""
        if cls in (C.CAPTURE, C.REVERSAL, C.REFUND) and not original:
            cls, original = C.SALE, ""
        if cls == C.REVERSAL and amount >= 5_000:
            amount = 0
        requests.append(AuthRequest(
            message_class=cls, channel="jd", card=pan, amount_fen=amount, mcc="5411",
            txn_ref=f"{run}t{i}", idempotency_key=f"{run}k{i}", original_ref=original,
            instant_refund=instant))
    return requests


def comparable(view: CardView) -> tuple:
    return balances(view), sorted((t.ref.split("t")[-1], t.kind, t.state, t.amount, t.hold,
                                   t.posted, t.refunded, t.beans)
                                  for t in view.transactions if t.state != "voided")


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
@given(ops=operations)
def test_voids_leave_the_card_as_if_the_voided_attempts_never_happened(redis_url, ops):
    run = f"v{next(_ids)}x"

    async def scenario():
        ledger = Ledger(connect(redis_url))
        await ledger.start()
        try:
            with_voids, without = new_pan(), new_pan()
            for pan in (with_voids, without):
                await ledger.set_card(pan, limit_fen=LIMIT_FEN, expiry="3012")
            requests = requests_of(with_voids, ops, run)
            answers, cleared = [], []  # cleared: what each clearing took
            for i, r in enumerate(requests):
                answers.append(await decide(ledger, r, f"{i:06d}"))
                cleared.append(await ledger.settle(with_voids) if ops[i][6] else 0)
            chosen = [i for i, (op, a) in enumerate(zip(ops, answers, strict=True))
                      if op[4] and a.approved]
            served = {i for i in chosen if ops[i][5]}
            for i in served:
                assert (await decide(ledger, requests[i], "999999")).repeat
            # Latest first: a void finds the transaction as its call left it.
            outcomes = {i: await void(ledger, requests[i], f"{i:06d}") for i in reversed(chosen)}
            voided = {i for i, outcome in outcomes.items() if outcome == "voided"}
            assert all(outcomes[i] == "served" for i in served)
            view = await ledger.card(with_voids)
            # A second void of each changes nothing.
            for i in chosen:
                assert await void(ledger, requests[i], f"{i:06d}") in ("absent", "served",
                                                                       "changed")
            assert await ledger.card(with_voids) == view

            kept_answers = []
            for i, r in enumerate(requests_of(without, ops, run)):
                if i not in voided:
                    kept_answers.append(await decide(ledger, r, f"{i:06d}"))
                if ops[i][6]:
                    await ledger.settle(without)
            # Where leaving the voided attempts out changes no other answer, the card must be
            # as if they never happened.
            assume([(a.response_code, a.approved_fen) for i, a in enumerate(answers)
                    if i not in voided] == [(a.response_code, a.approved_fen)
                                            for a in kept_answers])
            assert comparable(view) == comparable(await ledger.card(without))
            assert view.voids == len(voided)
            for i, outcome in outcomes.items():
                if outcome == "changed":  # only when a later approved call, kept, changed it
                    ref = requests[i].original_ref or requests[i].txn_ref
                    cleared_since = requests[i].message_class == C.REFUND and not \
                        requests[i].instant_refund and any(cleared[i:])
                    assert cleared_since or any(
                        answers[j].approved and requests[j].original_ref == ref
                        and j not in voided for j in range(i + 1, len(requests)))
                else:
                    assert outcome == ("served" if i in served else "voided")
        finally:
            await ledger.aclose()

    asyncio.run(scenario())


async def test_a_refund_is_listed_on_its_original_and_a_void_takes_it_off(ledger):
    """The original's refund list (what WeChat refundquery answers) follows the refunds: a
    refund adds itself, a void of it restores the list as it was."""
    pan = await make_card(ledger)
    ref = new_ref("S")
    await decide(ledger, sale(pan, 3_000, ref=ref), "000001")
    kept = sale(pan, 1_000, cls=C.REFUND, original_ref=ref)
    await decide(ledger, kept, "000002")
    voided = sale(pan, 500, cls=C.REFUND, original_ref=ref)
    await decide(ledger, voided, "000003")
    query = sale(pan, 0, cls=C.INQUIRY, original_ref=ref)
    listed = (await ledger.execute(query, "000004")).refunds
    assert [(r.refund_ref, r.amount_fen) for r in listed] == [
        (kept.idempotency_key, 1_000), (voided.idempotency_key, 500)]
    assert all(r.at_ms > 0 for r in listed)
    assert await void(ledger, voided, "000003") == "voided"
    after = (await ledger.execute(sale(pan, 0, cls=C.INQUIRY, original_ref=ref), "000005"))
    assert [(r.refund_ref, r.amount_fen) for r in after.refunds] == [
        (kept.idempotency_key, 1_000)]
    assert (after.state, after.approved_fen) == ("refunded", 3_000)
