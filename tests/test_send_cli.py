"""`switch send` as a newcomer uses it: what it prints for each channel, a wrong key, a card
number typed in full, and `card set` without an expiry."""

from __future__ import annotations

import argparse
import json
import time

from switch.cards import DEMO_EXPIRY
from switch.clock import months_later
from switch.config import Config, Listener
from switch.send import wire_options
from tests.support import SWITCH, make_card, run_command, running_switch

CHANNELS = Config(listeners={"jd": Listener(port=0), "pos": Listener(port=0)})


async def send(port: int, *args: str) -> tuple[int, str, str]:
    return await run_command(SWITCH, "send", "--port", str(port), *args)


async def test_beans_are_shown_only_where_the_channel_says_them(redis_url):
    async with running_switch(redis_url, CHANNELS) as (switch, ledger):
        pan = await make_card(ledger, limit_fen=100_000)
        _, jd, _ = await send(switch.ports["jd"], "--pan", pan, "--amount", "12800",
                              "--mcc", "5411")
        _, pos, _ = await send(switch.ports["pos"], "--channel", "pos", "--pan", pan,
                               "--amount", "12800", "--mcc", "5411")
    assert "APPROVED 00" in jd and "beans +640" in jd
    assert "APPROVED 00" in pos and "beans" not in pos  # ISO 8583 answers carry no beans


async def test_the_undo_hint_of_a_full_card_number_is_one_to_fill_in(redis_url):
    async with running_switch(redis_url, CHANNELS) as (switch, ledger):
        pan = await make_card(ledger, limit_fen=100_000)
        _, out, _ = await send(switch.ports["jd"], "--pan", pan, "--amount", "100",
                               "--mcc", "5411")
    hint = next(line for line in out.splitlines() if "undo with:" in line)
    assert "--pan <card number> --original " in hint  # no masked number the CLI refuses


async def test_the_undo_hint_goes_the_way_the_sale_went_and_undoes_it(redis_url):
    async with running_switch(redis_url, CHANNELS) as (switch, ledger):
        pan = await make_card(ledger, limit_fen=100_000)
        port = switch.ports["pos"]
        _, out, _ = await send(port, "--channel", "pos", "--pan", pan, "--amount", "700",
                               "--mcc", "5411")
        hint = next(line for line in out.splitlines() if "undo with:" in line)
        assert hint.endswith(f" --port {port}")  # not the channel's default port
        undo = hint.split("undo with: switch ")[1].replace("<card number>", pan).split()
        code, out, err = await run_command(SWITCH, *undo)
        assert code == 0 and "APPROVED 00" in out, err
        assert (await ledger.card(pan)).open_to_buy == 100_000


def test_the_undo_hint_repeats_wire_options_given_and_names_secrets_without_them():
    defaults = {"host": "127.0.0.1", "acquirer": "10000", "dialect": "iso87ascii",
                "mac": "on"}
    given = argparse.Namespace(host="10.0.0.7", port=8683, acquirer="10000",
                               dialect="unionpay-pos", mac="on", terminal="T 1",
                               mac_key="00112233445566778899AABBCCDDEEFF", key=None)
    options = wire_options(given, defaults)
    assert options == ("--host 10.0.0.7 --port 8683 --terminal 'T 1' --dialect unionpay-pos "
                       "(and your --mac-key)")
    assert wire_options(argparse.Namespace(**defaults), defaults) == ""


async def test_a_wrong_key_shows_the_switch_decline_and_a_warning(redis_url):
    async with running_switch(redis_url, CHANNELS) as (switch, ledger):
        pan = await make_card(ledger, limit_fen=100_000)
        code, out, err = await send(switch.ports["jd"], "--pan", pan, "--amount", "100",
                                    "--mcc", "5411", "--key", "not-the-key", "--json")
    assert code == 0
    answer = json.loads(out)
    assert (answer["response_code"], answer["wire"]["code"]) == ("63", "SIGN01")
    assert "warning: answer signature does not match" in err


