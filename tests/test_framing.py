"""Length-header framing: tables of bytes and properties."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols.framing import ASCII_4, BINARY_2, BINARY_4, Framer, FramingError

HEADERS = [BINARY_2, BINARY_4, ASCII_4]


@pytest.mark.parametrize(("header", "body", "wire"), [
    (BINARY_2, b"abc", b"\x00\x03abc"),
    (BINARY_4, b"{}", b"\x00\x00\x00\x02{}"),
    (ASCII_4, b"0800", b"00040800"),
    (BINARY_2, b"", b"\x00\x00"),
])
def test_frame_table(header, body, wire):
    framer = Framer(header, 1024)
    assert framer.frame(body) == wire
    assert Framer(header, 1024).feed(wire) == [body]


@pytest.mark.parametrize("header", HEADERS)
@given(bodies=st.lists(st.binary(max_size=300), max_size=8), cut=st.integers(1, 50))
def test_one_byte_at_a_time_equals_one_chunk(header, bodies, cut):
    wire = b"".join(Framer(header, 1024).frame(body) for body in bodies)
    whole = Framer(header, 1024).feed(wire)
    bytewise, chunked = Framer(header, 1024), Framer(header, 1024)
    assert [f for i in range(len(wire)) for f in bytewise.feed(wire[i:i + 1])] == bodies
    assert [f for i in range(0, len(wire), cut) for f in chunked.feed(wire[i:i + cut])] == bodies
    assert whole == bodies
    assert bytewise.pending_bytes == 0


@pytest.mark.parametrize("header", HEADERS)
def test_oversized_header_is_refused_before_the_body_arrives(header):
    framer = Framer(header, 100)
    with pytest.raises(FramingError, match="exceeds the maximum of 100 bytes"):
        framer.feed(header.encode(101))  # only the header: nothing of the body is buffered


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
