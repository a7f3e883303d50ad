"""`switch terminal add|show|rotate` and `switch send` signing with a terminal's key, as a
user runs them: separate processes against a real switch and the test Redis."""

from __future__ import annotations

import json
import secrets

from tests.support import ANSWER_WAIT_S, SWITCH, make_card, run_command, running_switch
from tests.test_pos_support import ACQUIRER, iso_config
from tests.test_terminal_keys import new_terminal


async def cli(*args: str, check: bool = True) -> tuple[int, str, str]:
    code, out, err = await run_command(SWITCH, *args, timeout_s=ANSWER_WAIT_S * 2)
    if check:
        assert code == 0, err
    return code, out, err


async def test_add_show_rotate(redis_url):
    terminal = new_terminal()
    _, out, _ = await cli("terminal", "add", ACQUIRER, terminal, "--algorithm", "x9.19",
                          "--key", "0123456789ABCDEFFEDCBA9876543210", "--redis", redis_url)
    assert "x9.19  KCV 08D7B4" in out and "key 0123456789ABCDEFFEDCBA9876543210" in out
    _, out, _ = await cli("terminal", "show", ACQUIRER, terminal, "--redis", redis_url)
    assert "KCV 08D7B4" in out and "0123456789ABCDEF" not in out  # shown once, at add
    _, out, _ = await cli("terminal", "rotate", ACQUIRER, terminal, "--algorithm", "sm4",
                          "--grace", "60", "--json", "--redis", redis_url)
    view = json.loads(out)
    assert (view["algorithm"], view["previous_kcv"]) == ("sm4", "08D7B4")
    assert len(view["key"]) == 32 and view["rotated"] != "-"
    _, out, _ = await cli("terminal", "show", ACQUIRER, terminal, "--json", "--redis",
                          redis_url)
    shown = json.loads(out)
    assert "key" not in shown and shown["kcv"] == view["kcv"] != "08D7B4"
    _, out, _ = await cli("terminal", "rotate", ACQUIRER, terminal, "--grace", "0", "--redis",
                          redis_url)
    assert "sm4  KCV" in out and "no longer accepted (no grace period)" in out  # sm4 kept

    for args, message in [
            (("add", ACQUIRER, terminal), "has a key"),
            (("rotate", ACQUIRER, new_terminal()), "has no key"),
            (("show", ACQUIRER, new_terminal()), "has no key"),
            (("add", "0001x", terminal), "F32 is 1-11 digits"),
            (("add", ACQUIRER, "TOOLONG12"), "F41 is 1-8"),
            (("add", ACQUIRER, new_terminal(), "--key", "00"), "16 bytes"),
            (("rotate", ACQUIRER, terminal, "--grace", "601"), "grace period")]:
        code, _, err = await cli("terminal", *args, "--redis", redis_url, check=False)
        assert code == 2 and message in err, (args, err)


async def test_send_signs_with_the_terminal_s_key_from_redis(redis_url):
    async with running_switch(redis_url, iso_config(channels=("pos",))) as (switch, ledger):
        pan = await make_card(ledger, limit_fen=100_000)
        port = str(switch.ports["pos"])
        terminal = new_terminal()
        await cli("terminal", "add", ACQUIRER, terminal, "--algorithm", "sm4", "--redis",
                  redis_url)
        send = ("send", "--channel", "pos", "--port", port, "--pan", pan, "--amount", "100",
                "--mcc", "5411", "--json", "--redis", redis_url)
        _, out, _ = await cli(*send, "--terminal", terminal)
        assert json.loads(out)["response_code"] == "00"
        _, out, _ = await cli(*send)  # the demo terminal: its key from the config
        assert json.loads(out)["response_code"] == "00"
        _, out, _ = await cli(*send, "--terminal", terminal, "--mac-key",
                              secrets.token_hex(16), "--mac-algorithm", "sm4")
        assert json.loads(out)["response_code"] == "A0"
        _, out, _ = await cli(*send, "--mac", "off")
        assert (json.loads(out)["response_code"], json.loads(out)["reason"]) == (
            "A0", "mac_missing")
        code, _, err = await cli(*send, "--terminal", new_terminal(), check=False)
        assert code == 2 and "no MAC key for terminal" in err
        assert (await ledger.card(pan)).posted == 200
