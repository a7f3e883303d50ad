"""Load-test adapters of the web-API channels: JD checkout (JSON) and WeChat Pay (XML)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from loadtest.generator.adapters.base import ClientAdapter, Context, Options
from protocols import jd, wechat
from protocols.demo import (
    DEMO_JD_KEY,
    DEMO_JD_MERCHANT,
    DEMO_WECHAT_APPID,
    DEMO_WECHAT_KEY,
    DEMO_WECHAT_MCH_ID,
)
from protocols.messages import AuthResponse

if TYPE_CHECKING:
    from loadtest.generator.workload import Txn


def jd_adapter(options: Options, context: Context) -> ClientAdapter:
    merchant = options.get("merchant", DEMO_JD_MERCHANT)
    key = options.get("key", DEMO_JD_KEY).encode()

    def encode(txn: Txn) -> tuple[str, bytes]:
        request = txn.request
        return request.txn_ref, jd.encode_request(request, key, merchant=merchant)

    def decode(body: bytes) -> tuple[str, AuthResponse]:
        # No signature check: it would measure our HMAC, not the switch (tests check it).
        answer = jd.decode_response(body)
        return answer.correlation_id, answer.response

    return ClientAdapter("jd", jd.JdCodec.header, 8601, encode, decode)


def wechat_adapter(options: Options, context: Context) -> ClientAdapter:
    """WeChat Pay micropay: sales, their reversals and refunds (no pre-authorization; an
    order query needs an order and is left out)."""
    mch_id = options.get("mch_id", DEMO_WECHAT_MCH_ID)
    appid = options.get("appid", DEMO_WECHAT_APPID)
    key = options.get("key", DEMO_WECHAT_KEY).encode()

    def encode(txn: Txn) -> tuple[str, bytes]:
        request = txn.request  # its txn_ref is the order number, and the nonce answers echo
        return request.txn_ref, wechat.encode_request(request, key, appid, mch_id=mch_id)

    def decode(body: bytes) -> tuple[str, AuthResponse]:
        answer = wechat.decode_response(body)
        return answer.correlation_id, answer.response

    return ClientAdapter("wechat", wechat.WechatCodec.header, 8602, encode, decode,
                         frozenset({"sale", "reversal", "refund", "repeat"}))
