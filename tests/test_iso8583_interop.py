"""Our codec against pyiso8583, the independent peer, with the matching spec.

pyiso8583 takes binary fields as hex strings where we take bytes; `to_peer`/`from_peer`
translate. It treats field 65 as a tertiary bitmap flag (we treat it as data), so field 65
is left out of the comparisons.
"""

from __future__ import annotations

import copy

import iso8583
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from iso8583.specs import default, default_ascii

from protocols.iso8583 import get_codec, load_dialect
from protocols.iso8583.codec import Codec
from protocols.iso8583.dialect import FieldSpec, dialect_from_dict

PEER_SPECS = {"iso87ascii": default_ascii, "iso87binary": default}
DIALECTS = tuple(PEER_SPECS)
value_len_cap = 60  # long enough to cross LL/LLL boundaries, short enough to keep runs fast

_ALPHABETS = {
    "n": "0123456789",
    "an": "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz ",
    "ans": "".join(chr(c) for c in range(0x20, 0x7F)),
    "z": "0123456789=D",
    "h": "0123456789ABCDEF",
}


def value_strategy(spec: FieldSpec) -> st.SearchStrategy:
    """Valid values for a field: exact size when fixed, 0..max when variable."""
    low = spec.max_len if spec.kind == "fixed" else 0
    high = min(spec.max_len, max(low, value_len_cap))
    if spec.content == "b":
        return st.binary(min_size=low, max_size=high)
    if spec.content == "xn":
        return st.builds(
            lambda sign, digits: sign + digits,
            st.sampled_from("CD"),
            st.text("0123456789", min_size=low - 1, max_size=low - 1),
        )
    return st.text(_ALPHABETS[spec.content], min_size=low, max_size=high)


def message_strategy(dialect_name: str, exclude: frozenset[str] = frozenset({"65"})):
    """A random MTI and a random subset of fields with random valid values."""
    dialect = load_dialect(dialect_name)
    specs = [spec for spec in dialect.fields if spec.key not in exclude]
    by_key = {spec.key: value_strategy(spec) for spec in specs}
    keys = st.lists(st.sampled_from(sorted(by_key)), unique=True, max_size=25)
    mti = st.text("0123456789", min_size=4, max_size=4)
    return st.tuples(mti, keys).flatmap(
        lambda pair: st.fixed_dictionaries(
            {"t": st.just(pair[0])} | {k: by_key[k] for k in pair[1]}
        )
    )


def to_peer(fields: dict) -> dict:
    return {
        key: value.hex().upper() if isinstance(value, bytes) else value
        for key, value in fields.items()
    }


def from_peer(doc: dict, codec: Codec) -> dict:
    out = {}
    for key, value in doc.items():
        if key in ("p", "1", "h"):
            continue
        spec = codec.dialect.field(int(key)) if key != "t" else None
        out[key] = bytes.fromhex(value) if spec and spec.encoding == "binary" else value
    return out


def peer_encode(fields: dict, spec: dict) -> bytes:
    wire, _ = iso8583.encode(copy.deepcopy(to_peer(fields)), spec)
    return bytes(wire)


# ---- the dialect files are the peer's specs, field for field ---------------------------


@pytest.mark.parametrize("name", DIALECTS)
def test_dialect_layout_equals_peer_spec(name):
    peer = PEER_SPECS[name]
    dialect = load_dialect(name)
    kinds = {0: "fixed", 2: "llvar", 3: "lllvar"}
    assert [spec.number for spec in dialect.fields] == list(range(2, 129))
    for spec in dialect.fields:
        theirs = peer[spec.key]
        assert spec.kind == kinds[theirs["len_type"]], spec.key
        assert spec.max_len == theirs["max_len"], spec.key
        assert (spec.encoding == "binary") == (theirs["data_enc"] == "b"), spec.key
        assert theirs["len_enc"] == spec.len_encoding == "ascii", spec.key
    bitmap_binary = peer["p"]["data_enc"] == "b"
    assert (dialect.bitmap_encoding == "binary") == bitmap_binary


