"""The WeChat Pay codec, sans-IO: XML, the v2 signature, field checks, the err_code mapping.

The signature is recomputed here from its definition (hashlib/hmac), not with the codec's
helpers; the worked example in docs/channels/wechat.md is checked against the code.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from pathlib import Path

import msgspec
import pytest

from protocols import wechat
from protocols.messages import AuthRequest, AuthResponse, MessageClass, RefundRecord

KEY = b"test-api-key"
MCH = "1900000109"
CODEC = wechat.WechatCodec({MCH: wechat.Merchant(KEY, "5411")}, lambda: "20261129200000")
DOC = Path(__file__).parent.parent / "docs" / "channels" / "wechat.md"


def v2_sign(fields: dict[str, str], key: bytes, sign_type: str = "HMAC-SHA256") -> str:
    """The rule as WeChat documents it, written out independently of the codec."""
    text = "&".join(f"{k}={v}" for k, v in sorted(fields.items()) if k != "sign" and v != "")
    text += "&key=" + key.decode()
    if sign_type == "MD5":
        return hashlib.md5(text.encode()).hexdigest().upper()
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest().upper()


def micropay(**changes: str) -> dict[str, str]:
    fields = {
        "api": "micropay", "appid": "wx2421b1c4370ec43b", "mch_id": MCH,
        "nonce_str": "5K8264ILTKCH16CQ", "sign_type": "HMAC-SHA256", "body": "groceries",
        "out_trade_no": "1217752501201407033233368018", "total_fee": "888",
        "fee_type": "CNY", "spbill_create_ip": "14.17.22.52",
        "auth_code": "120061098828009406", "card_no": "6253680000000019",
    }
    fields.update(changes)
    return {k: v for k, v in fields.items() if v is not None}


def body(fields: dict[str, str], key: bytes = KEY, sign_type: str = "HMAC-SHA256") -> bytes:
    return wechat.to_xml({**fields, "sign": v2_sign(fields, key, sign_type)})


def reply(raw: bytes, sign_type: str = "HMAC-SHA256") -> dict[str, str]:
    fields = wechat.parse_xml(raw)
    if "sign" in fields:
        assert fields["sign"] == v2_sign(fields, KEY, sign_type), (
            "answers are signed with the request's rule")
    return fields


def test_signature_is_the_v2_rule():
    fields = micropay()
    assert wechat.sign(fields, KEY) == v2_sign(fields, KEY)
    assert re.fullmatch(r"[0-9A-F]{64}", wechat.sign(fields, KEY))
    # empty values and `sign` itself are left out
    assert wechat.sign({**fields, "attach": "", "sign": "X"}, KEY) == v2_sign(fields, KEY)


def test_a_good_micropay_becomes_a_sale():
    decoded = CODEC.decode_request(body(micropay(mcc="5812", device_info="POS-7")))
    request = decoded.request
    assert request.message_class is MessageClass.SALE
    assert (request.channel, request.card, request.amount_fen, request.mcc) == (
        "wechat", "6253680000000019", 888, "5812")
    assert request.txn_ref == request.idempotency_key == f"wx:{MCH}:1217752501201407033233368018"
    assert (request.merchant_id, request.terminal_id, request.currency) == (MCH, "POS-7", 156)
    assert CODEC.decode_request(body(micropay())).request.mcc == "5411"  # the merchant's


def test_refund_reverse_and_orderquery_name_the_order():
    refund = CODEC.decode_request(body(micropay(api="refund", out_refund_no="R1",
                                                refund_fee="300"))).request
    assert (refund.message_class, refund.amount_fen, refund.txn_ref, refund.original_ref) == (
        MessageClass.REFUND, 300, f"wx:{MCH}:r:R1", f"wx:{MCH}:1217752501201407033233368018")
    reverse = CODEC.decode_request(body(micropay(api="reverse"))).request
    assert (reverse.message_class, reverse.amount_fen, reverse.txn_ref) == (
        MessageClass.REVERSAL, 0, f"wx:{MCH}:v:1217752501201407033233368018")
    query = CODEC.decode_request(body(micropay(api="orderquery"))).request
    assert query.message_class is MessageClass.INQUIRY
    assert query.original_ref == reverse.original_ref
    assert query.txn_ref.endswith(":5K8264ILTKCH16CQ")  # every query answered afresh


@pytest.mark.parametrize(("fields", "err_code", "words"), [
    (micropay(api=None), "LACK_PARAMS", "api '' is not one of"),
    (micropay(api="pay"), "PARAM_ERROR", "api 'pay' is not one of"),
    (micropay(out_trade_no=None), "LACK_PARAMS", "out_trade_no is required"),
    (micropay(card_no=None), "LACK_PARAMS", "card_no is required"),
    (micropay(body=None), "LACK_PARAMS", "body is required"),
    (micropay(auth_code=None), "LACK_PARAMS", "auth_code or openid"),
    (micropay(auth_code="990061098828009406"), "PARAM_ERROR", "auth_code"),
    (micropay(total_fee="8.88"), "PARAM_ERROR", "total_fee"),
    (micropay(total_fee="0"), "PARAM_ERROR", "total_fee"),
    (micropay(out_trade_no="a:b"), "PARAM_ERROR", "out_trade_no"),
    (micropay(out_trade_no="x" * 33), "PARAM_ERROR", "out_trade_no"),
    (micropay(bank_type="CMB_CREDIT"), "PARAM_ERROR", "bank_type must be PAB_CREDIT"),
    (micropay(api="refund", out_refund_no="R1", refund_fee="900"), "PARAM_ERROR",
     "refund_fee is more than total_fee"),
    (micropay(sign_type="SHA1"), "PARAM_ERROR", "sign_type must be MD5 or HMAC-SHA256"),
    (micropay(api="refundquery", out_refund_no="a:b"), "PARAM_ERROR", "out_refund_no"),
    (micropay(api="refundquery", refund_id="50x"), "PARAM_ERROR", "refund_id"),
    (micropay(api="refundquery", out_trade_no=None), "LACK_PARAMS", "out_trade_no is required"),
])
def test_field_problems_are_param_errors_with_iso_30(fields, err_code, words):
    answer = reply(CODEC.decode_request(body(fields)))
    assert (answer["return_code"], answer["result_code"], answer["err_code"]) == (
        "SUCCESS", "FAIL", err_code)
    assert answer["iso_code"] == "30"
    assert words in answer["reason"]


def test_a_wrong_signature_is_signerror():
    tampered = wechat.parse_xml(body(micropay()))
    tampered["total_fee"] = "1"
    answer = reply(CODEC.decode_request(wechat.to_xml(tampered)))
    assert (answer["err_code"], answer["iso_code"], answer["reason"]) == (
        "SIGNERROR", "63", "signature_mismatch")
    wrong_key = reply(CODEC.decode_request(body(micropay(), b"another key")))
    assert wrong_key["err_code"] == "SIGNERROR"


def test_lowercase_signature_is_accepted():
    fields = micropay()
    raw = wechat.to_xml({**fields, "sign": v2_sign(fields, KEY).lower()})
    assert not isinstance(CODEC.decode_request(raw), bytes)


def test_unknown_merchant_is_a_transport_failure_unsigned():
    answer = wechat.parse_xml(CODEC.decode_request(body(micropay(mch_id="1"))))
    assert (answer["return_code"], answer["iso_code"]) == ("FAIL", "03")
    assert "sign" not in answer


def test_limit_pay_no_credit_declines_a_credit_card():
    answer = reply(CODEC.decode_request(body(micropay(limit_pay="no_credit"))))
    assert (answer["result_code"], answer["err_code"], answer["iso_code"], answer["reason"]) == (
        "FAIL", "NOTSUPORTCARD", "58", "limit_pay_no_credit")


BILLION_LAUGHS = (b'<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY a "aaaaaaaaaa">'
                  b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><xml><body>&b;</body></xml>')


@pytest.mark.parametrize(("raw", "words"), [
    (BILLION_LAUGHS, "DOCTYPE is not allowed"),
    (b'<!DOCTYPE xml SYSTEM "file:///etc/passwd"><xml><a>&x;</a></xml>', "DOCTYPE"),
    (b"<xml><a><b>1</b></a></xml>", "fields are flat"),
    (b"<root><a>1</a></root>", "root element is <root>"),
    (b"<xml><a>1</a><a>2</a></xml>", "appears twice"),
    (b"<xml>" + b"".join(b"<f%d>1</f%d>" % (i, i) for i in range(65)) + b"</xml>",
     "more than 64 fields"),
    (b"<xml><a>" + b"x" * 8193 + b"</a></xml>", "longer than 8192"),
    (b"<xml><a>1</a>", "not well-formed"),
    (b"\xff\xfe<xml/>", "not well-formed"),
    (b"", "not well-formed"),
])
def test_hostile_or_broken_xml_is_refused_before_anything(raw, words):
    answer = wechat.parse_xml(CODEC.decode_request(raw))
    assert (answer["return_code"], answer["iso_code"]) == ("FAIL", "30")
    assert words in answer["return_msg"]


def test_cdata_and_escapes_round_trip():
    fields = {"body": "a <b> & ]]> c", "total_fee": "12", "empty": ""}
    assert wechat.parse_xml(wechat.to_xml(fields)) == fields
    raw = b"<xml><body><![CDATA[tea & cake]]></body><n>7</n></xml>"
    assert wechat.parse_xml(raw) == {"body": "tea & cake", "n": "7"}


def answer_for(api: str, response: AuthResponse, **changes: str) -> dict[str, str]:
    """The answer to a request of `api` (refund R1 of 1 fen; a refundquery names none)."""
    refund = {"out_refund_no": "R1", "refund_fee": "1"} if api != "refundquery" else {}
    return wechat.response_fields(micropay(api=api, **refund | changes), response,
                                  "20261129200000")


@pytest.mark.parametrize(("iso", "err_code"), [
    ("51", "NOTENOUGH"), ("57", "TRADE_ERROR"), ("61", "TRADE_ERROR"), ("65", "TRADE_ERROR"),
    ("12", "TRADE_ERROR"), ("58", "NOTSUPORTCARD"), ("14", "NOTSUPORTCARD"),
    ("41", "NOTSUPORTCARD"), ("43", "NOTSUPORTCARD"), ("54", "NOTSUPORTCARD"),
    ("62", "NOTSUPORTCARD"), ("13", "PARAM_ERROR"), ("30", "PARAM_ERROR"),
    ("63", "SIGNERROR"), ("94", "OUT_TRADE_NO_USED"), ("25", "ORDERNOTEXIST"),
    ("91", "SYSTEMERROR"), ("96", "SYSTEMERROR"), ("05", "TRADE_ERROR"),
])
def test_iso_code_to_err_code(iso, err_code):
    answer = answer_for("micropay", AuthResponse(response_code=iso, reason="some_rule"))
    assert (answer["return_code"], answer["result_code"], answer["err_code"]) == (
        "SUCCESS", "FAIL", err_code)
    assert (answer["iso_code"], answer["reason"]) == (iso, "some_rule")
    assert "transaction_id" not in answer


def test_approved_micropay_and_its_repeat():
    approved = AuthResponse(response_code="00", approved_fen=888, auth_id="123456",
                            open_to_buy_fen=5000, beans=8)
    first = answer_for("micropay", approved)
    assert (first["result_code"], first["total_fee"], first["cash_fee"]) == ("SUCCESS", "888",
                                                                             "888")
    assert re.fullmatch(r"42\d{26}", first["transaction_id"])
    assert (first["time_end"], first["bank_type"], first["trade_type"]) == (
        "20261129200000", "PAB_CREDIT", "MICROPAY")
    assert (first["approval_code"], first["available_fee"], first["beans"]) == (
        "123456", "5000", "8")
    approved.repeat = True
    again = answer_for("micropay", approved)
    assert (again["result_code"], again["err_code"], again["transaction_id"]) == (
        "FAIL", "ORDERPAID", first["transaction_id"])


@pytest.mark.parametrize(("state", "trade_state"), [
    ("captured", "SUCCESS"), ("refunded", "REFUND"), ("reversed", "REVOKED"),
    ("expired", "CLOSED"),
])
def test_orderquery_trade_states(state, trade_state):
    answer = answer_for("orderquery", AuthResponse(response_code="00", approved_fen=888,
                                                   state=state))
    assert (answer["result_code"], answer["trade_state"], answer["total_fee"]) == (
        "SUCCESS", trade_state, "888")


def test_refund_and_reverse_answers():
    refund = answer_for("refund", AuthResponse(response_code="00", approved_fen=1))
    assert (refund["refund_fee"], refund["out_refund_no"]) == ("1", "R1")
    assert re.fullmatch(r"50\d{27}", refund["refund_id"])
    assert answer_for("reverse", AuthResponse(response_code="00"))["recall"] == "N"


def test_the_worked_example_in_the_docs_is_what_the_code_does():
    text = DOC.read_text()
    request_xml, answer_xml = re.findall(r"```xml\n(.*?)\n```", text, re.S)[:2]
    key = re.search(r"API key `([^`]+)`", text).group(1).encode()
    string_to_sign = re.search(r"```text\n(.*?)\n```", text, re.S).group(1)
    fields = wechat.parse_xml(request_xml.encode())
    unsigned = "&".join(f"{k}={v}" for k, v in sorted(fields.items()) if k != "sign")
    assert string_to_sign == unsigned + "&key=" + key.decode()
    assert fields["sign"] == wechat.sign(fields, key) == v2_sign(fields, key)
    answer = wechat.parse_xml(answer_xml.encode())
    assert answer["sign"] == v2_sign(answer, key)


def test_the_worked_example_answer_is_what_the_codec_answers():
    text = DOC.read_text()
    request_xml, answer_xml = re.findall(r"```xml\n(.*?)\n```", text, re.S)[:2]
    on_the_wire = int(re.search(r"Answer \((\d+) bytes on the wire\)", text).group(1))
    key = re.search(r"API key `([^`]+)`", text).group(1).encode()
    documented = wechat.parse_xml(answer_xml.encode())
    codec = wechat.WechatCodec({"1900000109": wechat.Merchant(key, "5411")},
                               lambda: documented["time_end"])
    decoded = codec.decode_request(request_xml.encode())
    answer = codec.encode_response(decoded.context, AuthResponse(
        response_code="00", approved_fen=12800, auth_id=documented["approval_code"],
        open_to_buy_fen=987200, beans=128))
    assert wechat.parse_xml(answer) == documented
    assert len(answer) == on_the_wire
    assert wechat.decode_response(answer, key).response == AuthResponse(
        response_code="00", approved_fen=12800, auth_id=documented["approval_code"],
        open_to_buy_fen=987200, beans=128)


@pytest.mark.parametrize(("kind", "expected"), [
    (MessageClass.SALE, {
        "api": "micropay", "total_fee": "1234", "fee_type": "CNY",
        "body": "switch simulator purchase", "auth_code": "134567890123456789",
        "spbill_create_ip": "127.0.0.1", "mcc": "5812", "out_trade_no": "N1"}),
    (MessageClass.REFUND, {
        "api": "refund", "out_refund_no": "N1", "refund_fee": "1234", "total_fee": "1234",
        "out_trade_no": "O1"}),
    (MessageClass.REVERSAL, {"api": "reverse", "out_trade_no": "O1"}),
    (MessageClass.INQUIRY, {"api": "orderquery", "out_trade_no": "O1"}),
])
def test_a_client_request_on_the_wire(kind, expected):
    request = AuthRequest(message_class=kind, channel="wechat", card="6253680000000019",
                          amount_fen=1234, mcc="5812", merchant_id=MCH, terminal_id="POS-7",
                          txn_ref="N1", original_ref="O1")
    common = {"appid": "wx1", "mch_id": MCH, "nonce_str": "N1", "sign_type": "HMAC-SHA256",
              "card_no": "6253680000000019", "device_info": "POS-7"}
    assert wechat.request_fields(request, "wx1") == common | expected
    assert wechat.request_fields(request, "wx1", device_info="", x="1") == (
        {k: v for k, v in (common | expected).items() if k != "device_info"} | {"x": "1"})
    with pytest.raises(ValueError, match="WeChat Pay has no auth"):
        auth = msgspec.structs.replace(request, message_class=MessageClass.AUTH)
        wechat.request_fields(auth, "wx1")


# --- MD5, the v2 default ----------------------------------------------------------------------

def test_md5_signature_is_the_v2_rule_and_the_default_without_sign_type():
    fields = micropay(sign_type="MD5")
    assert wechat.sign(fields, KEY) == v2_sign(fields, KEY, "MD5")
    assert re.fullmatch(r"[0-9A-F]{32}", wechat.sign(fields, KEY))
    absent = micropay(sign_type=None)
    assert wechat.sign(absent, KEY) == v2_sign(absent, KEY, "MD5")
    assert wechat.sign(absent, KEY, "HMAC-SHA256") == v2_sign(absent, KEY)
    with pytest.raises(ValueError, match="sign_type 'SHA1'"):
        wechat.sign(micropay(sign_type="SHA1"), KEY)


@pytest.mark.parametrize("sign_type", ["MD5", None])
def test_an_md5_request_is_taken_and_answered_md5(sign_type):
    decoded = CODEC.decode_request(body(micropay(sign_type=sign_type), sign_type="MD5"))
    assert decoded.request.amount_fen == 888
    answer = CODEC.encode_response(decoded.context, AuthResponse(response_code="00",
                                                                 approved_fen=888))
    assert reply(answer, "MD5")["result_code"] == "SUCCESS"
    read = wechat.decode_response(answer, KEY, sign_type or "")
    assert read.response.approved_fen == 888
    with pytest.raises(ValueError, match="signature does not match"):
        wechat.decode_response(answer, KEY, "HMAC-SHA256")


def test_a_request_signed_one_way_and_labelled_the_other_is_signerror():
    labelled_md5 = wechat.to_xml({**micropay(sign_type="MD5"), "sign": v2_sign(micropay(
        sign_type="MD5"), KEY, "HMAC-SHA256")})
    answer = reply(CODEC.decode_request(labelled_md5), "MD5")
    assert (answer["err_code"], answer["iso_code"]) == ("SIGNERROR", "63")
    labelled_hmac = body(micropay(), sign_type="MD5")
    assert reply(CODEC.decode_request(labelled_hmac))["err_code"] == "SIGNERROR"


@pytest.mark.parametrize("sign_type", ["MD5", None])
def test_a_merchant_that_accepts_only_hmac_refuses_md5(sign_type):
    codec = wechat.WechatCodec({MCH: wechat.Merchant(KEY, "5411", frozenset({"HMAC-SHA256"}))},
                               lambda: "20261129200000")
    answer = reply(codec.decode_request(body(micropay(sign_type=sign_type), sign_type="MD5")),
                   "MD5")  # the refusal is signed as the request was: its sender can check it
    assert (answer["err_code"], answer["iso_code"]) == ("PARAM_ERROR", "30")
    assert "sign_type must be HMAC-SHA256 for this merchant" in answer["reason"]
    assert not isinstance(codec.decode_request(body(micropay())), bytes)


# --- refundquery ------------------------------------------------------------------------------

ORDER = "1217752501201407033233368018"
REFUNDS = (RefundRecord(f"wx:{MCH}:r:R1", 300, 1_764_417_600_000),  # 2025-11-29 12:00 UTC
           RefundRecord(f"wx:{MCH}:r:R2", 200, 1_764_421_200_000))


def test_refundquery_is_an_inquiry_of_the_order_answered_afresh():
    query = CODEC.decode_request(body(micropay(api="refundquery"))).request
    assert (query.message_class, query.original_ref) == (MessageClass.INQUIRY,
                                                         f"wx:{MCH}:{ORDER}")
    assert query.txn_ref == query.idempotency_key == f"wx:{MCH}:rq:{ORDER}:5K8264ILTKCH16CQ"


def test_refundquery_lists_every_refund_of_the_order():
    answer = answer_for("refundquery", AuthResponse(response_code="00", approved_fen=888,
                                                    refunds=REFUNDS))
    assert (answer["result_code"], answer["refund_count"], answer["refund_fee"],
            answer["total_fee"]) == ("SUCCESS", "2", "500", "888")
    assert answer["transaction_id"] == wechat.transaction_id(MCH, ORDER)
    assert [answer[f"out_refund_no_{n}"] for n in (0, 1)] == ["R1", "R2"]
    assert [answer[f"refund_fee_{n}"] for n in (0, 1)] == ["300", "200"]
    assert [answer[f"refund_status_{n}"] for n in (0, 1)] == ["SUCCESS", "SUCCESS"]
    assert answer["refund_id_0"] == wechat.refund_id(MCH, "R1")
    assert answer["refund_success_time_0"] == "2025-11-29 20:00:00"  # Beijing time
    assert "refund_status_2" not in answer


@pytest.mark.parametrize("names", [{"out_refund_no": "R2"},
                                   {"refund_id": wechat.refund_id(MCH, "R2")}])
def test_refundquery_naming_one_refund_answers_that_one(names):
    answer = answer_for("refundquery", AuthResponse(response_code="00", approved_fen=888,
                                                    refunds=REFUNDS), **names)
    assert (answer["refund_count"], answer["out_refund_no_0"], answer["refund_fee_0"]) == (
        "1", "R2", "200")
    assert "out_refund_no_1" not in answer


@pytest.mark.parametrize(("response", "names"), [
    (AuthResponse(response_code="00", approved_fen=888), {}),  # paid, never refunded
    (AuthResponse(response_code="00", approved_fen=888, refunds=REFUNDS),
     {"out_refund_no": "R3"}),
    (AuthResponse(response_code="00", approved_fen=888, refunds=REFUNDS), {"refund_id": "501"}),
    (AuthResponse(response_code="25", reason="original_not_found"), {}),  # no such order
])
def test_refundquery_without_a_matching_refund_is_refundnotexist(response, names):
    answer = answer_for("refundquery", response, **names)
    assert (answer["result_code"], answer["err_code"]) == ("FAIL", "REFUNDNOTEXIST")
    assert "refund_count" not in answer and "trade_state" not in answer


def test_a_client_asks_refundquery_by_name_and_may_sign_md5():
    request = AuthRequest(message_class=MessageClass.INQUIRY, channel="wechat",
                          card="6253680000000019", amount_fen=0, merchant_id=MCH,
                          txn_ref="N1", original_ref=ORDER)
    fields = wechat.request_fields(request, "wx1", api="refundquery", sign_type="",
                                   out_refund_no="R1")
    assert (fields["api"], fields["out_trade_no"], fields["out_refund_no"]) == (
        "refundquery", ORDER, "R1")
    assert "sign_type" not in fields  # absent: MD5
    raw = wechat.encode_request(request, KEY, "wx1", api="refundquery", sign_type="")
    assert wechat.parse_xml(raw)["sign"] == v2_sign(wechat.parse_xml(raw), KEY, "MD5")
    assert CODEC.decode_request(raw).request.original_ref == f"wx:{MCH}:{ORDER}"


def test_the_md5_refundquery_example_in_the_docs_is_what_the_codec_answers():
    text = DOC.read_text()
    section = text[text.index("## Refund query, signed MD5"):]
    request_xml, answer_xml = re.findall(r"```xml\n(.*?)\n```", section, re.S)[:2]
    string_to_sign = re.search(r"```text\n(.*?)\n```", section, re.S).group(1)
    sizes = [int(n) for n in re.findall(r"\((\d+) bytes on the wire", section)[:2]]
    key = re.search(r"API key `([^`]+)`", text).group(1).encode()
    fields = wechat.parse_xml(request_xml.encode())
    unsigned = "&".join(f"{k}={v}" for k, v in sorted(fields.items()) if k != "sign")
    assert string_to_sign == unsigned + "&key=" + key.decode()
    assert fields["sign"] == v2_sign(fields, key, "MD5") == wechat.sign(fields, key)
    documented = wechat.parse_xml(answer_xml.encode())
    assert documented["sign"] == v2_sign(documented, key, "MD5")
    codec = wechat.WechatCodec({MCH: wechat.Merchant(key, "5411")}, lambda: "20261129204000")
    decoded = codec.decode_request(request_xml.encode())
    at_ms = 1_795_956_000_000  # 2026-11-29 20:40:00 in Beijing
    answer = codec.encode_response(decoded.context, AuthResponse(
        response_code="00", approved_fen=12800, auth_id=documented["approval_code"],
        open_to_buy_fen=987200, state="refunded", refunds=(
            RefundRecord(f"wx:{MCH}:r:{documented['out_refund_no_0']}", 800, at_ms),)))
    assert wechat.parse_xml(answer) == documented
    assert [len(wechat.to_xml(fields)), len(answer)] == sizes
