"""BER-TLV as carried in field 55 (ICC / EMV data): bytes <-> {tag hex: value bytes}.

Flat on purpose: field 55 carries a list of primitive EMV tags (9F26 ARQC, 9F27, 9F10, 9F37,
9F36, 95, 9A, 9C, 9F02, 5F2A, 82, 9F1A, ...). A constructed tag's value is returned as its
raw bytes, not walked. Parse field 55 only when a decision needs it; in an ASCII dialect the
field is hex text, so call parse_tlv(bytes.fromhex(value)).
"""

from __future__ import annotations

from collections.abc import Mapping

from .errors import Iso8583Error

tlv_tag_bytes_max = 3  # EMV tags are 1..3 bytes; a longer run of continuation bits is garbage
tlv_length_bytes_max = 2  # forms 0x81 nn and 0x82 nn nn; field 55 is at most 999 bytes
_FIELD = "55"


def parse_tlv(data: bytes) -> dict[str, bytes]:
    """Split BER-TLV bytes into {"9F26": b"...", ...} (tags upper-case hex, in wire order).

    Raises Iso8583Error(field "55", offset into data) on a truncated tag, length or value,
    an indefinite or over-long length form, a zero padding byte or a repeated tag.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"parse_tlv wants bytes, not {type(data).__name__}")
    data = bytes(data)
    out: dict[str, bytes] = {}
    pos = 0
    while pos < len(data):
        tag, value_at, length = _read_header(data, pos)
        value = data[value_at : value_at + length]
        if len(value) != length:
            raise Iso8583Error(
                _FIELD, value_at, f"tag {tag} value truncated: {len(value)} of {length} bytes"
            )
        if tag in out:
            raise Iso8583Error(_FIELD, pos, f"tag {tag} repeated")
        out[tag] = value
        pos = value_at + length
    return out


def _read_header(data: bytes, pos: int) -> tuple[str, int, int]:
    """(tag hex, offset of the value, value length) of the TLV at pos."""
    first = data[pos]
    if first == 0x00:  # EMV allows 00 padding between records; field 55 should not carry it
        raise Iso8583Error(_FIELD, pos, "zero byte where a tag should start")
    end = pos + 1
    if first & 0x1F == 0x1F:  # multi-byte tag: more bytes follow while bit 0x80 is set
        while True:
            if end >= len(data):
                raise Iso8583Error(_FIELD, pos, "tag truncated")
            if end - pos >= tlv_tag_bytes_max:
                raise Iso8583Error(_FIELD, pos, f"tag longer than {tlv_tag_bytes_max} bytes")
            end += 1
            if not data[end - 1] & 0x80:
                break
    tag = data[pos:end].hex().upper()
    length, value_at = _read_length(data, end, tag)
    return tag, value_at, length


def _read_length(data: bytes, pos: int, tag: str) -> tuple[int, int]:
    if pos >= len(data):
        raise Iso8583Error(_FIELD, pos, f"tag {tag} has no length")
    first = data[pos]
    if first < 0x80:
        return first, pos + 1
    count = first & 0x7F
    if count == 0:
        raise Iso8583Error(_FIELD, pos, f"tag {tag}: indefinite length is not allowed")
    if count > tlv_length_bytes_max:
        raise Iso8583Error(_FIELD, pos, f"tag {tag}: {count}-byte length is too long")
    raw = data[pos + 1 : pos + 1 + count]
    if len(raw) != count:
        raise Iso8583Error(_FIELD, pos, f"tag {tag}: length truncated")
    return int.from_bytes(raw, "big"), pos + 1 + count


def build_tlv(tags: Mapping[str, bytes]) -> bytes:
    """Join {"9F26": b"...", ...} into BER-TLV bytes, in the mapping's order.

    Lengths use the shortest form (1 byte below 128, then 0x81 nn, then 0x82 nn nn).
    """
    parts = []
    for tag, value in tags.items():
        if not isinstance(value, bytes | bytearray):
            raise Iso8583Error(_FIELD, None, f"tag {tag}: value must be bytes")
        parts.append(_tag_bytes(tag))
        parts.append(_length_bytes(tag, len(value)))
        parts.append(bytes(value))
    return b"".join(parts)


def _tag_bytes(tag: str) -> bytes:
    try:
        raw = bytes.fromhex(tag) if isinstance(tag, str) and tag.isalnum() else b""
    except ValueError:
        raw = b""
    if not raw or len(raw) > tlv_tag_bytes_max or raw[0] == 0:
        raise Iso8583Error(_FIELD, None, f"tag {tag!r} is not 1..3 bytes of hex")
    multi = raw[0] & 0x1F == 0x1F
    # A well-formed tag: one byte unless its low five bits are all set; then continuation
    # bytes with bit 0x80 set, and a last byte with it clear.
    well_formed = (
        len(raw) == 1
        if not multi
        else len(raw) >= 2 and all(b & 0x80 for b in raw[1:-1]) and not raw[-1] & 0x80
    )
    if not well_formed:
        raise Iso8583Error(_FIELD, None, f"tag {tag!r} is not a well-formed BER tag")
    return raw


def _length_bytes(tag: str, length: int) -> bytes:
    if length < 0x80:
        return bytes((length,))
    if length <= 0xFF:
        return bytes((0x81, length))
    if length <= 0xFFFF:
        return b"\x82" + length.to_bytes(2, "big")
    raise Iso8583Error(_FIELD, None, f"tag {tag}: value of {length} bytes is too long")
