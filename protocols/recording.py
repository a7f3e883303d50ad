"""The recording format, sans-IO: what `switch serve --record DIR` writes and what
`switch replay` and `loadtest run --from-recording` read (docs/testing.md, "Record and
replay").

A recording is a folder of files `rec-PID-SEQ.rec`, one series per switch process (a worker
of `--workers N` writes its own), plus `snapshot.msgpack` (the ledger's state when the
recording began, for `switch replay --restore`). A file is a header line, then records, each
framed as the store-and-forward journal frames its own (switch/journal.py):

    length (4 bytes, big-endian) | CRC-32 of the payload (4 bytes) | payload (msgpack)

The first record of a file is its `Meta` (how each channel frames and encodes); the rest are
`Batch`es of `Exchange`s (one frame for what the writer wrote at once: one checksum and one
encoder call for hundreds of exchanges), each a request and its answer, byte for byte as
they were on the wire (the frame bodies, without the length header), with when the request
arrived and how long the decision took. A torn tail (the switch stopped mid-write) is
dropped, never misread.

The files hold full card numbers inside the request bytes: they are created mode 0600.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable, Iterator

import msgspec

from protocols import jd, wechat
from protocols.channel import ClientAnswer
from protocols.iso_client import IsoClient

HEADER = b"baitiao-recording 1\n"
FRAME = struct.Struct(">II")  # payload length, CRC-32 of the payload
FILE_GLOB = "rec-*.rec"
SNAPSHOT_NAME = "snapshot.msgpack"
# A record is two frames of at most the listeners' largest frame (16 MiB by config) and a
# few fields: anything longer is damage.
RECORD_SIZE_MAX_BYTES = 33 * 1024 * 1024


class ChannelWire(msgspec.Struct, frozen=True, array_like=True):
    """How a channel's frames look: its length header (protocols/framing.py HEADER_FORMATS
    name) and, for ISO 8583 channels, the dialect its answers are read with."""

    header: str
    dialect: str = ""


class Meta(msgspec.Struct, tag="meta", array_like=True):
    process: int  # the pid of the switch process that wrote the series
    started_ns: int  # wall clock, ns since the epoch
    channels: dict[str, ChannelWire]


class Exchange(msgspec.Struct, array_like=True):
    """One request and its answer (answer b"": none was sent, a forced no-answer). The
    card, kind, amount, MCC and decision are what the switch read and decided, kept so a
    replay can show a request without the keys needed to read it again."""

    channel: str
    connection: int  # per process: a recorded connection's requests keep their order
    arrival_ns: int  # wall clock, ns since the epoch
    decision_ns: int  # from the request's frame to its answer ready to write
    request: bytes
    answer: bytes
    card: str = ""  # as the request named it (in full, as in the request: mask to show it)
    kind: str = ""  # message class, "" when the codec refused the request itself
    amount_fen: int = 0
    mcc: str = ""
    response_code: str = ""
    reason: str = ""

    @property
    def answered_ns(self) -> int:
        return self.arrival_ns + self.decision_ns


class Batch(msgspec.Struct, tag="b", array_like=True):
    exchanges: list[Exchange]


Record = Meta | Batch

_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(Record).decode


class RecordingError(ValueError):
    """A file that is not a recording, or one damaged before its tail."""


def frame(record: Record) -> bytes:
    return frame_payload(_encode(record))


def frame_payload(payload: bytes) -> bytes:
    return FRAME.pack(len(payload), zlib.crc32(payload)) + payload


def encode_batch(rows: list[tuple]) -> bytes:
    """A Batch's payload from rows of Exchange's fields in order (no Struct built per row:
    the switch's writer encodes what it noted as it is)."""
    return _encode(("b", rows))


def file_name(process: int, sequence: int) -> str:
    return f"rec-{process}-{sequence:06d}.rec"


def file_order(name: str) -> tuple[int, int]:
    """(process, sequence) of a recording file's name; ValueError if it is not one."""
    stem = name.removeprefix("rec-").removesuffix(".rec")
    process, _, sequence = stem.partition("-")
    return int(process), int(sequence)


def parse(data: bytes, origin: str = "recording") -> tuple[list[Record], int]:
    """The records of one file's bytes and the number of torn bytes at its end."""
    if not data.startswith(HEADER):
        if HEADER.startswith(data):  # stopped while the header itself was written
            return [], len(data)
        raise RecordingError(f"{origin}: not a recording file (bad header)")
    records: list[Record] = []
    offset = len(HEADER)
    while offset + FRAME.size <= len(data):
        length, checksum = FRAME.unpack_from(data, offset)
        start = offset + FRAME.size
        end = start + length
        if length > RECORD_SIZE_MAX_BYTES or end > len(data):
            break
        payload = data[start:end]
        if zlib.crc32(payload) != checksum:
            break
        try:
            records.append(_decode(payload))
        except msgspec.DecodeError:
            raise RecordingError(f"{origin}: record at offset {offset} has a good checksum "
                                 "but does not decode") from None
        offset = end
    return records, len(data) - offset


class Series(msgspec.Struct):
    """One process's records, in the order it wrote them."""

    meta: Meta
    exchanges: list[Exchange]
    torn_bytes: int = 0


def read_series(files: list[tuple[str, bytes]]) -> list[Series]:
    """`files`: (name, bytes) of every recording file of a folder, in any order. Each file
    starts with its process's Meta; a series is the files of one process."""
    by_process: dict[int, Series] = {}
    for name, data in sorted(files, key=lambda item: file_order(item[0])):
        records, torn = parse(data, name)
        if not records:
            continue
        meta = records[0]
        if not isinstance(meta, Meta):
            raise RecordingError(f"{name}: does not begin with its channels' description")
        series = by_process.setdefault(meta.process, Series(meta, []))
        for record in records[1:]:
            if isinstance(record, Batch):
                series.exchanges.extend(record.exchanges)
        series.torn_bytes += torn
    return list(by_process.values())


class Played(msgspec.Struct, frozen=True):
    """One recorded exchange with where it came from: its process and connection make the
    key whose requests keep their order."""

    index: int  # position in arrival order over all processes
    process: int
    exchange: Exchange


def in_arrival_order(series: list[Series]) -> list[Played]:
    flat = sorted(((s.meta.process, x) for s in series for x in s.exchanges),
                  key=lambda item: item[1].arrival_ns)
    return [Played(i, process, x) for i, (process, x) in enumerate(flat)]


def channel_wires(series: list[Series]) -> dict[str, ChannelWire]:
    wires: dict[str, ChannelWire] = {}
    for one in series:
        wires |= one.meta.channels
    return wires


def answer_reader(channel: str, wire: ChannelWire) -> Callable[[bytes], ClientAnswer]:
    """How a client reads `channel`'s answers (no signature or MAC check: a replay compares
    decisions; the switch's signing is tested elsewhere)."""
    if channel == "jd":
        return jd.decode_response
    if channel == "wechat":
        return wechat.decode_response
    if channel in ("pos", "xpay"):
        return IsoClient(wire.dialect or "iso87ascii").answer
    raise RecordingError(f"no reader for channel {channel!r} in the recording")


def exchanges_of(series: list[Series]) -> Iterator[Exchange]:
    for one in series:
        yield from one.exchanges


# --- the ledger snapshot (switch/recorder.py takes it, `switch replay --restore` puts it back)


class SnapshotKey(msgspec.Struct, array_like=True):
    name: str
    ttl_ms: int  # 0: no expiry
    dump: bytes  # Redis DUMP serialization


class Snapshot(msgspec.Struct, kw_only=True):
    taken_ns: int
    patterns: list[str]  # the key patterns the snapshot covers, all of them
    keys: list[SnapshotKey]


encode_snapshot = msgspec.msgpack.Encoder().encode
decode_snapshot = msgspec.msgpack.Decoder(Snapshot).decode