async def test_card_set_makes_a_new_card_good_for_three_years(redis_url):
    code, out, err = await run_command(SWITCH, "card", "set", "6253680000000307", "--limit",
                                       "5000", "--redis", redis_url)
    assert code == 0, err
    assert f"expiry {months_later(time.time_ns() // 1_000_000, 36)}" in out


async def test_pos_partial_approval_and_partial_reversal(redis_url):
    async with running_switch(redis_url, CHANNELS) as (switch, ledger):
        pan = await make_card(ledger, limit_fen=10_000)
        pos = ("--channel", "pos", "--pan", pan, "--mcc", "5411", "--json")
        _, out, _ = await send(switch.ports["pos"], *pos, "--amount", "15000")
        assert json.loads(out)["response_code"] == "51"  # not without --partial
        _, out, _ = await send(switch.ports["pos"], *pos, "--amount", "15000", "--partial")
        sale = json.loads(out)
        assert (sale["response_code"], sale["approved_fen"]) == ("10", 10_000)
        assert sale["wire"]["60"][13] == "1"
        _, out, _ = await send(switch.ports["pos"], *pos, "--type", "reverse", "--amount",
                               "10000", "--remaining", "2500", "--original", sale["id"])
        reversal = json.loads(out)
        assert (reversal["response_code"], reversal["approved_fen"]) == ("00", 7_500)
        assert (await ledger.card(pan)).posted == 2_500
        code, _, err = await send(switch.ports["pos"], *pos, "--type", "reverse", "--amount",
                                  "2500", "--remaining", "2500", "--original", sale["id"])
        assert code != 0 and "above the amount to remain (2500 fen)" in err


async def test_a_balance_inquiry_sends_the_cards_expiry_or_asks_for_it(redis_url):
    """A balance inquiry proves the card (switch/engine.py unproven): a demo card's expiry is
    sent for it; any other card's must be given."""
    async with running_switch(redis_url, CHANNELS) as (switch, ledger):
        pan = await make_card(ledger, limit_fen=100_000, expiry="3105")
        code, _, err = await send(switch.ports["jd"], "--pan", pan, "--type", "inquiry")
        assert code != 0 and "--expiry YYMM" in err
        _, out, _ = await send(switch.ports["pos"], "--channel", "pos", "--pan", pan,
                               "--type", "inquiry", "--expiry", "3105", "--json")
        answer = json.loads(out)
        assert (answer["response_code"], answer["open_to_buy_fen"]) == ("00", 100_000)
        demo = await run_command(SWITCH, "card", "set", "demo2", "--limit", "50000",
                                 "--status", "active", "--expiry", DEMO_EXPIRY,
                                 "--redis", redis_url)
        assert demo[0] == 0, demo
        _, out, _ = await send(switch.ports["jd"], "--pan", "demo2", "--type", "inquiry",
                               "--json")
    assert json.loads(out)["response_code"] == "00"


async def test_wechat_md5_and_refundquery_from_the_command_line(redis_url):
    config = Config(listeners={"wechat": Listener(port=0)})
    async with running_switch(redis_url, config) as (switch, ledger):
        pan = await make_card(ledger, limit_fen=100_000)
        port = switch.ports["wechat"]
        code, out, err = await send(port, "--channel", "wechat", "--pan", pan, "--amount",
                                    "12800", "--sign-type", "MD5", "--json")
        assert code == 0 and not err  # no warning: the answer's MD5 signature checked out
        sale = json.loads(out)
        assert (sale["response_code"], len(sale["wire"]["sign"])) == ("00", 32)
        await send(port, "--channel", "wechat", "--pan", pan, "--type", "refund", "--amount",
                   "800", "--original", sale["id"], "--id", "RF1")
        code, out, err = await send(port, "--channel", "wechat", "--pan", pan, "--type",
                                    "refundquery", "--original", sale["id"], "--json")
        assert code == 0, err
        wire = json.loads(out)["wire"]
        assert (wire["refund_count"], wire["out_refund_no_0"], wire["refund_fee_0"]) == (
            "1", "RF1", "800")
        code, out, err = await send(port, "--pan", pan, "--type", "refundquery",
                                    "--original", sale["id"])
    assert code != 0 and "refundquery is only on wechat, not on jd" in err
    assert "Traceback" not in err
