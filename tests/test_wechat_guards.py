"""WeChat Pay's guards on a request, each pinned by its exact answer: err_code, iso_code, reason.

First the codec alone (sans-IO, fast): what it refuses and the bounds of what it takes. Then
a table sent to a real switch over TCP (no policy rules, so every decline is a guard's),
where the engine's checks answer in WeChat's words. Every value is the switch's answer today.
"""

from __future__ import annotations

import hashlib

import pytest

from protocols import wechat
from protocols.channel import ClientAnswer, Decoded
from protocols.demo import DEMO_WECHAT_APPID, DEMO_WECHAT_KEY, DEMO_WECHAT_MCH_ID
from protocols.messages import AuthRequest, AuthResponse, MessageClass
from switch import limits
from switch.send import exchange
from tests.support import make_card
from tests.test_jd_guards import assert_took, documented_answers
from tests.test_policy_support import new_ref, policy_switch
from tests.test_wechat_codec import CODEC, KEY, MCH, body, micropay

MAX_FEN = limits.amount_max_fen
DEMO_KEY = DEMO_WECHAT_KEY.encode()
APIS = "micropay, refund, reverse, orderquery, refundquery"


SIGN_TYPE_REFUSED = "format:sign_type must be MD5 or HMAC-SHA256 for this merchant"


def refund(**changes: str | None) -> dict[str, str]:
    return micropay(**({"api": "refund", "out_refund_no": "R1", "refund_fee": "300"} | changes))


def refusal(fields: dict[str, str]) -> tuple[str, str, str]:
    """(err_code, iso_code, reason) of the codec's immediate answer, which must be signed."""
    reply = CODEC.decode_request(body(fields))
    assert isinstance(reply, bytes), "refused at once, not handed to the engine"
    answer = wechat.decode_response(reply, KEY)
    assert (answer.fields["return_code"], answer.fields["result_code"]) == ("SUCCESS", "FAIL")
    return answer.fields["err_code"], answer.response.response_code, answer.response.reason


def accepted(fields: dict[str, str]) -> AuthRequest:
    decoded = CODEC.decode_request(body(fields))
    assert isinstance(decoded, Decoded), wechat.parse_xml(decoded)
    return decoded.request


def lack(name: str, api: str = "micropay") -> tuple[str, str, str]:
    return "LACK_PARAMS", "30", f"format:{name} is required for {api}"


def bad(name: str, value: str) -> tuple[str, str, str]:
    return "PARAM_ERROR", "30", f"format:{name} {value!r} is malformed"


# --- the codec: refused fields ----------------------------------------------------------------

