"""`switch token ...` and `switch send --channel pos|xpay` as a user runs them: separate
processes against a real switch (in this test's event loop) and the test Redis."""

from __future__ import annotations

import json

from tests.support import ANSWER_WAIT_S, SWITCH, make_card, run_command, running_switch
from tests.test_pos_support import iso_config


async def cli(*args: str, check: bool = True) -> tuple[int, str, str]:
    code, out, err = await run_command(SWITCH, *args, timeout_s=ANSWER_WAIT_S * 2)
    if check:
        assert code == 0, err
    return code, out, err


async def test_token_provision_show_and_set_status(redis_url, ledger):
    pan = await make_card(ledger)
    _, out, _ = await cli("token", "provision", pan, "--wallet", "mi", "--json",
                          "--redis", redis_url)
    assert pan not in out, "the card number must be masked"
    token = json.loads(out)
    assert token["pan"] == pan[:6] + "*" * (len(pan) - 10) + pan[-4:]
    assert (token["wallet"], token["status"], token["atc"]) == ("mi", "active", 0)

    _, out, _ = await cli("token", "set-status", token["token"], "suspended",
                          "--redis", redis_url)
    assert f"token {token['token']}  suspended" in out and pan not in out
    _, out, _ = await cli("token", "show", token["token"], "--redis", redis_url)
    assert "suspended" in out and token["key"] in out

    code, _, err = await cli("token", "set-status", "6288880000000000", "active",
                             "--redis", redis_url, check=False)
    assert code == 2 and "no such token" in err
    code, _, err = await cli("token", "provision", "6253990000000000006", "--wallet", "apple",
                             "--redis", redis_url, check=False)
    assert code == 2 and "no such card" in err


async def test_send_pos_sale_and_reverse_by_the_printed_id(redis_url):
    async with running_switch(redis_url, iso_config(channels=("pos",))) as (switch, ledger):
        pan = await make_card(ledger, limit_fen=100_000)
        port = str(switch.ports["pos"])
        _, out, _ = await cli("send", "--channel", "pos", "--port", port, "--pan", pan,
                              "--amount", "12800", "--mcc", "5411", "--json")
        assert pan not in out
        sale = json.loads(out)
        assert (sale["response_code"], sale["open_to_buy_fen"]) == ("00", 100_000 - 12_800)
        _, out, _ = await cli("send", "--channel", "pos", "--port", port, "--pan", pan,
                              "--type", "reverse", "--original", sale["id"])
        assert out.startswith("APPROVED 00") and pan not in out
        assert (await ledger.card(pan)).open_to_buy == 100_000

        _, again, _ = await cli("send", "--channel", "pos", "--port", port, "--pan", pan,
                                "--amount", "12800", "--mcc", "5411", "--json", "--id",
                                sale["id"])
        # The same STAN and F7 again: a repeated transmission, so the first answer (its
        # open-to-buy and auth id, from before the reversal) and no new posting.
        repeat = json.loads(again)
        assert (repeat["response_code"], repeat["auth_id"], repeat["open_to_buy_fen"]) == (
            "00", sale["auth_id"], 100_000 - 12_800)
        assert (await ledger.card(pan)).open_to_buy == 100_000


async def test_send_xpay_with_the_vault_key_and_atc(redis_url):
    async with running_switch(redis_url, iso_config(channels=("xpay",))) as (switch, ledger):
        pan = await make_card(ledger, limit_fen=100_000)
        _, out, _ = await cli("token", "provision", pan, "--wallet", "apple", "--json",
                              "--redis", redis_url)
        token = json.loads(out)["token"]
        send = ("send", "--channel", "xpay", "--port", str(switch.ports["xpay"]),
                "--token", token, "--amount", "1000", "--mcc", "5411", "--redis", redis_url)
        _, out, _ = await cli(*send)
        assert out.startswith("APPROVED 00") and f"--token {token}" in out
        _, out, _ = await cli(*send, "--atc", "1", "--json")  # the ATC the first one used
        assert json.loads(out)["reason"] == "atc_replay"
        _, out, _ = await cli(*send, "--json")
        assert json.loads(out)["response_code"] == "00"
        assert (await ledger.card(pan)).posted == 2_000
        code, _, err = await cli("send", "--channel", "xpay", "--port", "1", "--redis",
                                 redis_url, "--amount", "1", check=False)
        assert code == 2 and "--token is required" in err
