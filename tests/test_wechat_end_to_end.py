"""WeChat Pay over real TCP against a real switch and a real Redis."""

from __future__ import annotations

import re

from protocols import wechat
from protocols.demo import DEMO_WECHAT_APPID, DEMO_WECHAT_KEY, DEMO_WECHAT_MCH_ID
from protocols.messages import MessageClass as C
from switch import testing
from switch.config import Config, Listener, Wechat, WechatMerchant
from tests.support import make_card
from tests.test_policy_support import ClientCodec, PipeClient, new_ref, policy_switch, request

KEY = DEMO_WECHAT_KEY.encode()


def micropay_fields(pan: str, amount: int, **changes: str) -> dict[str, str]:
    return wechat.request_fields(request("wechat", pan, C.SALE, amount), DEMO_WECHAT_APPID,
                                 **changes)


async def send_fields(clients, fields: dict[str, str], key: bytes = KEY):
    body = wechat.to_xml(wechat.signed(fields, key))
    return await clients.by_channel["wechat"].send_body(fields["nonce_str"], body)


async def test_micropay_answer_and_the_paid_order_sent_again(redis_url):
    async with policy_switch(redis_url) as (_, ledger, clients):
        pan = await make_card(ledger, limit_fen=100_000)
        first = await clients.send("wechat", pan, amount_fen=12_800)
        f = first.fields
        assert (f["return_code"], f["result_code"], f["iso_code"]) == ("SUCCESS", "SUCCESS", "00")
        assert (f["total_fee"], f["cash_fee"], f["bank_type"], f["trade_type"]) == (
            "12800", "12800", "PAB_CREDIT", "MICROPAY")
        assert re.fullmatch(r"\d{28}", f["transaction_id"])
        assert re.fullmatch(r"20\d{12}", f["time_end"])
        assert (f["available_fee"], f["beans"]) == ("87200", "128")
        assert "card_no" not in f  # the answer never carries the card number
        same = request("wechat", pan, C.SALE, 12_800, txn_ref=first.correlation_id)
        again = await clients.by_channel["wechat"].send(same)
        assert (again.fields["result_code"], again.fields["err_code"]) == ("FAIL", "ORDERPAID")
        assert again.fields["transaction_id"] == f["transaction_id"]
        assert again.response.repeat
        changed = request("wechat", pan, C.SALE, 100, txn_ref=first.correlation_id)
        reused = await clients.by_channel["wechat"].send(changed)
        assert (reused.fields["err_code"], reused.response.response_code) == (
            "OUT_TRADE_NO_USED", "94")
        assert (await ledger.card(pan)).posted == 12_800


async def test_bad_signature_is_signerror_and_changes_nothing(redis_url):
    async with policy_switch(redis_url) as (_, ledger, clients):
        pan = await make_card(ledger, limit_fen=100_000)
        fields = micropay_fields(pan, 5_000)
        wrong = await send_fields(clients, fields, b"not the key")
        assert wrong.fields["return_code"] == "SUCCESS"
        assert (wrong.fields["err_code"], wrong.response.response_code) == ("SIGNERROR", "63")
        wechat.decode_response(wechat.to_xml(wrong.fields), KEY)  # the answer itself is signed
        view = await ledger.card(pan)
        assert (view.posted, view.transactions) == (0, [])
        good = await send_fields(clients, fields)  # nothing was remembered: it goes through
        assert good.response.response_code == "00" and not good.response.repeat


