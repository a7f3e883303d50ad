"""The store-and-forward journal (switch/journal.py): real files, real fsyncs."""

from __future__ import annotations

import asyncio
import logging
import os
import struct
import zlib

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.messages import AuthRequest, MessageClass
from switch import limits
from switch.journal import (
    FRAME,
    HEADER,
    Advice,
    Journal,
    JournalBusy,
    JournalCorrupt,
    JournalFull,
    Void,
    frame,
    parse,
    read_cursor,
    snapshot,
)


def void(n: int) -> Void:
    return Void(id=f"v{n}", pan="6253990000000018", idempotency_key=f"jd:m:T{n}",
                auth_id=f"{n:06d}", not_before_ms=1000 + n, written_ms=n)


def advice(n: int, amount: int = 100) -> Advice:
    request = AuthRequest(message_class=MessageClass.SALE, channel="jd",
                          card="6253990000000018", amount_fen=amount, mcc="5411",
                          txn_ref=f"jd:m:T{n}", idempotency_key=f"jd:m:T{n}")
    return Advice(id=f"a{n}", request=request, auth_id=f"{n:06d}", approved_fen=amount,
                  beans_per_yuan=5, written_ms=n)


async def test_records_appended_in_one_tick_share_one_fsync_and_read_back(tmp_path):
    journal = Journal.open_locked(tmp_path / "saf-0.journal")
    waits = [journal.append([void(1), advice(1)]), journal.append([void(2)]),
             journal.append([advice(3)])]
    assert not any(w.done() for w in waits)  # not before the fsync
    for wait in waits:
        await wait
    assert journal.fsyncs == 1
    await journal.append([void(4)])
    assert journal.fsyncs == 2
    journal.close()
    seen = snapshot(tmp_path / "saf-0.journal")
    assert seen.records == [void(1), advice(1), void(2), advice(3), void(4)]
    assert (seen.forwarded, seen.torn_bytes) == (0, 0)


async def write(path, records) -> bytes:
    journal = Journal.open_locked(path)
    await journal.append(records)
    journal.close()
    return path.read_bytes()


@pytest.mark.parametrize("cut", [1, FRAME.size - 1, FRAME.size, FRAME.size + 5])
async def test_a_torn_last_record_is_dropped_on_open_never_misread(tmp_path, cut):
    path = tmp_path / "saf-0.journal"
    whole = await write(path, [void(1), advice(2)])
    last = len(frame(advice(2)))
    path.write_bytes(whole[: len(whole) - last + cut])  # the last record cut short
    journal = Journal.open_locked(path)
    assert journal.records == [void(1)]
    assert path.stat().st_size == len(whole) - last  # the tail is gone from the file too
    await journal.append([void(3)])  # and what comes next follows the good records
    journal.close()
    assert snapshot(path).records == [void(1), void(3)]


async def test_a_last_record_with_a_wrong_checksum_is_dropped(tmp_path):
    path = tmp_path / "saf-0.journal"
    whole = bytearray(await write(path, [void(1), void(2)]))
    whole[-1] ^= 0xFF  # the last payload byte flipped: its CRC no longer holds
    path.write_bytes(bytes(whole))
    assert snapshot(path).records == [void(1)]
    assert snapshot(path).torn_bytes == len(frame(void(2)))


async def test_a_record_whose_checksum_holds_but_does_not_decode_is_damage(tmp_path):
    path = tmp_path / "saf-0.journal"
    await write(path, [void(1)])
    junk = b"\xc1not msgpack"
    with path.open("ab") as out:
        out.write(struct.pack(">II", len(junk), zlib.crc32(junk)) + junk)
    with pytest.raises(JournalCorrupt, match="good checksum"):
        Journal.open_locked(path)


def test_a_file_that_is_not_a_journal_is_refused(tmp_path):
    path = tmp_path / "saf-0.journal"
    path.write_bytes(b"something else entirely\n")
    with pytest.raises(JournalCorrupt, match="bad header"):
        Journal.open_locked(path)


def test_a_length_above_the_record_bound_is_a_tear_not_a_read(tmp_path):
    big = limits.saf_record_size_max_bytes + 1
    data = HEADER + frame(void(1)) + struct.pack(">II", big, 0) + b"x" * 10
    records, good_end = parse(data)
    assert [r for _, r in records] == [void(1)]
    assert good_end == len(HEADER) + len(frame(void(1)))


