"""The engine's guards on a request, each pinned by its exact code and reason.

Tables of malformed requests and of amounts at, below and above each bound, decided by the
engine called directly on a real Redis (no switch, no TCP), so that a deleted guard or a
shifted bound fails here fast. The policy has no rules: every decline is the engine's own
or the ledger's card checks.
"""

from __future__ import annotations

import asyncio
import itertools

import msgspec
import pytest

from protocols.messages import AuthRequest, AuthResponse
from protocols.messages import MessageClass as C
from switch import engine as engine_module
from switch import limits
from switch.engine import Engine
from switch.policy import Policy
from switch.policy_file import parse_policy
from tests.support import make_card
from tests.test_policy_support import new_ref

NO_RULES = Policy(parse_policy(""))
LIMIT_FEN = limits.amount_max_fen  # the largest limit a card may have: no amount is short
MAX_FEN = limits.amount_max_fen


@pytest.fixture
def engine(ledger) -> Engine:
    return Engine(ledger, NO_RULES)


@pytest.fixture
async def pan(ledger) -> str:
    return await make_card(ledger, limit_fen=LIMIT_FEN)


def request(card: str, cls: C = C.SALE, amount_fen: int = 100, **fields) -> AuthRequest:
    ref = new_ref("G")
    fields = {"mcc": "5411", "txn_ref": ref, "idempotency_key": ref} | fields
    return AuthRequest(message_class=cls, channel="jd", card=card, amount_fen=amount_fen,
                       **fields)


def code_and_reason(answer) -> tuple[str, str]:
    return answer.response_code, answer.reason


# --- card number and ids: answered by the engine itself, before Redis ----------------------

@pytest.mark.parametrize(("card", "expected"), [
    ("", ("14", "card_number_malformed")),
    ("6" * 11, ("14", "card_number_malformed")),
    ("6" * 12, ("14", "card_unknown")),  # well formed: the ledger looks it up
    ("6" * 19, ("14", "card_unknown")),
    ("6" * 20, ("14", "card_number_malformed")),
    ("625399123456789X", ("14", "card_number_malformed")),
    ("6253 9912 3456 78", ("14", "card_number_malformed")),
    ("\uff16" * 16, ("14", "card_number_malformed")),  # full-width digits: digits, not ASCII
    ("\u0666" * 16, ("14", "card_number_malformed")),  # Arabic-Indic digits
])
async def test_card_number_format(engine, card, expected):
    assert code_and_reason(await engine.decide(request(card))) == expected


@pytest.mark.parametrize("missing", ["txn_ref", "idempotency_key"])
async def test_a_request_without_its_ids_is_a_format_error(engine, pan, missing):
    answer = engine.start(request(pan, **{missing: ""}))
    assert isinstance(answer, AuthResponse)  # answered at once: nothing to file it under
    assert (code_and_reason(answer), answer.approved_fen, answer.auth_id) == (
        ("30", "transaction_id_missing"), 0, "")


async def test_a_malformed_card_is_answered_at_once(engine):
    answer = engine.start(request("1234"))
    assert isinstance(answer, AuthResponse)
    assert code_and_reason(answer) == ("14", "card_number_malformed")


# --- refusals: answered by the ledger after the card checks -------------------------------