@pytest.mark.parametrize(("fields", "expected"), [
    (micropay(api=None), ("LACK_PARAMS", "30", f"format:api '' is not one of {APIS}")),
    (micropay(api="pay"), ("PARAM_ERROR", "30", f"format:api 'pay' is not one of {APIS}")),
    (micropay(api="MICROPAY"), ("PARAM_ERROR", "30",
                                f"format:api 'MICROPAY' is not one of {APIS}")),
    (micropay(sign_type="SHA1"), ("PARAM_ERROR", "30", SIGN_TYPE_REFUSED)),
    (micropay(sign_type="hmac-sha256"), ("PARAM_ERROR", "30", SIGN_TYPE_REFUSED)),
    (micropay(appid=None), lack("appid")),
    (micropay(nonce_str=None), lack("nonce_str")),
    (micropay(card_no=None), lack("card_no")),
    (micropay(out_trade_no=None), lack("out_trade_no")),
    (micropay(total_fee=None), lack("total_fee")),
    (micropay(body=None), lack("body")),
    (micropay(spbill_create_ip=None), lack("spbill_create_ip")),
    (micropay(auth_code=None), ("LACK_PARAMS", "30",
                                "format:auth_code or openid is required for micropay")),
    (micropay(nonce_str="n" * 33), bad("nonce_str", "n" * 33)),
    (micropay(nonce_str="n|1"), bad("nonce_str", "n|1")),
    (micropay(out_trade_no="o" * 33), bad("out_trade_no", "o" * 33)),
    (micropay(out_trade_no="o:1"), bad("out_trade_no", "o:1")),
    (micropay(out_trade_no="o 1"), bad("out_trade_no", "o 1")),
    (micropay(auth_code="160061098828009406"), bad("auth_code", "160061098828009406")),
    (micropay(auth_code="020061098828009406"), bad("auth_code", "020061098828009406")),
    (micropay(auth_code="12006109882800940"), bad("auth_code", "12006109882800940")),
    (micropay(auth_code="1200610988280094061"), bad("auth_code", "1200610988280094061")),
    (micropay(spbill_create_ip="1"), bad("spbill_create_ip", "1")),
    (micropay(spbill_create_ip="1" * 65), bad("spbill_create_ip", "1" * 40)),  # cut at 40
    (micropay(spbill_create_ip="10.0.0.x"), bad("spbill_create_ip", "10.0.0.x")),
    (micropay(total_fee="0"), bad("total_fee", "0")),  # no zero amount reaches the engine
    (micropay(total_fee="01"), bad("total_fee", "01")),
    (micropay(total_fee="8.88"), bad("total_fee", "8.88")),
    (micropay(total_fee="-1"), bad("total_fee", "-1")),
    (micropay(total_fee="1" * 13), bad("total_fee", "1" * 13)),
    (micropay(total_fee="\uff11"), bad("total_fee", "\uff11")),  # a full-width digit
    (micropay(bank_type="CMB_CREDIT"), ("PARAM_ERROR", "30", "format:bank_type must be "
                                        "PAB_CREDIT (the card this issuer answers for)")),
    (micropay(limit_pay="no_credit"), ("NOTSUPORTCARD", "58", "limit_pay_no_credit")),
    (refund(out_refund_no=None), lack("out_refund_no", "refund")),
    (refund(refund_fee=None), lack("refund_fee", "refund")),
    (refund(total_fee=None), lack("total_fee", "refund")),
    (refund(out_refund_no="R:1"), bad("out_refund_no", "R:1")),
    (refund(out_refund_no="R" * 33), bad("out_refund_no", "R" * 33)),
    (refund(refund_fee="0"), bad("refund_fee", "0")),
    (refund(total_fee="0"), bad("total_fee", "0")),
    (refund(refund_fee="889"), ("PARAM_ERROR", "30", "format:refund_fee is more than total_fee")),
    (micropay(api="reverse", out_trade_no=None), lack("out_trade_no", "reverse")),
    (micropay(api="reverse", out_trade_no="o:1"), bad("out_trade_no", "o:1")),
    (micropay(api="orderquery", out_trade_no=None), lack("out_trade_no", "orderquery")),
    (micropay(api="orderquery", nonce_str="n:1"), bad("nonce_str", "n:1")),
], ids=lambda value: "-".join(f"{k}={v!s:.12}" for k, v in value.items() if k in (
    "api", "sign_type", "nonce_str", "out_trade_no", "auth_code", "spbill_create_ip",
    "total_fee", "refund_fee", "bank_type", "limit_pay", "out_refund_no")
    ) if isinstance(value, dict) else "")
def test_a_missing_or_malformed_field_is_a_signed_refusal(fields, expected):
    assert refusal(fields) == expected


# --- the codec: the bounds of what it takes ---------------------------------------------------

@pytest.mark.parametrize("changes", [
    {"nonce_str": "n"}, {"nonce_str": "n" * 32}, {"nonce_str": "aZ09_-"},
    {"out_trade_no": "o"}, {"out_trade_no": "o" * 32}, {"out_trade_no": "aZ09_-|*@"},
    {"auth_code": "100000000000000000"}, {"auth_code": "159999999999999999"},
    {"auth_code": None, "openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"},
    {"spbill_create_ip": "::"}, {"spbill_create_ip": "f" * 64},
    {"spbill_create_ip": "2001:db8::1"},
    {"total_fee": "1"}, {"total_fee": "9" * 12},
    {"bank_type": "PAB_CREDIT"}, {"bank_type": None},
    {"limit_pay": "pay_credit"},
])
def test_a_micropay_within_every_bound_is_a_sale(changes):
    request = accepted(micropay(**changes))
    assert request.message_class is MessageClass.SALE
    assert request.channel == CODEC.name == "wechat"
    fields = micropay(**changes)
    assert request.amount_fen == int(fields["total_fee"])
    assert request.txn_ref == request.idempotency_key == f"wx:{MCH}:{fields['out_trade_no']}"


