"""The store-and-forward journal: what the switch decided or must undo while Redis could not
be trusted, kept on local disk until the forwarder (switch/forwarder.py) has replayed it.

One append-only file per switch process (`saf-N.journal` in the run directory), held with an
exclusive flock for as long as the process runs, so two workers never write one file and
`switch saf replay` never replays a journal a running switch owns. A file is a header, then
records, each framed as

    length (4 bytes, big-endian) | CRC-32 of the payload (4 bytes) | payload (msgpack)

so records torn by a crash (a short tail, or a record whose checksum fails, and everything
after it: one write of a tick may be torn anywhere, and what follows the tear was never
fsync'd, so never answered) are detected and dropped, never misread. A record whose checksum
holds but which does not decode is damage, not a tear: the journal is refused
(`JournalCorrupt`) and left for the operator.

Records appended in one event-loop tick are written with one write and one fsync; their
futures resolve only then, so an answer that depends on a record goes out after the record is
on disk. The forwarder's progress is a cursor (a byte offset, `saf-N.cursor`, replaced
atomically and fsync'd); once everything is forwarded, the cursor goes back to the start and
then the journal is truncated (a crash in between replays everything again, which the
ledger's functions, idempotent by record id, absorb).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import struct
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import msgspec

from protocols.messages import AuthRequest
from switch import limits

log = logging.getLogger("switch.journal")

HEADER = b"baitiao-saf-journal 1\n"
FRAME = struct.Struct(">II")  # payload length, CRC-32 of the payload
JOURNAL_GLOB = "saf-*.journal"


class Void(msgspec.Struct, tag="void", kw_only=True):
    """The attempt (auth id under idempotency key) did not happen: undo it if it did."""

    id: str
    pan: str
    idempotency_key: str
    auth_id: str
    not_before_ms: int  # wall clock: replayed only after the request's deadline had passed
    written_ms: int
    fault_use: str = ""  # a fault rule's use the attempt took, given back with it (faults.py)


class Advice(msgspec.Struct, tag="advice", kw_only=True):
    """A stand-in approval, to be posted as a forced sale or authorization."""

    id: str
    request: AuthRequest
    auth_id: str
    approved_fen: int
    beans_per_yuan: int
    written_ms: int


Record = Void | Advice

_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(Record).decode


class JournalCorrupt(RuntimeError):
    """The journal has damage that is not a torn last record; it is left as it is."""


class JournalBusy(RuntimeError):
    """Another process holds the journal."""


class JournalFull(RuntimeError):
    pass


def frame(record: Record) -> bytes:
    payload = _encode(record)
    return FRAME.pack(len(payload), zlib.crc32(payload)) + payload


def parse(data: bytes, origin: str = "journal") -> tuple[list[tuple[int, Record]], int]:
    """The records of a journal file's bytes, each with the offset where it ends, and the
    offset where the good records end (what follows is a torn tail to drop)."""
    if not data.startswith(HEADER):
        if HEADER.startswith(data):  # a crash while the header itself was being written
            return [], 0
        raise JournalCorrupt(f"{origin}: not a store-and-forward journal (bad header)")
    records: list[tuple[int, Record]] = []
    offset = len(HEADER)
    while offset < len(data):
        record, end = _record_at(data, offset)
        if record is None:
            break
        records.append((end, record))
        offset = end
    return records, offset


def _record_at(data: bytes, offset: int) -> tuple[Record | None, int]:
    if offset + FRAME.size > len(data):
        return None, offset
    length, checksum = FRAME.unpack_from(data, offset)
    start, end = offset + FRAME.size, offset + FRAME.size + length
    if length > limits.saf_record_size_max_bytes or end > len(data):
        return None, offset
    payload = data[start:end]
    if zlib.crc32(payload) != checksum:
        return None, offset
    try:
        return _decode(payload), end
    except msgspec.DecodeError:  # checksum right, content not ours: damage, not a torn write
        raise JournalCorrupt(f"journal record at offset {offset} has a good checksum but "
                             "does not decode: left untouched") from None


def cursor_path(journal: Path) -> Path:
    return journal.with_suffix(".cursor")


def read_cursor(journal: Path) -> int:
    try:
        text = cursor_path(journal).read_text().strip()
    except FileNotFoundError:
        return len(HEADER)
    if not text.isdigit():
        raise JournalCorrupt(f"{cursor_path(journal)}: not a byte offset: {text[:40]!r}")
    return max(int(text), len(HEADER))


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Snapshot(msgspec.Struct):
    """A journal as a reader sees it (no lock needed: `switch saf show`)."""

    path: str
    records: list[Record]
    forwarded: int  # records before the cursor
    torn_bytes: int


def snapshot(path: Path) -> Snapshot:
    data = path.read_bytes()
    records, good_end = parse(data, str(path))
    cursor = read_cursor(path)
    forwarded = sum(1 for end, _ in records if end <= cursor)
    return Snapshot(str(path), [r for _, r in records], forwarded, len(data) - good_end)


def journal_paths(folder: Path) -> list[Path]:
    return sorted(folder.glob(JOURNAL_GLOB), key=lambda p: (len(p.name), p.name))


class Journal:
    """One journal file, locked by this process: `claim` or `open_locked`."""

    def __init__(self, path: Path, fd: int, records_max: int = limits.saf_journal_records_max
                 ) -> None:
        self.path = path
        self.fd = fd  # open for reading and appending, flock'd
        self.records_max = records_max
        data = os.pread(fd, os.fstat(fd).st_size, 0)
        parsed, good_end = parse(data, str(path))
        if good_end < len(data) or good_end < len(HEADER):
            if good_end < len(data):
                log.warning("%s: dropped a torn last record (%d bytes)", path,
                            len(data) - good_end)
            self._truncate(good_end if good_end >= len(HEADER) else 0)
            if good_end < len(HEADER):
                os.write(fd, HEADER)
                os.fsync(fd)
        self.records: list[Record] = [record for _, record in parsed]  # since the last drain
        self.ends: list[int] = [end for end, _ in parsed]  # offset after each record
        self.size = max(good_end, len(HEADER))
        cursor = min(read_cursor(path), self.size)
        self.forwarded = sum(1 for end in self.ends if end <= cursor)
        self.synced = len(self.records)  # records on disk; the rest wait for this tick's fsync
        self._buffer: list[bytes] = []
        self._waiters: list[asyncio.Future] = []
        self._flush_scheduled = False
        self.on_drain: list[Callable[[], None]] = []
        # Counters for the operator: fsyncs and records, to measure what a record costs.
        self.fsyncs = 0
        self.fsync_ns = 0

    # --- opening ----------------------------------------------------------------------------

    @classmethod
    def open_locked(cls, path: Path, records_max: int = limits.saf_journal_records_max
                    ) -> Journal:
        """The journal at `path`, locked; JournalBusy when another process holds it."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise JournalBusy(f"{path} is held by a running switch") from None
        try:
            return cls(path, fd, records_max)
        except BaseException:
            os.close(fd)
            raise

    @classmethod
    def claim(cls, folder: Path, records_max: int = limits.saf_journal_records_max) -> Journal:
        """The first journal in `folder` no other process holds (a new one if all are held):
        a restarted worker takes over a journal its predecessor left."""
        for index in range(limits.saf_journals_max):
            with contextlib.suppress(JournalBusy):
                return cls.open_locked(folder / f"saf-{index}.journal", records_max)
        raise JournalBusy(f"{folder}: all {limits.saf_journals_max} journals are held")

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # releases the lock
            self.fd = -1

    # --- appending --------------------------------------------------------------------------

    @property
    def pending(self) -> list[Record]:
        """Records on disk not yet forwarded, in order (never one whose fsync is still to
        come: its answer has not gone out, and its write may yet fail)."""
        return self.records[self.forwarded:self.synced]

    def room(self) -> int:
        """How many more records fit."""
        return self.records_max - len(self.records)

    def append(self, records: list[Record]) -> asyncio.Future:
        """Add records; the future resolves once they are on disk (one fsync per loop tick
        for every record appended in it). JournalFull when they do not fit."""
        if len(records) > self.room():
            raise JournalFull(f"{self.path}: {len(self.records)} records, at most "
                              f"{self.records_max}")
        for record in records:
            data = frame(record)
            self._buffer.append(data)
            self.size += len(data)
            self.records.append(record)
            self.ends.append(self.size)
        future = asyncio.get_running_loop().create_future()
        self._waiters.append(future)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)
        return future

    def flush(self) -> None:
        """Write and fsync what this tick appended, then release its waiters."""
        self._flush_scheduled = False
        buffer, self._buffer = self._buffer, []
        waiters, self._waiters = self._waiters, []
        if buffer:
            began = time.perf_counter_ns()
            try:
                os.write(self.fd, b"".join(buffer))
                os.fsync(self.fd)
            except OSError as error:  # disk full, I/O error: these records do not exist
                self._forget(len(buffer))
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_exception(error)
                return
            self.fsyncs += 1
            self.fsync_ns += time.perf_counter_ns() - began
            self.synced = len(self.records)
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _forget(self, count: int) -> None:
        """Drop the last `count` records (their write failed) from the file and memory."""
        del self.records[-count:]
        del self.ends[-count:]
        self.size = self.ends[-1] if self.ends else len(HEADER)
        log.error("%s: could not write %d journal records", self.path, count)
        with contextlib.suppress(OSError):
            self._truncate(self.size)

    # --- forwarding progress ----------------------------------------------------------------

    def advance(self, count: int) -> None:
        """The next `count` pending records are forwarded: move the cursor past them, on disk."""
        if not 0 < count <= self.synced - self.forwarded:
            raise ValueError(f"cannot advance {count} records past {self.forwarded} of "
                             f"{self.synced} on disk")
        self.forwarded += count
        self._write_cursor(self.ends[self.forwarded - 1])

    def drained(self) -> bool:
        """Once every record is forwarded and nothing is being written: start the file over.
        Returns whether it did."""
        if self.forwarded < len(self.records) or self._buffer or not self.records:
            return False
        self._write_cursor(len(HEADER))  # first: a crash now replays all, harmlessly
        self._truncate(len(HEADER))
        self.records, self.ends, self.forwarded, self.size = [], [], 0, len(HEADER)
        self.synced = 0
        for callback in self.on_drain:
            callback()
        return True

    def _write_cursor(self, offset: int) -> None:
        target = cursor_path(self.path)
        temporary = target.with_suffix(".cursor.new")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, b"%d\n" % offset)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, target)
        _fsync_dir(self.path.parent)

    def _truncate(self, size: int) -> None:
        os.ftruncate(self.fd, size)
        os.fsync(self.fd)