@settings(max_examples=200, deadline=None)
@given(kinds=st.lists(st.booleans(), min_size=1, max_size=8), data=st.data())
def test_any_prefix_of_a_journal_reads_as_a_prefix_of_its_records(kinds, data):
    records = [advice(n) if kind else void(n) for n, kind in enumerate(kinds)]
    whole = HEADER + b"".join(frame(r) for r in records)
    cut = data.draw(st.integers(0, len(whole)))
    parsed, good_end = parse(whole[:cut])
    got = [r for _, r in parsed]
    assert got == records[: len(got)]
    assert good_end <= max(cut, 0)
    if cut == len(whole):
        assert got == records


async def test_the_bound_refuses_records_past_records_max(tmp_path):
    journal = Journal.open_locked(tmp_path / "saf-0.journal", records_max=3)
    await journal.append([void(1), void(2)])
    assert journal.room() == 1
    with pytest.raises(JournalFull):
        journal.append([void(3), void(4)])
    await journal.append([void(3)])  # exactly at the bound: accepted
    with pytest.raises(JournalFull):
        journal.append([void(4)])
    journal.close()


async def test_the_cursor_survives_a_reopen_and_a_drain_starts_the_file_over(tmp_path):
    path = tmp_path / "saf-0.journal"
    journal = Journal.open_locked(path)
    await journal.append([void(1), advice(2), void(3)])
    journal.advance(2)
    assert not journal.drained()  # one record still waits
    journal.close()
    journal = Journal.open_locked(path)
    assert journal.pending == [void(3)]
    assert snapshot(path).forwarded == 2
    with pytest.raises(ValueError):
        journal.advance(2)  # only one is pending
    drained = []
    journal.on_drain.append(lambda: drained.append(True))
    journal.advance(1)
    assert journal.drained() and drained == [True]
    assert path.read_bytes() == HEADER and read_cursor(path) == len(HEADER)
    assert not journal.drained()  # nothing to drain
    journal.close()


async def test_one_process_holds_a_journal_and_claim_takes_the_next_free_one(tmp_path):
    first = Journal.claim(tmp_path)
    with pytest.raises(JournalBusy):
        Journal.open_locked(first.path)
    second = Journal.claim(tmp_path)
    assert (first.path.name, second.path.name) == ("saf-0.journal", "saf-1.journal")
    first.close()
    again = Journal.claim(tmp_path)  # a restarted worker takes over the free journal
    assert again.path.name == "saf-0.journal"
    again.close()
    second.close()


async def test_a_failed_write_forgets_its_records_and_fails_their_waiters(tmp_path):
    journal = Journal.open_locked(tmp_path / "saf-0.journal")
    await journal.append([void(1)])
    wait = journal.append([void(2)])
    os.close(journal.fd)  # the write will fail: EBADF
    journal.fd = os.open(os.devnull, os.O_RDONLY)
    with pytest.raises(OSError):
        await wait
    assert journal.records == [void(1)] and journal.room() == limits.saf_journal_records_max - 1
    journal.close()


def test_records_encode_as_tagged_msgpack():
    encoded = msgspec.msgpack.decode(frame(void(1))[FRAME.size:])
    assert encoded["type"] == "void" and encoded["auth_id"] == "000001"


def test_claim_gives_up_past_the_journals_bound_naming_the_folder(tmp_path):
    held = [Journal.claim(tmp_path) for _ in range(limits.saf_journals_max)]
    try:
        assert held[-1].path.name == f"saf-{limits.saf_journals_max - 1}.journal"
        with pytest.raises(JournalBusy, match=f"all {limits.saf_journals_max} journals"):
            Journal.claim(tmp_path)
    finally:
        for journal in held:
            journal.close()


async def test_a_record_is_pending_for_the_forwarder_only_once_it_is_on_disk(tmp_path):
    journal = Journal.open_locked(tmp_path / "saf-0.journal")
    written = journal.append([advice(1)])
    assert journal.pending == [] and not journal.drained()  # its fsync is still to come
    with pytest.raises(ValueError):
        journal.advance(1)
    await written
    assert journal.pending == [advice(1)]
    journal.close()


# --- what the mutants of switch/journal.py showed untested ---------------------------------


