"""Every JD message class over real TCP against a real switch and a real Redis."""

from __future__ import annotations

from protocols.messages import MessageClass as C
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
