"""Stand-in decisions and what they journal (switch/standin.py), on a real journal file."""

from __future__ import annotations

import asyncio
import logging
import os
import time

import msgspec
import pytest
from redis.exceptions import ResponseError

from protocols.codes import CardStatus, Code, Reason
from protocols.jd import JdCodec
from protocols.messages import AuthRequest, AuthResponse, MessageClass, decline
from switch import limits
from switch.clock import month_of
from switch.config import ServerLimits
from switch.engine import Attempt
from switch.journal import Advice, Journal, Void
from switch.policy import Policy
from switch.policy_cli import summary
from switch.policy_file import PolicyError, load_policy, parse_policy
from switch.policy_file import StandIn as StandInSpec
from switch.server import TIMED_OUT, UNREACHABLE, Counters, Listener
from switch.standin import CardStatuses, StandIn
from tests.support import FakeClock

PAN = "6253990000000018"


def policy(enabled: bool = True, per_transaction: int = 1000, per_card: int = 2500,
           code: str = "61") -> Policy:
    spec = load_policy()
    spec.stand_in = StandInSpec(enabled=enabled, per_transaction_max_fen=per_transaction,
                                per_card_max_fen=per_card, decline_code=code)
    return Policy(spec)


_numbers = iter(range(1, 1_000_000))


def request(amount: int = 500, mcc: str = "5411", pan: str = PAN,
            kind: MessageClass = MessageClass.SALE, key: str = "", expiry: str = ""
            ) -> AuthRequest:
    key = key or f"jd:110000001:T{next(_numbers)}"
    return AuthRequest(message_class=kind, channel="jd", card=pan, amount_fen=amount, mcc=mcc,
                       merchant_id="110000001", txn_ref=key, idempotency_key=key, expiry=expiry,
                       original_ref="jd:110000001:T0" if kind is MessageClass.REVERSAL else "")


def made(pan: str = PAN, auth_id: str = "123456") -> Attempt:
    attempt = Attempt()
    attempt.pan, attempt.auth_id = pan, auth_id
    return attempt


@pytest.fixture
def journal(tmp_path):
    journal = Journal.open_locked(tmp_path / "saf-0.journal", records_max=50)
    yield journal
    journal.close()


def stand_in(journal: Journal, **options) -> StandIn:
    reserve = options.pop("reserve", 5)
    clock = options.pop("clock", None)
    unit = StandIn(policy(**options), journal, request_deadline_ms=2000,
                   void_reserve_records=reserve, clock=clock)
    unit.cards.note(PAN, AuthResponse(response_code="00"))  # the card was seen active
    return unit


async def answered(unit: StandIn, req: AuthRequest, attempt: Attempt | None = None,
                   no_answer=TIMED_OUT) -> AuthResponse:
    answer = unit.answer(req, attempt or made(), no_answer)
    if isinstance(answer, asyncio.Future):
        answer = await answer
    return answer


async def test_off_answers_91_and_still_journals_the_void_of_the_call_made(journal):
    unit = stand_in(journal, enabled=False)
    req = request()
    answer = await answered(unit, req, made(auth_id="654321"))
    assert (answer.response_code, answer.reason, answer.stand_in) == ("91", "issuer_timeout",
                                                                        False)
    [void] = journal.records
    assert isinstance(void, Void)
    assert (void.pan, void.idempotency_key, void.auth_id) == (PAN, req.idempotency_key,
                                                              "654321")
    assert void.not_before_ms - void.written_ms == 2000  # the request's deadline is past then


async def test_no_call_made_no_void(journal):
    unit = stand_in(journal, enabled=False)
    answer = await answered(unit, request(), Attempt(), UNREACHABLE)
    assert (answer.response_code, answer.reason) == ("91", "issuer_unavailable")
    assert journal.records == []


async def test_on_approves_within_the_limits_journaling_void_then_advice(journal):
    unit = stand_in(journal)
    req = request(amount=1000)  # exactly the per-transaction limit
    answer = await answered(unit, req)
    assert (answer.response_code, answer.approved_fen, answer.stand_in) == ("00", 1000, True)
    void, advice = journal.records
    assert isinstance(void, Void) and isinstance(advice, Advice)
    assert (advice.request, advice.auth_id, advice.approved_fen) == (req, answer.auth_id, 1000)
    assert advice.beans_per_yuan == 5  # the policy's JD rate, posted with the advice
    assert journal.fsyncs == 1  # on disk before the answer