MALFORMED_FIELDS = [
    # (message class, fields, expected)
    (C.CAPTURE, {"original_ref": ""}, ("30", "original_reference_missing")),
    (C.REVERSAL, {"original_ref": ""}, ("30", "original_reference_missing")),
    (C.REFUND, {"original_ref": ""}, ("30", "original_reference_missing")),
    (C.SALE, {"mcc": "7995 "}, ("30", "mcc_malformed")),  # would escape the gambling block
    (C.SALE, {"mcc": " 7995"}, ("30", "mcc_malformed")),
    (C.SALE, {"mcc": "79950"}, ("30", "mcc_malformed")),
    (C.SALE, {"mcc": "799"}, ("30", "mcc_malformed")),
    (C.SALE, {"mcc": "79a5"}, ("30", "mcc_malformed")),
    (C.REFUND, {"mcc": "79950", "original_ref": "X1"}, ("30", "mcc_malformed")),
    (C.SALE, {"mcc": ""}, ("30", "mcc_missing")),
    (C.AUTH, {"mcc": ""}, ("30", "mcc_missing")),
    (C.SALE, {"expiry": "301"}, ("30", "expiry_malformed")),
    (C.SALE, {"expiry": "30121"}, ("30", "expiry_malformed")),
    (C.SALE, {"expiry": "30I2"}, ("30", "expiry_malformed")),
    (C.SALE, {"currency": 840}, ("12", "currency_not_supported")),  # USD is not CNY fen
    (C.SALE, {"currency": 0}, ("12", "currency_not_supported")),
    (C.REFUND, {"currency": 344, "original_ref": "X1"}, ("12", "currency_not_supported")),
]


@pytest.mark.parametrize(("cls", "fields", "expected"), MALFORMED_FIELDS)
async def test_malformed_fields_are_refused_with_code_and_reason(engine, pan, cls, fields,
                                                                 expected):
    answer = await engine.decide(request(pan, cls, **fields))
    assert code_and_reason(answer) == expected
    # the ledger answered, after the card checks: the card's open-to-buy, nothing moved
    assert (answer.approved_fen, answer.auth_id, answer.open_to_buy_fen) == (0, "", LIMIT_FEN)


async def test_the_card_checks_come_before_a_refusal(engine, ledger, pan):
    unknown = await engine.decide(request("6" * 16, currency=840))
    assert code_and_reason(unknown) == ("14", "card_unknown")
    lost = await make_card(ledger, status="lost")
    assert code_and_reason(await engine.decide(request(lost, expiry="30121"))) == (
        "41", "card_lost")
    mismatch = await engine.decide(request(pan, currency=840, expiry="2901"))
    assert code_and_reason(mismatch) == ("54", "expiry_mismatch")


@pytest.mark.parametrize("fields", [
    {"mcc": "0000"}, {"mcc": "9999"}, {"expiry": ""}, {"expiry": "3012"}, {"currency": 156},
])
async def test_well_formed_fields_pass(engine, pan, fields):
    answer = await engine.decide(request(pan, **fields))
    assert (code_and_reason(answer), answer.approved_fen) == (("00", ""), 100)
    assert len(answer.auth_id) == 6 and answer.auth_id.isdigit()


async def test_releasing_money_needs_no_mcc(engine, pan):
    sale = request(pan, amount_fen=500)
    assert (await engine.decide(sale)).response_code == "00"
    refund = await engine.decide(request(pan, C.REFUND, 200, mcc="", original_ref=sale.txn_ref))
    assert (code_and_reason(refund), refund.approved_fen) == (("00", ""), 200)
    void = await engine.decide(request(pan, C.REVERSAL, 0, mcc="", original_ref=sale.txn_ref))
    assert code_and_reason(void) == ("12", "original_already_captured_or_refunded")


# --- amounts: at, below and above each bound -----------------------------------------------

@pytest.mark.parametrize(("cls", "amount_fen", "expected"), [
    (C.SALE, -1, ("13", "amount_out_of_range")),
    (C.SALE, 0, ("13", "amount_zero")),
    (C.SALE, 1, ("00", "")),
    (C.SALE, MAX_FEN - 1, ("00", "")),
    (C.SALE, MAX_FEN, ("00", "")),
    (C.SALE, MAX_FEN + 1, ("13", "amount_out_of_range")),
    (C.AUTH, 0, ("13", "amount_zero")),
    (C.AUTH, MAX_FEN, ("00", "")),
    (C.AUTH, MAX_FEN + 1, ("13", "amount_out_of_range")),
    (C.INQUIRY, 0, ("00", "")),
    (C.INQUIRY, -1, ("13", "amount_out_of_range")),
])
async def test_amount_bounds(engine, pan, cls, amount_fen, expected):
    proof = {"expiry": "3012"} if cls == C.INQUIRY else {}  # make_card's: the card proved
    answer = await engine.decide(request(pan, cls, amount_fen, **proof))
    assert code_and_reason(answer) == expected
    approved = amount_fen if cls != C.INQUIRY and expected[0] == "00" else 0
    assert answer.approved_fen == approved
    assert answer.open_to_buy_fen == LIMIT_FEN - approved


