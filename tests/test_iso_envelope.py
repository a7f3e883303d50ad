"""The TPDU and UnionPay message header before the MTI (protocols/iso_envelope.py): split,
answered with the addresses swapped, garbage refused cleanly."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.iso_channel import IsoChannel
from protocols.iso_client import IsoClient
from protocols.iso_envelope import (
    ENVELOPES,
    NO_ENVELOPE,
    EnvelopeError,
    Front,
    describe,
)
from protocols.iso_presets import PRESETS, preset

FULL = ENVELOPES["tpdu+header"]
TPDU_ONLY = ENVELOPES["tpdu"]
TPDU = bytes.fromhex("6012340056")
HEADER = bytes.fromhex("603113123456")


def test_split_takes_the_tpdu_and_header_off():
    front, rest = FULL.split(TPDU + HEADER + b"\x02\x00rest")
    assert front == Front(TPDU, HEADER) and rest == b"\x02\x00rest"
    front, rest = TPDU_ONLY.split(TPDU + b"\x02\x00")
    assert front == Front(TPDU, b"") and rest == b"\x02\x00"
    assert NO_ENVELOPE.split(b"\x02\x00") == (Front(b"", b""), b"\x02\x00")


def test_the_answer_swaps_the_addresses_and_asks_nothing():
    answer = FULL.answer_front(Front(TPDU, HEADER))
    assert answer == bytes.fromhex("6000561234") + bytes.fromhex("603110123456")
    assert TPDU_ONLY.answer_front(Front(TPDU, b"")) == bytes.fromhex("6000561234")


@pytest.mark.parametrize("body, part", [
    (b"", "tpdu"),
    (TPDU[:4], "tpdu"),  # one byte short
    (b"\x61" + TPDU[1:] + HEADER, "tpdu"),  # not the TPDU id
    (TPDU + HEADER[:5], "message_header"),  # one byte short
    (TPDU + b"\x6A" + HEADER[1:], "message_header"),  # application type not BCD
    (TPDU + HEADER[:2] + b"\xF0" + HEADER[3:], "message_header"),  # status not BCD
])
def test_a_broken_front_is_named(body, part):
    with pytest.raises(EnvelopeError) as caught:
        FULL.split(body)
    assert caught.value.part == part


def test_a_whole_front_is_enough():
    assert FULL.split(TPDU + HEADER) == (Front(TPDU, HEADER), b"")


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=40))
def test_garbage_splits_or_is_refused_cleanly(data):
    for envelope in ENVELOPES.values():
        try:
            front, rest = envelope.split(data)
        except EnvelopeError as error:
            assert error.front is not None
            envelope.answer_front(error.front)  # answerable whatever it held
        else:
            assert front.tpdu + front.header + rest == data


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=80))
def test_the_channel_answers_any_garbage_in_front_of_bcd(data):
    """Whatever arrives, the listener answers (bytes) and never raises: a TPDU it cannot
    read is 30 format:tpdu, a message it cannot read 30 with what could be read."""
    channel = IsoChannel("unionpay", envelope=FULL)
    answer = channel.decode_request(data)
    assert isinstance(answer, bytes) or hasattr(answer, "request")


def test_the_client_refuses_an_answer_with_another_tpdu():
    client = IsoClient("unionpay", envelope=FULL)
    channel = IsoChannel("unionpay", envelope=FULL)
    request = client.encode({"t": "0800", "7": "1129120000", "11": "000001", "41": "TERM0001",
                             "70": "301"})
    answer = channel.decode_request(request)
    assert client.decode(answer)["39"] == "00"
    with pytest.raises(ValueError, match="TPDU"):
        client.decode(b"\x60\x00\x00\x00\x04" + answer[5:])


def test_describe_names_the_parts():
    assert describe(Front(TPDU, HEADER)) == {
        "tpdu_id": "60", "tpdu_destination": "1234", "tpdu_source": "0056",
        "application_type": "60", "software_version": "31", "terminal_status": "1",
        "processing_requirement": "3", "reserved": "123456"}


def test_presets_name_shipped_parts():
    assert preset("unionpay-pos") == PRESETS["unionpay-pos"]
    assert preset("unionpay-pos").envelope == "tpdu+header"
    assert preset("iso87binary").dialect == "iso87binary"
    assert preset("iso87binary").header is None and preset("iso87binary").envelope is None
