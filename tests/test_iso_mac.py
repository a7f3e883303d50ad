"""The ISO 8583 MAC (protocols/iso_mac.py): its three algorithms against published vectors
and an independent computation, the bytes it covers, where it goes, its checks.

Expected bytes come from pyiso8583 and the MAC's definition computed block by block
(tests/test_pos_support.py reference_mac), from published test vectors, or from the worked
example in docs/channels/pos.md, never from the code under test.
"""

from __future__ import annotations

import dataclasses

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.codes import Reason
from protocols.iso8583 import Codec, get_codec, load_dialect
from protocols.iso_client import IsoClient
from protocols.iso_mac import (
    KEY_SIZES,
    AnyTerminal,
    IsoMac,
    KeyRing,
    MacAlgorithm,
    MacKey,
    as_key,
    block_cipher,
    check_key,
    mac_field,
)
from protocols.pos import PosCodec
from tests.test_pos_support import decode, encode, reference_mac

KEY = bytes.fromhex("00112233445566778899AABBCCDDEEFF")
HMAC_KEY = MacKey(MacAlgorithm.HMAC_SHA256, KEY)
# The standards' example keys: X9.19's double-length DES key, GB/T 32907's SM4 key.
EXAMPLE_KEY = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
KEYS = [HMAC_KEY, MacKey(MacAlgorithm.X9_19, EXAMPLE_KEY), MacKey(MacAlgorithm.SM4, EXAMPLE_KEY)]
IDS = [str(key.algorithm) for key in KEYS]
# The worked example's purchase (docs/channels/pos.md), without its MAC.
PURCHASE = {"t": "0200", "2": "6253680000000018", "3": "000000", "4": "000000012800",
            "7": "1129120000", "11": "000123", "12": "120000", "13": "1129", "18": "5411",
            "22": "052", "25": "00", "32": "00010000", "37": "120000000123",
            "41": "TERM0001", "42": "898310048990001", "49": "156"}
DIALECTS = ("iso87ascii", "iso87binary")
# Its reversal: F90 (original MTI, STAN, F7, acquirer, forwarder) puts the MAC in F128.
REVERSAL = {**PURCHASE, "t": "0400", "11": "000124",
            "90": "0200" "000123" "1129120000" "00000010000" "00000000000"}


def as_reference(key: MacKey):
    return key.key if key.algorithm is MacAlgorithm.HMAC_SHA256 else (key.algorithm, key.key)


# ---- the algorithms ---------------------------------------------------------------------

# ANSI X9.19 vectors with a double-length key, from Botan's src/tests/data/mac/x919_mac.vec.
X9_19_VECTORS = [
    ("0123456789ABCDEFFEDCBA9876543210",
     "31311C3931383237333634351C1C35383134333237361C1C3B313233343536373839303132333435363D39"
     "39313231303030303F1C30303031323530301C393738363533343132343837363932331C",
     "C209CCB78EE1B606"),
    ("4061610D85685DB0F4D9F1C8FE15A123",
     "33303030303230313935435553543031202020205520202020202020202020202020202020202020543032"
     "53454154504152594742324C54535435534F414131393935303232373133333934343030303020202020"
     "202020202020202020333030303031304139354558413030303030333144",
     "DBE9EB0FA03838D2"),
]


@pytest.mark.parametrize(("key", "data", "expected"), X9_19_VECTORS)
def test_x9_19_published_vectors(key, data, expected):
    mac_key = MacKey.parse("x9.19", key)
    assert mac_key.mac(bytes.fromhex(data)).hex().upper() == expected
    assert mac_key.mac(bytes.fromhex(data)).hex().upper() == expected  # the kept state is clean


def test_sm4_is_the_standard_s_cipher_and_the_mac_its_cbc_mac():
    # GB/T 32907-2016, example 1: the key encrypting itself.
    sm4 = Cipher(algorithms.SM4(EXAMPLE_KEY), modes.ECB()).encryptor()
    assert sm4.update(EXAMPLE_KEY).hex() == "681edf34d206965e86b3e94f536e4246"
    mac_key = MacKey(MacAlgorithm.SM4, EXAMPLE_KEY)
    for size in (0, 1, 15, 16, 17, 31, 32, 139):
        data = bytes(range(size))
        assert mac_key.mac(data) == reference_mac(("sm4", EXAMPLE_KEY), data), size
    # One block of the padded message: 0x80 then zeros; the MAC is the cipher's first 8 bytes.
    assert mac_key.mac(b"") == sm4.update(b"\x80" + bytes(15))[:8]


