"""The ISO 8583 MAC (protocols/iso_mac.py): the bytes it covers, where it goes, its checks.

Expected bytes come from pyiso8583 and the MAC's definition (tests/test_pos_support.py) or
from the worked example in docs/channels/pos.md, never from the code under test.
"""

from __future__ import annotations

import dataclasses

import pytest

from protocols.codes import Reason
from protocols.iso8583 import Codec, get_codec, load_dialect
from protocols.iso_client import IsoClient
from protocols.iso_mac import IsoMac, mac, mac_field
from protocols.pos import PosCodec
from tests.test_pos_support import decode, encode

KEY = bytes.fromhex("00112233445566778899AABBCCDDEEFF")
# The worked example's purchase (docs/channels/pos.md), without its MAC.
PURCHASE = {"t": "0200", "2": "6253680000000018", "3": "000000", "4": "000000012800",
            "7": "1129120000", "11": "000123", "12": "120000", "13": "1129", "18": "5411",
            "22": "052", "25": "00", "32": "00010000", "37": "120000000123",
            "41": "TERM0001", "42": "898310048990001", "49": "156"}
DIALECTS = ("iso87ascii", "iso87binary")
# Its reversal: F90 (original MTI, STAN, F7, acquirer, forwarder) puts the MAC in F128.
REVERSAL = {**PURCHASE, "t": "0400", "11": "000124",
            "90": "0200" "000123" "1129120000" "00000010000" "00000000000"}


def test_the_worked_example_s_mac():
    wire = IsoMac(get_codec("iso87ascii"), KEY).encode(PURCHASE)
    assert wire[4:20] == b"7238448108C08001"  # bit 64 set
    assert len(wire) == 139 + 16 and wire[-16:] == b"D66EF67F40B9A0F5"
    assert mac(KEY, wire[:139]).hex().upper() == "D66EF67F40B9A0F5"


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("doc", [PURCHASE, REVERSAL], ids=["F64", "F128"])
def test_the_mac_is_the_one_pyiso8583_and_the_definition_make(dialect, doc):
    assert IsoMac(get_codec(dialect), KEY).encode(doc) == encode(doc, dialect, KEY)


def test_the_mac_field_is_128_with_a_secondary_bitmap():
    assert mac_field(PURCHASE) == "64"
    assert mac_field({**PURCHASE, "64": "x"}) == "64"
    assert mac_field({**PURCHASE, "65": "x"}) == "128"
    assert mac_field({**PURCHASE, "90": "x"}) == "128"
    assert mac_field({"t": "0800", "70": "301"}) == "128"
    signed = decode(IsoMac(get_codec("iso87ascii"), KEY).encode(REVERSAL))
    assert "128" in signed and "64" not in signed


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("doc", [PURCHASE, REVERSAL], ids=["F64", "F128"])
def test_every_changed_byte_is_a_mismatch_and_a_missing_mac_is_missing(dialect, doc):
    codec = get_codec(dialect)
    signer = IsoMac(codec, KEY)
    wire = signer.encode(doc)
    assert signer.problem(wire, codec.decode(wire)) == ""
    assert IsoMac(codec, bytes(16)).problem(wire, codec.decode(wire)) == Reason.MAC_MISMATCH
    for at in range(len(wire)):  # any byte the MAC covers, and the MAC itself
        changed = wire[:at] + bytes([wire[at] ^ 0x01]) + wire[at + 1:]
        try:
            message = codec.decode(changed)
        except ValueError:
            continue  # no longer a message: the codec answers it, not the MAC
        assert signer.problem(changed, message) == Reason.MAC_MISMATCH, at
    unsigned = codec.encode(doc)
    assert signer.problem(unsigned, codec.decode(unsigned)) == Reason.MAC_MISSING


@pytest.mark.parametrize("dialect", DIALECTS)
def test_without_a_key_messages_are_plain_and_unchecked(dialect):
    codec = get_codec(dialect)
    for key in (None, b""):
        plain = IsoMac(codec, key)
        assert plain.key is None and plain.encode(PURCHASE) == codec.encode(PURCHASE)
        signed = IsoMac(codec, KEY).encode(PURCHASE)
        assert plain.problem(signed, codec.decode(signed)) == ""
    assert IsoMac(codec, KEY).binary is (dialect == "iso87binary")


def test_server_and_client_share_the_mac():
    server, client = PosCodec(mac_key=KEY), IsoClient(mac_key=KEY)
    assert client.encode(PURCHASE) == server.encode(PURCHASE) == encode(PURCHASE, mac_key=KEY)
    answer = {**PURCHASE, "t": "0210", "39": "05"}
    assert client.decode(server.encode(answer))["39"] == "05"
    with pytest.raises(ValueError, match="answer MAC does not match"):
        IsoClient(mac_key=bytes(16)).decode(server.encode(answer))
    with pytest.raises(ValueError, match="answer carries no MAC"):
        client.decode(PosCodec().encode(answer))
    assert IsoClient().decode(server.encode(answer))["39"] == "05"  # no key: not checked


def test_the_mac_s_own_field_says_whether_it_is_binary():
    """F64 decides, not a neighbour: here F65 is text while F64 is binary, and the reverse."""
    for base, other in (("iso87binary", "iso87ascii"), ("iso87ascii", "iso87binary")):
        dialect = load_dialect(base)
        f65 = load_dialect(other).field(65)
        mixed = dataclasses.replace(dialect, fields=tuple(
            f65 if spec.number == 65 else spec for spec in dialect.fields))
        assert IsoMac(Codec(mixed), KEY).binary is (base == "iso87binary")