@pytest.mark.parametrize(("fee_type", "currency"), [
    ("CNY", 156), (None, 156), ("USD", 0), ("156", 0), ("cny", 0),
])
def test_fee_type_cny_or_none_is_cny_anything_else_is_unsupported(fee_type, currency):
    assert accepted(micropay(fee_type=fee_type)).currency == currency  # 0: the engine says 12


@pytest.mark.parametrize(("mcc", "taken"), [("5812", "5812"), (None, "5411"), ("", "5411"),
                                            ("7995 ", "7995 ")])
def test_the_requests_mcc_overrides_the_merchants_as_sent(mcc, taken):
    assert accepted(micropay(mcc=mcc)).mcc == taken  # the engine judges its form


def test_a_refund_of_the_whole_order_is_taken_and_refunds_ignore_limit_pay():
    request = accepted(refund(refund_fee="888", limit_pay="no_credit"))
    assert (request.message_class, request.amount_fen) == (MessageClass.REFUND, 888)
    assert request.txn_ref == request.idempotency_key == f"wx:{MCH}:r:R1"
    assert (request.card, request.terminal_id) == ("6253680000000019", "")


def test_reverse_and_query_carry_no_amount_and_the_device():
    for api in ("reverse", "orderquery"):
        request = accepted(micropay(api=api, device_info="POS-7", total_fee=None, body=None))
        assert (request.amount_fen, request.terminal_id, request.channel) == (0, "POS-7",
                                                                               "wechat")


@pytest.mark.parametrize(("count", "refused"), [(64, False), (65, True)])
def test_at_most_64_fields(count, refused):
    raw = b"<xml>" + b"".join(b"<f%d>1</f%d>" % (i, i) for i in range(count)) + b"</xml>"
    if refused:
        with pytest.raises(wechat.WechatError, match="more than 64 fields"):
            wechat.parse_xml(raw)
    else:
        assert len(wechat.parse_xml(raw)) == count


@pytest.mark.parametrize(("length", "refused"), [(8192, False), (8193, True)])
def test_a_field_of_at_most_8192_characters(length, refused):
    raw = b"<xml><detail>" + b"x" * length + b"</detail></xml>"
    if refused:
        with pytest.raises(wechat.WechatError, match="field detail is longer than 8192"):
            wechat.parse_xml(raw)
    else:
        assert wechat.parse_xml(raw) == {"detail": "x" * length}


def test_text_between_the_fields_is_no_field_and_no_value_however_long():
    raw = b"<xml>" + b" " * 9000 + b"<a>1</a>\n  <b>2</b>tail</xml>"
    assert wechat.parse_xml(raw) == {"a": "1", "b": "2"}


def test_an_empty_root_is_no_fields_and_a_bare_digit_value_is_not_wrapped():
    assert wechat.parse_xml(b"<xml/>") == {}
    assert wechat.to_xml({"total_fee": "12", "body": "a1"}) == (
        b"<xml><total_fee>12</total_fee><body><![CDATA[a1]]></body></xml>")


# --- the codec: who sent it -------------------------------------------------------------------

def test_an_unknown_merchant_is_a_transport_failure_unsigned_echoing_the_nonce():
    answer = wechat.decode_response(CODEC.decode_request(body(micropay(mch_id="1"))))
    assert answer.fields == {"return_code": "FAIL", "return_msg": "unknown mch_id",
                             "iso_code": "03", "nonce_str": "5K8264ILTKCH16CQ"}
    assert answer.correlation_id == "5K8264ILTKCH16CQ"
    # No decision fields: zeros and blanks; the reason is the transport's message.
    assert answer.response == AuthResponse(response_code="03", reason="unknown mch_id")


def test_a_wrong_or_missing_signature_is_signerror_signed():
    fields = micropay()
    tampered = wechat.parse_xml(body(fields)) | {"total_fee": "1"}
    for raw in (wechat.to_xml(tampered), wechat.to_xml(fields),
                wechat.to_xml(fields | {"sign": ""}), body(fields, b"another key")):
        answer = wechat.decode_response(CODEC.decode_request(raw), KEY)
        assert (answer.fields["err_code"], answer.response.response_code,
                answer.response.reason) == ("SIGNERROR", "63", "signature_mismatch")


