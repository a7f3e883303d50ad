"""Dialect presets: the config and `switch serve --dialect`, `switch send --dialect
unionpay-pos` against a real switch, and the `switch iso` toolbox with a preset."""

from __future__ import annotations

import json

import msgspec
import pytest

from switch.config import Config, ConfigError, Iso8583, Listener, parse_dialect
from tests.support import SWITCH, make_card, run_command, running_switch

DEMO_MAC = ("--mac-key", "0123456789ABCDEFFEDCBA9876543210", "--mac-algorithm", "x9.19")


def test_a_preset_sets_dialect_header_and_envelope():
    settings = Iso8583(dialect="unionpay-pos", header="ascii4")
    assert (settings.dialect, settings.header, settings.envelope) == (
        "unionpay", "binary2", "tpdu+header")
    tpdu_only = msgspec.toml.decode(b'[pos]\ndialect = "unionpay-tpdu"\n', type=Config).pos
    assert (tpdu_only.dialect, tpdu_only.envelope) == ("unionpay", "tpdu")


def test_a_plain_dialect_keeps_the_header_and_envelope():
    settings = Iso8583(dialect="unionpay", header="ascii4", envelope="tpdu")
    assert (settings.dialect, settings.header, settings.envelope) == (
        "unionpay", "ascii4", "tpdu")


@pytest.mark.parametrize("value", ["pos", "jd=unionpay-pos", "pos=", "unionpay-pos"])
def test_a_bad_dialect_option_is_one_clear_error(value):
    with pytest.raises(ConfigError, match="CHANNEL=DIALECT"):
        parse_dialect(value)


async def test_serve_refuses_an_unknown_dialect_in_one_line(tmp_path):
    code, _, err = await run_command(SWITCH, "serve", "--dialect", "pos=nosuch",
                                     "--listen", "pos=127.0.0.1:0", "--ephemeral")
    assert code == 2
    assert err.startswith("switch: no shipped dialect 'nosuch'") and "Traceback" not in err


async def test_send_with_the_unionpay_preset(redis_url):
    config = Config(listeners={"pos": Listener(port=0)}, pos=Iso8583(dialect="unionpay-pos"))
    async with running_switch(redis_url, config) as (switch, ledger):
        pan = await make_card(ledger, limit_fen=100_000)
        code, out, err = await run_command(
            SWITCH, "send", "--channel", "pos", "--port", str(switch.ports["pos"]), "--pan",
            pan, "--amount", "12800", "--mcc", "5411", "--dialect", "unionpay-pos", "--json",
            "--tpdu", "6000070000")
        assert code == 0, err
        assert json.loads(out)["response_code"] == "00"
        assert (await ledger.card(pan)).open_to_buy == 87_200
        # Without the preset the listener cannot read it: a format error, nothing changes.
        code, out, _ = await run_command(
            SWITCH, "send", "--channel", "pos", "--port", str(switch.ports["pos"]), "--pan",
            pan, "--amount", "100", "--mcc", "5411", "--dialect", "unionpay", "--json")
        assert (await ledger.card(pan)).open_to_buy == 87_200


async def test_send_refuses_a_tpdu_that_is_not_one():
    code, _, err = await run_command(SWITCH, "send", "--channel", "pos", "--pan", "demo1",
                                     "--amount", "100", "--dialect", "unionpay-pos",
                                     "--tpdu", "7000030000", "--mac", "off", "--port", "1")
    assert code == 2 and "--tpdu '7000030000': 10 hex digits starting 60" in err


SALE = {"mti": "0200", "2": "6253680000000018", "3": "000000", "4": 12800,
        "7": "1129120000", "11": "000123", "12": "120000", "13": "1129", "18": "5411",
        "22": "051", "25": "00", "32": "00010000", "41": "TERM0001",
        "42": "898310054110001", "49": "156", "60": "22000001"}


async def test_the_toolbox_builds_parses_and_validates_with_a_preset(tmp_path):
    source = tmp_path / "sale.json"
    source.write_text(json.dumps(SALE))
    code, built, err = await run_command(SWITCH, "iso", "build", "--json", str(source),
                                         "--dialect", "unionpay-pos", *DEMO_MAC)
    assert code == 0, err
    wire = built.strip()
    assert wire.startswith("0066" "6000030000" "602200000000" "0200")  # length, TPDU, header
    code, out, err = await run_command(SWITCH, "iso", "parse", wire, "--dialect",
                                       "unionpay-pos", "--json", *DEMO_MAC)
    assert code == 0, err
    parsed = json.loads(out)
    assert parsed["front"]["tpdu_destination"] == "0003"
    f60 = next(view for view in parsed["fields"] if view["field"] == "60")
    assert f60["subfields"] == {"message_type_code": "22", "batch_number": "000001"}
    assert parsed["mac"]["status"] == "ok"
    code, out, _ = await run_command(SWITCH, "iso", "validate", wire, "--dialect",
                                     "unionpay-pos", *DEMO_MAC)
    assert code == 0 and out.startswith("valid pos sale request")
    broken = wire[:4] + "61" + wire[6:]  # not a TPDU
    code, out, _ = await run_command(SWITCH, "iso", "validate", broken, "--dialect",
                                     "unionpay-pos", *DEMO_MAC)
    assert code == 1 and out.startswith("TPDU at offset 0: id 61, not 60")
