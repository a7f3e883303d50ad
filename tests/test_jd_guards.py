"""JD checkout's guards on a request, each pinned by its exact answer: code, isoCode, reason.

First the codec alone (sans-IO, fast): what it refuses and the bounds of what it takes. Then
a table sent to a real switch over TCP (no policy rules, so every decline is a guard's),
where the engine's checks answer in JD's words. Every value is the switch's answer today.
"""

from __future__ import annotations

import re
from pathlib import Path

import msgspec
import pytest

from protocols import jd
from protocols.channel import ClientAnswer, Decoded
from protocols.demo import DEMO_JD_KEY, DEMO_JD_MERCHANT
from protocols.messages import AuthRequest, AuthResponse, MessageClass
from switch import limits
from switch.send import exchange
from tests.support import make_card
from tests.test_jd_codec import CODEC, KEY, client_request
from tests.test_policy_support import new_ref, policy_switch

CODES_PAGE = Path(__file__).parent.parent / "docs" / "codes.md"
DEMO_KEY = DEMO_JD_KEY.encode()
MAX_FEN = limits.amount_max_fen
TYPES = "AUTH, SALE, CAPTURE, REVERSE, REFUND, QUERY"
ORIGINAL_RULE = "format:originalTradeNum must be 1-32 letters, digits, '_' or '-'"
AMOUNT_RULE = "format:amount must be a whole number of fen, as digits"


def not_a_time(value: str) -> str:
    return f"format:tradeTime '{value}' is not a yyyyMMddHHmmss time"


def refusal(body: bytes) -> tuple[str, str, str]:
    """(code, isoCode, reason) of the codec's immediate answer, which must be signed."""
    reply = CODEC.decode_request(body)
    assert isinstance(reply, bytes), "refused at once, not handed to the engine"
    answer = jd.decode_response(reply, KEY)
    return answer.fields["code"], answer.response.response_code, answer.response.reason


def accepted(body: bytes) -> AuthRequest:
    decoded = CODEC.decode_request(body)
    assert isinstance(decoded, Decoded), msgspec.json.decode(decoded)
    return decoded.request


# --- the codec: refused fields ----------------------------------------------------------------

@pytest.mark.parametrize(("wire", "expected"), [
    # "" leaves the field out of the request altogether
    ({"tradeNum": ""}, ("PARA01", "30", "format:tradeNum is required")),
    ({"tradeNum": "T" * 33}, ("PARA01", "30", f"format:tradeNum '{'T' * 33}' is malformed")),
    ({"tradeNum": "T 1"}, ("PARA01", "30", "format:tradeNum 'T 1' is malformed")),
    ({"tradeNum": "T:1"}, ("PARA01", "30", "format:tradeNum 'T:1' is malformed")),
    ({"tradeType": ""}, ("PARA01", "30", "format:tradeType is required")),
    ({"tradeType": "PAY"}, ("PARA01", "30", f"format:tradeType 'PAY' is not one of {TYPES}")),
    ({"tradeType": "sale"}, ("PARA01", "30", f"format:tradeType 'sale' is not one of {TYPES}")),
    ({"originalTradeNum": "O" * 33}, ("PARA01", "30", ORIGINAL_RULE)),
    ({"originalTradeNum": "O 1"}, ("PARA01", "30", ORIGINAL_RULE)),
    ({"amount": ""}, ("PARA01", "30", AMOUNT_RULE)),  # a sale names its amount
    ({"amount": "12.50"}, ("PARA01", "30", AMOUNT_RULE)),
    ({"amount": "-1"}, ("PARA01", "30", AMOUNT_RULE)),
    ({"amount": "1e3"}, ("PARA01", "30", AMOUNT_RULE)),
    ({"amount": "\uff11\uff12"}, ("PARA01", "30", AMOUNT_RULE)),  # full-width digits
    ({"amount": "\u0661\u0662"}, ("PARA01", "30", AMOUNT_RULE)),  # Arabic-Indic digits
    ({"cardNo": ""}, ("PARA01", "30", "format:cardNo is required")),
    ({"tradeTime": ""}, ("PARA01", "30", "format:tradeTime is required")),
    ({"tradeTime": "2026112912000"}, ("PARA01", "30",
                                      "format:tradeTime '2026112912000' is malformed")),
    ({"tradeTime": "202611291200000"}, ("PARA01", "30",
                                        "format:tradeTime '202611291200000' is malformed")),
    ({"tradeTime": "2026-11-29 120"}, ("PARA01", "30",
                                       "format:tradeTime '2026-11-29 120' is malformed")),
    # yyyyMMddHHmmss is a moment of the calendar, as docs/channels/jd.md says
    ({"tradeTime": "20261329120000"}, ("PARA01", "30", not_a_time("20261329120000"))),
    ({"tradeTime": "20260230120000"}, ("PARA01", "30", not_a_time("20260230120000"))),
    ({"tradeTime": "20261129240000"}, ("PARA01", "30", not_a_time("20261129240000"))),
    ({"tradeTime": "20261129125960"}, ("PARA01", "30", not_a_time("20261129125960"))),
    # the flags are 1 or 0, and a lightning refund is a REFUND
    ({"partialApproval": "yes"}, ("PARA01", "30", "format:partialApproval must be 1 or 0, "
                                                  "not 'yes'")),
    ({"partialApproval": "true"}, ("PARA01", "30", "format:partialApproval must be 1 or 0, "
                                                   "not 'true'")),
    ({"lightningRefund": "Y"}, ("PARA01", "30", "format:lightningRefund must be 1 or 0, "
                                                "not 'Y'")),
    ({"lightningRefund": "1"}, ("PARA01", "30",
                                "format:lightningRefund applies to a REFUND only")),
], ids=lambda value: repr(value)[:40] if isinstance(value, dict) else "")
def test_a_missing_or_malformed_field_is_a_signed_parameter_error(wire, expected):
    assert refusal(jd.encode_request(client_request(), KEY, **wire)) == expected


