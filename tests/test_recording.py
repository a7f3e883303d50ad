"""The recording format (protocols/recording.py) and its writer (switch/recorder.py): records
survive a round trip, a torn tail is dropped, garbage is a clean error, and every bound of the
writer holds (its buffer, a file's size, the series' total)."""

from __future__ import annotations

import logging
import stat
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols.messages import AuthRequest, AuthResponse, MessageClass
from protocols.recording import (
    FRAME,
    HEADER,
    Batch,
    ChannelWire,
    Exchange,
    Meta,
    RecordingError,
    encode_batch,
    frame,
    frame_payload,
    parse,
    read_series,
)
from switch.recorder import Recorder, RecorderBounds, recording_files

WIRES = {"jd": ChannelWire("binary4"), "pos": ChannelWire("binary2", "iso87ascii")}
NEVER_S = 3600.0  # a flush interval the test never reaches: only close() writes
PAN = "6253680000000012"

exchanges = st.builds(
    Exchange, channel=st.sampled_from(["jd", "pos"]), connection=st.integers(0, 2**40),
    arrival_ns=st.integers(0, 2**63 - 1), decision_ns=st.integers(0, 2**40),
    request=st.binary(max_size=300), answer=st.binary(max_size=300),
    card=st.text(max_size=19), kind=st.sampled_from(["", "sale", "auth"]),
    amount_fen=st.integers(0, 10**12), mcc=st.text(max_size=4),
    response_code=st.text(max_size=2), reason=st.text(max_size=40))


batches = st.lists(exchanges, max_size=3).map(Batch)


@given(st.lists(batches, max_size=5))
def test_records_come_back_as_written(records):
    meta = Meta(process=7, started_ns=1, channels=WIRES)
    data = HEADER + b"".join(frame(r) for r in [meta, *records])
    assert parse(data) == ([meta, *records], 0)


def test_a_batch_encoded_from_rows_reads_as_its_exchanges():
    row = ("pos", 3, 10, 2, b"q", b"a", PAN, MessageClass.SALE, 100, "5411", "00", "")
    short = ("jd", 4, 11, 1, b"bad", b"refused")  # the codec's own refusal: fields default
    records, torn = parse(HEADER + frame_payload(encode_batch([row, short])))
    assert torn == 0 and records == [Batch([Exchange(*row[:7], "sale", *row[8:]),
                                            Exchange(*short)])]


@given(st.lists(batches, min_size=1, max_size=4), st.data())
def test_a_torn_tail_is_dropped_and_what_precedes_it_kept(records, data):
    whole = HEADER + b"".join(frame(r) for r in records)
    last = len(frame(records[-1]))
    cut = data.draw(st.integers(1, last - 1))
    parsed, torn = parse(whole[:-cut])
    assert parsed == records[:-1] and torn == last - cut


@given(st.binary(max_size=200))
def test_garbage_is_refused_cleanly_or_read_as_nothing(garbage):
    try:
        records, torn = parse(garbage)
    except RecordingError:
        return
    # Only the header, or a prefix of it, reads so: a file cut short as it was begun.
    assert records == [] and torn == len(garbage) - (len(HEADER) if garbage == HEADER else 0)


@given(st.binary(max_size=200))
def test_garbage_after_the_header_is_a_torn_tail_or_a_clean_error(garbage):
    try:
        records, torn = parse(HEADER + garbage)
    except RecordingError:
        return
    assert torn <= len(garbage)


def test_a_record_whose_checksum_holds_but_does_not_decode_is_damage():
    payload = b"\xc1"  # msgpack's never-used byte
    meta = frame(Meta(process=1, started_ns=1, channels={}))
    bad = FRAME.pack(len(payload), zlib.crc32(payload)) + payload
    with pytest.raises(RecordingError, match="does not decode"):
        parse(HEADER + meta + bad)


def note(recorder: Recorder, number: int, size: int = 100) -> None:
    request = AuthRequest(message_class=MessageClass.SALE, channel="jd", card=PAN,
                          amount_fen=number, mcc="5411")
    recorder.note("jd", 1, number, 5, b"q" * size, b"a" * size, request,
                  AuthResponse(response_code="00"))