async def test_one_fen_over_the_per_transaction_limit_is_declined(journal):
    unit = stand_in(journal, code="05")
    answer = await answered(unit, request(amount=1001))
    assert (answer.response_code, answer.reason, answer.stand_in) == (
        "05", Reason.STAND_IN_LIMIT, True)
    assert [type(r) for r in journal.records] == [Void]  # a decline posts nothing


async def test_the_per_card_limit_counts_every_stand_in_approval_until_the_drain(journal):
    unit = stand_in(journal)
    for _ in range(2):
        assert (await answered(unit, request(amount=1000))).approved
    assert (await answered(unit, request(amount=500))).approved  # 2500: exactly the limit
    over = await answered(unit, request(amount=1))
    assert (over.response_code, over.reason) == ("61", Reason.STAND_IN_CARD_LIMIT)
    other = "6253990000000026"
    unit.cards.note(other, AuthResponse(response_code="00"))
    assert (await answered(unit, request(amount=1, pan=other), made(pan=other))).approved
    journal.advance(len(journal.pending))
    assert journal.drained()  # forwarded: the count starts over
    assert (await answered(unit, request(amount=1))).approved


async def test_the_count_is_rebuilt_from_the_journal_after_a_restart(journal):
    unit = stand_in(journal)
    assert (await answered(unit, request(amount=1000))).approved
    assert (await answered(unit, request(amount=1000))).approved
    again = stand_in(journal)  # a new process on the same journal
    assert again.approved_fen == {PAN: 2000}
    assert (await answered(again, request(amount=501))).reason == Reason.STAND_IN_CARD_LIMIT


