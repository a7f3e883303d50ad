"""Length-header framing: tables of bytes and properties."""

from __future__ import annotations

import typing

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols.framing import (
    ASCII_2,
    ASCII_4,
    ASCII_4_SELF,
    BINARY_2,
    BINARY_2_SELF,
    BINARY_4,
    HEADER_FORMATS,
    Framer,
    FramingError,
)
from switch.config import Iso8583

HEADERS = [BINARY_2, BINARY_4, ASCII_4, ASCII_2, BINARY_2_SELF, ASCII_4_SELF]


@pytest.mark.parametrize(("header", "body", "wire"), [
    (BINARY_2, b"abc", b"\x00\x03abc"),
    (BINARY_4, b"{}", b"\x00\x00\x00\x02{}"),
    (ASCII_4, b"0800", b"00040800"),
    (BINARY_2, b"", b"\x00\x00"),
    (ASCII_2, b"0800", b"040800"),
    (BINARY_2_SELF, b"abc", b"\x00\x05abc"),  # 2 + 3
    (ASCII_4_SELF, b"0800", b"00080800"),
    (BINARY_2_SELF, b"", b"\x00\x02"),
])
def test_frame_table(header, body, wire):
    framer = Framer(header, 1024)
    assert framer.frame(body) == wire
    assert Framer(header, 1024).feed(wire) == [body]


@pytest.mark.parametrize("header", HEADERS)
@given(bodies=st.lists(st.binary(max_size=300), max_size=8), cut=st.integers(1, 50))
def test_one_byte_at_a_time_equals_one_chunk(header, bodies, cut):
    bodies = [body[:header.length_max] for body in bodies]  # ascii2 holds 99 bytes at most
    wire = b"".join(Framer(header, 1024).frame(body) for body in bodies)
    whole = Framer(header, 1024).feed(wire)
    bytewise, chunked = Framer(header, 1024), Framer(header, 1024)
    assert [f for i in range(len(wire)) for f in bytewise.feed(wire[i:i + 1])] == bodies
    assert [f for i in range(0, len(wire), cut) for f in chunked.feed(wire[i:i + cut])] == bodies
    assert whole == bodies
    assert bytewise.pending_bytes == 0


@pytest.mark.parametrize("header", HEADERS)
def test_oversized_header_is_refused_before_the_body_arrives(header):
    framer = Framer(header, 50)
    with pytest.raises(FramingError, match="exceeds the maximum of 50 bytes"):
        framer.feed(header.encode(51))  # only the header: nothing of the body is buffered


def test_ascii_header_must_be_digits():
    with pytest.raises(FramingError, match="not decimal digits"):
        Framer(ASCII_4, 100).feed(b"12a4xxxx")


@given(garbage=st.binary(max_size=200))
def test_garbage_gives_frames_or_a_framing_error_only(garbage):
    for header in HEADERS:
        try:
            frames = Framer(header, 64).feed(garbage)
        except FramingError:
            continue
        assert all(len(frame) <= 64 for frame in frames)


def test_encoding_a_body_too_large_is_refused():
    with pytest.raises(FramingError):
        Framer(BINARY_2, 10).frame(b"x" * 11)


# --- bounds: the header's capacity and the frame size maximum, at and past each -------------

@pytest.mark.parametrize(("header", "length_max", "wire_max", "wire_zero"), [
    (BINARY_2, 65_535, b"\xff\xff", b"\x00\x00"),
    (BINARY_4, 2**32 - 1, b"\xff\xff\xff\xff", b"\x00\x00\x00\x00"),
    (ASCII_4, 9_999, b"9999", b"0000"),
    (ASCII_2, 99, b"99", b"00"),
    (BINARY_2_SELF, 65_533, b"\xff\xff", b"\x00\x02"),
    (ASCII_4_SELF, 9_995, b"9999", b"0004"),
])
def test_a_header_holds_lengths_from_zero_to_its_capacity(header, length_max, wire_max,
                                                          wire_zero):
    assert header.length_max == length_max
    assert (header.encode(length_max), header.encode(0)) == (wire_max, wire_zero)
    assert (header.decode(wire_max), header.decode(wire_zero)) == (length_max, 0)
    for length in (length_max + 1, -1):
        with pytest.raises(FramingError, match=f"does not fit a {header.name} header"):
            header.encode(length)


