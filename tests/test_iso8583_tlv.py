"""BER-TLV for field 55: tables of bytes, round trips and garbage."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.iso8583 import Iso8583Error, build_tlv, get_codec, parse_tlv

# A contactless (qPBOC) ARQC request's field 55, tag by tag.
ICC_TAGS = {
    "9F26": bytes.fromhex("A1B2C3D4E5F60718"),  # application cryptogram (ARQC)
    "9F27": bytes.fromhex("80"),  # cryptogram information data: ARQC
    "9F10": bytes.fromhex("07010103A0A802010A010000000000ABCDEF12"),  # issuer application data
    "9F37": bytes.fromhex("1A2B3C4D"),  # unpredictable number
    "9F36": bytes.fromhex("00A1"),  # application transaction counter
    "95": bytes.fromhex("0000008000"),  # terminal verification results
    "9A": bytes.fromhex("260105"),  # transaction date YYMMDD
    "9C": bytes.fromhex("00"),  # transaction type: purchase
    "9F02": bytes.fromhex("000000012345"),  # amount, authorised
    "5F2A": bytes.fromhex("0156"),  # transaction currency: CNY
    "82": bytes.fromhex("7C00"),  # application interchange profile
    "9F1A": bytes.fromhex("0156"),  # terminal country: China
}
ICC_WIRE = bytes.fromhex(
    "9F2608A1B2C3D4E5F60718"
    "9F270180"
    "9F101307010103A0A802010A010000000000ABCDEF12"
    "9F37041A2B3C4D"
    "9F360200A1"
    "95050000008000"
    "9A03260105"
    "9C0100"
    "9F0206000000012345"
    "5F2A020156"
    "82027C00"
    "9F1A020156"
)


def test_parse_known_field_55():
    assert parse_tlv(ICC_WIRE) == ICC_TAGS
    assert list(parse_tlv(ICC_WIRE)) == list(ICC_TAGS)  # wire order kept


def test_build_known_field_55():
    assert build_tlv(ICC_TAGS) == ICC_WIRE
    assert build_tlv({"9f26": ICC_TAGS["9F26"]}) == ICC_WIRE[:11]  # lower-case tags accepted


def test_field_55_through_both_dialects():
    binary = get_codec("iso87binary")
    wire = binary.encode({"t": "0100", "55": build_tlv(ICC_TAGS)})
    assert parse_tlv(binary.decode(wire)["55"]) == ICC_TAGS
    ascii_codec = get_codec("iso87ascii")  # field 55 is hex text there
    wire = ascii_codec.encode({"t": "0100", "55": build_tlv(ICC_TAGS).hex().upper()})
    assert parse_tlv(bytes.fromhex(ascii_codec.decode(wire)["55"])) == ICC_TAGS


@pytest.mark.parametrize(
    ("tags", "wire"),
    [
        ({"9F10": b"\x00" * 127}, b"\x9f\x10\x7f" + b"\x00" * 127),  # longest short form
        ({"9F10": b"\x00" * 128}, b"\x9f\x10\x81\x80" + b"\x00" * 128),  # 0x81 form
        ({"9F10": b"\x00" * 255}, b"\x9f\x10\x81\xff" + b"\x00" * 255),
        ({"9F10": b"\x00" * 256}, b"\x9f\x10\x82\x01\x00" + b"\x00" * 256),  # 0x82 form
        ({"DF8101": b"\x01"}, b"\xdf\x81\x01\x01\x01"),  # three-byte tag
        ({"70": bytes.fromhex("9F2701 80")}, bytes.fromhex("70049F270180")),  # constructed: raw
        ({"9C": b""}, b"\x9c\x00"),  # empty value
        ({}, b""),
    ],
)
def test_length_and_tag_forms(tags, wire):
    assert build_tlv(tags) == wire
    assert parse_tlv(wire) == tags


def test_non_minimal_length_is_accepted_on_parse():
    assert parse_tlv(b"\x9f\x27\x81\x01\x80") == {"9F27": b"\x80"}


PARSE_ERRORS = [
    (b"\x9f", 0, "tag truncated"),
    (b"\x9f\x81", 0, "tag truncated"),
    (b"\x9f\x81\x81\x01\x00", 0, "tag longer than 3 bytes"),
    (b"\x9f\x26", 2, "has no length"),
    (b"\x9f\x26\x08\x01\x02", 3, "value truncated: 2 of 8 bytes"),
    (b"\x9f\x26\x80", 2, "indefinite length"),
    (b"\x9f\x26\x83\x00\x00\x01\x00", 2, "3-byte length is too long"),
    (b"\x9f\x26\x82\x01", 2, "length truncated"),
    (b"\x9c\x01\x00\x9c\x01\x00", 3, "tag 9C repeated"),
    (b"\x00\x9c\x01\x00", 0, "zero byte"),
]


@pytest.mark.parametrize(("wire", "offset", "words"), PARSE_ERRORS)
def test_parse_errors(wire, offset, words):
    with pytest.raises(Iso8583Error) as info:
        parse_tlv(wire)
    assert (info.value.field, info.value.offset) == ("55", offset)
    assert words in info.value.reason


@pytest.mark.parametrize(
    ("tags", "words"),
    [
        ({"9F": b""}, "not a well-formed BER tag"),  # low bits 1F need a second byte
        ({"9F9F": b""}, "not a well-formed BER tag"),  # last byte has the continuation bit
        ({"269F": b""}, "not a well-formed BER tag"),  # one-byte tag with a tail
        ({"9F2G": b""}, "not 1..3 bytes of hex"),
        ({"9F 26": b""}, "not 1..3 bytes of hex"),
        ({"": b""}, "not 1..3 bytes of hex"),
        ({"00": b""}, "not 1..3 bytes of hex"),
        ({"DF818101": b""}, "not 1..3 bytes of hex"),
        ({"9F26": "A1B2"}, "value must be bytes"),
        ({"9F10": b"\x00" * 65536}, "too long"),
    ],
)
def test_build_errors(tags, words):
    with pytest.raises(Iso8583Error, match=words) as info:
        build_tlv(tags)
    assert info.value.field == "55"


def _tag() -> st.SearchStrategy[str]:
    one = st.integers(0x01, 0xFF).filter(lambda b: b & 0x1F != 0x1F)
    first = st.integers(0, 0xFF).map(lambda b: b | 0x1F)
    two = st.tuples(first, st.integers(0, 0x7F)).map(bytes)
    three = st.tuples(first, st.integers(0x80, 0xFF), st.integers(0, 0x7F)).map(bytes)
    return st.one_of(one.map(lambda b: bytes([b])), two, three).map(lambda raw: raw.hex().upper())


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(_tag(), st.binary(max_size=300), max_size=12))
def test_round_trip(tags):
    assert parse_tlv(build_tlv(tags)) == tags


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_garbage_raises_only_iso8583_error(garbage):
    try:
        tags = parse_tlv(garbage)
    except Iso8583Error as error:
        assert error.field == "55" and 0 <= error.offset <= len(garbage)
    else:
        assert build_tlv(tags) == garbage or len(build_tlv(tags)) < len(garbage)