def test_each_declining_code_is_answered_with_the_err_code_documented():
    approving = "(none: `SUCCESS`)"
    for code, (_, documented) in documented_answers().items():
        error = wechat.err_code(AuthResponse(response_code=code))
        if documented == approving:
            assert error is None, code
        else:
            assert error is not None and error[0] == documented and error[1], code


@pytest.mark.parametrize(("state", "trade_state"), [
    ("captured", "SUCCESS"), ("refunded", "REFUND"), ("reversed", "REVOKED"),
    ("expired", "CLOSED"), ("pending", "USERPAYING"),
])
def test_each_reported_state_is_its_trade_state(state, trade_state):
    assert wechat.TRADE_STATES[state] == trade_state


# --- the answer's fields ----------------------------------------------------------------------

def test_a_decline_answer_carries_the_decision_and_no_order_fields():
    response = AuthResponse(response_code="51", open_to_buy_fen=77,
                            reason="insufficient_open_to_buy", beans=0)
    answer = wechat.response_fields(micropay(device_info="POS-7"), response, "20261129200000")
    assert answer == {
        "return_code": "SUCCESS", "return_msg": "OK", "appid": "wx2421b1c4370ec43b",
        "mch_id": MCH, "nonce_str": "5K8264ILTKCH16CQ", "device_info": "POS-7",
        "result_code": "FAIL", "err_code": "NOTENOUGH",
        "err_code_des": "insufficient available credit",
        "out_trade_no": "1217752501201407033233368018", "iso_code": "51",
        "reason": "insufficient_open_to_buy", "approved_fee": "0", "available_fee": "77",
        "beans": "0", "repeat": "0"}


def test_a_paid_order_sent_again_is_orderpaid_and_only_a_micropay_is():
    again = AuthResponse(response_code="00", approved_fen=888, repeat=True)
    paid = wechat.response_fields(micropay(), again, "20261129200000")
    assert (paid["result_code"], paid["err_code"], paid["err_code_des"], paid["repeat"]) == (
        "FAIL", "ORDERPAID", "order already paid", "1")
    assert paid["total_fee"] == "888"  # the first answer's fields stay
    refunded = wechat.response_fields(refund(), again, "20261129200000")
    assert (refunded["result_code"], "err_code" in refunded) == ("SUCCESS", False)


def test_an_order_query_of_an_unknown_state_is_payerror():
    answer = wechat.response_fields(micropay(api="orderquery"),
                                    AuthResponse(response_code="00", approved_fen=5),
                                    "20261129200000")
    assert (answer["trade_state"], answer["fee_type"], answer["cash_fee"]) == (
        "PAYERROR", "CNY", "5")
    assert (answer["trade_type"], answer["bank_type"]) == ("MICROPAY", "PAB_CREDIT")


def test_a_refund_answer_names_the_order_and_the_whole_fee():
    answer = wechat.response_fields(refund(), AuthResponse(response_code="00", approved_fen=300),
                                    "20261129200000")
    assert (answer["total_fee"], answer["cash_refund_fee"], answer["refund_fee"]) == (
        "888", "300", "300")
    assert answer["transaction_id"] == wechat.transaction_id(MCH, micropay()["out_trade_no"])
    # The id is the refund's own, the same in every release (a merchant stores it): 50 and
    # the decimal digits of SHA-256("refund:<mch_id>:<out_refund_no>"), 29 in all.
    digest = hashlib.sha256(f"refund:{MCH}:R1".encode()).hexdigest()
    assert answer["refund_id"] == "50" + str(int(digest, 16))[:27]
    other = wechat.response_fields(refund(out_refund_no="R2"),
                                   AuthResponse(response_code="00", approved_fen=300), "")
    assert other["refund_id"] != answer["refund_id"]