def test_the_docs_examples_which_the_openssl_command_line_computed():
    """docs/channels/pos.md's examples: `openssl enc -sm4-cbc` over the padded bytes, and
    `openssl enc -des-cbc` under the left half, then `-d -des-ecb` right, `-des-ecb` left."""
    data = b"1234567890ABCDEF1234"
    assert MacKey(MacAlgorithm.SM4, EXAMPLE_KEY).mac(data).hex().upper() == "C573970DEC512E79"
    assert MacKey(MacAlgorithm.X9_19, EXAMPLE_KEY).mac(data).hex().upper() == "85B03DBA48C9618B"


def test_key_check_values():
    assert MacKey(MacAlgorithm.X9_19, EXAMPLE_KEY).kcv() == "08D7B4"  # the industry's example
    sm4 = Cipher(algorithms.SM4(EXAMPLE_KEY), modes.ECB()).encryptor().update(bytes(16))
    assert MacKey(MacAlgorithm.SM4, EXAMPLE_KEY).kcv() == sm4[:3].hex().upper()
    assert HMAC_KEY.kcv() == reference_mac(KEY, bytes(8))[:3].hex().upper()
    assert EXAMPLE_KEY.hex() not in repr(KEYS[1]).lower() and "08D7B4" in repr(KEYS[1])


@pytest.mark.parametrize("key", KEYS, ids=IDS)
def test_every_algorithm_is_its_definition(key):
    for size in (1, 7, 8, 9, 16, 139, 300):
        data = bytes((7 * i + size) % 256 for i in range(size))
        assert key.mac(data) == reference_mac(as_reference(key), data), size


@settings(max_examples=150, deadline=None)
@given(algorithm=st.sampled_from(list(MacAlgorithm)), key=st.binary(min_size=64, max_size=64),
       data=st.binary(min_size=1, max_size=300), bit=st.integers(min_value=0))
