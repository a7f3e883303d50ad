"""A dialect compiled once into one encode and one decode path (sans-IO: bytes <-> dicts).

Messages are dicts shaped like pyiso8583's decoded doc: "t" is the MTI, "2".."128" are data
fields (str for text and bcd fields, bytes for binary fields). Bitmaps are computed on
encode and consumed on decode; they never appear in the dicts.

Two paths, both built once per dialect:
- generic: one precompiled closure per field (fields.py). The bitmap is walked a byte at a
  time through a 256-entry row per bitmap byte listing the fields set in that byte, in
  order, with their closures; nothing sorts, tests bits one by one or looks up spec data.
  It also produces every error, with field, offset and the fields decoded before it.
- plans: a message shape seen twice gets one generated function (plan.py), found by the
  wire bitmap (decode) or by (number of keys, MTI) (encode). A plan that meets anything
  unusual hands the message back to the generic path, so both give the same answers.
"""

from __future__ import annotations

import binascii
import functools
import os
from collections.abc import Callable, Mapping

from . import fields as _fields
from .dialect import Dialect, load_dialect
from .errors import Iso8583Error
from .plan import PlanCache, compile_decode_plan, compile_encode_plan, plans_per_cache_max

_SECONDARY_BIT = 1 << 127  # field 1 of a 128-bit bitmap: field n is bit 1 << (128 - n)
_SECONDARY_FIELDS = (1 << 64) - 1  # fields 65..128
_bitmap_fields_max = 128  # no tertiary bitmap

Message = dict[str, str | bytes]


