"""`switch terminal sign-on`, `switch card set --pin-stdin` and `switch send --pin` as a user
runs them: separate processes against a real switch and the test Redis."""

from __future__ import annotations

import asyncio
import re

from protocols.iso_session import check_value
from protocols.ledger_layout import session_key
from tests.support import SWITCH, make_card, run_command_sync, running_switch
from tests.test_pos_support import ACQUIRER, iso_config
from tests.test_signon_sm4 import sm4_ecb, wide_pin_dialect
from tests.test_terminal_cli import cli
from tests.test_terminal_keys import new_terminal

MASTER_HEX = "0123456789ABCDEFFEDCBA9876543210"


async def card_set_pin(pan: str, pin: str, redis_url: str) -> tuple[int, str, str]:
    return await asyncio.to_thread(run_command_sync, SWITCH, "card", "set", pan,
                                   "--pin-stdin", "--redis", redis_url, stdin=pin + "\n")


async def test_sign_on_then_a_sale_with_a_pin(redis_url):
    async with running_switch(redis_url, iso_config(channels=("pos",))) as (switch, ledger):
        port, terminal = str(switch.ports["pos"]), new_terminal()
        pan = await make_card(ledger, limit_fen=100_000)
        _, out, _ = await cli("terminal", "add", ACQUIRER, terminal, "--key", MASTER_HEX,
                              "--sign-on", "--redis", redis_url)
        assert "must sign on" in out
        sale = ("send", "--channel", "pos", "--port", port, "--pan", pan, "--amount", "100",
                "--mcc", "5411", "--terminal", terminal, "--redis", redis_url)
        _, out, _ = await cli(*sale)
        assert "DECLINED A0  reason not_signed_on" in out

        code, _, err = await cli(*sale, "--pin", "4321", check=False)
        assert code == 2 and "sign it on first" in err
        wechat = ("send", "--channel", "wechat", "--pan", pan, "--amount", "100", "--pin",
                  "4321", "--redis", redis_url)
        code, _, err = await cli(*wechat, check=False)
        assert code == 2 and "--pin is for the pos channel" in err

        _, out, _ = await cli("terminal", "sign-on", ACQUIRER, terminal, "--port", port,
                              "--redis", redis_url)
        shown = dict(re.findall(r"(PIK|MAK|TDK) KCV ([0-9A-F]{8})", out))
        session = await ledger.client.hgetall(session_key("10000", terminal))
        assert shown == {name.upper(): check_value(bytes.fromhex(session[name])).hex().upper()
                         for name in ("pik", "mak", "tdk")}

        _, out, _ = await cli("terminal", "show", ACQUIRER, terminal, "--redis", redis_url)
        assert f"PIK KCV {shown['PIK']}  MAK KCV {shown['MAK']}" in out
        code, out, err = await card_set_pin(pan, "4321", redis_url)
        assert code == 0 and "PIN set, wrong tries 0" in out and "4321" not in out + err
        _, out, _ = await cli(*sale, "--pin", "4321")
        assert out.startswith("APPROVED 00")
        _, out, _ = await cli(*sale, "--pin", "1111")
        assert "DECLINED 55  reason pin_wrong" in out

        _, out, _ = await cli("terminal", "sign-on", ACQUIRER, terminal, "--port", port,
                              "--action", "key-change", "--redis", redis_url)
        assert dict(re.findall(r"(PIK|MAK|TDK) KCV ([0-9A-F]{8})", out))["MAK"] != shown["MAK"]
        _, out, _ = await cli(*sale, "--pin", "4321")  # send reads the new keys
        assert out.startswith("APPROVED 00")

        _, out, _ = await cli("terminal", "sign-on", ACQUIRER, terminal, "--port", port,
                              "--action", "sign-off", "--redis", redis_url)
        assert "sign-off: done (00)" in out
        _, out, _ = await cli(*sale)
        assert "DECLINED A0  reason not_signed_on" in out
        _, out, _ = await cli("terminal", "show", ACQUIRER, terminal, "--redis", redis_url)
        assert "not signed on (no session)" in out and "must sign on" in out


async def test_card_pin_errors_change_nothing(redis_url, ledger):
    pan = await make_card(ledger, limit_fen=100_000)
    for pin, message in (("123", "4-12 digits"), ("12345678901234", "4-12 digits"),
                         ("12a4", "4-12 digits")):
        code, _, err = await card_set_pin(pan, pin, redis_url)
        assert code == 2 and message in err and pin not in err
    assert not (await ledger.card(pan)).pin_set
    code, _, err = await card_set_pin("6259000000000000007", "1234", redis_url)
    assert code == 2 and "no such card" in err


async def test_an_sm4_terminal_signs_on_and_sends_a_16_byte_pin_block(redis_url, tmp_path):
    """`switch terminal add --algorithm sm4 --sign-on`, `switch terminal sign-on`, then
    `switch send --pin`: refused with a clear message on a dialect whose F52 is 8 bytes,
    approved on one whose F52 is 16 (docs/channels/pos.md, "PIN")."""
    wide = wide_pin_dialect(tmp_path)
    config = iso_config(dialect=wide, channels=("pos",))
    async with running_switch(redis_url, config) as (switch, ledger):
        port, terminal = str(switch.ports["pos"]), new_terminal()
        pan = await make_card(ledger, limit_fen=100_000)
        _, out, _ = await cli("terminal", "add", ACQUIRER, terminal, "--algorithm", "sm4",
                              "--key", MASTER_HEX, "--sign-on", "--redis", redis_url)
        assert "sm4" in out and "must sign on" in out
        _, out, _ = await cli("terminal", "sign-on", ACQUIRER, terminal, "--port", port,
                              "--redis", redis_url)
        assert "new sm4 session keys" in out
        shown = dict(re.findall(r"(PIK|MAK|TDK) KCV ([0-9A-F]{8})", out))
        session = await ledger.client.hgetall(session_key("10000", terminal))
        assert shown == {name.upper(): sm4_ecb(bytes.fromhex(session[name]), bytes(16))[:4]
                         .hex().upper() for name in ("pik", "mak", "tdk")}
        _, out, _ = await cli("terminal", "show", ACQUIRER, terminal, "--redis", redis_url)
        assert f"PIK KCV {shown['PIK']}  MAK KCV {shown['MAK']}" in out

        await card_set_pin(pan, "4321", redis_url)
        sale = ("send", "--channel", "pos", "--port", port, "--pan", pan, "--amount", "100",
                "--mcc", "5411", "--terminal", terminal, "--redis", redis_url)
        code, _, err = await cli(*sale, "--pin", "4321", check=False)
        assert code == 2 and "sm4 PIN block is 16 bytes; F52 of dialect iso87ascii holds 8" in err
        _, out, _ = await cli(*sale, "--dialect", wide, "--pin", "4321")
        assert out.startswith("APPROVED 00")
        _, out, _ = await cli(*sale, "--dialect", wide, "--pin", "1111")
        assert "DECLINED 55  reason pin_wrong" in out
        _, out, _ = await cli(*sale, "--dialect", wide)  # no PIN: the session MAK alone
        assert out.startswith("APPROVED 00")
