"""Each rule type over real TCP, through the JD and the WeChat channels, on a real Redis.

Time-driven rules (velocity windows, daily caps, hold expiry) run on a FakeClock handed to
the ledger, so the tests move time instead of sleeping.
"""

from __future__ import annotations

import pytest

from protocols.cardnumbers import luhn_valid
from protocols.messages import MessageClass as C
from switch.clock import DAY_MS
from switch.ledger import upgrade_pan
from tests.support import FakeClock, make_card
from tests.test_policy_support import CHANNELS, T0_MS, code_and_reason, policy_switch

GROUPS = """
[mcc_groups]
gambling = ["7995", "7800-7802"]
cash = ["6010", "6011"]
luxury = ["5944"]
tech = ["5732"]
cars = ["5511-5599"]
"""


@pytest.mark.parametrize("channel", CHANNELS)
async def test_default_policy_blocks_gambling_and_cash_and_approves_a_purchase(redis_url,
                                                                               channel):
    async with policy_switch(redis_url) as (_, ledger, clients):
        pan = await make_card(ledger, limit_fen=100_000)
        for mcc in ("7995", "7801", "6010", "6011", "6051", "4829", "1520", "6211"):
            answer = await clients.send(channel, pan, amount_fen=100, mcc=mcc)
            assert code_and_reason(answer) == ("57", f"mcc_blocked:{mcc}")
        ok = await clients.send(channel, pan, amount_fen=12_800, mcc="5411")
        assert code_and_reason(ok) == ("00", "")
        assert ok.response.open_to_buy_fen == 100_000 - 12_800
        view = await ledger.card(pan)
        assert (view.posted, len(view.transactions)) == (12_800, 1)


MCC_AND_CHANNEL_POLICY = GROUPS + """
[[mcc_block]]
id = "gambling"
groups = ["gambling"]
code = "57"
[[mcc_cap]]
id = "luxury"
groups = ["luxury"]
per_transaction_max_fen = 5000
[channels.jd]
classes = ["sale", "reversal"]
class_decline_code = "12"
per_transaction_max_fen = 9000
[channels.wechat]
classes = ["sale", "refund", "inquiry"]
class_decline_code = "57"
per_transaction_max_fen = 7000
"""


async def test_mcc_caps_and_channel_rules_on_both_channels(redis_url):
    async with policy_switch(redis_url, MCC_AND_CHANNEL_POLICY) as (_, ledger, clients):
        pan = await make_card(ledger, limit_fen=100_000)
        for channel in CHANNELS:
            assert code_and_reason(await clients.send(channel, pan, amount_fen=5000,
                                                      mcc="5944")) == ("00", "")
            assert code_and_reason(await clients.send(channel, pan, amount_fen=5001,
                                                      mcc="5944")) == ("61", "mcc_cap:luxury")
        assert code_and_reason(await clients.send("jd", pan, amount_fen=9001)) == (
            "61", "channel_cap:jd")
        assert code_and_reason(await clients.send("wechat", pan, amount_fen=7001)) == (
            "61", "channel_cap:wechat")
        # JD may not pre-authorize here (12); WeChat may not reverse (57)
        assert code_and_reason(await clients.send("jd", pan, C.AUTH, 100)) == (
            "12", "channel_class:jd")
        sale = await clients.send("wechat", pan, amount_fen=300)
        reverse = await clients.send("wechat", pan, C.REVERSAL, 0,
                                     original=sale.correlation_id)
        assert code_and_reason(reverse) == ("57", "channel_class:wechat")
        assert reverse.fields["err_code"] == "TRADE_ERROR"
        view = await ledger.card(pan)
        assert view.posted == 5000 + 5000 + 300  # nothing declined moved money


VELOCITY_POLICY = GROUPS + """
[[velocity]]
id = "burst"
window_s = 10
buckets = 10
count_max = 3
[[velocity]]
id = "tech_hour"
window_s = 3600
buckets = 6
amount_max_fen = 10000
groups = ["tech"]
"""