class Codec:
    """Encoder and decoder of one dialect. Build with get_codec(); reuse.

    Shapes seen repeatedly get a compiled plan (see plan.py); other messages take the
    generic path, which walks the bitmap through precomputed rows of field closures.
    """

    __slots__ = (
        "dialect",
        "_built",
        "_bits",
        "_enc_rows",
        "_dec_rows",
        "_enc_plans",
        "_dec_plans",
        "_mti_encode",
        "_mti_decode",
        "_mti_size",
        "_bitmap",
        "_bitmap_size",
        "_wide_flag",
        "_hex",
    )

    def __init__(self, dialect: Dialect, plans: bool = True) -> None:
        """plans=False keeps every message on the generic path (for tests and comparison)."""
        self.dialect = dialect
        self._built, self._bits, self._enc_rows, self._dec_rows = _tables(dialect)
        self._mti_encode, self._mti_decode = _MTI_CODECS[dialect.mti_encoding]
        self._mti_size = 4 if dialect.mti_encoding == "ascii" else 2
        limit = plans_per_cache_max if plans else 0
        self._enc_plans = PlanCache(self._compile_encode_plan, limit)
        mti_ascii = dialect.mti_encoding == "ascii"
        self._dec_plans = PlanCache(
            functools.partial(
                compile_decode_plan, mti_decode=self._mti_decode, mti_ascii=mti_ascii
            ),
            limit,
        )
        self._hex = dialect.bitmap_encoding == "hex"
        self._bitmap = _hex_bitmap if self._hex else _binary_bitmap
        self._bitmap_size = 16 if self._hex else 8  # wire bytes of one 64-bit bitmap
        # A first bitmap byte at or above this has bit 1 set (a secondary bitmap follows).
        self._wide_flag = b"8" if self._hex else b"\x80"

    @property
    def name(self) -> str:
        return self.dialect.name

    def __repr__(self) -> str:
        return f"<Codec {self.dialect.name}>"

    def encode(self, fields: Mapping[str, str | bytes]) -> bytes:
        """Encode {"t": MTI, "2": ..., ...} to one message (no length header)."""
        try:
            plans = self._enc_plans.by_index.get((len(fields), fields.get("t")), ())
        except TypeError:  # an unhashable MTI: the generic path says what is wrong
            plans = ()
        for plan in plans:
            wire = plan(fields)
            if wire is not None:
                return wire
        return self._encode_generic(fields)

    def decode(self, data: bytes) -> Message:
        """Decode one whole message; any defect raises Iso8583Error naming field and offset."""
        if type(data) is not bytes:
            if not isinstance(data, bytearray | memoryview):
                raise TypeError(f"decode wants bytes, not {type(data).__name__}")
            data = bytes(data)  # slices must be hashable bytes for the prefix tables
        # Plans are keyed by the bitmap as it is on the wire, so a known shape needs no
        # bitmap parsing; an unknown or malformed bitmap simply misses.
        pos = self._mti_size
        wide = data[pos : pos + 1] >= self._wide_flag
        end = pos + (self._bitmap_size * 2 if wide else self._bitmap_size)
        plan = self._dec_plans.plans.get(data[pos:end])
        if plan is not None:
            try:
                out = plan(data, data.decode("latin-1"), end)
            except Iso8583Error:  # from a bcd closure; the generic path adds what it read
                out = None
            if out is not None:
                return out
        mti, pos = self._mti_decode(data)
        return self._decode_generic(data, mti, pos)

    def _encode_generic(self, fields: Mapping[str, str | bytes]) -> bytes:
        try:
            # Field bits are distinct powers of two, so their sum is their union.
            bitmap = sum(map(self._bits.__getitem__, fields))
        except KeyError as exc:
            raise self._unknown_field(exc.args[0]) from None
        if "t" not in fields:
            raise Iso8583Error("MTI", None, "no MTI: the message needs a 't' entry")
        bitmap_bytes = _bitmap_bytes(bitmap)
        parts = [self._mti_encode(fields["t"]), self._wire_bitmap(bitmap_bytes)]
        append = parts.append
        rows = self._enc_rows
        for index, byte in enumerate(bitmap_bytes):
            if byte:
                for key, encode in rows[index][byte]:
                    append(encode(fields[key]))
        index = (len(fields), fields["t"])  # the key encode() looks plans up by
        shape = (frozenset(fields), fields["t"])  # one plan per index entry, so bounded alike
        self._enc_plans.note(shape, lambda: self._entries(bitmap_bytes), index)
        return b"".join(parts)

    def _decode_generic(self, data: bytes, mti: str, bitmap_at: int) -> Message:
        out: Message = {"t": mti}
        try:
            bitmap_bytes, pos = self._bitmap(data, bitmap_at)
            rows = self._dec_rows
            for index, byte in enumerate(bitmap_bytes):
                if byte:
                    for key, decode in rows[index][byte]:
                        out[key], pos = decode(data, pos)
            if pos != len(data):
                raise _trailing(data, pos)
        except Iso8583Error as error:
            error.decoded = out  # the MTI and the fields before the defect, in wire order
            raise
        wire_bitmap = data[bitmap_at : bitmap_at + len(bitmap_bytes) * (2 if self._hex else 1)]
        self._dec_plans.note(wire_bitmap, lambda: self._entries(bitmap_bytes))
        return out

    def _entries(self, bitmap_bytes: bytes) -> list:
        """(spec, encoder, decoder) of each field the bitmap announces, in wire order."""
        rows, built = self._enc_rows, self._built
        return [
            built[key] for index, byte in enumerate(bitmap_bytes) for key, _ in rows[index][byte]
        ]

    def _compile_encode_plan(self, entries: list) -> Callable:
        bitmap = sum(self._bits[spec.key] for spec, _, _ in entries)
        wire_bitmap = self._wire_bitmap(_bitmap_bytes(bitmap))
        mti_ascii = self.dialect.mti_encoding == "ascii"
        return compile_encode_plan(entries, self._mti_encode, mti_ascii, wire_bitmap)

    def _wire_bitmap(self, bitmap_bytes: bytes) -> bytes:
        return binascii.b2a_hex(bitmap_bytes).upper() if self._hex else bitmap_bytes

    def _unknown_field(self, key: object) -> Iso8583Error:
        if key in ("1", "p"):
            return Iso8583Error(str(key), None, "bitmaps are computed by the codec, not given")
        return Iso8583Error(str(key), None, f"not a field of dialect {self.dialect.name}")


@functools.lru_cache(maxsize=64)
def _tables(dialect: Dialect) -> tuple[dict, dict, tuple, tuple]:
    """A dialect's field closures, field bits and bitmap rows, built once for all its codecs.

    They hold no state, so codecs share them; a codec of its own (empty plan caches, as
    the tests make by the hundred) then costs next to nothing.
    """
    built = {spec.key: (spec, *_fields.build(spec)) for spec in dialect.fields}
    bits = {"t": 0} | {key: 1 << (128 - int(key)) for key in built}
    enc_rows = _rows({key: enc for key, (_, enc, _) in built.items()}, None)
    dec_rows = _rows({key: dec for key, (_, _, dec) in built.items()}, _undefined)
    return built, bits, enc_rows, dec_rows


def _bitmap_bytes(bitmap: int) -> bytes:
    """The primary bitmap, or both when any of fields 65..128 is present (then bit 1 set)."""
    if bitmap & _SECONDARY_FIELDS:
        return (bitmap | _SECONDARY_BIT).to_bytes(16, "big")
    return (bitmap >> 64).to_bytes(8, "big")


def _trailing(data: bytes, pos: int) -> Iso8583Error:
    return Iso8583Error("trailing", pos, f"{len(data) - pos} bytes after the last field")


