"""docs/channels/pos.md's sign-on worked examples (3DES and SM4): their bytes decode
(pyiso8583), their F62 keys unwrap under the master key to the keys and check values the page
names, and their purchases' PIN blocks and MACs are right under those keys; the page names a
shipped dialect and preset for SM4 PIN blocks, no hand-made dialect."""

from __future__ import annotations

import re
from pathlib import Path

import iso8583
import iso8583.specs

from protocols.iso8583 import shipped_dialects
from protocols.iso_presets import PRESETS
from tests.test_pos_support import SPECS, reference_mac
from tests.test_signon import ecb
from tests.test_signon_sm4 import WIDE_DIALECT, sm4_ecb

ROOT = Path(__file__).resolve().parent.parent
PAGE = (ROOT / "docs" / "channels" / "pos.md").read_text()
SM4_TITLE = "### Worked example: an SM4 terminal"
SECTION = PAGE[PAGE.index("### Worked example: a sign-on"):PAGE.index(SM4_TITLE)]
SM4_SECTION = PAGE[PAGE.index(SM4_TITLE):PAGE.index("## PIN\n")]
MASTER = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")


def frame(title: str, section: str = SECTION, spec: dict = iso8583.specs.default_ascii
          ) -> dict:
    """The decoded message of the hex dump under `--- TITLE`, its length header checked."""
    block = section[section.index(f"--- {title}"):]
    block = block[block.index("\n") + 1:block.index("```")]
    data = bytes.fromhex("".join(line[6:54] for line in block.splitlines()))
    assert int.from_bytes(data[:2], "big") == len(data) - 2
    doc, _ = iso8583.decode(bytearray(data[2:]), spec)
    doc["body"] = data[2:]
    return doc


def named_keys() -> dict[str, bytes]:
    found = dict(re.findall(r"(PIK|MAK|TDK) `([0-9A-F]{32})`", SECTION))
    return {name: bytes.fromhex(value) for name, value in found.items()}


def test_the_sign_on_request():
    request = frame("0800 sign-on request")
    assert (request["t"], request["41"], request["32"]) == ("0800", "TERM0001", "00010000")
    assert request["60"] == "00000001001"  # 60.1 00, 60.2 000001, 60.3 001 sign-on


def test_the_answer_s_keys_and_check_values():
    answer = frame("0810 answer")
    assert (answer["t"], answer["39"]) == ("0810", "00")
    raw = bytes.fromhex(answer["62"])
    table = re.findall(r"\| (PIK|MAK|TDK) \| `([0-9A-F]{32})` \| `([0-9A-F]{8})` \|", SECTION)
    assert [row[0] for row in table] == ["PIK", "MAK", "TDK"]
    clear = named_keys()
    for index, (name, wrapped, check) in enumerate(table):
        part = raw[20 * index:20 * index + 20]
        assert part[:16].hex().upper() == wrapped
        key = ecb(MASTER, part[:16], decrypt=True)
        assert key == clear[name]
        assert ecb(key, bytes(8))[:4].hex().upper() == check == part[16:].hex().upper()


def test_the_purchase_s_pin_block_and_mac():
    sale = frame("0200 purchase with a PIN")
    keys = named_keys()
    assert (sale["22"], sale["52"]) == ("051", "695D76DFE614390A")
    clear = ecb(keys["PIK"], bytes.fromhex(sale["52"]), decrypt=True)
    assert clear.hex().upper() == "0412027FFFFFFFFE"
    pan_field = bytes.fromhex("0000" + sale["2"][:-1][-12:])
    pin_field = bytes(a ^ b for a, b in zip(clear, pan_field, strict=True)).hex().upper()
    assert pin_field == "041234FFFFFFFFFF"
    body = sale["body"]
    assert reference_mac(("x9.19", keys["MAK"]), body[:-16]).hex().upper() == sale["64"]
    assert sale["64"] == "5B363576B4F7F7D3"


def test_the_sm4_sign_on_request_and_its_keys():
    request = frame("0800 sign-on request", SM4_SECTION)
    assert (request["t"], request["41"], request["60"]) == ("0800", "TERM0003", "00000001001")
    answer = frame("0810 answer", SM4_SECTION)
    assert (answer["t"], answer["39"], answer["41"]) == ("0810", "00", "TERM0003")
    raw = bytes.fromhex(answer["62"])
    table = re.findall(r"\| (PIK|MAK|TDK) \| `([0-9A-F]{32})` \| `([0-9A-F]{8})` \|",
                       SM4_SECTION)
    assert [row[0] for row in table] == ["PIK", "MAK", "TDK"]
    clear = named_keys()  # "the same fixed working keys" as the 3DES example
    for index, (name, wrapped, check) in enumerate(table):
        part = raw[20 * index:20 * index + 20]
        assert part[:16].hex().upper() == wrapped
        assert sm4_ecb(MASTER, part[:16], decrypt=True) == clear[name]
        assert sm4_ecb(clear[name], bytes(16))[:4].hex().upper() == check == part[16:].hex(
            ).upper()


def test_the_sm4_purchase_s_pin_block_and_mac():
    assert f"(`{WIDE_DIALECT}`: F52 at 32 hex characters" in SM4_SECTION
    sale = frame("0200 purchase with an SM4 PIN block", SM4_SECTION, SPECS[WIDE_DIALECT])
    keys = named_keys()
    assert (sale["22"], sale["41"]) == ("051", "TERM0003")
    assert sale["52"] == "2DC620CACC4D05483B314D882082D67B"
    clear = sm4_ecb(keys["PIK"], bytes.fromhex(sale["52"]), decrypt=True)
    assert clear.hex().upper() == "041234FFFFFFFFFFFFFFC97FFFFFFFFE"
    account = bytes.fromhex(sale["2"][:-1][-12:].rjust(32, "0"))
    pin_field = bytes(a ^ b for a, b in zip(clear, account, strict=True)).hex().upper()
    assert pin_field == "041234" + "F" * 26
    body = sale["body"]
    assert len(body) - 16 == 171
    assert reference_mac(("sm4", keys["MAK"]), body[:-16]).hex().upper() == sale["64"]
    assert sale["64"] == "9E221645081BF318"


def test_the_page_names_shipped_dialects_and_presets_for_sm4_pins():
    """Every dialect and preset is in the page's tables; its SM4 commands name the shipped
    preset (what the CLI tests run), and no recipe edits a dialect file by hand."""
    pin = PAGE[PAGE.index("## PIN\n"):PAGE.index("## Worked example\n")]
    sign_on = PAGE[PAGE.index("## Sign-on and key exchange"):PAGE.index(SM4_TITLE)]
    for section in (pin, sign_on):
        named = set(re.findall(r"--dialect (?:pos=)?([\w-]+)", section))
        assert "unionpay-sm4-pos" in named <= {*shipped_dialects(), *PRESETS}
    assert "\nsed '" not in PAGE and ".toml`" not in pin
    assert all(f"| `{name}`" in PAGE for name in [*shipped_dialects(), *PRESETS])