# ---- typical messages, table-driven ----------------------------------------------------

ICC = bytes.fromhex("9F2608A1B2C3D4E5F607189F2701809F360200A1950500000080009A03260105")
_REQUEST = {
    "2": "6259000000000001",
    "3": "000000",
    "4": "000000012345",
    "7": "0105093015",
    "11": "000123",
    "12": "093015",
    "13": "0105",
    "14": "2712",
    "18": "5411",
    "22": "051",
    "25": "00",
    "32": "12345678",
    "35": "6259000000000001=27121010000000000",
    "37": "000000123456",
    "41": "TERM0001",
    "42": "MERCH0000000001",
    "43": "PINGAN TEST STORE".ljust(23) + "SHENZHEN".ljust(15) + "CN",  # ans40
    "49": "156",
    "55": ICC,
}
_RESPONSE = {
    key: _REQUEST[key] for key in ("2", "3", "4", "7", "11", "12", "13", "32", "37", "41", "49")
} | {"38": "A1B2C3", "39": "00", "44": "OTB000000100000", "55": ICC[:11]}
MESSAGES = {
    "0100 pre-auth": {"t": "0100", **_REQUEST, "25": "06"},
    "0110 approved": {"t": "0110", **_RESPONSE},
    "0200 purchase": {"t": "0200", **_REQUEST, "52": b"\x01\x23\x45\x67\x89\xab\xcd\xef"},
    "0210 declined": {"t": "0210", **_RESPONSE, "39": "51"},
    "0400 reversal": {
        "t": "0400",
        **{k: _REQUEST[k] for k in ("2", "3", "4", "7", "11", "32", "37", "41", "42", "49")},
        "90": "020000012301050930150001234567800000000000",
    },
    "0410 reversed": {"t": "0410", "3": "000000", "7": "0105093020", "11": "000124", "39": "00"},
    "0800 echo": {"t": "0800", "7": "0105093015", "11": "000001", "70": "301"},
    "0810 sign-on": {"t": "0810", "7": "0105093015", "11": "000001", "39": "00", "70": "001"},
    "0200 with MAC 128": {"t": "0200", "3": "000000", "11": "000002", "128": b"\xaa" * 8},
    "0100 with 64 MAC": {"t": "0100", "3": "310000", "64": b"\x10" * 8},
}


def for_dialect(fields: dict, name: str) -> dict:
    """The ASCII dialect carries binary fields as hex text."""
    if name == "iso87binary":
        return dict(fields)
    return {k: v.hex().upper() if isinstance(v, bytes) else v for k, v in fields.items()}


@pytest.mark.parametrize("name", DIALECTS)
@pytest.mark.parametrize("label", MESSAGES)
def test_typical_message_matches_peer_both_ways(name, label):
    codec, spec = get_codec(name), PEER_SPECS[name]
    fields = for_dialect(MESSAGES[label], name)
    ours = codec.encode(fields)
    assert ours == peer_encode(fields, spec)
    theirs_decoded, _ = iso8583.decode(bytearray(ours), spec)
    assert from_peer(theirs_decoded, codec) == fields
    for _ in range(3):  # generic path, then the compiled plan: same answer every time
        assert codec.decode(ours) == fields
        assert codec.encode(fields) == ours


def test_secondary_bitmap_present_only_when_needed():
    codec = get_codec("iso87ascii")
    assert codec.encode({"t": "0800", "11": "000001"})[4:20] == b"0020000000000000"
    wire = codec.encode({"t": "0800", "11": "000001", "70": "301"})
    assert wire[4:36] == b"80200000000000000400000000000000"
    binary = get_codec("iso87binary").encode({"t": "0800", "11": "000001", "70": "301"})
    assert binary[4:20] == bytes.fromhex("80200000000000000400000000000000")


