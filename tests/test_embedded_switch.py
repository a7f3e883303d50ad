"""The embeddable switch (switch/testing.py) and its pytest fixture, as a tester's suite uses
them: every channel over real TCP, repeats, the card as the ledger has it."""

from __future__ import annotations

import pytest

from switch import testing
from switch.config import Config, Listener


async def test_the_fixture_runs_a_switch_on_a_private_redis(baitiao_switch):
    assert baitiao_switch.redis_url != ""
    pan = await baitiao_switch.new_card(limit_fen=100_000)
    sale = await baitiao_switch.send("jd", pan, amount=12_800, mcc="5411")
    assert sale.response.response_code == "00" and sale.response.beans == 640
    refund = await baitiao_switch.send("jd", pan, type="refund", amount=12_800,
                                       original=sale.correlation_id, lightning=True)
    assert refund.response.response_code == "00"
    assert (await baitiao_switch.card(pan)).open_to_buy == 100_000


@pytest.mark.parametrize("channel", ["jd", "wechat", "pos", "xpay"])
async def test_every_channel_sells_and_a_repeat_gets_the_first_answer(redis_url, channel):
    async with testing.start(redis_url=redis_url) as switch:
        pan = await switch.new_card(limit_fen=50_000)
        sale = await switch.send(channel, pan, amount=1_000, mcc="5411")
        assert sale.response.response_code == "00", sale.response
        again = await switch.repeat(sale)
        assert again.correlation_id == sale.correlation_id
        assert again.response.approved_fen == sale.response.approved_fen == 1_000
        view = await switch.card(pan)
        assert (view.posted, view.open_to_buy) == (1_000, 49_000)


async def test_a_config_chooses_the_channels(redis_url):
    config = Config(listeners={"pos": Listener(port=0)})
    async with testing.start(config, redis_url=redis_url) as switch:
        assert set(switch.ports) == {"pos"}
        lost = await switch.new_card(limit_fen=50_000, status="lost")
        answer = await switch.send("pos", lost, amount=100, mcc="5411")
        assert answer.response.response_code == "41"


async def test_fresh_cards_never_share_a_number(redis_url):
    async with testing.start(redis_url=redis_url) as switch:
        pans = {await switch.new_card(limit_fen=1) for _ in range(20)}
    assert len(pans) == 20