@pytest.mark.parametrize("channel", CHANNELS)
async def test_velocity_count_window_slides_with_the_clock(redis_url, channel):
    clock = FakeClock(T0_MS)
    async with policy_switch(redis_url, VELOCITY_POLICY, clock) as (_, ledger, clients):
        pan = await make_card(ledger, limit_fen=100_000)
        for _ in range(3):
            assert code_and_reason(await clients.send(channel, pan, amount_fen=100))[0] == "00"
            clock.advance(2)  # t = 0, 2, 4 s
        assert code_and_reason(await clients.send(channel, pan, amount_fen=100)) == (
            "65", "velocity_count:burst")
        clock.advance(4.999)  # t = 10.999 s: the approval at 0 s has left the window
        assert code_and_reason(await clients.send(channel, pan, amount_fen=100))[0] == "00"
        assert code_and_reason(await clients.send(channel, pan, amount_fen=100)) == (
            "65", "velocity_count:burst")
        view = await ledger.card(pan)
        assert view.posted == 400  # declines count nothing and post nothing


@pytest.mark.parametrize("channel", CHANNELS)
async def test_velocity_amount_per_mcc_group_counts_approvals_only(redis_url, channel):
    clock = FakeClock(T0_MS)
    async with policy_switch(redis_url, VELOCITY_POLICY, clock) as (_, ledger, clients):
        pan = await make_card(ledger, limit_fen=100_000)

        async def tech(amount: int) -> tuple[str, str]:
            clock.advance(11)  # keep clear of the burst rule
            return code_and_reason(await clients.send(channel, pan, amount_fen=amount,
                                                      mcc="5732"))

        assert await tech(6000) == ("00", "")
        assert await tech(4001) == ("61", "velocity_amount:tech_hour")
        clock.advance(11)
        other = await clients.send(channel, pan, amount_fen=50_000, mcc="5812")
        assert code_and_reason(other) == ("00", "")  # another group: not counted
        await ledger.set_card(pan, limit_fen=57_000)
        assert await tech(3000) == ("51", "insufficient_open_to_buy")  # a decline counts nothing
        await ledger.set_card(pan, limit_fen=100_000)
        assert await tech(4000) == ("00", "")  # 10,000 fen of tech this hour: the maximum
        assert await tech(1) == ("61", "velocity_amount:tech_hour")
        clock.advance(3600)
        assert await tech(9000) == ("00", "")


DAILY_POLICY = """
[channels.jd]
daily_max_fen = 10000
[channels.wechat]
daily_max_fen = 5000
"""


async def test_channel_daily_caps_follow_the_beijing_day(redis_url):
    # 23:59:30 in Beijing (15:59:30 UTC)
    clock = FakeClock(T0_MS + (3 * 3600 + 59 * 60 + 30) * 1000)
    async with policy_switch(redis_url, DAILY_POLICY, clock) as (_, ledger, clients):
        pan = await make_card(ledger, limit_fen=100_000)
        assert code_and_reason(await clients.send("jd", pan, amount_fen=9000))[0] == "00"
        assert code_and_reason(await clients.send("jd", pan, amount_fen=1001)) == (
            "61", "channel_daily:jd")
        assert code_and_reason(await clients.send("wechat", pan, amount_fen=5000))[0] == "00"
        assert code_and_reason(await clients.send("wechat", pan, amount_fen=1)) == (
            "61", "channel_daily:wechat")
        clock.advance(30)  # midnight in Beijing: a new day for both caps
        assert code_and_reason(await clients.send("jd", pan, amount_fen=10000))[0] == "00"
        assert code_and_reason(await clients.send("wechat", pan, amount_fen=5000))[0] == "00"