def test_peer_docstring_example():
    codec = get_codec("iso87ascii")
    assert codec.encode({"t": "0210", "3": "111111", "39": "05"}) == b"0210200000000200000011111105"
    assert codec.decode(b"02004010100000000000161234567890123456123456111") == {
        "t": "0200",
        "2": "1234567890123456",
        "12": "123456",
        "20": "111",
    }


# ---- property: random messages ---------------------------------------------------------


@pytest.mark.parametrize("name", DIALECTS)
def test_random_messages_match_peer(name):
    codec, spec = get_codec(name), PEER_SPECS[name]

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(message_strategy(name))
    def check(fields):
        ours = codec.encode(fields)
        assert ours == peer_encode(fields, spec)
        assert codec.decode(ours) == fields
        theirs, _ = iso8583.decode(bytearray(ours), spec)
        assert from_peer(theirs, codec) == fields

    check()


# ---- a user dialect with bcd, against the peer given the same layout --------------------

BCD_DIALECT = {
    "name": "bcdtest",
    "mti_encoding": "bcd",
    "bitmap_encoding": "binary",
    "fields": {
        "2": {
            "kind": "llvar",
            "max_len": 19,
            "encoding": "bcd",
            "content": "n",
            "len_encoding": "bcd",
            "pad_right": "F",
        },
        "3": {"kind": "fixed", "max_len": 6, "encoding": "bcd", "content": "n"},
        "22": {"kind": "fixed", "max_len": 3, "encoding": "bcd", "content": "n", "pad_left": "0"},
        "35": {
            "kind": "llvar",
            "max_len": 37,
            "encoding": "bcd",
            "content": "z",
            "len_encoding": "bcd",
            "pad_right": "F",
        },
        "41": {"kind": "fixed", "max_len": 8, "encoding": "ascii", "content": "ans"},
        "55": {
            "kind": "lllvar",
            "max_len": 255,
            "encoding": "binary",
            "content": "b",
            "len_encoding": "binary",
        },
    },
}


def _bcd_peer_spec() -> dict:
    def field(len_type, max_len, data_enc="b", len_enc="bcd", **extra):
        return {
            "data_enc": data_enc,
            "len_enc": len_enc,
            "len_type": len_type,
            "max_len": max_len,
            "desc": "",
            **extra,
        }

    spec = copy.deepcopy(default)
    spec["t"] = field(0, 4)
    spec["2"] = field(1, 19, len_count="nibbles", right_pad="F")
    spec["3"] = field(0, 6, len_count="nibbles")
    spec["22"] = field(0, 3, len_count="nibbles", left_pad="0")
    spec["35"] = field(1, 37, len_count="nibbles", right_pad="F")
    spec["41"] = field(0, 8, data_enc="ascii", len_enc="ascii")
    spec["55"] = field(2, 255, len_enc="b")
    return spec


def test_bcd_dialect_matches_peer():
    codec = Codec(dialect_from_dict(BCD_DIALECT))
    spec = _bcd_peer_spec()
    fields = {
        "t": "0100",
        "2": "6259000000000001234",
        "3": "000000",
        "22": "051",
        "35": "6259000000000001D2712101",
        "41": "TERM0001",
        "55": ICC,
    }
    ours = codec.encode(fields)
    peer_fields = dict(fields, **{"55": ICC.hex().upper()})
    assert ours == bytes(iso8583.encode(copy.deepcopy(peer_fields), spec)[0])
    expected = dict(fields, **{"35": fields["35"].replace("D", "=")})  # z decodes to '='
    for _ in range(3):  # generic path, then the compiled plans
        assert codec.encode(fields) == ours
        assert codec.decode(ours) == expected
    assert codec.encode(expected) == ours  # '=' and 'D' both encode as the separator nibble
    theirs, _ = iso8583.decode(bytearray(ours), spec)
    assert {k: v for k, v in theirs.items() if k != "p"} == peer_fields