# --- the codec: the bounds of what it takes ---------------------------------------------------

@pytest.mark.parametrize("trade_num", ["T", "T" * 32, "aZ09_-"])
def test_a_trade_number_of_1_to_32_letters_digits_underscores_or_dashes_is_taken(trade_num):
    request = accepted(jd.encode_request(client_request(txn_ref=trade_num), KEY))
    assert request.txn_ref == request.idempotency_key == f"jd:m1:{trade_num}"


@pytest.mark.parametrize("original", ["O", "O" * 32, "aZ09_-"])
def test_an_original_trade_number_of_1_to_32_characters_is_taken(original):
    request = accepted(jd.encode_request(
        client_request(message_class=MessageClass.CAPTURE, original_ref=original), KEY))
    assert request.original_ref == f"jd:m1:{original}"


def test_no_original_trade_number_is_no_original_reference():
    assert accepted(jd.encode_request(client_request(), KEY)).original_ref == ""


@pytest.mark.parametrize(("currency", "numeric"), [
    ("CNY", 156), ("156", 156), ("", 156),  # "" leaves the field out: CNY
    ("USD", 0), ("840", 0), ("cny", 0),
])
def test_currency_is_cny_by_name_or_number_and_anything_else_is_unsupported(currency, numeric):
    body = jd.encode_request(client_request(), KEY, currency=currency)
    assert accepted(body).currency == numeric  # 0: the engine answers 12 (see below)


@pytest.mark.parametrize(("kind", "amount"), [
    (MessageClass.INQUIRY, 0),  # a query need not name an amount
    (MessageClass.SALE, 0),  # a sale that names 0 is the engine's to refuse (13)
    (MessageClass.SALE, MAX_FEN + 1),  # so is one past the maximum
])
def test_the_amount_is_taken_as_fen_and_judged_by_the_engine(kind, amount):
    wire = {"amount": ""} if kind is MessageClass.INQUIRY else {}
    request = accepted(jd.encode_request(client_request(message_class=kind, amount_fen=amount),
                                         KEY, **wire))
    assert (request.message_class, request.amount_fen) == (kind, amount)


@pytest.mark.parametrize(("wire", "partial_ok", "instant_refund"), [
    ({}, False, False),
    ({"partialApproval": "1"}, True, False),
    ({"lightningRefund": "1"}, False, True),
    ({"partialApproval": "0", "lightningRefund": "0"}, False, False),
])
def test_the_flags_are_yes_when_1_no_when_0_or_absent(wire, partial_ok, instant_refund):
    """On a REFUND (the one trade a lightning flag may come with); any other value of a
    flag is refused (the table above)."""
    refund = msgspec.structs.replace(client_request(), message_class=MessageClass.REFUND,
                                     original_ref="T0")
    request = accepted(jd.encode_request(refund, KEY, **wire))
    assert (request.partial_ok, request.instant_refund) == (partial_ok, instant_refund)


def test_a_client_sends_its_flags_and_the_codec_names_its_channel():
    sent = client_request(partial_ok=True, instant_refund=True,
                          message_class=MessageClass.REFUND, original_ref="T0")
    fields = msgspec.json.decode(jd.encode_request(sent, KEY))
    assert (fields["partialApproval"], fields["lightningRefund"]) == ("1", "1")
    request = accepted(jd.encode_request(sent, KEY))
    assert (request.partial_ok, request.instant_refund) == (True, True)
    assert request.channel == CODEC.name == "jd"