@pytest.mark.parametrize("channel", CHANNELS)
async def test_card_lifecycle_declines(redis_url, channel):
    async with policy_switch(redis_url) as (_, ledger, clients):
        cases = {
            "active": ("00", ""),
            "inactive": ("62", "card_not_activated"),
            "frozen": ("62", "card_frozen"),
            "lost": ("41", "card_lost"),
            "stolen": ("43", "card_stolen"),
            "expired": ("54", "card_expired"),
        }
        for status, expected in cases.items():
            pan = await make_card(ledger, status=status)
            assert code_and_reason(await clients.send(channel, pan, amount_fen=100)) == expected
        old = await make_card(ledger, expiry="2510")
        assert code_and_reason(await clients.send(channel, old, amount_fen=100)) == (
            "54", "card_expired")
        # the card checks come before any merchant rule
        lost = await make_card(ledger, status="lost")
        assert code_and_reason(await clients.send(channel, lost, amount_fen=100,
                                                  mcc="7995")) == ("41", "card_lost")


async def test_partial_approval_on_jd_and_none_on_wechat(redis_url):
    async with policy_switch(redis_url) as (_, ledger, clients):
        pan = await make_card(ledger, limit_fen=5000)
        partial = await clients.send("jd", pan, amount_fen=8000, partial_ok=True)
        assert (partial.response.response_code, partial.response.approved_fen) == ("10", 5000)
        assert partial.fields["code"] == "000010"
        other = await make_card(ledger, limit_fen=5000)
        short = await clients.send("wechat", other, amount_fen=8000)
        assert code_and_reason(short) == ("51", "insufficient_open_to_buy")
        assert (short.fields["result_code"], short.fields["err_code"]) == ("FAIL", "NOTENOUGH")
        assert (await ledger.card(other)).posted == 0


HOLDS_POLICY = """
[holds]
expiry_days = 2
capture_tolerance_percent = 15
"""


async def test_holds_expire_after_the_configured_days_and_give_credit_back(redis_url):
    clock = FakeClock(T0_MS)
    async with policy_switch(redis_url, HOLDS_POLICY, clock) as (_, ledger, clients):
        pan = await make_card(ledger, limit_fen=50_000)
        auth = await clients.send("jd", pan, C.AUTH, 20_000)
        assert auth.response.open_to_buy_fen == 30_000
        view = await ledger.card(pan)
        assert view.transactions[0].expires_ms == T0_MS + 2 * DAY_MS
        clock.advance(2 * 24 * 3600 - 0.001)
        assert (await clients.send("jd", pan, C.INQUIRY, 0)).response.open_to_buy_fen == 30_000
        clock.advance(0.001)  # the deadline: the hold lapses
        assert (await clients.send("jd", pan, C.INQUIRY, 0)).response.open_to_buy_fen == 50_000
        view = await ledger.card(pan)
        assert (view.held, view.transactions[0].state, view.transactions[0].hold) == (
            0, "expired", 0)
        late = await clients.send("jd", pan, C.CAPTURE, 20_000, original=auth.correlation_id)
        assert code_and_reason(late) == ("12", "original_already_expired")
        again = await clients.send("jd", pan, C.REVERSAL, 0, original=auth.correlation_id)
        assert code_and_reason(again) == ("12", "original_already_expired")
        assert (await ledger.card(pan)).open_to_buy == 50_000


async def test_card_show_expires_due_holds_too(redis_url):
    clock = FakeClock(T0_MS)
    async with policy_switch(redis_url, HOLDS_POLICY, clock) as (_, ledger, clients):
        pan = await make_card(ledger, limit_fen=50_000)
        await clients.send("jd", pan, C.AUTH, 20_000)
        clock.advance(2 * 24 * 3600)
        view = await ledger.card(pan)
        assert (view.held, view.open_to_buy, view.transactions[0].state) == (
            0, 50_000, "expired")


