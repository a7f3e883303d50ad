"""Sans-IO ISO 8583 (1987) codec whose dialects are data files.

    codec = get_codec("iso87ascii")           # compiled once, cached
    wire = codec.encode({"t": "0100", "2": "6259...", "4": "000000010000", ...})
    msg = codec.decode(wire)                  # {"t": "0100", "2": ..., ...}

Every defect in bytes or values raises Iso8583Error (a ValueError) with .field and .offset.
See docs/iso8583-codec.md.
"""

from .codec import Codec, Message, decode, encode, get_codec
from .dialect import (
    Dialect,
    DialectError,
    Fallback,
    FallbackPart,
    FieldSpec,
    SubField,
    load_dialect,
    shipped_dialects,
)
from .errors import Iso8583Error
from .tlv import build_tlv, parse_tlv

__all__ = [
    "Codec",
    "Dialect",
    "DialectError",
    "Fallback",
    "FallbackPart",
    "FieldSpec",
    "Iso8583Error",
    "Message",
    "SubField",
    "build_tlv",
    "decode",
    "encode",
    "get_codec",
    "load_dialect",
    "parse_tlv",
    "shipped_dialects",
]