async def test_refund_reverse_and_orderquery(redis_url):
    async with policy_switch(redis_url) as (_, ledger, clients):
        pan = await make_card(ledger, limit_fen=100_000)
        sale = await clients.send("wechat", pan, amount_fen=10_000)
        order = sale.correlation_id

        async def state() -> dict[str, str]:
            return (await clients.send("wechat", pan, C.INQUIRY, 0, original=order)).fields

        assert (await state())["trade_state"] == "SUCCESS"
        refund = await clients.send("wechat", pan, C.REFUND, 2_500, original=order)
        assert (refund.fields["result_code"], refund.fields["refund_fee"]) == ("SUCCESS", "2500")
        assert refund.fields["transaction_id"] == sale.fields["transaction_id"]
        assert (await state())["trade_state"] == "REFUND"
        # a refunded order is not reversed; a fresh one is, once
        assert (await clients.send("wechat", pan, C.REVERSAL, 0, original=order)).fields[
            "err_code"] == "TRADE_ERROR"
        other = await clients.send("wechat", pan, amount_fen=3_000)
        reverse = await clients.send("wechat", pan, C.REVERSAL, 0, original=other.correlation_id)
        assert (reverse.fields["result_code"], reverse.fields["recall"]) == ("SUCCESS", "N")
        assert reverse.response.approved_fen == 3_000
        gone = await clients.send("wechat", pan, C.INQUIRY, 0, original=other.correlation_id)
        assert gone.fields["trade_state"] == "REVOKED"
        unknown = await clients.send("wechat", pan, C.INQUIRY, 0, original=new_ref())
        assert (unknown.fields["err_code"], unknown.response.response_code) == (
            "ORDERNOTEXIST", "25")
        view = await ledger.card(pan)
        assert (view.posted, view.pending_credit) == (10_000, 2_500)


async def test_declines_and_their_err_codes(redis_url):
    async with policy_switch(redis_url) as (_, ledger, clients):
        pan = await make_card(ledger, limit_fen=10_000)
        short = await clients.send("wechat", pan, amount_fen=10_001)
        assert (short.fields["err_code"], short.response.reason) == (
            "NOTENOUGH", "insufficient_open_to_buy")
        gambling = await clients.send("wechat", pan, amount_fen=100, mcc="7995")
        assert (gambling.fields["err_code"], gambling.response.reason) == (
            "TRADE_ERROR", "mcc_blocked:7995")
        lost = await make_card(ledger, status="lost")
        answer = await clients.send("wechat", lost, amount_fen=100)
        assert (answer.fields["err_code"], answer.response.response_code) == (
            "NOTSUPORTCARD", "41")
        no_credit = await send_fields(clients, micropay_fields(pan, 100, limit_pay="no_credit"))
        assert (no_credit.fields["err_code"], no_credit.response.response_code,
                no_credit.response.reason) == ("NOTSUPORTCARD", "58", "limit_pay_no_credit")
        missing = micropay_fields(pan, 100)
        del missing["spbill_create_ip"]
        lack = await send_fields(clients, missing)
        assert (lack.fields["err_code"], lack.response.response_code) == ("LACK_PARAMS", "30")
        assert (await ledger.card(pan)).posted == 0


async def test_the_merchants_category_applies_when_the_request_names_none(redis_url):
    casino = "1900000777"
    config = Config(listeners={"wechat": Listener(port=0)}, wechat=Wechat(merchants={
        DEMO_WECHAT_MCH_ID: WechatMerchant(key=DEMO_WECHAT_KEY, mcc="5411"),
        casino: WechatMerchant(key="casino-key", mcc="7995")}))
    async with policy_switch(redis_url, config=config, channels=("wechat",)) as (
            switch, ledger, clients):
        pan = await make_card(ledger, limit_fen=10_000)
        casino_client = await PipeClient.connect(switch.ports["wechat"], ClientCodec(
            wechat.WechatCodec.header, None,
            lambda body: wechat.decode_response(body, b"casino-key"), None))
        try:
            fields = micropay_fields(pan, 100, mch_id=casino, mcc="")
            answer = await casino_client.send_body(fields["nonce_str"], wechat.to_xml(
                wechat.signed(fields, b"casino-key")))
        finally:
            await casino_client.close()
        assert (answer.response.response_code, answer.response.reason) == (
            "57", "mcc_blocked:7995")
        shop = await send_fields(clients, micropay_fields(pan, 100, mcc=""))
        assert shop.response.response_code == "00"


async def test_hostile_xml_is_refused_and_the_connection_stays_usable(redis_url):
    async with policy_switch(redis_url) as (switch, ledger, _):
        # A request nobody can be named for gets an unsigned answer, which a client holding a
        # key refuses: this one reads without a key, and checks the good answer's sign itself.
        client = await PipeClient.connect(switch.ports["wechat"], ClientCodec(
            wechat.WechatCodec.header, None, wechat.decode_response, None))
        try:
            laughs = (b'<!DOCTYPE xml [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;">]>'
                      b"<xml><nonce_str>&b;</nonce_str></xml>")
            answer = (await client.send_body("", laughs)).fields  # no nonce_str to echo
            assert (answer["return_code"], answer["iso_code"]) == ("FAIL", "30")
            assert "DOCTYPE" in answer["return_msg"]
            pan = await make_card(ledger, limit_fen=10_000)
            fields = micropay_fields(pan, 100)
            good = await client.send_body(fields["nonce_str"],
                                          wechat.to_xml(wechat.signed(fields, KEY)))
        finally:
            await client.close()
        assert good.response.response_code == "00"
        assert wechat.decode_response(wechat.to_xml(good.fields), KEY).response == good.response