async def test_capture_may_pass_the_hold_by_the_tolerance_only(redis_url):
    async with policy_switch(redis_url, HOLDS_POLICY) as (_, ledger, clients):
        pan = await make_card(ledger, limit_fen=50_000)
        first = await clients.send("jd", pan, C.AUTH, 10_000)
        over = await clients.send("jd", pan, C.CAPTURE, 11_501, original=first.correlation_id)
        assert code_and_reason(over) == ("13", "capture_exceeds_hold")
        ok = await clients.send("jd", pan, C.CAPTURE, 11_500, original=first.correlation_id)
        assert (ok.response.response_code, ok.response.approved_fen) == ("00", 11_500)
        assert ok.response.open_to_buy_fen == 50_000 - 11_500
        # the part above the hold needs open-to-buy
        tight = await make_card(ledger, limit_fen=10_000)
        auth = await clients.send("jd", tight, C.AUTH, 9_500)
        short = await clients.send("jd", tight, C.CAPTURE, 10_500, original=auth.correlation_id)
        assert code_and_reason(short) == ("51", "insufficient_open_to_buy")
        view = await ledger.card(tight)
        assert (view.posted, view.held) == (0, 9_500)


async def test_beans_five_times_on_jd_none_for_no_points_and_taken_back(redis_url):
    async with policy_switch(redis_url) as (_, ledger, clients):
        pan = await make_card(ledger, limit_fen=1_000_000)
        jd_sale = await clients.send("jd", pan, amount_fen=12_345)
        assert jd_sale.response.beans == 5 * 123
        wx_sale = await clients.send("wechat", pan, amount_fen=12_345)
        assert wx_sale.response.beans == 123
        assert wx_sale.fields["beans"] == "123"
        car = await clients.send("jd", pan, amount_fen=500_000, mcc="5511")
        assert (car.response.response_code, car.response.beans) == ("00", 0)
        assert (await ledger.card(pan)).beans == 615 + 123
        refund = await clients.send("jd", pan, C.REFUND, 5_000, original=jd_sale.correlation_id)
        assert refund.response.beans == 5 * 73 - 615  # beans follow what stays posted
        reverse = await clients.send("wechat", pan, C.REFUND, 12_345,
                                     original=wx_sale.correlation_id)
        assert reverse.response.beans == -123
        assert (await ledger.card(pan)).beans == 5 * 73
        auth = await clients.send("jd", pan, C.AUTH, 10_000)
        assert auth.response.beans == 0  # a hold earns nothing until it is captured
        capture = await clients.send("jd", pan, C.CAPTURE, 8_000, original=auth.correlation_id)
        assert capture.response.beans == 5 * 80
        void = await clients.send("jd", pan, C.REVERSAL, 0, original=jd_sale.correlation_id)
        assert code_and_reason(void)[0] == "12"  # refunded sales are not voided
        assert (await ledger.card(pan)).beans == 5 * 73 + 5 * 80


async def test_upgrade_creates_a_card_at_once_and_it_pays_through_wechat(redis_url):
    async with policy_switch(redis_url) as (_, ledger, clients):
        account = f"jd_user_{T0_MS % 997}_{id(clients)}"
        taken = upgrade_pan(account, 0)  # someone else's card has the first candidate
        await ledger.set_card(taken, limit_fen=1, expiry="3012")
        pan, created = await ledger.upgrade(account, 2_000_000)
        assert created and pan == upgrade_pan(account, 1)
        assert pan.startswith("62") and len(pan) == 16 and luhn_valid(pan)
        assert await ledger.upgrade(account, 5) == (pan, False)  # the same card, unchanged
        view = await ledger.card(pan)
        assert (view.limit, view.status, view.account) == (2_000_000, "active", account)
        sale = await clients.send("wechat", pan, amount_fen=30_000)
        assert sale.response.open_to_buy_fen == 2_000_000 - 30_000
        with pytest.raises(ValueError, match="account must be"):
            await ledger.upgrade("no spaces", 100)
        with pytest.raises(ValueError, match="limit must be"):
            await ledger.upgrade(account + "x", 0)
