"""A message from a JSON object of fields: `switch iso build`, as a function.

    build({"mti": "0200", "2": "6253...", "3": "000000", "4": 12800, ...}, "iso87ascii")

The MTI is "mti" (or "t", as the codec names it); fields are keyed by number. Values are
strings as on the wire; a numeric field may be given as a whole number, padded by the
dialect (F4 12800 -> "000000012800"); binary data is hex text; F55 may be an object of
EMV tags in hex ({"9F26": "...", "9F36": "0001"}). The dialect checks every value; each
defect is an Iso8583Error naming the field. With a MAC key the MAC field (F64, or F128 when
a field above 64 is present) is computed, so it must not be given.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from protocols.iso8583 import Codec, FieldSpec, Iso8583Error, build_tlv, get_codec
from protocols.iso_mac import IsoMac, MacKey, as_key, mac_field

ICC_FIELD = "55"


def build(document: Mapping[str, Any], dialect: str | Codec = "iso87ascii",
          mac_key: MacKey | bytes | None = None, front: bytes = b"") -> bytes:
    """`front`: what goes before the MTI (a TPDU and message header: Envelope.client_front)."""
    codec = dialect if isinstance(dialect, Codec) else get_codec(dialect)
    fields = message_fields(document, codec)
    if mac_key:
        field = mac_field(fields)
        if field in fields:
            raise Iso8583Error(field, None, "the MAC is computed from --mac-key: leave it out")
        return front + IsoMac(codec).encode(fields, as_key(mac_key))
    return front + codec.encode(fields)


def message_fields(document: Mapping[str, Any], codec: Codec) -> dict[str, Any]:
    """The codec's message dict for a JSON object: "t" for the MTI, values typed per field."""
    if not isinstance(document, Mapping):
        raise Iso8583Error("MTI", None, "the message must be a JSON object of fields")
    if "mti" in document and "t" in document:
        raise Iso8583Error("MTI", None, "give the MTI once, as \"mti\" (or \"t\")")
    fields: dict[str, Any] = {}
    for key, value in document.items():
        if key in ("mti", "t"):
            fields["t"] = value
            continue
        spec = codec.dialect.field(int(key)) if key.isdigit() else None
        fields[key] = typed(spec, value) if spec else value  # the codec names an unknown key
    return fields


def typed(spec: FieldSpec, value: Any) -> str | bytes:
    if spec.key == ICC_FIELD and isinstance(value, Mapping):
        value = build_tlv({tag: hex_bytes(spec, v, f"tag {tag}") for tag, v in value.items()})
        return value if spec.encoding == "binary" else value.hex().upper()
    if isinstance(value, int) and not isinstance(value, bool) and spec.content == "n":
        if value < 0:
            _bad(spec, f"{value} is negative")
        # Ascii fields are padded by the codec; fixed bcd ones take exactly their digits.
        fixed_bcd = spec.kind == "fixed" and spec.encoding == "bcd"
        return str(value).zfill(spec.max_len) if fixed_bcd else str(value)
    if not isinstance(value, str):
        return _bad(spec, f"must be a string, not {type(value).__name__}")
    return hex_bytes(spec, value, "value") if spec.encoding == "binary" else value


def hex_bytes(spec: FieldSpec, value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        _bad(spec, f"{what} must be hex text, not {type(value).__name__}")
    try:
        return bytes.fromhex(value)
    except ValueError:
        return _bad(spec, f"{what} {value[:40]!r} is not hex")


def _bad(spec: FieldSpec, reason: str):
    raise Iso8583Error(spec.key, None, reason)