# --- MD5 and refundquery, through the embeddable switch's client (`switch send`'s builder) ------

async def test_an_md5_micropay_is_approved_and_answered_md5(baitiao_switch):
    pan = await baitiao_switch.new_card(limit_fen=100_000)
    sale = await baitiao_switch.send("wechat", pan, amount=12_800, sign_type="MD5")
    # The client checked the answer's MD5 signature with the merchant's key (it raises else).
    assert (sale.fields["result_code"], sale.response.approved_fen) == ("SUCCESS", 12_800)
    assert len(sale.fields["sign"]) == 32
    assert sale.fields["sign"] == wechat.sign(sale.fields, KEY, "MD5")
    assert (await baitiao_switch.card(pan)).posted == 12_800


async def test_a_merchant_set_to_hmac_only_refuses_md5_and_changes_nothing(redis_url):
    merchant = WechatMerchant(key=DEMO_WECHAT_KEY, sign_types=["HMAC-SHA256"])
    config = Config(listeners={"wechat": Listener(port=0)},
                    wechat=Wechat(merchants={DEMO_WECHAT_MCH_ID: merchant}))
    async with testing.start(config, redis_url=redis_url) as switch:
        pan = await switch.new_card(limit_fen=100_000)
        refused = await switch.send("wechat", pan, amount=100, sign_type="MD5")
        assert (refused.fields["err_code"], refused.response.response_code) == (
            "PARAM_ERROR", "30")
        assert "sign_type must be HMAC-SHA256" in refused.response.reason
        assert (await switch.card(pan)).posted == 0
        taken = await switch.send("wechat", pan, amount=100, sign_type="HMAC-SHA256")
        assert taken.response.response_code == "00"


async def test_refundquery_lists_the_orders_refunds_as_the_ledger_holds_them(baitiao_switch):
    pan = await baitiao_switch.new_card(limit_fen=100_000)
    sale = await baitiao_switch.send("wechat", pan, amount=10_000)
    order = sale.correlation_id
    none_yet = await baitiao_switch.send("wechat", pan, type="refundquery", original=order)
    assert (none_yet.fields["result_code"], none_yet.fields["err_code"]) == (
        "FAIL", "REFUNDNOTEXIST")
    first = await baitiao_switch.send("wechat", pan, type="refund", amount=3_000,
                                      original=order)
    second = await baitiao_switch.send("wechat", pan, type="refund", amount=2_000,
                                       original=order, sign_type="MD5")
    assert first.response.approved_fen == 3_000 and second.response.approved_fen == 2_000

    every = (await baitiao_switch.send("wechat", pan, type="refundquery", original=order,
                                       sign_type="MD5")).fields
    assert (every["result_code"], every["refund_count"], every["refund_fee"],
            every["total_fee"]) == ("SUCCESS", "2", "5000", "10000")
    assert [every[f"out_refund_no_{n}"] for n in (0, 1)] == [first.correlation_id,
                                                            second.correlation_id]
    assert [every[f"refund_fee_{n}"] for n in (0, 1)] == ["3000", "2000"]
    assert every["refund_id_0"] == first.fields["refund_id"]
    assert every["transaction_id"] == sale.fields["transaction_id"]
    assert every["refund_status_1"] == "SUCCESS"

    one = (await baitiao_switch.send("wechat", pan, type="refundquery", original=order,
                                     refund=second.correlation_id)).fields
    assert (one["refund_count"], one["out_refund_no_0"], one["refund_fee_0"]) == (
        "1", second.correlation_id, "2000")
    unknown = await baitiao_switch.send("wechat", pan, type="refundquery", original="NOORDER")
    assert (unknown.fields["err_code"], unknown.response.response_code) == (
        "REFUNDNOTEXIST", "25")
    view = await baitiao_switch.card(pan)  # the queries changed nothing
    assert (view.posted, view.pending_credit) == (10_000, 5_000)
