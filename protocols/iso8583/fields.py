"""Per-field encoders and decoders, each built once from a FieldSpec as a closure.

Every decoder is ``decode(data, pos) -> (value, end)`` and every encoder is
``encode(value) -> bytes`` (length prefix included). All spec metadata (sizes, checks,
prefix tables) is bound into the closure when the dialect is compiled, so the per-message
path does no dict lookups of spec data and makes one Python call per field.

Checks are C-level callables (bytes.isdigit, a compiled regex's fullmatch) for the same
reason. A length prefix is decoded by one dict lookup in a table of every valid prefix: a
miss means non-digits, a length over the maximum or a truncated prefix, sorted out only on
that error path.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable

from .dialect import FieldSpec
from .errors import Iso8583Error

Decoder = Callable[[bytes, int], tuple]
Encoder = Callable[[object], bytes]

# Checks on raw ASCII bytes. Every one admits only ASCII, so a passing value always decodes.
_BYTE_CHECKS: dict[str, Callable[[bytes], object]] = {
    "n": bytes.isdigit,
    "an": re.compile(rb"[0-9A-Za-z ]*").fullmatch,
    "ans": re.compile(rb"[\x20-\x7e]*").fullmatch,
    "z": re.compile(rb"[0-9=D]*").fullmatch,
    "xn": re.compile(rb"[CD][0-9]*").fullmatch,
    "h": re.compile(rb"[0-9A-Fa-f]*").fullmatch,
}
# Checks on the hex text of bcd data (track 2 separators travel as the nibble D).
_BCD_CHECKS: dict[str, Callable[[str], object]] = {
    "n": re.compile(r"[0-9]*").fullmatch,
    "z": re.compile(r"[0-9D]*").fullmatch,
}
_CONTENT_NAMES = {
    "n": "digits",
    "an": "letters, digits, spaces",
    "ans": "printable ASCII",
    "z": "track 2 characters (digits, '=', 'D')",
    "xn": "'C' or 'D' then digits",
    "h": "hex digits",
}
_PREFIX_WIDTH = {  # bytes of length prefix by (kind, len_encoding)
    ("llvar", "ascii"): 2,
    ("lllvar", "ascii"): 3,
    ("llvar", "bcd"): 1,
    ("lllvar", "bcd"): 2,
    ("llvar", "binary"): 1,
    ("lllvar", "binary"): 2,
}


def build(spec: FieldSpec) -> tuple[Encoder, Decoder]:
    """The encoder and decoder for one field, specialised for its kind and encoding."""
    if spec.encoding == "bcd":
        return _bcd_encoder(spec), _bcd_decoder(spec)
    binary = spec.encoding == "binary"
    if spec.kind == "fixed":
        if binary:
            return _binary_fixed_encoder(spec), _binary_fixed_decoder(spec)
        return _text_fixed_encoder(spec), _text_fixed_decoder(spec)
    if binary:
        return _binary_var_encoder(spec), _binary_var_decoder(spec)
    return _text_var_encoder(spec), _text_var_decoder(spec)


# ---- length prefixes --------------------------------------------------------------------


def _prefix(kind: str, len_encoding: str, size: int) -> bytes:
    width = _PREFIX_WIDTH[(kind, len_encoding)]
    if len_encoding == "ascii":
        return f"{size:0{width}d}".encode()
    if len_encoding == "bcd":
        return bytes.fromhex(f"{size:0{2 * width}d}")
    return size.to_bytes(width, "big")


def prefix_tables(spec: FieldSpec) -> tuple[int, tuple[bytes, ...], dict[bytes, int]]:
    """Width, every valid prefix by length, and length by prefix (0..max_len)."""
    return _prefix_tables(spec.kind, spec.len_encoding, spec.max_len)


@functools.cache  # many fields share a layout (LLLVAR ..999); the tables are read-only
def _prefix_tables(kind: str, len_encoding: str, max_len: int) -> tuple:
    width = _PREFIX_WIDTH[(kind, len_encoding)]
    by_size = tuple(_prefix(kind, len_encoding, n) for n in range(max_len + 1))
    return width, by_size, {p: n for n, p in enumerate(by_size)}


def _bad_prefix(spec: FieldSpec, data: bytes, pos: int, width: int) -> Iso8583Error:
    raw = data[pos : pos + width]
    if len(raw) < width:
        return truncated(spec.key, pos, width, len(raw), "length prefix")
    if spec.len_encoding == "binary":
        size = int.from_bytes(raw, "big")
    else:
        digits = raw.hex() if spec.len_encoding == "bcd" else raw.decode("latin-1")
        if not (digits.isascii() and digits.isdigit()):
            count = len(digits)  # 2 per byte in bcd
            return Iso8583Error(spec.key, pos, f"length prefix {raw!r} is not {count} digits")
        size = int(digits)
    return Iso8583Error(spec.key, pos, f"length {size} over the maximum {spec.max_len}")


# ---- errors -----------------------------------------------------------------------------


def truncated(field: str, pos: int, want: int, got: int, what: str = "data") -> Iso8583Error:
    return Iso8583Error(field, pos, f"truncated {what}: {got} of {want} bytes")


def _bad_content(spec: FieldSpec, pos: int | None, value: object) -> Iso8583Error:
    shown = repr(value) if len(value) <= 40 else repr(value[:40]) + "..."
    return Iso8583Error(
        spec.key, pos, f"{shown} is not {spec.content} ({_CONTENT_NAMES[spec.content]})"
    )


def _bad_type(spec: FieldSpec, value: object) -> Iso8583Error:
    if isinstance(value, str) and spec.encoding != "binary":
        return Iso8583Error(spec.key, None, f"{value[:40]!r} has non-ASCII characters")
    want = "bytes" if spec.encoding == "binary" else "a str"
    return Iso8583Error(spec.key, None, f"value must be {want}, not {type(value).__name__}")


def _bad_size(spec: FieldSpec, size: int) -> Iso8583Error:
    if spec.kind == "fixed" and size < spec.max_len:
        return Iso8583Error(spec.key, None, f"{size} long, the field is fixed at {spec.max_len}")
    return Iso8583Error(spec.key, None, f"{size} long, over the maximum {spec.max_len}")


# ---- ASCII text fields ------------------------------------------------------------------


def _text_fixed_decoder(spec: FieldSpec) -> Decoder:
    key, size, ok = spec.key, spec.max_len, _BYTE_CHECKS[spec.content]

    def decode(data: bytes, pos: int) -> tuple[str, int]:
        end = pos + size
        raw = data[pos:end]
        if len(raw) != size:
            raise truncated(key, pos, size, len(raw))
        if not ok(raw):
            raise _bad_content(spec, pos, raw)
        return raw.decode("ascii"), end

    return decode


def _text_var_decoder(spec: FieldSpec) -> Decoder:
    ok = _BYTE_CHECKS[spec.content]
    read = _binary_var_decoder(spec)  # the length prefix and the slice are the same

    def decode(data: bytes, pos: int) -> tuple[str, int]:
        raw, end = read(data, pos)
        if not ok(raw) and raw:  # an empty variable field is valid whatever its content type
            raise _bad_content(spec, end - len(raw), raw)
        return raw.decode("ascii"), end

    return decode


def _text_fixed_encoder(spec: FieldSpec) -> Encoder:
    size, ok = spec.max_len, _BYTE_CHECKS[spec.content]
    pad = (spec.pad_left or spec.pad_right).encode()

    def encode(value: str) -> bytes:
        try:
            raw = value.encode("ascii")
        except (AttributeError, UnicodeEncodeError):
            raise _bad_type(spec, value) from None
        if not ok(raw) and raw:
            raise _bad_content(spec, None, value)
        if len(raw) != size:
            if len(raw) > size or not pad:
                raise _bad_size(spec, len(raw))
            raw = raw.rjust(size, pad) if spec.pad_left else raw.ljust(size, pad)
        return raw

    return encode


def _text_var_encoder(spec: FieldSpec) -> Encoder:
    max_len, ok = spec.max_len, _BYTE_CHECKS[spec.content]
    _, prefixes, _ = prefix_tables(spec)

    def encode(value: str) -> bytes:
        try:
            raw = value.encode("ascii")
        except (AttributeError, UnicodeEncodeError):
            raise _bad_type(spec, value) from None
        if len(raw) > max_len:
            raise _bad_size(spec, len(raw))
        if not ok(raw) and raw:
            raise _bad_content(spec, None, value)
        return prefixes[len(raw)] + raw

    return encode


# ---- binary fields (values are bytes) ---------------------------------------------------


def _binary_fixed_decoder(spec: FieldSpec) -> Decoder:
    key, size = spec.key, spec.max_len

    def decode(data: bytes, pos: int) -> tuple[bytes, int]:
        end = pos + size
        raw = data[pos:end]
        if len(raw) != size:
            raise truncated(key, pos, size, len(raw))
        return raw, end

    return decode


def _binary_var_decoder(spec: FieldSpec) -> Decoder:
    key = spec.key
    width, _, lengths = prefix_tables(spec)

    def decode(data: bytes, pos: int) -> tuple[bytes, int]:
        start = pos + width
        size = lengths.get(data[pos:start])
        if size is None:
            raise _bad_prefix(spec, data, pos, width)
        end = start + size
        raw = data[start:end]
        if len(raw) != size:
            raise truncated(key, start, size, len(raw))
        return raw, end

    return decode


def _as_bytes(spec: FieldSpec, value: object) -> bytes:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    raise _bad_type(spec, value)


def _binary_fixed_encoder(spec: FieldSpec) -> Encoder:
    size = spec.max_len

    def encode(value: bytes) -> bytes:
        if type(value) is not bytes:
            value = _as_bytes(spec, value)
        if len(value) != size:
            raise _bad_size(spec, len(value))
        return value

    return encode


def _binary_var_encoder(spec: FieldSpec) -> Encoder:
    max_len = spec.max_len
    _, prefixes, _ = prefix_tables(spec)

    def encode(value: bytes) -> bytes:
        if type(value) is not bytes:
            value = _as_bytes(spec, value)
        if len(value) > max_len:
            raise _bad_size(spec, len(value))
        return prefixes[len(value)] + value

    return encode


# ---- bcd fields (values are digit strings; lengths count digits) ------------------------


def _bcd_encoder(spec: FieldSpec) -> Encoder:
    ok = _BCD_CHECKS[spec.content]
    fixed = spec.kind == "fixed"
    prefixes = () if fixed else prefix_tables(spec)[1]

    def encode(value: str) -> bytes:
        if not isinstance(value, str) or not value.isascii():
            raise _bad_type(spec, value)
        digits = value.replace("=", "D") if spec.content == "z" else value
        if not ok(digits):
            raise _bad_content(spec, None, value)
        size = len(digits)
        if size > spec.max_len or (fixed and size != spec.max_len):
            raise _bad_size(spec, size)
        if size % 2:
            digits = spec.pad_left + digits if spec.pad_left else digits + spec.pad_right
        body = bytes.fromhex(digits)
        return body if fixed else prefixes[size] + body

    return encode


def _bcd_decoder(spec: FieldSpec) -> Decoder:
    if spec.kind == "fixed":
        size = spec.max_len

        def decode(data: bytes, pos: int) -> tuple[str, int]:
            return _bcd_body(spec, data, pos, size)

        return decode
    width, _, lengths = prefix_tables(spec)

    def decode_var(data: bytes, pos: int) -> tuple[str, int]:
        size = lengths.get(data[pos : pos + width])
        if size is None:
            raise _bad_prefix(spec, data, pos, width)
        return _bcd_body(spec, data, pos + width, size)

    return decode_var


def _bcd_body(spec: FieldSpec, data: bytes, start: int, digits: int) -> tuple[str, int]:
    nbytes = (digits + 1) // 2
    end = start + nbytes
    raw = data[start:end]
    if len(raw) != nbytes:
        raise truncated(spec.key, start, nbytes, len(raw))
    text = raw.hex().upper()
    if digits % 2:  # strip the pad nibble, which must be the dialect's pad
        pad, text = (text[0], text[1:]) if spec.pad_left else (text[-1], text[:-1])
        if pad != (spec.pad_left or spec.pad_right).upper():
            raise Iso8583Error(spec.key, start, f"pad nibble {pad} is not the dialect's pad")
    if not _BCD_CHECKS[spec.content](text):
        raise _bad_content(spec, start, text)
    return (text.replace("D", "=") if spec.content == "z" else text), end
