"""The unionpay dialect against pyiso8583 given UnionPay's layout, written here by hand from
the UnionPay POS field table (not generated from the dialect file), both ways; and its F60
sub-fields as data."""

from __future__ import annotations

import copy

import iso8583
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocols.iso8583 import DialectError, Iso8583Error, get_codec, load_dialect
from protocols.iso8583.codec import Codec
from protocols.iso8583.dialect import dialect_from_dict
from tests.test_iso8583_interop import value_strategy


def _bcd(len_type, max_len, **extra):
    return {"data_enc": "b", "len_enc": "bcd", "len_type": len_type, "max_len": max_len,
            "len_count": "nibbles", "desc": "", **extra}


def _text(len_type, max_len):
    return {"data_enc": "ascii", "len_enc": "bcd", "len_type": len_type, "max_len": max_len,
            "desc": ""}


def _binary(len_type, max_len):
    return {"data_enc": "b", "len_enc": "bcd", "len_type": len_type, "max_len": max_len,
            "desc": ""}


# UnionPay POS: numeric fields packed BCD (variable ones left-aligned, a '0' nibble on the
# right; F22 left-aligned, F23 right-aligned), LL/LLL prefixes BCD in 1/2 bytes.
PEER_SPEC = {
    "h": {"data_enc": "ascii", "len_enc": "ascii", "len_type": 0, "max_len": 0, "desc": ""},
    "t": _bcd(0, 4),
    "p": {"data_enc": "b", "len_enc": "ascii", "len_type": 0, "max_len": 8, "desc": ""},
    "1": {"data_enc": "b", "len_enc": "ascii", "len_type": 0, "max_len": 8, "desc": ""},
    "2": _bcd(1, 19, right_pad="0"),
    "3": _bcd(0, 6), "4": _bcd(0, 12), "7": _bcd(0, 10), "11": _bcd(0, 6), "12": _bcd(0, 6),
    "13": _bcd(0, 4), "14": _bcd(0, 4), "15": _bcd(0, 4), "18": _bcd(0, 4),
    "22": _bcd(0, 3, right_pad="0"), "23": _bcd(0, 3, left_pad="0"),
    "25": _bcd(0, 2), "26": _bcd(0, 2),
    "32": _bcd(1, 11, right_pad="0"), "33": _bcd(1, 11, right_pad="0"),
    "35": _bcd(1, 37, right_pad="0"), "36": _bcd(2, 104, right_pad="0"),
    "37": _text(0, 12), "38": _text(0, 6), "39": _text(0, 2), "41": _text(0, 8),
    "42": _text(0, 15), "44": _text(1, 25), "48": _bcd(2, 322, right_pad="0"),
    "49": _text(0, 3), "52": _binary(0, 8), "53": _bcd(0, 16), "54": _text(2, 20),
    "55": _binary(2, 255), "58": _text(2, 100), "60": _bcd(2, 17, right_pad="0"),
    "61": _bcd(2, 29, right_pad="0"), "62": _binary(2, 512), "63": _text(2, 163),
    "64": _binary(0, 8), "70": _bcd(0, 3, left_pad="0"), "90": _bcd(0, 42),
    "95": _text(0, 42), "128": _binary(0, 8),
}
DIALECT = load_dialect("unionpay")
Z_FIELDS = {spec.key for spec in DIALECT.fields if spec.content == "z"}


def to_peer(fields: dict) -> dict:
    """pyiso8583 takes binary and bcd data as hex text: bytes in hex, the track separator
    as its nibble D."""
    return {key: value.hex().upper() if isinstance(value, bytes)
            else value.replace("=", "D") if key in Z_FIELDS else value
            for key, value in fields.items()}


def from_peer(doc: dict) -> dict:
    out = {}
    for key, value in doc.items():
        if key in ("p", "1", "h"):
            continue
        spec = DIALECT.field(int(key)) if key != "t" else None
        if spec is not None and spec.encoding == "binary":
            value = bytes.fromhex(value)
        elif key in Z_FIELDS:
            value = value.upper().replace("D", "=")
        out[key] = value
    return out


def test_every_dialect_field_is_in_the_peer_spec_and_back():
    assert {spec.key for spec in DIALECT.fields} == set(PEER_SPEC) - {"h", "t", "p", "1"}