def test_the_optional_fields_reach_the_request_as_sent():
    request = accepted(jd.encode_request(client_request(expiry="3012"), KEY, device="POS-7",
                                         industryCategoryCode="5812"))
    assert (request.channel, request.merchant_id, request.terminal_id) == ("jd", "m1", "POS-7")
    assert (request.mcc, request.expiry, request.transmitted_at) == ("5812", "3012",
                                                                      "20261129120000")
    bare = accepted(jd.encode_request(client_request(mcc=""), KEY))
    assert (bare.mcc, bare.expiry, bare.terminal_id) == ("", "", "")  # the engine judges ""


def documented_answers() -> dict[str, tuple[str, str]]:
    """docs/codes.md's table of response codes: code -> (JD `code`, WeChat `err_code`)."""
    rows = re.findall(r"^\| `(\w\w)` \|.*\| (`\w+`) \| ([^|]+?) \|$", CODES_PAGE.read_text(),
                      re.M)
    return {code: (jd_code.strip("`"), wechat_code.strip("`")) for code, jd_code, wechat_code
            in rows}


def test_each_code_is_answered_with_the_result_code_and_description_documented():
    documented = documented_answers()
    assert set(documented) == set(jd.RESULT_CODES)
    for code, (result, _) in documented.items():
        assert jd.result_code(code)[0] == result, code
        assert jd.result_code(code)[1], f"{code} has no description"


# --- the codec: who sent it -------------------------------------------------------------------

def test_an_unknown_or_missing_merchant_is_answered_unsigned():
    for wire in ({"merchant": "m2"}, {"merchant": ""}):
        reply = CODEC.decode_request(jd.encode_request(client_request(), KEY, **wire))
        answer = jd.decode_response(reply)
        assert (answer.fields["code"], answer.response.response_code, answer.response.reason
                ) == ("MERC01", "03", "merchant_unknown")
        assert "sign" not in answer.fields


@pytest.mark.parametrize("body", [b"", b"[]", b"{", b'{"amount": 5}', b"\xff\xfe"])
def test_a_body_that_is_not_a_json_object_of_strings_is_answered_unsigned(body):
    answer = jd.decode_response(CODEC.decode_request(body))
    assert (answer.fields["code"], answer.response.response_code) == ("PARA01", "30")
    assert answer.response.reason.startswith("format:not a JSON object of strings: ")
    assert "sign" not in answer.fields


def test_a_wrong_or_missing_signature_is_signerror_signed_and_not_decided():
    good = msgspec.json.decode(jd.encode_request(client_request(), KEY))
    tampered = good | {"amount": "99999"}
    unsigned = {k: v for k, v in good.items() if k != "sign"}
    for fields in (tampered, unsigned, good | {"sign": ""},
                   jd.signed(unsigned, b"another merchant's key")):
        assert refusal(msgspec.json.encode(fields)) == ("SIGN01", "63", "signature_mismatch")
    upper = good | {"sign": good["sign"].upper()}  # hex in either case
    assert accepted(msgspec.json.encode(upper)).amount_fen == 1234


# --- the answer's fields ----------------------------------------------------------------------

def test_an_answer_carries_every_field_of_the_decision():
    context = {"merchant": "m1", "tradeNum": "T1", "tradeType": "QUERY"}
    response = AuthResponse(response_code="51", approved_fen=0, auth_id="",
                            open_to_buy_fen=77, reason="insufficient_open_to_buy", beans=-3,
                            state="captured")
    fields = msgspec.json.decode(CODEC.encode_response(context, response))
    assert fields == jd.signed({
        "merchant": "m1", "tradeNum": "T1", "tradeType": "QUERY", "code": "BAL001",
        "desc": "insufficient available credit", "isoCode": "51", "authCode": "",
        "amount": "0", "availableAmount": "77", "beans": "-3",
        "reason": "insufficient_open_to_buy", "repeat": "0", "tradeState": "captured"}, KEY)
    assert jd.decode_response(CODEC.encode_response(context, response), KEY).response == response
    again = msgspec.structs.replace(response, repeat=True)
    assert msgspec.json.decode(CODEC.encode_response(context, again))["repeat"] == "1"
    assert jd.decode_response(CODEC.encode_response(context, again), KEY).response == again


# --- through a real switch: the engine's guards in JD's words -------------------------------