def _rows(by_key: dict[str, Callable], missing: Callable | None) -> tuple:
    """rows[i][b]: ((key, fn), ...) for the fields that bitmap byte i with value b announces.

    Field 1 (the secondary bitmap flag) is skipped. A field the dialect lacks gets
    missing(number) (a decoder that raises), or is left out when missing is None.
    """
    rows = []
    for index in range(_bitmap_fields_max // 8):
        by_bit = {}  # bit value -> entries of that one field
        for bit in range(8):
            number = index * 8 + bit + 1
            fn = by_key.get(str(number))
            if fn is None and missing is not None:
                fn = missing(number)
            present = number != 1 and fn is not None
            by_bit[0x80 >> bit] = ((str(number), fn),) if present else ()
        row = [()]
        for byte in range(1, 256):
            lowest = byte & -byte  # the highest field number in this byte: it comes last
            row.append(row[byte ^ lowest] + by_bit[lowest])
        rows.append(tuple(row))
    return tuple(rows)


def _undefined(number: int) -> Callable:
    def decode(data: bytes, pos: int) -> tuple:
        raise Iso8583Error(str(number), pos, "the bitmap announces a field the dialect lacks")

    return decode


# ---- MTI and bitmaps --------------------------------------------------------------------


def _ascii_mti_encode(value: str) -> bytes:
    if isinstance(value, str) and len(value) == 4 and value.isascii() and value.isdigit():
        return value.encode("ascii")
    raise Iso8583Error("MTI", None, f"{value!r} is not 4 digits")


def _ascii_mti_decode(data: bytes) -> tuple[str, int]:
    raw = data[:4]
    if len(raw) != 4:
        raise _fields.truncated("MTI", 0, 4, len(raw))
    if not raw.isdigit():
        raise Iso8583Error("MTI", 0, f"{raw!r} is not 4 digits")
    return raw.decode("ascii"), 4


def _bcd_mti_encode(value: str) -> bytes:
    return bytes.fromhex(_ascii_mti_encode(value).decode("ascii"))


def _bcd_mti_decode(data: bytes) -> tuple[str, int]:
    raw = data[:2]
    if len(raw) != 2:
        raise _fields.truncated("MTI", 0, 2, len(raw))
    text = raw.hex()
    if not text.isdigit():
        raise Iso8583Error("MTI", 0, f"{raw!r} is not 4 bcd digits")
    return text, 2


_MTI_CODECS = {
    "ascii": (_ascii_mti_encode, _ascii_mti_decode),
    "bcd": (_bcd_mti_encode, _bcd_mti_decode),
}


def _hex_bitmap(data: bytes, pos: int) -> tuple[bytes, int]:
    bitmap = _hex_bitmap_half(data, pos)
    if bitmap[0] & 0x80:
        return bitmap + _hex_bitmap_half(data, pos + 16), pos + 32
    return bitmap, pos + 16


def _hex_bitmap_half(data: bytes, pos: int) -> bytes:
    raw = data[pos : pos + 16]
    if len(raw) != 16:
        raise _fields.truncated("bitmap", pos, 16, len(raw))
    try:
        return binascii.a2b_hex(raw)  # strict: no spaces, signs or 0x, unlike int(raw, 16)
    except binascii.Error:
        raise Iso8583Error("bitmap", pos, f"{raw!r} is not 16 hex digits") from None


def _binary_bitmap(data: bytes, pos: int) -> tuple[bytes, int]:
    size = 16 if data[pos : pos + 1] >= b"\x80" else 8
    bitmap = data[pos : pos + size]
    if len(bitmap) != size:
        raise _fields.truncated("bitmap", pos, size, len(bitmap))
    return bitmap, pos + size


# ---- cached construction ----------------------------------------------------------------


@functools.lru_cache(maxsize=64)
def get_codec(dialect: str | os.PathLike[str] | Dialect) -> Codec:
    """The compiled codec for a shipped dialect name, a dialect file path or a Dialect.

    Cached by argument: compile once at start-up, then reuse. A dialect file edited after
    its first use is not re-read.
    """
    return Codec(dialect if isinstance(dialect, Dialect) else load_dialect(dialect))


def encode(dialect: str | Dialect | Codec, fields: Mapping[str, str | bytes]) -> bytes:
    codec = dialect if isinstance(dialect, Codec) else get_codec(dialect)
    return codec.encode(fields)


def decode(dialect: str | Dialect | Codec, data: bytes) -> Message:
    codec = dialect if isinstance(dialect, Codec) else get_codec(dialect)
    return codec.decode(data)
