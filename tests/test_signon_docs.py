"""docs/channels/pos.md's sign-on worked example: its bytes decode (pyiso8583), its F62 keys
unwrap under the master key to the keys and check values the page names, and its purchase's
PIN block and MAC are right under those keys."""

from __future__ import annotations

import re
from pathlib import Path

import iso8583
import iso8583.specs

from tests.test_pos_support import reference_mac
from tests.test_signon import ecb

PAGE = (Path(__file__).resolve().parent.parent / "docs" / "channels" / "pos.md").read_text()
SECTION = PAGE[PAGE.index("### Worked example: a sign-on"):PAGE.index("## PIN\n")]
MASTER = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")


def frame(title: str) -> dict:
    """The decoded message of the hex dump under `--- TITLE`, its length header checked."""
    block = SECTION[SECTION.index(f"--- {title}"):]
    block = block[block.index("\n") + 1:block.index("```")]
    data = bytes.fromhex("".join(line[6:54] for line in block.splitlines()))
    assert int.from_bytes(data[:2], "big") == len(data) - 2
    doc, _ = iso8583.decode(bytearray(data[2:]), iso8583.specs.default_ascii)
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