def test_typical_sale_both_ways():
    codec = get_codec("unionpay")
    sale = {"t": "0200", "2": "6253680000000018", "3": "000000", "4": "000000012800",
            "7": "1129120000", "11": "000123", "22": "052", "25": "00", "32": "00010000",
            "35": "6253680000000018=291210", "41": "TERM0001", "42": "898310054110001",
            "49": "156", "60": "22000001", "64": bytes(8)}
    ours = codec.encode(sale)
    assert ours[:2] == b"\x02\x00"  # BCD MTI
    assert ours == bytes(iso8583.encode(copy.deepcopy(to_peer(sale)), PEER_SPEC)[0])
    theirs, _ = iso8583.decode(bytearray(ours), PEER_SPEC)
    assert from_peer(theirs) == sale
    assert codec.decode(ours) == sale
    # F22 052 is left-aligned: 05 20; F2's 16 digits need no pad; F35's 23 get a '0' nibble.
    assert b"\x05\x20" in ours and b"\x23\x62\x53\x68" in ours
    assert b"\xd2\x91\x21\x00" in ours  # ...=291210 and the pad nibble


def z_free_of_d(spec):
    """Track data as generated with '=' only: 'D' decodes back as '=' (one nibble)."""
    values = value_strategy(spec)
    return values.map(lambda v: v.replace("D", "=")) if spec.content == "z" else values


@st.composite
def messages(draw):
    keys = draw(st.lists(st.sampled_from([s.key for s in DIALECT.fields]), unique=True,
                         max_size=20))
    fields = {"t": draw(st.text("0123456789", min_size=4, max_size=4))}
    for key in keys:
        fields[key] = draw(z_free_of_d(DIALECT.field(int(key))))
    return fields


def test_random_messages_match_peer_both_ways():
    codec = get_codec("unionpay")

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(messages())
    def check(fields):
        ours = codec.encode(fields)
        assert ours == bytes(iso8583.encode(copy.deepcopy(to_peer(fields)), PEER_SPEC)[0])
        assert codec.decode(ours) == fields
        theirs, _ = iso8583.decode(bytearray(ours), PEER_SPEC)
        assert from_peer(theirs) == fields

    check()


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=120))
def test_garbage_is_a_clean_error(data):
    try:
        get_codec("unionpay").decode(data)
    except Iso8583Error:
        pass


def test_a_bcd_field_with_a_non_digit_nibble_is_named():
    codec = get_codec("unionpay")
    wire = bytearray(codec.encode({"t": "0200", "3": "000000", "11": "000123"}))
    wire[-1] = 0x2A  # F11's last byte: nibble A is not a digit
    with pytest.raises(Iso8583Error) as caught:
        codec.decode(bytes(wire))
    assert caught.value.field == "11"


def test_f60_subfields_are_named_by_the_dialect():
    assert DIALECT.subfield_values("60", "22000123201") == {
        "message_type_code": "22", "batch_number": "000123",
        "network_management_code": "201"}
    assert DIALECT.subfield_values("60", "2200") == {"message_type_code": "22",
                                                     "batch_number": "00"}
    assert DIALECT.subfield_values("60", "00000000000001")["partial_approval"] == "1"
    assert DIALECT.subfield_values("3", "000000") == {}


@pytest.mark.parametrize("subfields, problem", [
    ({"61": [{"name": "a", "size": 1}]}, "not a field"),
    ({"2": []}, "list"),
    ({"2": [{"name": "a b", "size": 1}]}, "identifier"),
    ({"2": [{"name": "a", "size": 0}]}, "positive"),
    ({"2": [{"name": "a", "size": 1, "width": 2}]}, "unknown keys"),
    ({"2": [{"name": "a", "size": 1}, {"name": "a", "size": 2}]}, "repeat"),
])
def test_subfield_layout_mistakes_are_named(subfields, problem):
    table = {"name": "x", "fields": {"2": {"kind": "llvar", "max_len": 19,
                                           "encoding": "ascii", "content": "n"}},
             "subfields": subfields}
    with pytest.raises(DialectError, match=problem):
        dialect_from_dict(table)


def _outcome(codec, wire: bytes):
    try:
        return ("ok", codec.decode(wire))
    except Iso8583Error as error:
        return ("error", error.field, error.offset, error.reason, error.decoded)


def test_compiled_plans_agree_with_the_generic_path():
    """BCD fields through the compiled plans: the same bytes and values as the generic path,
    and the same error (field, offset, what was read) for the same shape damaged."""
    generic = Codec(DIALECT, plans=False)

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(messages(), st.data())
    def check(fields, data):
        codec = Codec(DIALECT)
        wire = generic.encode(fields)
        for _ in range(3):  # the third goes through the plans compiled for the shape
            assert codec.encode(fields) == wire
            assert codec.decode(wire) == fields
        assert codec._enc_plans.plans and codec._dec_plans.plans  # the plans were built
        at = data.draw(st.integers(0, len(wire) - 1))
        damaged = wire[:at] + bytes([data.draw(st.integers(0, 255))]) + wire[at + 1:]
        assert _outcome(codec, damaged) == _outcome(generic, damaged)

    check()
