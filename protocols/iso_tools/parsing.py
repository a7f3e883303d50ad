"""One ISO 8583 message taken apart for a reader: `switch iso parse`, as data.

`parse(data, dialect)` decodes with the switch's own codec (so it accepts and refuses exactly
what the switch does) and returns a `Parsed`: the MTI and the bitmap explained, each field
with its offset, its wire bytes (hex), its value and what it means, F55 tag by tag, the MAC
checked when a key is given, and, for a broken message, what was read before the defect and
the defect itself (field and offset). Card data is masked (protocols/iso_tools/meanings.py).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

import msgspec

from protocols.cardnumbers import mask_card_numbers_in
from protocols.codes import Reason
from protocols.framing import HEADER_FORMATS, FramingError
from protocols.iso8583 import Codec, Dialect, FieldSpec, Iso8583Error, get_codec
from protocols.iso8583.fields import build, prefix_tables
from protocols.iso_envelope import ENVELOPES, EnvelopeError, describe
from protocols.iso_mac import IsoMac, MacKey, as_key, mac_field
from protocols.iso_tools.icc import SECRET_TAGS, TagView, icc_tags
from protocols.iso_tools.meanings import SECRET_FIELDS, field_meaning, masked, mti_meaning

ICC_FIELD = "55"
MAC_FIELDS = ("64", "128")


class FieldView(msgspec.Struct):
    field: str  # "2" .. "128"
    name: str  # the dialect's name of the field
    offset: int  # of its first byte (length prefix included) in the message
    size_bytes: int  # on the wire, length prefix included
    wire: str  # those bytes in hex; card data as "**" per byte after the prefix
    value: str  # the decoded value (binary data in hex), card data masked
    meaning: str = ""
    tags: list[TagView] = []  # F55: the chip data, tag by tag
    subfields: dict[str, str] = {}  # F60 and the like: named by the dialect's [subfields]


class BitmapView(msgspec.Struct):
    wire: str  # as on the wire: hex text, or the hex of binary bitmaps
    secondary: bool  # bit 1: a second bitmap (fields 65-128) follows
    fields: list[int]  # the data fields it announces


class MacView(msgspec.Struct):
    field: str  # "64" or "128"
    status: str  # "ok", "wrong", "missing", or "not checked"
    expected: str = ""  # with a key, when wrong or missing: the MAC the message needs


class Problem(msgspec.Struct):
    # "header", "tpdu", "message_header", "MTI", "bitmap", "trailing" or a field number
    field: str
    offset: int | None  # into the message (after any length header)
    reason: str
    name: str = ""  # the field's name in the dialect


class Parsed(msgspec.Struct):
    dialect: str
    size_bytes: int  # of the message, without the length header
    mti: str = ""
    mti_meaning: str = ""
    bitmap: BitmapView | None = None
    fields: list[FieldView] = []
    mac: MacView | None = None
    error: Problem | None = None  # None: the message decodes whole
    # The TPDU and UnionPay message header before the MTI, by name (--dialect unionpay-pos).
    front: dict[str, str] = {}

    @property
    def ok(self) -> bool:
        return self.error is None and (self.mac is None or self.mac.status in ("ok",
                                                                               "not checked"))


def parse(data: bytes, dialect: str | Codec = "iso87ascii", header: str = "",
          mac_key: bytes | None = None, envelope: str = "none") -> Parsed:
    """`data` (one message; with `header`, a length header first; with `envelope`, a TPDU
    and message header before the MTI) taken apart. Offsets count from the MTI."""
    codec = dialect if isinstance(dialect, Codec) else get_codec(dialect)
    try:
        body, front = unwrap(data, header, envelope)
    except FramingError as error:
        return Parsed(codec.name, len(data), error=Problem("header", 0, str(error)))
    except EnvelopeError as error:
        return Parsed(codec.name, len(data), error=Problem(error.part, 0, error.reason))
    try:
        message = codec.decode(body)
    except Iso8583Error as error:
        parsed = broken(codec, body, error)
    else:
        parsed = described(codec, body, message)
        parsed.mac = mac_view(codec, body, message, mac_key)
    parsed.front = front
    return parsed


def unwrap(data: bytes, header: str, envelope: str = "none") -> tuple[bytes, dict[str, str]]:
    """The message from its MTI on, and its TPDU and message header by name: FramingError
    for a length header that does not fit, EnvelopeError for a front that is not one."""
    body = strip_header(data, header)
    if envelope == "none":
        return body, {}
    front, body = ENVELOPES[envelope].split(body)
    return body, describe(front)


def strip_header(data: bytes, header: str) -> bytes:
    """The message after a length header (binary2, ascii4, binary4), checked against it."""
    if not header:
        return data
    form = HEADER_FORMATS.get(header)
    if form is None:
        raise FramingError(f"no header {header!r}: {', '.join(sorted(HEADER_FORMATS))}")
    if len(data) < form.size_bytes:
        raise FramingError(f"{len(data)} bytes: shorter than a {form.name} header")
    length = form.decode(data[: form.size_bytes])
    body = data[form.size_bytes :]
    if length != len(body):
        raise FramingError(f"the {form.name} header says {length} bytes, {len(body)} follow")
    return body


def broken(codec: Codec, body: bytes, error: Iso8583Error) -> Parsed:
    """What a decode read before the defect, and the defect."""
    spec = codec.dialect.field(int(error.field)) if error.field.isdigit() else None
    problem = Problem(error.field, error.offset, error.reason, spec.desc if spec else "")
    read = error.decoded
    if error.field in ("MTI", "bitmap"):  # no bitmap to explain: the MTI at most
        parsed = Parsed(codec.name, len(body), error=problem)
        if "t" in read:
            parsed.mti, parsed.mti_meaning = read["t"], mti_meaning(read["t"])
        return parsed
    announced = bitmap_fields(codec, body)
    parsed = described(codec, body, read, announced)
    parsed.error = problem
    return parsed


def described(codec: Codec, body: bytes, message: Mapping,
              announced: list[int] | None = None) -> Parsed:
    """The MTI, the bitmap and each field of `message` (decoded from `body`) explained."""
    mti = message["t"]
    numbers = announced if announced is not None else [int(k) for k in message if k != "t"]
    at = mti_size(codec)
    secondary = any(n > 64 for n in numbers)
    bitmap_end = at + bitmap_size(codec) * (2 if secondary else 1)
    bitmap_wire = body[at:bitmap_end]
    bitmap = BitmapView(bitmap_wire.decode("ascii") if codec.dialect.bitmap_encoding == "hex"
                        else bitmap_wire.hex().upper(), secondary, numbers)
    views, offset = [], bitmap_end
    for key in (k for k in message if k != "t"):
        view = field_view(codec.dialect, codec.dialect.field(int(key)), message, offset)
        views.append(view)
        offset += view.size_bytes
    if announced is None and offset != len(body):  # the codec read it all: so must we
        raise AssertionError(f"fields cover {offset} of {len(body)} bytes")
    return Parsed(codec.name, len(body), mti, mti_meaning(mti), bitmap, views)


def field_view(dialect: Dialect, spec: FieldSpec, message: Mapping, offset: int
               ) -> FieldView:
    key = spec.key
    value = message[key]
    wire = encoder(spec)(value)
    text = value.hex().upper() if isinstance(value, bytes) else value
    tags, meaning = [], field_meaning(key, text, message)
    if key == ICC_FIELD:
        tags, meaning = icc_tags(value)
    shown_wire, shown = wire.hex().upper(), masked(key, text)
    if key in SECRET_FIELDS or any(tag.tag in SECRET_TAGS for tag in tags):
        prefix = prefix_tables(spec)[0] if spec.kind != "fixed" else 0
        shown_wire = wire[:prefix].hex().upper() + "**" * (len(wire) - prefix)
        if key == ICC_FIELD:
            shown = " ".join(f"{tag.tag}:{tag.value}" for tag in tags)
    subfields = dialect.subfield_values(key, text) if key not in SECRET_FIELDS else {}
    return FieldView(key, spec.desc, offset, len(wire), mask_card_numbers_in(shown_wire),
                     shown, meaning, tags, subfields)


@functools.cache
def encoder(spec: FieldSpec):
    return build(spec)[0]


def mti_size(codec: Codec) -> int:
    return 4 if codec.dialect.mti_encoding == "ascii" else 2


def bitmap_size(codec: Codec) -> int:
    return 16 if codec.dialect.bitmap_encoding == "hex" else 8


def bitmap_fields(codec: Codec, body: bytes) -> list[int]:
    """The data fields a well-formed bitmap announces (the codec has read it already)."""
    at, size = mti_size(codec), bitmap_size(codec)
    first = body[at : at + size]
    raw = bytes.fromhex(first.decode("ascii")) if size == 16 else first
    if raw[0] & 0x80:
        second = body[at + size : at + 2 * size]
        raw += bytes.fromhex(second.decode("ascii")) if size == 16 else second
    bits = int.from_bytes(raw, "big")
    width = len(raw) * 8
    return [n for n in range(2, width + 1) if bits >> (width - n) & 1]


def mac_view(codec: Codec, body: bytes, message: Mapping, key: MacKey | bytes | None
             ) -> MacView | None:
    field = mac_field(message)
    if codec.dialect.field(int(field)) is None:
        return None  # a dialect without a MAC field
    if key is None:
        return MacView(field, "not checked") if field in message else None
    key, mac = as_key(key), IsoMac(codec)
    problem, _ = mac.signer(body, message, (key,))
    if not problem:
        return MacView(field, "ok")
    unsigned = {k: v for k, v in message.items() if k != field}
    width = codec.dialect.field(int(field)).max_len
    expected = mac.encode(unsigned, key)[-width:]
    shown = expected.decode("ascii") if not mac.binary else expected.hex().upper()
    return MacView(field, "missing" if problem == Reason.MAC_MISSING else "wrong", shown)