async def test_a_balance_inquiry_without_the_cards_expiry_shows_no_balance(engine, pan):
    bare = await engine.decide(request(pan, C.INQUIRY, 0))
    assert (code_and_reason(bare), bare.open_to_buy_fen) == (("30", "card_proof_missing"), 0)
    wrong = await engine.decide(request(pan, C.INQUIRY, 0, expiry="3011"))
    assert (code_and_reason(wrong), wrong.open_to_buy_fen) == (("54", "expiry_mismatch"), 0)
    # An inquiry naming an original asks of that transaction, not of the card's balance.
    sale = request(pan, amount_fen=1000)
    assert (await engine.decide(sale)).response_code == "00"
    query = await engine.decide(request(pan, C.INQUIRY, 0, original_ref=sale.txn_ref))
    assert (code_and_reason(query), query.state) == (("00", ""), "captured")


@pytest.mark.parametrize(("cls", "amount_fen", "expected"), [
    (C.CAPTURE, 0, ("13", "amount_zero")),
    (C.CAPTURE, MAX_FEN + 1, ("13", "amount_out_of_range")),
    (C.REFUND, 0, ("13", "amount_zero")),
    (C.REFUND, -1, ("13", "amount_out_of_range")),
    (C.REVERSAL, -1, ("13", "amount_out_of_range")),
    (C.REVERSAL, MAX_FEN + 1, ("13", "amount_out_of_range")),
])
async def test_amount_bounds_of_messages_naming_an_original(engine, pan, cls, amount_fen,
                                                            expected):
    original = request(pan, C.AUTH if cls == C.CAPTURE else C.SALE, 1000)
    assert (await engine.decide(original)).response_code == "00"
    answer = await engine.decide(request(pan, cls, amount_fen, original_ref=original.txn_ref))
    assert (code_and_reason(answer), answer.open_to_buy_fen) == (expected, LIMIT_FEN - 1000)


async def test_a_reversal_of_zero_releases_the_whole_original(engine, pan):
    sale = request(pan, amount_fen=1000)
    assert (await engine.decide(sale)).response_code == "00"
    void = await engine.decide(request(pan, C.REVERSAL, 0, original_ref=sale.txn_ref))
    assert (code_and_reason(void), void.open_to_buy_fen) == (("00", ""), LIMIT_FEN)


# --- the engine's own pieces ----------------------------------------------------------------

def test_auth_ids_are_six_digits_and_wrap(monkeypatch):
    monkeypatch.setattr(engine_module, "_auth_ids", itertools.count(999_999))
    assert [engine_module.new_auth_id() for _ in range(3)] == ["999999", "000000", "000001"]


async def test_start_gives_the_ledgers_future_for_a_sound_request(engine, pan):
    pending = engine.start(request(pan))
    assert isinstance(pending, asyncio.Future)
    assert (await pending).response_code == "00"


async def test_a_resolver_answers_or_hands_back_the_request(ledger, pan):
    async def resolve(req: AuthRequest):
        if req.card == "TOKEN-STOP":
            return AuthResponse(response_code="14", reason="token_unknown")
        return msgspec.structs.replace(req, card=pan)

    engine = Engine(ledger, NO_RULES, {"jd": resolve})
    stopped = engine.start(request("TOKEN-STOP"))
    assert code_and_reason(await stopped) == ("14", "token_unknown")
    resolved = await engine.decide(request("TOKEN-GO", amount_fen=300))
    assert (code_and_reason(resolved), resolved.open_to_buy_fen) == (("00", ""),
                                                                     LIMIT_FEN - 300)
