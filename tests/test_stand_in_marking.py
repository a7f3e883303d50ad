"""Each channel marks an answer decided in stand-in, and only such an answer; the client side
reads the mark back (codecs only: the switch's side is tests/test_standin_forwarding.py)."""

from __future__ import annotations

import msgspec
import pytest

from protocols import jd, wechat
from protocols.iso_channel import STAND_IN_MARK
from protocols.iso_client import IsoClient
from protocols.messages import AuthResponse
from protocols.pos import PosCodec

KEY = b"merchant-key"
STOOD_IN = AuthResponse(response_code="00", approved_fen=1234, auth_id="654321",
                        stand_in=True)
ONLINE = AuthResponse(response_code="00", approved_fen=1234, auth_id="654321",
                      open_to_buy_fen=8766)
DECLINED_IN_STAND_IN = AuthResponse(response_code="61", reason="stand_in_limit", stand_in=True)


def jd_answer(response: AuthResponse):
    context = {"merchant": "m1", "tradeNum": "T1", "tradeType": "SALE"}
    body = jd.JdCodec({"m1": KEY}).encode_response(context, response)
    return msgspec.json.decode(body), jd.decode_response(body, KEY)


def wechat_answer(response: AuthResponse):
    merchant = wechat.Merchant(KEY, "5411")
    codec = wechat.WechatCodec({"1900000109": merchant}, lambda: "20261129200000")
    context = {"api": "micropay", "appid": "wx1", "mch_id": "1900000109", "nonce_str": "N1",
               "out_trade_no": "O1", "auth_code": "134567890123456789",
               "sign_type": "HMAC-SHA256"}  # the answer is signed as its request was
    body = codec.encode_response((context, merchant), response)
    return wechat.parse_xml(body), wechat.decode_response(body, KEY)


def pos_answer(response: AuthResponse):
    request = {"t": "0200", "2": "6253990000000018", "3": "000000", "4": "000000001234",
               "7": "1207120000", "11": "000123", "41": "TERM0001", "49": "156"}
    body = PosCodec().encode_response(request, response)
    client = IsoClient()
    return client.decode(body), client.answer(body)


def test_jd_marks_a_stand_in_answer_in_a_signed_field_and_nothing_else():
    fields, read = jd_answer(STOOD_IN)
    assert fields["standIn"] == "1" and read.response.stand_in
    fields, read = jd_answer(DECLINED_IN_STAND_IN)
    assert (fields["standIn"], fields["code"], fields["reason"]) == ("1", "RISK02",
                                                                     "stand_in_limit")
    fields, read = jd_answer(ONLINE)
    assert "standIn" not in fields and not read.response.stand_in
    with pytest.raises(ValueError, match="signature"):  # the mark is signed like the rest
        jd.decode_response(msgspec.json.encode({**jd_answer(STOOD_IN)[0], "standIn": "0"}),
                           KEY)


def test_wechat_marks_a_stand_in_answer_in_a_signed_field_and_nothing_else():
    fields, read = wechat_answer(STOOD_IN)
    assert (fields["stand_in"], fields["result_code"]) == ("1", "SUCCESS")
    assert read.response.stand_in
    fields, read = wechat_answer(ONLINE)
    assert "stand_in" not in fields and not read.response.stand_in


def test_iso_marks_a_stand_in_answer_in_f63_without_a_balance():
    fields, read = pos_answer(STOOD_IN)
    assert (fields["39"], fields["63"], fields["38"]) == ("00", STAND_IN_MARK, "654321")
    assert "54" not in fields and read.response.stand_in
    fields, read = pos_answer(DECLINED_IN_STAND_IN)
    assert (fields["39"], fields["63"], fields["44"]) == ("61", "STIP", "stand_in_limit")
    fields, read = pos_answer(ONLINE)
    assert "63" not in fields and fields["54"].endswith("000000008766")
    assert not read.response.stand_in
