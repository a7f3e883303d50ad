"""Ids unique in the scope each channel defines, and a balance inquiry that proves its card:
over real TCP against a real switch and a real Redis (and the ledger's two calls, claim and
card, taken apart where a crash could separate them)."""

from __future__ import annotations

import pytest

from protocols.demo import DEMO_JD_MERCHANT, DEMO_POS_MAC
from protocols.ledger_layout import claim_key
from protocols.messages import AuthRequest
from protocols.messages import MessageClass as C
from switch.config import Terminal
from switch.ledger import Ledger
from tests.support import CARD_EXPIRY, JdClient, jd_request, make_card, running_switch
from tests.test_policy_support import policy_switch, request
from tests.test_pos_support import (
    ACQUIRER,
    ask,
    financial,
    iso_config,
    new_f7,
    new_stan,
)


async def books(ledger: Ledger, pan: str) -> tuple[int, int, int]:
    view = await ledger.card(pan)
    return view.posted, view.held, len(view.transactions)


# --- JD: merchant + tradeNum ------------------------------------------------------------------


async def test_a_jd_trade_number_reused_with_another_card_is_94_and_changes_nothing(jd_switch):
    switch, ledger = jd_switch
    first, other = (await make_card(ledger, limit_fen=100_000),
                    await make_card(ledger, limit_fen=100_000))
    client = await JdClient.connect(switch.ports["jd"])
    try:
        sale = await client.send(jd_request(first, C.SALE, 5_000))
        assert sale.response.response_code == "00"
        trade = sale.correlation_id
        for kind in (C.SALE, C.AUTH):  # the same content on another card, and another type
            reused = await client.send(jd_request(other, kind, 5_000, txn_ref=trade))
            assert (reused.response.response_code, reused.fields["code"]) == ("94", "TRAD03")
            assert reused.response.reason == "duplicate_id_other_card"
            assert reused.response.open_to_buy_fen == 0  # nothing shown of either card
        assert await books(ledger, other) == (0, 0, 0)
        assert await books(ledger, first) == (5_000, 0, 1)
        # The exact repeat still gets the first answer; other content on the card is 94.
        again = await client.send(jd_request(first, C.SALE, 5_000, txn_ref=trade))
        assert again.response.repeat and again.response.auth_id == sale.response.auth_id
        changed = await client.send(jd_request(first, C.SALE, 4_000, txn_ref=trade))
        assert (changed.response.response_code, changed.response.reason) == (
            "94", "duplicate_key_mismatch")
        assert await books(ledger, first) == (5_000, 0, 1)
    finally:
        await client.close()


async def test_a_claim_whose_card_call_never_ran_lets_the_honest_repeat_through(jd_switch):
    """The switch stopped between the claim and the card's call: the claim names the card and
    nothing else happened. The repeat (same card) is decided; another card is still 94."""
    switch, ledger = jd_switch
    pan, other = (await make_card(ledger, limit_fen=100_000),
                  await make_card(ledger, limit_fen=100_000))
    sent = jd_request(pan, C.SALE, 2_500)
    as_read = AuthRequest(message_class=C.SALE, channel="jd", card=pan, amount_fen=2_500,
                          idempotency_key=f"jd:{DEMO_JD_MERCHANT}:{sent.txn_ref}")
    assert await ledger._claim(as_read) == 1  # the first half of the protocol, alone
    assert await ledger.client.get(claim_key(as_read.idempotency_key)) == pan
    assert await books(ledger, pan) == (0, 0, 0)
    client = await JdClient.connect(switch.ports["jd"])
    try:
        answer = await client.send(sent)
        assert answer.response.response_code == "00" and not answer.response.repeat
        assert await books(ledger, pan) == (2_500, 0, 1)
        reused = await client.send(jd_request(other, C.SALE, 2_500, txn_ref=sent.txn_ref))
        assert reused.response.response_code == "94"
        assert await books(ledger, other) == (0, 0, 0)
    finally:
        await client.close()


async def test_a_voided_attempt_is_decided_afresh_on_its_card_only(ledger):
    """A void takes back the card's call, not the claim: the repeat on the same card is
    decided afresh; the id on another card is still 94."""
    pan, other = await make_card(ledger, limit_fen=10_000), await make_card(ledger,
                                                                             limit_fen=10_000)
    key = f"jd:m1:V{pan}"
    auth = AuthRequest(message_class=C.AUTH, channel="jd", card=pan, amount_fen=3_000,
                       mcc="5411", txn_ref=key, idempotency_key=key)
    first = await ledger.execute(auth, "111111")
    assert first.response_code == "00"
    assert await ledger.void(pan, key, "111111") == "voided"
    again = await ledger.execute(auth, "222222")
    assert (again.response_code, again.auth_id, again.repeat) == ("00", "222222", False)
    assert (await ledger.card(pan)).held == 3_000
    elsewhere = await ledger.execute(AuthRequest(
        message_class=C.AUTH, channel="jd", card=other, amount_fen=3_000, mcc="5411",
        txn_ref=key, idempotency_key=key), "333333")
    assert (elsewhere.response_code, elsewhere.reason) == ("94", "duplicate_id_other_card")
    assert await books(ledger, other) == (0, 0, 0)


async def test_an_advice_whose_id_another_card_holds_is_a_conflict(ledger):
    pan, other = await make_card(ledger, limit_fen=10_000), await make_card(ledger,
                                                                             limit_fen=10_000)
    key = f"jd:m1:A{pan}"
    made = dict(message_class=C.SALE, channel="jd", amount_fen=1_000, mcc="5411", txn_ref=key,
                idempotency_key=key)
    assert (await ledger.execute(AuthRequest(card=pan, **made), "111111")).approved
    outcome = await ledger.advise(AuthRequest(card=other, **made), "222222", 1_000, "adv1")
    assert outcome == "conflict"
    assert await books(ledger, other) == (0, 0, 0)