async def test_files_are_the_owners_alone_and_named_as_documented(tmp_path):
    folder = tmp_path / "not" / "yet"  # made on first use
    journal = Journal.open_locked(folder / "saf-0.journal")
    assert (journal.fsyncs, journal.fsync_ns) == (0, 0)
    await journal.append([void(1)])
    journal.advance(1)
    assert sorted(p.name for p in folder.iterdir()) == ["saf-0.cursor", "saf-0.journal"]
    for path in folder.iterdir():
        assert path.stat().st_mode & 0o777 == 0o600, path.name
    journal.close()
    assert journal.fd < 0
    journal.close()  # twice: nothing happens


def test_a_cursor_that_is_not_an_offset_is_refused(tmp_path):
    path = tmp_path / "saf-0.journal"
    Journal.open_locked(path).close()
    (tmp_path / "saf-0.cursor").write_text("twelve\n")
    with pytest.raises(JournalCorrupt, match="not a byte offset"):
        Journal.open_locked(path)


def test_damage_is_named_with_its_origin_and_a_torn_header_is_all_torn(tmp_path):
    with pytest.raises(JournalCorrupt, match="^journal: not a store-and-forward journal"):
        parse(b"something else\n")
    path = tmp_path / "saf-0.journal"
    path.write_bytes(HEADER[:5])
    assert snapshot(path).torn_bytes == 5


def test_an_empty_record_with_a_good_checksum_is_damage_not_a_tear():
    with pytest.raises(JournalCorrupt, match="good checksum"):
        parse(HEADER + FRAME.pack(0, zlib.crc32(b"")))


def padded_void(payload_bytes: int) -> Void:
    """A void whose msgpack payload is exactly `payload_bytes` long (its id padded)."""
    base = msgspec.structs.asdict(void(1))
    record = Void(**{**base, "id": "x" * 1000})
    padding = payload_bytes - (len(frame(record)) - FRAME.size)
    return Void(**{**base, "id": "x" * (1000 + padding)})


def test_a_whole_record_longer_than_the_bound_is_not_read():
    size = limits.saf_record_size_max_bytes
    oversize, at_bound = padded_void(size + 1), padded_void(size)
    assert len(frame(oversize)) - FRAME.size == size + 1
    assert parse(HEADER + frame(oversize)) == ([], len(HEADER))
    assert len(frame(at_bound)) - FRAME.size == size
    assert [r for _, r in parse(HEADER + frame(at_bound))[0]] == [at_bound]


async def test_a_journal_torn_right_after_its_header_opens_clean_and_keeps_working(
        tmp_path, caplog):
    path = tmp_path / "saf-0.journal"
    with caplog.at_level(logging.WARNING, logger="switch.journal"):
        Journal.open_locked(path).close()
        assert caplog.records == []  # a new journal: nothing torn, nothing said
        path.write_bytes(HEADER + frame(void(1))[:6])
        journal = Journal.open_locked(path)
    assert [r.name for r in caplog.records] == ["switch.journal"]
    await journal.append([void(2)])
    journal.close()
    assert snapshot(path).records == [void(2)] and path.read_bytes().count(HEADER) == 1


async def test_a_cancelled_waiter_does_not_stop_the_others(tmp_path):
    journal = Journal.open_locked(tmp_path / "saf-0.journal")
    gone = journal.append([void(1)])
    gone.cancel()
    kept = journal.append([void(2)])
    await asyncio.wait_for(kept, 5)
    failing = journal.append([void(3)])
    failing.cancel()
    other = journal.append([void(4)])
    real, journal.fd = journal.fd, os.open(os.devnull, os.O_RDONLY)
    with pytest.raises(OSError):
        await asyncio.wait_for(other, 5)
    os.close(journal.fd)
    journal.fd = real
    assert journal.size == journal.path.stat().st_size  # the failed two left no trace
    journal.close()


async def test_advance_and_drained_keep_to_what_is_on_disk(tmp_path):
    journal = Journal.open_locked(tmp_path / "saf-0.journal")
    await journal.append([void(1)])
    with pytest.raises(ValueError):
        journal.advance(0)
    assert journal.drained() is False
    journal.advance(1)
    assert journal.drained() is True
    unsynced = journal.append([void(2), void(3)])
    assert journal.pending == []
    await unsynced
    assert journal.pending == [void(2), void(3)]
    journal.close()


def test_an_advice_is_tagged_in_the_file():
    assert msgspec.msgpack.decode(frame(advice(1))[FRAME.size:])["type"] == "advice"