def test_an_approved_micropay_names_the_payer():
    fields = micropay(attach="table 7")
    answer = wechat.response_fields(fields, AuthResponse(response_code="00", approved_fen=888),
                                    "20261129200000")
    assert (answer["is_subscribe"], answer["fee_type"], answer["attach"]) == ("N", "CNY",
                                                                               "table 7")
    assert answer["openid"].startswith("o") and len(answer["openid"]) == 28
    by_openid = wechat.response_fields(fields | {"openid": "oPAYER"},
                                       AuthResponse(response_code="00"), "20261129200000")
    assert by_openid["openid"] == "oPAYER"


# --- through a real switch: the engine's guards in WeChat's words ---------------------------

@pytest.fixture(scope="module")
async def wechat_switch_no_rules(redis_url):
    async with policy_switch(redis_url, "", channels=("wechat",)) as (switch, ledger, _):
        yield switch.ports["wechat"], ledger


async def send(port: int, raw: bytes, key: bytes | None = DEMO_KEY) -> ClientAnswer:
    """One request to the switch, its answer read as a client holding `key` reads it."""
    header = wechat.WechatCodec.header
    return wechat.decode_response(await exchange("127.0.0.1", port, header, raw), key)


@pytest.mark.parametrize(("changes", "wire", "expected"), [
    ({}, {"fee_type": "USD"}, ("TRADE_ERROR", "12", "currency_not_supported")),
    ({"amount_fen": MAX_FEN + 1}, {}, ("PARAM_ERROR", "13", "amount_out_of_range")),
    ({"amount_fen": MAX_FEN}, {}, ("", "00", "")),
    ({"amount_fen": MAX_FEN - 1}, {}, ("", "00", "")),
    ({}, {"total_fee": "0"}, bad("total_fee", "0")),
    ({"mcc": "7995 "}, {}, ("PARAM_ERROR", "30", "mcc_malformed")),
    ({"mcc": "79950"}, {}, ("PARAM_ERROR", "30", "mcc_malformed")),
    ({"mcc": "799"}, {}, ("PARAM_ERROR", "30", "mcc_malformed")),
    ({"card": "1234"}, {}, ("NOTSUPORTCARD", "14", "card_number_malformed")),
    ({"card": "6" * 20}, {}, ("NOTSUPORTCARD", "14", "card_number_malformed")),
    ({"card": "6" * 19}, {}, ("NOTSUPORTCARD", "14", "card_unknown")),
    ({}, {"body": ""}, lack("body")),
    ({}, {"spbill_create_ip": "localhost"}, bad("spbill_create_ip", "localhost")),
], ids=lambda value: repr(value)[:30] if isinstance(value, dict) else "")
async def test_the_switch_answers_each_guard_in_wechats_words(wechat_switch_no_rules, changes,
                                                              wire, expected):
    port, ledger = wechat_switch_no_rules
    pan = await make_card(ledger, limit_fen=MAX_FEN)
    request = AuthRequest(**({
        "message_class": MessageClass.SALE, "channel": "wechat", "card": pan,
        "amount_fen": 1234, "mcc": "5411", "merchant_id": DEMO_WECHAT_MCH_ID,
        "txn_ref": new_ref("W")} | changes))
    answer = await send(port, wechat.encode_request(request, DEMO_KEY, DEMO_WECHAT_APPID, **wire))
    assert (answer.fields.get("err_code", ""), answer.response.response_code,
            answer.response.reason) == expected
    await assert_took(ledger, pan, answer, request.amount_fen)


async def test_the_switch_answers_a_stranger_and_a_forger(wechat_switch_no_rules):
    port, ledger = wechat_switch_no_rules
    pan = await make_card(ledger)
    request = AuthRequest(message_class=MessageClass.SALE, channel="wechat", card=pan,
                          amount_fen=100, mcc="5411", merchant_id=DEMO_WECHAT_MCH_ID,
                          txn_ref=new_ref("W"))
    stranger = await send(port, wechat.encode_request(request, b"k", DEMO_WECHAT_APPID,
                                                      mch_id="1"), None)
    assert (stranger.fields["return_code"], stranger.response.response_code) == ("FAIL", "03")
    forged = await send(port, wechat.encode_request(request, b"not the key", DEMO_WECHAT_APPID))
    assert (forged.fields["err_code"], forged.response.response_code,
            forged.response.reason) == ("SIGNERROR", "63", "signature_mismatch")
    assert (await ledger.card(pan)).open_to_buy == 10_000
