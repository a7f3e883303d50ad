"""`switch terminal sign-on`, `switch card set --pin-stdin` and `switch send --pin` as a user
runs them: separate processes against a real switch and the test Redis."""

from __future__ import annotations

import asyncio
import re

import pytest

from protocols.iso_presets import preset
from protocols.iso_session import check_value
from protocols.ledger_layout import session_key
from switch.config import Config, Iso8583, Listener
from tests.support import SWITCH, make_card, run_command_sync, running_switch
from tests.test_pos_support import ACQUIRER, iso_config
from tests.test_signon import ecb
from tests.test_signon_sm4 import sm4_ecb
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


def kcvs_of(session: dict[str, str], algorithm: str) -> dict[str, str]:
    """The session's check values as docs/channels/pos.md defines them: the first 4 bytes of
    the clear key encrypting a zero block (3DES: 8 bytes, SM4: 16), by the reference ciphers."""
    def check(key: bytes) -> bytes:
        return sm4_ecb(key, bytes(16)) if algorithm == "sm4" else ecb(key, bytes(8))
    return {name.upper(): check(bytes.fromhex(session[name]))[:4].hex().upper()
            for name in ("pik", "mak", "tdk")}


async def sign_on_and_pay(redis_url: str, dialect: str, algorithm: str,
                          other_dialect: str) -> None:
    """On a switch whose pos listener is on `dialect`: `switch terminal add --algorithm
    ALGORITHM --sign-on`, `switch terminal sign-on --dialect DIALECT` (the KCVs it prints are
    the session's in Redis), then `switch send --pin`: right PIN approved, wrong 55, no PIN
    approved under the session MAK; the same sale on `other_dialect`, whose F52 is the other
    width, refused before anything is sent."""
    config = Config(listeners={"pos": Listener(port=0)}, pos=Iso8583(dialect=dialect))
    async with running_switch(redis_url, config) as (switch, ledger):
        port, terminal = str(switch.ports["pos"]), new_terminal()
        pan = await make_card(ledger, limit_fen=100_000)
        _, out, _ = await cli("terminal", "add", ACQUIRER, terminal, "--algorithm", algorithm,
                              "--key", MASTER_HEX, "--sign-on", "--redis", redis_url)
        assert algorithm in out and "must sign on" in out
        _, out, _ = await cli("terminal", "sign-on", ACQUIRER, terminal, "--port", port,
                              "--dialect", dialect, "--redis", redis_url)
        assert f"new {algorithm} session keys" in out
        shown = dict(re.findall(r"(PIK|MAK|TDK) KCV ([0-9A-F]{8})", out))
        session = await ledger.client.hgetall(session_key("10000", terminal))
        assert session["algorithm"] == algorithm and shown == kcvs_of(session, algorithm)
        _, out, _ = await cli("terminal", "show", ACQUIRER, terminal, "--redis", redis_url)
        assert f"PIK KCV {shown['PIK']}  MAK KCV {shown['MAK']}" in out

        await card_set_pin(pan, "4321", redis_url)
        sale = ("send", "--channel", "pos", "--port", port, "--pan", pan, "--amount", "100",
                "--mcc", "5411", "--terminal", terminal, "--redis", redis_url)
        _, out, _ = await cli(*sale, "--dialect", dialect, "--pin", "4321")
        assert out.startswith("APPROVED 00")
        _, out, _ = await cli(*sale, "--dialect", dialect, "--pin", "1111")
        assert "DECLINED 55  reason pin_wrong" in out
        _, out, _ = await cli(*sale, "--dialect", dialect)  # no PIN: the session MAK alone
        assert out.startswith("APPROVED 00")
        assert (await ledger.card(pan)).open_to_buy == 100_000 - 200

        block, other = (16, 8) if algorithm == "sm4" else (8, 16)
        code, _, err = await cli(*sale, "--dialect", other_dialect, "--pin", "4321",
                                 check=False)
        assert code == 2 and (f"{algorithm} PIN block is {block} bytes; F52 of dialect "
                              f"{preset(other_dialect).dialect} holds {other}") in err
        assert (await ledger.card(pan)).open_to_buy == 100_000 - 200


@pytest.mark.parametrize(("dialect", "algorithm", "other_dialect"), [
    ("unionpay-pos", "x9.19", "unionpay-sm4-pos"),  # F62 binary: the keys as raw bytes
    ("unionpay-sm4-pos", "sm4", "unionpay-pos"),
    ("iso87ascii-sm4", "sm4", "iso87ascii"),  # F62 hex text
])
async def test_a_terminal_signs_on_and_pays_with_a_pin_on_a_shipped_wire(
        redis_url, dialect, algorithm, other_dialect):
    await sign_on_and_pay(redis_url, dialect, algorithm, other_dialect)


async def test_sign_on_in_another_dialect_than_the_listener_s_is_one_clear_error(redis_url):
    config = Config(listeners={"pos": Listener(port=0)}, pos=Iso8583(dialect="unionpay-pos"))
    async with running_switch(redis_url, config) as (switch, _):
        port, terminal = str(switch.ports["pos"]), new_terminal()
        await cli("terminal", "add", ACQUIRER, terminal, "--redis", redis_url)
        code, _, err = await cli("terminal", "sign-on", ACQUIRER, terminal, "--port", port,
                                 "--redis", redis_url, check=False)  # iso87ascii
        assert code == 2 and "Traceback" not in err
        assert err.startswith("switch: the answer cannot be read as iso87ascii: ")
        assert "(is the listener on another dialect? --dialect names it)" in err
        code, _, err = await cli("terminal", "sign-on", ACQUIRER, terminal, "--port", port,
                                 "--dialect", "nosuch", "--redis", redis_url, check=False)
        assert (code, err.splitlines()) == (2, [
            "switch: --dialect: no shipped dialect 'nosuch' (shipped: iso87ascii, "
            "iso87ascii-sm4, iso87binary, unionpay, unionpay-sm4); or give a path"])