def test_a_mac_verifies_and_no_one_bit_change_does(algorithm, key, data, bit):
    mac_key = MacKey(algorithm, key[:KEY_SIZES[algorithm].start])
    code = mac_key.mac(data)
    assert len(code) == 8 and mac_key.mac(data) == code
    flipped = bytearray(data)
    flipped[bit // 8 % len(data)] ^= 1 << bit % 8
    assert mac_key.mac(bytes(flipped)) != code
    # A message carrying the MAC verifies; with any one bit of its MAC changed it does not.
    codec = get_codec("iso87binary")
    wire = IsoMac(codec).encode({**PURCHASE, "4": f"{len(data):012d}"}, mac_key)
    assert IsoMac(codec).signer(wire, codec.decode(wire), (mac_key,)) == ("", mac_key)
    wrong = bytearray(wire)
    wrong[-8 + bit % 64 // 8] ^= 1 << bit % 8
    problem = IsoMac(codec).signer(bytes(wrong), codec.decode(bytes(wrong)), (mac_key,))
    assert problem == (Reason.MAC_MISMATCH, None)


def test_key_sizes_are_checked():
    for algorithm, sizes in KEY_SIZES.items():
        for size in (sizes.start, sizes.stop - 1):
            assert check_key(algorithm, bytes(size)) is MacAlgorithm(algorithm)
        for size in (sizes.start - 1, sizes.stop):
            with pytest.raises(ValueError, match=f"not {size}"):
                MacKey(algorithm, bytes(size))
    with pytest.raises(ValueError, match="one of"):
        MacKey.parse("des", "00" * 16)
    with pytest.raises(ValueError, match="hex"):
        MacKey.parse("sm4", "zz" * 16)


# docs/channels/pos.md's table of algorithms: the names and key sizes a config or the CLI
# gives, and the error each wrong size gets.
DOCUMENTED_KEYS = [
    ("hmac-sha256", 16, 64, "a hmac-sha256 key is 16-64 bytes (32+ hex digits), not {}"),
    ("x9.19", 16, 16, "a x9.19 key is 16 bytes (32 hex digits), not {}"),
    ("sm4", 16, 16, "a sm4 key is 16 bytes (32 hex digits), not {}"),
]


@pytest.mark.parametrize(("name", "smallest", "largest", "error"), DOCUMENTED_KEYS,
                         ids=[row[0] for row in DOCUMENTED_KEYS])
def test_the_documented_names_and_key_sizes_and_no_other(name, smallest, largest, error):
    for size in (smallest, largest):
        assert MacKey.parse(name, "5A" * size).algorithm == name
    for size in (smallest - 1, largest + 1):
        with pytest.raises(ValueError) as raised:
            MacKey.parse(name, "5A" * size)
        assert str(raised.value) == error.format(size)


def test_an_x9_19_mac_of_no_bytes_is_of_one_zero_block():
    """ISO/IEC 9797-1 padding method 1 pads to a positive multiple of 8: no bytes are one
    zero block, whose X9.19 MAC is 3DES of it, the key check value (pos.md: 08D7B4)."""
    key = MacKey(MacAlgorithm.X9_19, EXAMPLE_KEY)
    assert key.mac(b"") == key.mac(bytes(8))
    assert key.mac(b"")[:3].hex().upper() == "08D7B4"


def test_block_ciphers_take_16_byte_3des_and_sm4_keys_only():
    zeros = bytes(8)  # 3DES (K1 K2 K1) of a zero block: the KCV, pos.md's 08D7B4
    assert block_cipher(MacAlgorithm.X9_19, EXAMPLE_KEY).encryptor().update(zeros)[:3] == (
        bytes.fromhex("08D7B4"))
    sm4 = block_cipher(MacAlgorithm.SM4, EXAMPLE_KEY).encryptor().update(EXAMPLE_KEY)
    assert sm4.hex() == "681edf34d206965e86b3e94f536e4246"  # GB/T 32907 example 1
    with pytest.raises(ValueError, match="no block cipher"):
        block_cipher(MacAlgorithm.HMAC_SHA256, EXAMPLE_KEY)
    # An 8-byte key would make single DES out of 3DES (K1 K1 K1): refused, as are others.
    for algorithm in (MacAlgorithm.X9_19, MacAlgorithm.SM4):
        for size in (8, 15, 17, 24, 32):
            with pytest.raises(ValueError, match=f"16 bytes, not {size}"):
                block_cipher(algorithm, bytes(range(size)))


def test_keys_are_equal_by_algorithm_and_bytes():
    same = MacKey(MacAlgorithm.SM4, bytes(EXAMPLE_KEY))
    assert same == KEYS[2] and hash(same) == hash(KEYS[2]) and len({same, KEYS[2]}) == 1
    assert KEYS[1] != KEYS[2]  # the same bytes as an X9.19 and as an SM4 key
    assert MacKey(MacAlgorithm.SM4, bytes(16)) != KEYS[2]
    assert KEYS[2] != EXAMPLE_KEY and KEYS[2] != (MacAlgorithm.SM4, EXAMPLE_KEY)


def test_as_key_reads_bare_bytes_as_an_hmac_key():
    assert as_key(None) is None and as_key(b"") is None
    assert as_key(KEYS[1]) is KEYS[1]
    assert as_key(KEY) == HMAC_KEY and isinstance(as_key(KEY), MacKey)


# ---- the message ---------------------------------------------------------------------------


def test_the_worked_example_s_mac():
    wire = IsoMac(get_codec("iso87ascii")).encode(PURCHASE, HMAC_KEY)
    assert wire[4:20] == b"7238448108C08001"  # bit 64 set
    assert len(wire) == 139 + 16 and wire[-16:] == b"D66EF67F40B9A0F5"


@pytest.mark.parametrize("key", KEYS, ids=IDS)
@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("doc", [PURCHASE, REVERSAL], ids=["F64", "F128"])
def test_the_mac_is_the_one_pyiso8583_and_the_definition_make(dialect, doc, key):
    assert IsoMac(get_codec(dialect)).encode(doc, key) == encode(doc, dialect,
                                                                 as_reference(key))


def test_the_mac_field_is_128_with_a_secondary_bitmap():
    assert mac_field(PURCHASE) == "64"
    assert mac_field({**PURCHASE, "64": "x"}) == "64"
    assert mac_field({**PURCHASE, "65": "x"}) == "128"
    assert mac_field({**PURCHASE, "90": "x"}) == "128"
    assert mac_field({"t": "0800", "70": "301"}) == "128"
    signed = decode(IsoMac(get_codec("iso87ascii")).encode(REVERSAL, HMAC_KEY))
    assert "128" in signed and "64" not in signed


@pytest.mark.parametrize("key", KEYS, ids=IDS)
@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("doc", [PURCHASE, REVERSAL], ids=["F64", "F128"])
def test_every_changed_byte_is_a_mismatch_and_a_missing_mac_is_missing(dialect, doc, key):
    codec = get_codec(dialect)
    mac = IsoMac(codec)
    wire = mac.encode(doc, key)
    other = MacKey(key.algorithm, bytes(len(key.key)))
    assert mac.signer(wire, codec.decode(wire), (key,)) == ("", key)
    assert mac.signer(wire, codec.decode(wire), (other, key)) == ("", key)  # the one that fits
    assert mac.signer(wire, codec.decode(wire), (other,)) == (Reason.MAC_MISMATCH, None)
    for at in range(len(wire)):  # any byte the MAC covers, and the MAC itself
        changed = wire[:at] + bytes([wire[at] ^ 0x01]) + wire[at + 1:]
        try:
            message = codec.decode(changed)
        except ValueError:
            continue  # no longer a message: the codec answers it, not the MAC
        assert mac.signer(changed, message, (key,)) == (Reason.MAC_MISMATCH, None), at
    unsigned = codec.encode(doc)
    assert mac.signer(unsigned, codec.decode(unsigned), (key,)) == (Reason.MAC_MISSING, None)


@pytest.mark.parametrize("dialect", DIALECTS)
def test_without_a_key_messages_are_plain(dialect):
    codec = get_codec(dialect)
    assert IsoMac(codec).encode(PURCHASE, None) == codec.encode(PURCHASE)
    assert IsoMac(codec).binary is (dialect == "iso87binary")


def test_the_client_checks_answers_with_its_terminal_s_key():
    key = KEYS[1]
    client, mac = IsoClient(key=key), IsoMac(get_codec("iso87ascii"))
    assert client.encode(PURCHASE) == mac.encode(PURCHASE, key)
    answer = {**PURCHASE, "t": "0210", "39": "05"}
    assert client.decode(mac.encode(answer, key))["39"] == "05"
    with pytest.raises(ValueError, match="answer MAC does not match"):
        IsoClient(key=KEYS[2]).decode(mac.encode(answer, key))
    with pytest.raises(ValueError, match="answer carries no MAC"):
        client.decode(mac.encode(answer, None))
    # Refusals the switch gives before it knows the sender holds the key come unsigned.
    for code in ("A0", "58", "91", "30"):
        assert client.decode(mac.encode({**answer, "39": code}, None))["39"] == code
    assert IsoClient().decode(mac.encode(answer, key))["39"] == "05"  # no key: not checked
    assert PosCodec().encode(answer) == mac.encode(answer, None)


def test_the_mac_s_own_field_says_whether_it_is_binary():
    """F64 decides, not a neighbour: here F65 is text while F64 is binary, and the reverse."""
    for base, other in (("iso87binary", "iso87ascii"), ("iso87ascii", "iso87binary")):
        dialect = load_dialect(base)
        f65 = load_dialect(other).field(65)
        mixed = dataclasses.replace(dialect, fields=tuple(
            f65 if spec.number == 65 else spec for spec in dialect.fields))
        assert IsoMac(Codec(mixed)).binary is (base == "iso87binary")


# ---- who holds which key --------------------------------------------------------------------


def test_any_terminal_has_the_one_key_and_never_doubts_it():
    holder = AnyTerminal(KEYS[1])
    assert holder.keys_for("10000", "TERM0001") == (KEYS[1],)
    assert holder.keys_for("", "") == (KEYS[1],)
    assert holder.doubt("10000", "TERM0001") is False


def test_a_key_ring_finds_a_terminal_s_own_key_else_its_acquirer_s_wildcard():
    own, wildcard = KEYS[1], KEYS[2]
    ring = KeyRing({("10000", "TERM0001"): own, ("20000", "*"): wildcard,
                    ("30000", "TERM0003"): own, ("30000", "*"): wildcard})
    assert ring.keys_for("10000", "TERM0001") == (own,)
    assert ring.keys_for("10000", "TERM0002") == ()  # no key of its own, no wildcard
    assert ring.keys_for("20000", "TERM0002") == (wildcard,)
    assert ring.keys_for("30000", "TERM0003") == (own,)  # its own key before the wildcard
    assert ring.keys_for("30000", "TERM0009") == (wildcard,)
    assert ring.keys_for("40000", "TERM0001") == ()  # another acquirer's terminal
    assert ring.doubt("10000", "TERM0001") is False
    assert KeyRing().keys_for("10000", "TERM0001") == ()
    assert KeyRing({("10000", ""): own}).keys_for("10000", "TERM0001") == ()  # not a wildcard