async def test_policy_rules_and_card_statuses_decline_marked_as_stand_in(journal):
    unit = stand_in(journal)
    blocked = await answered(unit, request(mcc="7995"))
    assert (blocked.response_code, blocked.reason, blocked.stand_in) == (
        "57", "mcc_blocked:7995", True)
    lost = "6253990000000034"
    unit.cards.note(lost, decline(Code.LOST_CARD, Reason.CARD_LOST))
    answer = await answered(unit, request(pan=lost), made(pan=lost))
    assert (answer.response_code, answer.reason, answer.stand_in) == ("41", "card_lost", True)
    bad_amount = await answered(unit, request(amount=0))
    assert (bad_amount.response_code, bad_amount.stand_in) == ("13", True)
    this_month = month_of(time.time_ns() // 1_000_000)
    last_month = f"{int(this_month) - 1:04d}" if this_month[2:] != "01" else (
        f"{int(this_month[:2]) - 1:02d}12")
    expired = await answered(unit, request(expiry=last_month))
    assert (expired.response_code, expired.reason, expired.stand_in) == (
        "54", "card_expired", True)
    assert (await answered(unit, request(expiry=this_month))).approved  # good through it


async def test_a_card_never_seen_or_a_class_not_stood_in_is_answered_91(journal):
    unit = stand_in(journal)
    stranger = "6253990000000042"
    answer = await answered(unit, request(pan=stranger), made(pan=stranger))
    assert (answer.response_code, answer.stand_in) == ("91", False)
    reversal = await answered(unit, request(kind=MessageClass.REVERSAL))
    assert (reversal.response_code, reversal.stand_in) == ("91", False)


async def test_approvals_stop_before_the_void_reserve_and_voids_fill_it(journal):
    unit = stand_in(journal, per_card=1_000_000, reserve=10)  # 50 records, 10 for voids
    approvals = 0
    while (await answered(unit, request(amount=1))).approved:
        approvals += 1
    assert approvals == 20  # 40 records (void + advice each); the 41st and 42nd would eat
    full = await answered(unit, request(amount=1))  # into the reserve
    assert (full.response_code, full.reason, full.stand_in) == ("91", "saf_journal_full", True)
    assert len(journal.records) == 42  # the two refused approvals still journaled their voids
    while journal.room():
        await answered(unit, request(amount=1))
    assert len(journal.records) == 50
    answer = await answered(unit, request(amount=1))  # no room even for the void
    assert answer.response_code == "91" and unit.counters["journal_full"] >= 2


async def test_a_repeat_before_forwarding_gets_the_stand_in_answer_again(journal):
    unit = stand_in(journal)
    req = request()
    first = await answered(unit, req)
    records = len(journal.records)
    again = await answered(unit, req, made(auth_id="999999"))
    assert (again.auth_id, again.repeat, again.stand_in) == (first.auth_id, True, True)
    assert len(journal.records) == records  # decided once, posted once
    assert unit.repeat(req).auth_id == first.auth_id


async def test_the_id_of_a_stand_in_answer_on_another_card_is_94(journal):
    """Before its advice is forwarded the id has no claim in Redis: the stand-in's own memory
    keeps it to its card (docs/reliability.md, "Ids in their scope")."""
    unit = stand_in(journal)
    req = request()
    first = await answered(unit, req)
    assert first.approved
    records = len(journal.records)
    other = msgspec.structs.replace(req, card="6253990000000026")
    reused = await answered(unit, other, made(pan=other.card))
    assert (reused.response_code, reused.reason, reused.stand_in) == (
        "94", "duplicate_id_other_card", True)
    assert not reused.approved_fen and len(journal.records) == records
    assert unit.repeat(req).auth_id == first.auth_id  # the card's own repeat still gets it


async def test_an_answer_whose_record_could_not_be_written_is_91_and_not_counted(journal):
    unit = stand_in(journal)
    req = request(amount=1000)
    answer = unit.answer(req, made(), TIMED_OUT)
    journal.fd, real = -1, journal.fd  # the write fails
    try:
        response = await answer
    finally:
        journal.fd = real
    assert (response.response_code, response.stand_in) == ("91", False)
    assert unit.approved_fen[PAN] == 0 and unit.repeat(req) is None


def test_the_card_cache_learns_from_answers_and_keeps_its_bound():
    cards = CardStatuses(size_max=2)
    cards.note("1", AuthResponse(response_code="00"))
    cards.note("2", decline(Code.STOLEN_CARD, Reason.CARD_STOLEN))
    cards.note("2", decline(Code.INSUFFICIENT_CREDIT, Reason.INSUFFICIENT_OPEN_TO_BUY))
    assert (cards.status("1"), cards.status("2")) == (CardStatus.ACTIVE, CardStatus.STOLEN)
    cards.note("1", AuthResponse(response_code="00", repeat=True))  # old news: ignored
    cards.note("2", AuthResponse(response_code="00", stand_in=True))  # our own word: ignored
    assert cards.status("2") == CardStatus.STOLEN
    cards.note("3", AuthResponse(response_code="00"))  # at the bound: the oldest goes
    assert cards.status("1") is None and len(cards.statuses) == 2
    cards.note("3", decline(Code.INVALID_CARD, Reason.CARD_UNKNOWN))
    assert cards.status("3") is None


# --- Listener.settle: which ledger outcomes go to stand-in, and which leave a void ----------


def listener(unit: StandIn | None) -> Listener:
    return Listener("jd", JdCodec({}), None, ServerLimits(), Counters(), unit)


def settled_with(result=None, error=None, cancelled=False) -> asyncio.Future:
    future = asyncio.get_running_loop().create_future()
    if cancelled:
        future.cancel()
    elif error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
    return future


async def settle(lst: Listener, outcome, req: AuthRequest, attempt: Attempt) -> AuthResponse:
    answer = lst.settle(outcome, req, attempt)
    return answer if isinstance(answer, AuthResponse) else await answer


async def test_a_deadline_missed_or_redis_unreachable_is_stood_in_with_the_call_voided(journal):
    lst = listener(stand_in(journal))
    missed = await settle(lst, settled_with(cancelled=True), request(), made())
    assert (missed.response_code, missed.stand_in) == ("00", True)
    down = await settle(lst, settled_with(error=ConnectionRefusedError(111, "refused")),
                        request(), made())
    assert (down.response_code, down.stand_in) == ("00", True)
    assert [type(r) for r in journal.records] == [Void, Advice, Void, Advice]
    assert lst.counters.timeouts == 1 and lst.counters.errors == 1


async def test_the_ledgers_own_91_wrote_nothing_so_it_is_stood_in_without_a_void(journal):
    lst = listener(stand_in(journal))
    too_late = decline(Code.ISSUER_UNAVAILABLE, Reason.ISSUER_TIMEOUT)
    answer = await settle(lst, settled_with(too_late), request(), made())
    assert (answer.response_code, answer.stand_in) == ("00", True)
    assert [type(r) for r in journal.records] == [Advice]


async def test_a_ledger_answer_is_passed_on_and_teaches_the_card_cache(journal):
    unit = stand_in(journal)
    lst = listener(unit)
    pan = "6253990000000059"
    lost = decline(Code.LOST_CARD, Reason.CARD_LOST)
    assert await settle(lst, settled_with(lost), request(pan=pan), made(pan=pan)) is lost
    assert unit.cards.status(pan) == CardStatus.LOST and journal.records == []


async def test_our_own_bug_is_96_never_stood_in(journal):
    lst = listener(stand_in(journal))
    answer = await settle(lst, settled_with(error=ValueError("a bug")), request(), made())
    assert (answer.response_code, answer.stand_in) == ("96", False)
    assert journal.records == []


async def test_without_a_journal_a_failed_call_is_91_as_ever():
    lst = listener(None)
    answer = await settle(lst, settled_with(cancelled=True), request(), made())
    assert (answer.response_code, answer.reason) == ("91", "issuer_timeout")


async def test_redis_unavailable_is_logged_once_an_interval_not_once_a_request(caplog):
    lst = listener(None)
    refused = ConnectionRefusedError(111, "refused")
    with caplog.at_level(logging.WARNING, logger="switch.server"):
        for _ in range(3):
            await settle(lst, settled_with(error=refused), request(), made())
        assert len(caplog.records) == 1
        quiet_s = lst.unavailable_quiet_until - asyncio.get_running_loop().time()
        interval_s = limits.unavailable_log_interval_s
        assert interval_s - 0.5 < quiet_s <= interval_s
        lst.unavailable_quiet_until = asyncio.get_running_loop().time()  # the interval is over
        await settle(lst, settled_with(error=refused), request(), made())
    assert len(caplog.records) == 2
    assert "3 requests since the last such warning" in caplog.records[1].getMessage()
    assert lst.counters.errors == 4


# --- the policy's [stand_in] section, checked like the rest ---------------------------------


@pytest.mark.parametrize(("section", "message"), [
    ("decline_code = '00'", "stand_in.decline_code: 00 is an approval, not a decline"),
    ("decline_code = 'Z9'", "stand_in.decline_code: Z9 is not a response code this switch"),
    ("per_transaction_max_fen = 0", "stand_in.per_transaction_max_fen: Expected `int` >= 1"),
    ("per_transaction_max_fen = 3000\nper_card_max_fen = 2999",
     "stand_in.per_card_max_fen: 2999 is below per_transaction_max_fen 3000"),
    ("enabled = 'yes'", "stand_in.enabled: Expected `bool`"),
    ("limit = 5", "stand_in: Object contains unknown field `limit`"),
])
def test_a_bad_stand_in_section_is_refused_naming_the_key(section, message):
    with pytest.raises(PolicyError) as refused:
        parse_policy(f"[stand_in]\n{section}\n", "p.toml")
    assert str(refused.value).startswith(f"p.toml: {message}"), str(refused.value)


def test_the_limits_may_be_equal_and_the_summary_says_what_stand_in_does():
    spec = parse_policy("[stand_in]\nenabled = true\nper_transaction_max_fen = 3000\n"
                        "per_card_max_fen = 3000\n")
    assert spec.stand_in.per_card_max_fen == 3000
    assert "stand-in: on: approves at most 3000 fen per transaction and 3000 fen per card" in (
        summary(spec))
    assert "stand-in: off (Redis unreachable: 91)" in summary(load_policy())


@pytest.mark.parametrize("refusal", ["LOADING Redis is loading the dataset in memory",
                                     "BUSY Redis is busy running a script."])
async def test_a_redis_that_says_not_now_is_unreachable_not_broken(journal, refusal):
    lst = listener(None)
    answer = await settle(lst, settled_with(error=ResponseError(refusal)), request(), made())
    assert (answer.response_code, answer.reason) == ("91", "issuer_unavailable")
    wrong = await settle(lst, settled_with(error=ResponseError("ERR wrong number of arguments")),
                         request(), made())
    assert wrong.response_code == "96"



# --- what the mutants of switch/standin.py showed untested --------------------------------


async def test_the_counters_count_each_kind_of_outcome(journal):
    unit = stand_in(journal, per_card=1000, reserve=44)  # 50 records: room for 3 approvals
    await answered(unit, request(amount=1000))  # approved: void + advice
    await answered(unit, request(amount=1))  # over the card: declined, void
    await answered(unit, request(amount=1, pan="6253990000000067"),
                   made(pan="6253990000000067"))  # never seen: 91, void
    other = "6253990000000075"
    unit.cards.note(other, AuthResponse(response_code="00"))
    while journal.room() > 44 + 1:
        await answered(unit, request(amount=1, pan=other), made(pan=other))
    full = await answered(unit, request(amount=1, pan=other), made(pan=other))
    assert full.reason == Reason.SAF_JOURNAL_FULL
    counters = dict(unit.counters)
    assert counters == {"stand_in_approved": 1 + 1, "stand_in_declined": 1 + 1,
                        "voids_journaled": 5, "journal_full": 1, "journal_failed": 0}
    journal.fd, real = -1, journal.fd
    try:
        void_only = await answered(unit, request(kind=MessageClass.REVERSAL), made())
    finally:
        journal.fd = real
    assert void_only.response_code == "91"
    assert unit.counters["journal_failed"] == 1  # the void alone: nothing to uncount


async def test_nothing_to_journal_is_answered_at_once(journal):
    unit = stand_in(journal)
    answer = unit.answer(request(mcc="7995"), Attempt(), TIMED_OUT)
    assert isinstance(answer, AuthResponse) and answer.response_code == "57"


async def test_records_carry_the_clocks_time_and_ids_of_their_own(journal):
    clock = FakeClock(1_796_083_200_000)  # 2026-12-01 00:00 UTC
    unit = stand_in(journal, clock=clock)
    await answered(unit, request(amount=100))
    void, advice = journal.records
    assert void.written_ms == advice.written_ms == clock.now
    assert void.not_before_ms == clock.now + 2000
    assert void.id != advice.id and all(len(r.id) == 24 and int(r.id, 16) >= 0
                                        for r in (void, advice))
    journal.close()
    again = Journal.open_locked(journal.path)
    assert again.records == [void, advice]
    again.close()
    journal.fd = os.open(os.devnull, os.O_RDONLY)  # for the fixture's close


async def test_an_expiry_is_good_through_its_month_by_the_clock(journal):
    clock = FakeClock(1_796_083_200_000 - 1)  # 2026-11-30 23:59:59.999 UTC
    unit = stand_in(journal, clock=clock)
    assert (await answered(unit, request(expiry="2611"))).approved
    clock.advance(0.001)  # December
    assert (await answered(unit, request(expiry="2611"))).reason == "card_expired"


async def test_a_card_behind_a_token_is_stood_in_and_posted_by_its_number(journal):
    unit = stand_in(journal)
    token = "6258880000000011"
    req = request(pan=token)  # x-pay: the request names the token
    answer = await answered(unit, req, made(pan=PAN))  # the engine resolved it to PAN
    assert answer.approved
    advice = journal.records[-1]
    assert advice.request.card == PAN and advice.request.idempotency_key == req.idempotency_key
    assert unit.approved_fen == {PAN: 500}


async def test_a_fresh_card_may_take_the_whole_per_card_limit_at_once(journal):
    unit = stand_in(journal, per_transaction=1000, per_card=1000)
    assert (await answered(unit, request(amount=1000))).approved


def test_a_card_seen_again_as_it_was_keeps_its_place_in_the_cache():
    cards = CardStatuses(size_max=2)
    cards.note("1", AuthResponse(response_code="00"))
    cards.note("2", AuthResponse(response_code="00"))
    cards.note("1", AuthResponse(response_code="00"))  # no change: not moved
    cards.note("3", AuthResponse(response_code="00"))
    assert cards.status("1") is None and cards.status("2") == CardStatus.ACTIVE


async def test_a_full_journal_is_logged_by_the_stand_in_logger(journal, caplog):
    unit = stand_in(journal, reserve=0)
    with caplog.at_level(logging.ERROR, logger="switch.standin"):
        while journal.room():
            await answered(unit, request(kind=MessageClass.REVERSAL), made())
        await answered(unit, request(kind=MessageClass.REVERSAL), made())
    assert [r.name for r in caplog.records] == ["switch.standin"]


async def test_a_request_with_a_pin_is_never_stood_in_nor_journaled_with_it(journal):
    """Its PIN's hash is in Redis: stand-in cannot check it, and an advice would put the
    PIN in the journal on disk."""
    unit = stand_in(journal)
    with_pin = msgspec.structs.replace(request(amount=100), pin="4826")
    answer = await answered(unit, with_pin)
    assert (answer.response_code, answer.stand_in) == ("91", False)
    assert not any(isinstance(record, Advice) for record in journal.records)
    assert (await answered(unit, request(amount=100))).stand_in  # the same without a PIN
