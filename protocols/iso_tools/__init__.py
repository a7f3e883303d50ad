"""The offline ISO 8583 toolbox for adapter authors of the pos and x-pay channels.

Pure functions returning data (msgspec Structs); `switch iso ...` (switch/iso_cli.py) only
formats them. Guide: docs/channels/iso-toolbox.md.

    parse(data, dialect, header="", mac_key=None) -> Parsed      # a message taken apart
    build(document, dialect, mac_key=None) -> bytes               # a message from JSON fields
    validate(data, channel, dialect, header="", mac_key=None) -> Validation
    explain(code, reason="") -> Explanation                      # F39 (+ F44) in words
    message_from_text(text) -> bytes                             # hex, or a hex dump
"""

from protocols.iso_tools.building import build, message_fields
from protocols.iso_tools.checking import CHANNELS, Validation, validate
from protocols.iso_tools.explaining import Explanation, codes_of_reason, explain
from protocols.iso_tools.hextext import message_from_text
from protocols.iso_tools.icc import TagView
from protocols.iso_tools.parsing import (
    BitmapView,
    FieldView,
    MacView,
    Parsed,
    Problem,
    parse,
    strip_header,
)

__all__ = [
    "CHANNELS",
    "BitmapView",
    "Explanation",
    "FieldView",
    "MacView",
    "Parsed",
    "Problem",
    "TagView",
    "Validation",
    "build",
    "codes_of_reason",
    "explain",
    "message_fields",
    "message_from_text",
    "parse",
    "strip_header",
    "validate",
]
