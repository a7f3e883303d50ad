"""The JD codec, sans-IO: signed JSON in, canonical request out, and back."""

from __future__ import annotations

import hashlib
import hmac
import re
from pathlib import Path

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols import jd
from protocols.channel import Decoded, sign_sorted_pairs
from protocols.demo import DEMO_JD_KEY, DEMO_JD_MERCHANT
from protocols.messages import AuthRequest, AuthResponse, MessageClass

KEY = b"test-key"
DOC = Path(__file__).parent.parent / "docs" / "channels" / "jd.md"
CODEC = jd.JdCodec({"m1": KEY})


def client_request(**changes) -> AuthRequest:
    fields = dict(message_class=MessageClass.SALE, channel="jd", card="6253990000000001",
                  amount_fen=1234, mcc="5411", merchant_id="m1", txn_ref="T1",
                  transmitted_at="20261129120000")
    return AuthRequest(**(fields | changes))


def reply_fields(reply: bytes) -> dict:
    return msgspec.json.decode(reply)


def test_signature_is_hmac_sha256_over_sorted_non_empty_pairs():
    fields = {"b": "2", "a": "1", "sign": "x", "empty": ""}
    assert sign_sorted_pairs(fields, KEY) == hmac.new(KEY, b"a=1&b=2", hashlib.sha256).hexdigest()


@given(fields=st.dictionaries(st.text(min_size=1, max_size=8), st.text(max_size=8), max_size=12),
       key=st.binary(max_size=80), suffix=st.sampled_from(["", "&key=k"]))
def test_the_signature_is_the_rule_for_any_fields(fields, key, suffix):
    pairs = [f"{name}={fields[name]}" for name in sorted(fields)
             if name != "sign" and fields[name] != ""]
    text = "&".join(pairs) + suffix
    expected = hmac.new(key, text.encode(), hashlib.sha256).hexdigest()
    assert sign_sorted_pairs(fields, key, suffix) == expected


@given(trade=st.from_regex(r"[A-Za-z0-9_\-]{1,32}", fullmatch=True),
       amount=st.integers(0, 10**12), kind=st.sampled_from(list(MessageClass)),
       partial=st.booleans(), original=st.from_regex(r"[A-Za-z0-9]{1,32}", fullmatch=True))
def test_round_trip(trade, amount, kind, partial, original):
    sent = client_request(txn_ref=trade, amount_fen=amount, message_class=kind,
                          partial_ok=partial, original_ref=original)
    decoded = CODEC.decode_request(jd.encode_request(sent, KEY))
    assert isinstance(decoded, Decoded)
    got = decoded.request
    assert (got.message_class, got.amount_fen, got.card, got.mcc, got.partial_ok) == (
        kind, amount, sent.card, "5411", partial)
    assert got.txn_ref == got.idempotency_key == f"jd:m1:{trade}"
    assert got.original_ref == f"jd:m1:{original}"
    response = AuthResponse(response_code="00", approved_fen=amount, auth_id="123456",
                            open_to_buy_fen=5, beans=3)
    answer = jd.decode_response(CODEC.encode_response(decoded.context, response), KEY)
    assert answer.correlation_id == trade
    assert answer.response == response


def test_bad_signature_is_answered_and_not_decided():
    body = msgspec.json.decode(jd.encode_request(client_request(), KEY))
    body["amount"] = "99999"  # tampered after signing
    reply = CODEC.decode_request(msgspec.json.encode(body))
    assert isinstance(reply, bytes)
    answer = jd.decode_response(reply, KEY)
    assert (answer.fields["code"], answer.response.response_code) == ("SIGN01", "63")


def test_unknown_merchant_is_answered_unsigned():
    reply = CODEC.decode_request(jd.encode_request(client_request(merchant_id="nope"), KEY))
    fields = reply_fields(reply)
    assert (fields["code"], fields["isoCode"]) == ("MERC01", "03")
    assert "sign" not in fields


@pytest.mark.parametrize(("change", "detail"), [
    ({"tradeType": "PAY"}, "tradeType"),
    ({"amount": "12.50"}, "amount"),
    ({"amount": "-1"}, "amount"),
    ({"tradeNum": "has space"}, "tradeNum"),
    ({"tradeTime": "2026"}, "tradeTime"),
    ({"cardNo": ""}, "cardNo"),
])
def test_malformed_fields_are_a_parameter_error_naming_the_field(change, detail):
    reply = CODEC.decode_request(jd.encode_request(client_request(), KEY, **change))
    fields = reply_fields(reply)
    assert (fields["code"], fields["isoCode"]) == ("PARA01", "30")
    assert detail in fields["reason"]


@given(garbage=st.binary(max_size=300))
def test_garbage_gets_a_format_error_reply_never_an_exception(garbage):
    reply = CODEC.decode_request(garbage)
    assert isinstance(reply, bytes)
    assert reply_fields(reply)["isoCode"] in ("30", "03")


@given(fields=st.dictionaries(st.sampled_from(["merchant", "tradeNum", "tradeType", "amount",
                                               "cardNo", "tradeTime", "sign", "x"]),
                              st.text(max_size=20) | st.integers() | st.none()))
def test_any_json_object_gets_a_reply_or_a_request(fields):
    result = CODEC.decode_request(msgspec.json.encode(fields))
    assert isinstance(result, bytes | Decoded)


def test_the_worked_example_in_the_docs_is_what_the_code_does():
    text = DOC.read_text()
    request_json, answer_json = re.findall(r"```json\n(.*?)\n```", text, re.S)[:2]
    signed_text = re.search(r"```\n(amount=.*?)\n```", text, re.S).group(1)
    sizes = [(int(size), bytes.fromhex(header)) for size, header in re.findall(
        r"\((\d+) bytes, (?:so the frame starts with|frame header) `([0-9a-f ]+)`\)", text)]
    key = DEMO_JD_KEY.encode()
    sale = AuthRequest(message_class=MessageClass.SALE, channel="jd", card="6253680000000018",
                       amount_fen=12800, mcc="5411", merchant_id=DEMO_JD_MERCHANT,
                       txn_ref="T20261129120000A1", transmitted_at="20261129120000")
    body = jd.encode_request(sale, key, userId="jd_user_42")
    assert body == request_json.encode()
    fields = msgspec.json.decode(body)
    assert signed_text == "&".join(f"{k}={v}" for k, v in sorted(fields.items()) if k != "sign")
    codec = jd.JdCodec({DEMO_JD_MERCHANT: key})
    answer = codec.encode_response(codec.decode_request(body).context, AuthResponse(
        response_code="00", approved_fen=12800, auth_id="482913", open_to_buy_fen=987200,
        beans=640))
    assert answer == answer_json.encode()
    assert sizes == [(len(body), len(body).to_bytes(4, "big")),
                     (len(answer), len(answer).to_bytes(4, "big"))]


def test_an_answer_with_fields_missing_reads_as_zeros_and_blanks():
    answer = jd.decode_response(b'{"isoCode": "96", "amount": ""}')
    assert answer.response == AuthResponse(response_code="96")
    assert answer.correlation_id == ""