def read(folder) -> list[Exchange]:
    series = read_series([(p.name, p.read_bytes()) for p in recording_files(folder)])
    return [x for one in series for x in one.exchanges]


def test_a_full_buffer_drops_and_counts_rather_than_wait(tmp_path, caplog):
    recorder = Recorder(tmp_path, WIRES, RecorderBounds(buffer_records_max=3,
                                                        flush_interval_s=NEVER_S))
    for number in range(5):
        note(recorder, number)
    assert (len(recorder.waiting), recorder.dropped) == (3, 2)
    with caplog.at_level(logging.WARNING, "switch.recorder"):
        recorder.close()
    assert "2 exchanges dropped so far" in caplog.text
    recorded = read(tmp_path)
    assert [x.amount_fen for x in recorded] == [0, 1, 2]
    assert recorder.counters() == {"recorded": 3, "record_dropped": 2}
    assert recorded[0].card == PAN  # as in the request bytes beside it; masked when shown
    assert (recorded[0].kind, recorded[0].response_code) == ("sale", "00")


def test_files_rotate_at_their_bound_and_are_private(tmp_path):
    recorder = Recorder(tmp_path, WIRES, RecorderBounds(total_max_bytes=10**9,
                                                        flush_interval_s=NEVER_S,
                                                        batch_records_max=1))
    one = len(frame(Batch([Exchange("jd", 1, recorder.wall_offset_ns, 5, b"q" * 100,
                                    b"a" * 100, PAN, "sale", 10, "5411", "00", "")])))
    file_max = recorder.sizes[recorder.files[0]] + 3 * one  # its header, three exchanges
    recorder.bounds.file_max_bytes = file_max
    for number in range(10, 20):
        note(recorder, number)
    recorder.close()
    files = recording_files(tmp_path)
    assert len(files) == 4  # 3 + 3 + 3 + 1
    assert all(path.stat().st_size <= file_max for path in files)
    assert files[0].stat().st_size == file_max  # full to the byte: the bound is not loose
    assert all(stat.S_IMODE(path.stat().st_mode) == 0o600 for path in files)
    assert [x.amount_fen for x in read(tmp_path)] == list(range(10, 20))


def test_the_oldest_file_goes_when_the_total_is_past_its_bound(tmp_path, caplog):
    bounds = RecorderBounds(file_max_bytes=600, total_max_bytes=1500,
                            flush_interval_s=NEVER_S, batch_records_max=1)
    recorder = Recorder(tmp_path, WIRES, bounds)
    with caplog.at_level(logging.WARNING, "switch.recorder"):
        for number in range(40):
            note(recorder, number)
        recorder.close()
    files = recording_files(tmp_path)
    sizes = sum(path.stat().st_size for path in files)
    assert sizes <= 1500 and len(files) >= 2
    assert "deleted the oldest file" in caplog.text
    kept = [x.amount_fen for x in read(tmp_path)]
    assert kept == list(range(40 - len(kept), 40))  # the newest, in order


def test_a_file_bound_above_the_total_is_refused():
    with pytest.raises(ValueError, match="at most the total"):
        RecorderBounds(file_max_bytes=2000, total_max_bytes=1999)
    RecorderBounds(file_max_bytes=2000, total_max_bytes=2000)


def test_the_writer_thread_writes_without_being_closed(tmp_path):
    recorder = Recorder(tmp_path, WIRES, RecorderBounds(flush_interval_s=0.01))
    try:
        note(recorder, 42)
        deadline_polls = 500
        while recorder.written == 0 and deadline_polls:
            recorder._stop.wait(0.01)
            deadline_polls -= 1
        assert recorder.written == 1
        assert [x.amount_fen for x in read(tmp_path)] == [42]
    finally:
        recorder.close()


def test_a_batch_holds_at_most_its_bound_of_exchanges(tmp_path):
    recorder = Recorder(tmp_path, WIRES, RecorderBounds(flush_interval_s=NEVER_S,
                                                        batch_records_max=2))
    for number in range(5):
        note(recorder, number)
    recorder.close()
    records, _ = parse(recording_files(tmp_path)[0].read_bytes())
    assert [len(r.exchanges) for r in records[1:]] == [2, 2, 1]
