"""The MAC of the ISO 8583 channels (F64/F128), made and checked in one place.

The server (protocols/iso_channel.py) checks requests and signs answers; the client
(protocols/iso_client.py) signs requests and checks answers. Both go through `IsoMac`, so
the two sides cannot drift apart. The rule, for adapter authors: docs/channels/pos.md (MAC).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

from protocols.codes import Reason
from protocols.iso8583 import Codec

MAC_SIZE_BYTES = 8  # F64/F128 are 8 bytes (16 hex characters in the ASCII dialect)


def mac(key: bytes, data: bytes) -> bytes:
    """HMAC-SHA256 over every message byte before the MAC field, first 8 bytes."""
    return hmac.new(key, data, hashlib.sha256).digest()[:MAC_SIZE_BYTES]


def mac_field(message: Mapping[str, Any]) -> str:
    """64, or 128 when the message has a secondary bitmap (any field above 64)."""
    above = any(key.isdigit() and int(key) > 64 for key in message)
    return "128" if above else "64"


class IsoMac:
    """One dialect's messages with one key's MAC; with no key, plain and unchecked."""

    def __init__(self, codec: Codec, key: bytes | None) -> None:
        self.codec = codec
        self.key = key or None
        self.binary = codec.dialect.field(64).encoding == "binary"  # F128 is alike
        self._width = MAC_SIZE_BYTES if self.binary else 2 * MAC_SIZE_BYTES
        self._placeholder = bytes(MAC_SIZE_BYTES) if self.binary else "0" * self._width

    def encode(self, fields: Mapping[str, Any]) -> bytes:
        """The message's bytes, its MAC last when there is a key.

        The MAC covers the bitmap with its own bit set, so the message is encoded with a
        placeholder MAC first, which the MAC over the bytes before it then replaces.
        """
        if self.key is None:
            return self.codec.encode(fields)
        body = self.codec.encode({**fields, mac_field(fields): self._placeholder})
        code = mac(self.key, body[: -self._width])
        return body[: -self._width] + (code if self.binary else code.hex().upper().encode())

    def problem(self, body: bytes, message: Mapping[str, Any]) -> str:
        """Why the MAC of `message` (decoded from `body`) is not right, or "" when it is.

        The reason is MAC_MISSING or MAC_MISMATCH; with no key every message is right.
        """
        if self.key is None:
            return ""
        value = message.get(mac_field(message))
        if value is None:
            return Reason.MAC_MISSING
        given = value if isinstance(value, bytes) else bytes.fromhex(value)
        expected = mac(self.key, body[: -len(value)])  # the MAC field is the last one
        return "" if hmac.compare_digest(given, expected) else Reason.MAC_MISMATCH
