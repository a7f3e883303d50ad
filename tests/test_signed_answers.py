"""A client holding the merchant's key trusts only answers signed with it (JD and WeChat).

The switch signs every answer to a merchant it knows; an answer that was changed on the way,
signed with another key or stripped of its `sign` is refused, never read.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import msgspec
import pytest

from protocols import jd, wechat
from protocols.channel import ClientAnswer
from protocols.messages import AuthResponse

KEY = b"merchant-key"
APPROVAL = AuthResponse(response_code="00", approved_fen=1234, auth_id="654321",
                        open_to_buy_fen=8766)


class Channel(NamedTuple):
    answer: bytes  # an approval of 1234 fen, as the switch writes it
    decode: Callable[[bytes, bytes | None], ClientAnswer]
    amount: str  # the field that carries the approved amount
    load: Callable[[bytes], dict[str, Any]]
    dump: Callable[[dict[str, Any]], bytes]


def jd_channel() -> Channel:
    context = {"merchant": "m1", "tradeNum": "T1", "tradeType": "SALE"}
    answer = jd.JdCodec({"m1": KEY}).encode_response(context, APPROVAL)
    return Channel(answer, jd.decode_response, "amount", msgspec.json.decode,
                   msgspec.json.encode)


def wechat_channel() -> Channel:
    merchant = wechat.Merchant(KEY, "5411")
    codec = wechat.WechatCodec({"1900000109": merchant}, lambda: "20261129200000")
    context = {"api": "micropay", "appid": "wx1", "mch_id": "1900000109", "nonce_str": "N1",
               "out_trade_no": "O1", "auth_code": "134567890123456789",
               "sign_type": "HMAC-SHA256"}  # the answer is signed as its request was
    answer = codec.encode_response((context, merchant), APPROVAL)
    return Channel(answer, wechat.decode_response, "approved_fee", wechat.parse_xml,
                   wechat.to_xml)


CHANNELS = pytest.mark.parametrize("channel", [jd_channel(), wechat_channel()],
                                   ids=["jd", "wechat"])


def changed(channel: Channel, **changes: str | None) -> bytes:
    fields = channel.load(channel.answer) | changes
    return channel.dump({name: value for name, value in fields.items() if value is not None})


@CHANNELS
def test_a_signed_answer_is_read(channel):
    answer = channel.decode(channel.answer, KEY)
    assert answer.response == APPROVAL


@CHANNELS
def test_a_tampered_amount_is_refused(channel):
    tampered = changed(channel, **{channel.amount: "999999"})
    with pytest.raises(ValueError, match="answer signature does not match"):
        channel.decode(tampered, KEY)


@CHANNELS
def test_another_merchants_key_is_refused(channel):
    with pytest.raises(ValueError, match="answer signature does not match"):
        channel.decode(channel.answer, b"another merchant's key")


@CHANNELS
@pytest.mark.parametrize("sign", [None, ""], ids=["stripped", "empty"])
def test_an_unsigned_answer_is_refused_when_a_key_is_given(channel, sign):
    stripped = changed(channel, sign=sign, **{channel.amount: "999999"})
    with pytest.raises(ValueError, match="answer is not signed"):
        channel.decode(stripped, KEY)
    # Without a key nothing is checked (the load generator reads answers so, for speed).
    assert channel.decode(stripped, None).response.approved_fen == 999999