@pytest.fixture(scope="module")
async def jd_switch_no_rules(redis_url):
    async with policy_switch(redis_url, "", channels=("jd",)) as (switch, ledger, _):
        yield switch.ports["jd"], ledger


async def send(port: int, body: bytes, key: bytes | None = DEMO_KEY) -> ClientAnswer:
    """One request to the switch, its answer read as a client holding `key` reads it."""
    return jd.decode_response(await exchange("127.0.0.1", port, jd.JdCodec.header, body), key)


@pytest.mark.parametrize(("changes", "wire", "expected"), [
    ({"currency": 0}, {"currency": "USD"}, ("TRAD01", "12", "currency_not_supported")),
    ({"amount_fen": 0}, {}, ("TRAD02", "13", "amount_zero")),
    ({"amount_fen": MAX_FEN + 1}, {}, ("TRAD02", "13", "amount_out_of_range")),
    ({"amount_fen": MAX_FEN}, {}, ("000000", "00", "")),
    ({"amount_fen": MAX_FEN - 1}, {}, ("000000", "00", "")),
    ({"mcc": "7995 "}, {}, ("PARA01", "30", "mcc_malformed")),
    ({"mcc": "79950"}, {}, ("PARA01", "30", "mcc_malformed")),
    ({"mcc": "799"}, {}, ("PARA01", "30", "mcc_malformed")),
    ({"mcc": "79a5"}, {}, ("PARA01", "30", "mcc_malformed")),
    ({"mcc": ""}, {}, ("PARA01", "30", "mcc_missing")),
    ({"card": "1234"}, {}, ("CARD01", "14", "card_number_malformed")),
    ({"card": "6253 9900 0000 0001"}, {}, ("CARD01", "14", "card_number_malformed")),
    ({"card": "6" * 19}, {}, ("CARD01", "14", "card_unknown")),
    ({"expiry": "12/30"}, {}, ("PARA01", "30", "expiry_malformed")),
    ({"message_class": MessageClass.CAPTURE}, {}, ("PARA01", "30",
                                                   "original_reference_missing")),
    ({}, {"cardNo": ""}, ("PARA01", "30", "format:cardNo is required")),
    ({}, {"tradeTime": "20261129"}, ("PARA01", "30", "format:tradeTime '20261129' is malformed")),
    ({}, {"amount": "1.00"}, ("PARA01", "30", AMOUNT_RULE)),
], ids=lambda value: repr(value)[:30] if isinstance(value, dict) else "")
async def test_the_switch_answers_each_guard_in_jds_words(jd_switch_no_rules, changes, wire,
                                                          expected):
    port, ledger = jd_switch_no_rules
    pan = await make_card(ledger, limit_fen=MAX_FEN)
    request = client_request(**({"card": pan, "merchant_id": DEMO_JD_MERCHANT,
                                 "txn_ref": new_ref("J")} | changes))
    answer = await send(port, jd.encode_request(request, DEMO_KEY, **wire))
    assert (answer.fields["code"], answer.response.response_code,
            answer.response.reason) == expected
    await assert_took(ledger, pan, answer, request.amount_fen)


async def assert_took(ledger, pan: str, answer: ClientAnswer, amount_fen: int) -> None:
    """An approval took the amount from the card (its limit MAX_FEN); a decline took nothing."""
    taken = amount_fen if answer.response.approved else 0
    assert answer.response.approved_fen == taken
    assert (await ledger.card(pan)).open_to_buy == MAX_FEN - taken


async def test_the_switch_answers_a_stranger_and_a_forger(jd_switch_no_rules):
    port, ledger = jd_switch_no_rules
    pan = await make_card(ledger)
    request = client_request(card=pan, merchant_id=DEMO_JD_MERCHANT, txn_ref=new_ref("J"))
    stranger = await send(port, jd.encode_request(request, b"k", merchant="nobody"), None)
    assert (stranger.fields["code"], stranger.response.reason) == ("MERC01", "merchant_unknown")
    forged = await send(port, jd.encode_request(request, b"not the key"))
    assert (forged.fields["code"], forged.response.response_code, forged.response.reason) == (
        "SIGN01", "63", "signature_mismatch")
    assert (await ledger.card(pan)).open_to_buy == 10_000


def test_a_leap_days_last_second_is_a_trade_time():
    request = accepted(jd.encode_request(client_request(), KEY, tradeTime="20280229235959"))
    assert request.transmitted_at == "20280229235959"


def test_the_user_id_is_carried_to_the_decision():
    assert accepted(jd.encode_request(client_request(), KEY, userId="jd_user_42")
                    ).user_id == "jd_user_42"
    assert accepted(jd.encode_request(client_request(), KEY)).user_id == ""