def test_a_body_too_long_for_the_ascii_header_is_refused_not_sent_with_five_digits():
    # "10000" would be read as a 4-digit header "1000" and a body starting with "0":
    # every frame after it would be cut in the wrong place.
    framer = Framer(ASCII_4, 20_000)
    with pytest.raises(FramingError, match="does not fit a 4-byte ASCII header"):
        framer.frame(b"x" * 10_000)
    assert framer.frame(b"x" * 9_999)[:4] == b"9999"


@pytest.mark.parametrize("header", HEADERS)
def test_a_frame_of_exactly_the_maximum_passes_one_byte_more_does_not(header):
    most = 50
    body = bytes(range(most))
    wire = Framer(header, most).frame(body)
    assert wire == header.encode(most) + body
    assert Framer(header, most).feed(wire) == [body]
    with pytest.raises(FramingError, match=f"frame of {most + 1} bytes exceeds the maximum"):
        Framer(header, most).frame(body + b"!")
    with pytest.raises(FramingError, match=f"frame of {most + 1} bytes exceeds the maximum"):
        Framer(header, most).feed(header.encode(most + 1))


@pytest.mark.parametrize("header", HEADERS)
def test_pending_bytes_counts_what_waits_for_the_rest_of_a_frame(header):
    framer = Framer(header, 100)
    wire = framer.frame(b"hello") + framer.frame(b"world")
    assert framer.feed(wire[:header.size_bytes - 1]) == []
    assert framer.pending_bytes == header.size_bytes - 1  # half a header
    assert framer.feed(wire[header.size_bytes - 1:header.size_bytes + 3]) == []
    assert framer.pending_bytes == 3  # the header is read; three bytes of the body wait
    assert framer.feed(wire[header.size_bytes + 3:-2]) == [b"hello"]
    assert framer.feed(wire[-2:]) == [b"world"]
    assert framer.pending_bytes == 0


@pytest.mark.parametrize("header", HEADERS)
def test_in_frame_from_the_first_byte_of_a_frame_to_its_last(header):
    framer = Framer(header, 100)
    wire = framer.frame(b"hello") + framer.frame(b"")
    assert not framer.in_frame
    framer.feed(wire[:1])
    assert framer.in_frame  # one byte of the header
    framer.feed(wire[1:header.size_bytes])
    assert framer.in_frame and framer.pending_bytes == 0  # the whole header, none of the body
    framer.feed(wire[header.size_bytes:header.size_bytes + 5])
    assert not framer.in_frame  # "hello" is whole
    framer.feed(wire[header.size_bytes + 5:])
    assert not framer.in_frame  # an empty body is whole with its header


@pytest.mark.parametrize("header", [b"+123", b" 123", b"-001", b"1.00", b"\x001\x002"])
def test_an_ascii_header_of_anything_but_four_decimal_digits_is_refused(header):
    with pytest.raises(FramingError, match="is not decimal digits"):
        Framer(ASCII_4, 9_999).feed(header + b"body")


@pytest.mark.parametrize(("header", "wire"), [
    (BINARY_2_SELF, b"\x00\x01x"),
    (BINARY_2_SELF, b"\x00\x00"),
    (ASCII_4_SELF, b"0003xyz"),
    (ASCII_4_SELF, b"0000"),
])
def test_a_length_that_counts_itself_cannot_count_less_than_its_header(header, wire):
    with pytest.raises(FramingError, match="counts less than the"):
        Framer(header, 100).feed(wire)


def test_a_length_that_counts_itself_splits_frames_where_it_says():
    wire = b"\x00\x02" + b"\x00\x04ab" + b"\x00\x03c"
    assert Framer(BINARY_2_SELF, 100).feed(wire) == [b"", b"ab", b"c"]
    assert Framer(ASCII_4_SELF, 100).feed(b"00040006ab0005c") == [b"", b"ab", b"c"]


def test_the_header_formats_by_the_names_a_config_gives_them():
    assert HEADER_FORMATS == {"binary2": BINARY_2, "binary4": BINARY_4, "ascii4": ASCII_4,
                              "ascii2": ASCII_2, "binary2self": BINARY_2_SELF,
                              "ascii4self": ASCII_4_SELF}
    assert [header.name for header in HEADERS] == [
        "2-byte binary", "4-byte binary", "4-byte ASCII", "2-digit ASCII",
        "2-byte binary, counting itself", "4-byte ASCII, counting itself"]
    # The config takes every preset by name, and nothing else.
    assert set(typing.get_args(typing.get_type_hints(Iso8583)["header"])) == set(HEADER_FORMATS)
    with pytest.raises(AttributeError):  # one value shared by every listener: never changed
        BINARY_2.size_bytes = 4
