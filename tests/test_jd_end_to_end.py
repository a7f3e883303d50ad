"""Every JD message class over real TCP against a real switch and a real Redis."""

from __future__ import annotations

from protocols.messages import MessageClass as C
from switch import testing
from tests.support import JdClient, jd_request, make_card


async def test_sale_reverse_restores_open_to_buy(jd_switch):
    switch, ledger = jd_switch
    pan = await make_card(ledger, limit_fen=100_000)
    client = await JdClient.connect(switch.ports["jd"])
    try:
        sale = await client.send(jd_request(pan, C.SALE, 12_800))
        assert sale.response.response_code == "00"
        assert sale.fields["code"] == "000000"
        assert sale.response.open_to_buy_fen == 100_000 - 12_800
        assert len(sale.response.auth_id) == 6
        reverse = await client.send(jd_request(pan, C.REVERSAL, 0, original=sale.correlation_id))
        assert reverse.response.response_code == "00"
        assert reverse.response.open_to_buy_fen == 100_000
        view = await ledger.card(pan)
        assert (view.posted, view.held, view.open_to_buy) == (0, 0, 100_000)
        assert view.transactions[0].state == "reversed"
    finally:
        await client.close()


async def test_a_reverse_without_an_amount_reverses_all_that_remains(jd_switch):
    switch, ledger = jd_switch
    pan = await make_card(ledger, limit_fen=100_000)
    client = await JdClient.connect(switch.ports["jd"])
    try:
        auth = await client.send(jd_request(pan, C.AUTH, 5_000))
        assert auth.response.response_code == "00"
        reverse = await client.send(jd_request(pan, C.REVERSAL, 0, original=auth.correlation_id),
                                    amount="")
        assert reverse.response.response_code == "00"
        assert reverse.response.approved_fen == 5_000
        view = await ledger.card(pan)
        assert (view.held, view.open_to_buy) == (0, 100_000)
        # A capture still needs its amount: only the reversal may leave it out.
        sale = await client.send(jd_request(pan, C.AUTH, 3_000))
        capture = await client.send(jd_request(pan, C.CAPTURE, 0, original=sale.correlation_id),
                                    amount="")
        assert (capture.response.response_code, capture.fields["code"]) == ("30", "PARA01")
    finally:
        await client.close()


# --- a card bound to a JD user ------------------------------------------------------------------

OWNER, OTHER = "jd_user_42", "jd_user_7"


def decision(answer) -> tuple[str, str, str, int]:
    return (answer.fields["code"], answer.response.response_code, answer.response.reason,
            answer.response.open_to_buy_fen)


async def test_a_card_bound_to_a_jd_user_serves_that_user_only(redis_url):
    async with testing.start(redis_url=redis_url) as switch:
        ledger = switch.ledger
        pan = await switch.new_card(limit_fen=100_000)
        await ledger.set_card(pan, jd_user=OWNER)
        expiry = (await switch.card(pan)).expiry
        client = await JdClient.connect(switch.ports["jd"])
        try:
            other = await client.send(jd_request(pan, C.SALE, 1_000), userId=OTHER)
            assert decision(other) == ("RISK01", "57", "user_card_mismatch", 0)  # no balance
            own = await client.send(jd_request(pan, C.SALE, 1_000), userId=OWNER)
            assert decision(own) == ("000000", "00", "", 99_000)
            unnamed = await client.send(jd_request(pan, C.SALE, 1_000))  # a payment may
            assert unnamed.response.response_code == "00"  # leave the user out
            reverse = jd_request(pan, C.REVERSAL, 0, mcc="", original=own.correlation_id)
            assert decision(await client.send(reverse, userId=OTHER))[1:3] == (
                "57", "user_card_mismatch")
            order = jd_request(pan, C.INQUIRY, 0, mcc="", original=own.correlation_id)
            assert decision(await client.send(order, userId=OTHER))[1:3] == (
                "57", "user_card_mismatch")
            order = jd_request(pan, C.INQUIRY, 0, mcc="", original=own.correlation_id)
            assert (await client.send(order)).response.state == "captured"  # no user: fine

            def balance():
                return jd_request(pan, C.INQUIRY, 0, mcc="", expiry=expiry)
            assert decision(await client.send(balance())) == (
                "RISK01", "57", "user_required", 0)
            assert decision(await client.send(balance(), userId=OTHER)) == (
                "RISK01", "57", "user_card_mismatch", 0)
            assert decision(await client.send(balance(), userId=OWNER)) == (
                "000000", "00", "", 98_000)
            # Other channels name no JD user: the binding is JD's.
            assert (await switch.send("wechat", pan, amount=500)).response.response_code == "00"
            assert (await switch.card(pan)).posted == 2_500  # the refused changed nothing

            await ledger.set_card(pan, jd_user="")  # unbound: any user, and no user, again
            assert (await client.send(jd_request(pan, C.SALE, 100), userId=OTHER)
                    ).response.response_code == "00"
            assert (await client.send(balance())).response.response_code == "00"
        finally:
            await client.close()