# --- WeChat: mch_id + out_trade_no --------------------------------------------------------------


async def test_a_wechat_out_trade_no_reused_with_another_card_is_94(redis_url):
    async with policy_switch(redis_url) as (_, ledger, clients):
        pan, other = (await make_card(ledger, limit_fen=100_000),
                      await make_card(ledger, limit_fen=100_000))
        first = await clients.send("wechat", pan, amount_fen=1_200)
        assert first.fields["iso_code"] == "00"
        wechat = clients.by_channel["wechat"]
        reused = await wechat.send(request("wechat", other, C.SALE, 1_200,
                                           txn_ref=first.correlation_id))
        assert (reused.response.response_code, reused.fields["err_code"]) == (
            "94", "OUT_TRADE_NO_USED")
        assert await books(ledger, other) == (0, 0, 0)
        again = await wechat.send(request("wechat", pan, C.SALE, 1_200,
                                          txn_ref=first.correlation_id))
        assert again.response.repeat and again.fields["err_code"] == "ORDERPAID"
        assert await books(ledger, pan) == (1_200, 0, 1)


# --- POS: acquirer + terminal + STAN + transmission time -----------------------------------------


@pytest.fixture
async def pos(redis_url):
    """The pos listener; the demo acquirer's terminals share one key (its "*" entry)."""
    terminals = [Terminal(acquirer=ACQUIRER, terminal="*", algorithm=DEMO_POS_MAC[0],
                          key=DEMO_POS_MAC[1])]
    config = iso_config(channels=("pos",), terminals=terminals)
    async with running_switch(redis_url, config) as (switch, ledger):
        yield switch.ports["pos"], ledger


async def test_a_pos_stan_and_time_reused_by_the_terminal_with_another_card_is_94(pos):
    port, ledger = pos
    pan, other = (await make_card(ledger, limit_fen=100_000),
                  await make_card(ledger, limit_fen=100_000))
    stan, f7 = new_stan(), new_f7()
    sale = financial("0200", pan, "000000", 3_000, stan=stan, f7=f7)
    first = await ask(port, sale)
    assert first["39"] == "00"
    reused = await ask(port, financial("0200", other, "000000", 3_000, stan=stan, f7=f7))
    assert (reused["39"], reused["44"]) == ("94", "duplicate_id_other_card")
    # Another type under the same STAN and time, on the same card, is 94 too.
    auth = await ask(port, financial("0100", pan, "000000", 3_000, stan=stan, f7=f7))
    assert (auth["39"], auth["44"]) == ("94", "duplicate_key_mismatch")
    assert await books(ledger, other) == (0, 0, 0)
    assert await books(ledger, pan) == (3_000, 0, 1)
    again = await ask(port, sale)
    assert (again["39"], again["38"]) == ("00", first["38"])
    assert await books(ledger, pan) == (3_000, 0, 1)


async def test_the_same_stan_and_time_from_another_terminal_is_its_own_transaction(pos):
    port, ledger = pos
    pan, other = (await make_card(ledger, limit_fen=100_000),
                  await make_card(ledger, limit_fen=100_000))
    stan, f7 = new_stan(), new_f7()
    assert (await ask(port, financial("0200", pan, "000000", 3_000, stan=stan, f7=f7)))[
        "39"] == "00"
    elsewhere = financial("0200", other, "000000", 3_000, stan=stan, f7=f7, terminal="TERM0002")
    assert (await ask(port, elsewhere))["39"] == "00"
    assert await books(ledger, other) == (3_000, 0, 1)


# --- balance inquiries prove the card ------------------------------------------------------------


async def test_a_jd_balance_inquiry_needs_the_cards_expiry(jd_switch):
    switch, ledger = jd_switch
    pan = await make_card(ledger, limit_fen=100_000)
    client = await JdClient.connect(switch.ports["jd"])
    try:
        bare = await client.send(jd_request(pan, C.INQUIRY, 0))
        assert (bare.response.response_code, bare.fields["code"]) == ("30", "PARA01")
        assert bare.response.reason == "card_proof_missing"
        assert bare.response.open_to_buy_fen == 0
        wrong = await client.send(jd_request(pan, C.INQUIRY, 0, expiry="2911"))
        assert (wrong.response.response_code, wrong.response.reason) == ("54", "expiry_mismatch")
        assert wrong.response.open_to_buy_fen == 0
        right = await client.send(jd_request(pan, C.INQUIRY, 0, expiry=CARD_EXPIRY))
        assert (right.response.response_code, right.response.open_to_buy_fen) == ("00", 100_000)
    finally:
        await client.close()


async def test_a_pos_balance_inquiry_needs_f14_or_track_2(pos):
    port, ledger = pos
    pan = await make_card(ledger, limit_fen=100_000)
    bare = await ask(port, financial("0200", pan, "310000", None))
    assert (bare["39"], bare["44"]) == ("30", "card_proof_missing") and "54" not in bare
    wrong = await ask(port, {**financial("0200", pan, "310000", None), "14": "2911"})
    assert (wrong["39"], wrong["44"]) == ("54", "expiry_mismatch") and "54" not in wrong
    right = await ask(port, {**financial("0200", pan, "310000", None), "14": CARD_EXPIRY})
    assert right["39"] == "00" and right["54"] == f"3002156C{100_000:012d}"
    track = await ask(port, financial("0100", pan, "310000", None, track2=True))
    assert track["39"] == "00" and track["54"] == f"3002156C{100_000:012d}"
