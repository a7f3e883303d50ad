"""The MAC of the ISO 8583 channels (F64/F128), made and checked in one place.

Each terminal (acquirer F32 + terminal F41) has its own key, and each key its algorithm:
  hmac-sha256  HMAC-SHA256 over the bytes, first 8 bytes; keys of 16-64 bytes
  x9.19        ANSI X9.19 retail MAC (ISO/IEC 9797-1 MAC algorithm 3, padding method 1):
               CBC-DES under the key's left half over the bytes zero-padded to a multiple of
               8, the last block then decrypted under the right half and encrypted under the
               left again (3DES on the last block); a double-length (16-byte) key
  sm4          CBC-MAC with SM4 (GB/T 32907; GB/T 15852.1 = ISO/IEC 9797-1 MAC algorithm 1,
               padding method 2): 0x80 then zeros up to a multiple of 16, CBC-SM4 with a zero
               IV, the first 8 bytes of the last block; a 16-byte key
The ciphers are the `cryptography` library's. The key check value (KCV) is how a key is shown
and compared without showing it: the first 3 bytes of the key encrypting a zero block (3DES,
SM4), or of the HMAC of 8 zero bytes.

The server (protocols/iso_channel.py) checks requests and signs answers; the client
(protocols/iso_client.py) signs requests and checks answers. Both go through `IsoMac`, so
the two sides cannot drift apart. The rule, for adapter authors: docs/channels/pos.md (MAC).
"""

from __future__ import annotations

import enum
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from protocols.codes import Reason
from protocols.iso8583 import Codec

MAC_SIZE_BYTES = 8  # F64/F128 are 8 bytes (16 hex characters in the ASCII dialect)
KCV_SIZE_BYTES = 3  # how much of the check value the industry shows


class MacAlgorithm(enum.StrEnum):
    HMAC_SHA256 = "hmac-sha256"
    X9_19 = "x9.19"
    SM4 = "sm4"


# The key sizes each algorithm takes, in bytes.
KEY_SIZES: Mapping[MacAlgorithm, range] = {
    MacAlgorithm.HMAC_SHA256: range(16, 65),
    MacAlgorithm.X9_19: range(16, 17),  # double-length DES key: left half, right half
    MacAlgorithm.SM4: range(16, 17),
}


# The block cipher behind each algorithm's key: its working keys, check values and PIN blocks
# (protocols/iso_session.py, protocols/iso_pin.py) use the same one. HMAC keys have none.
BLOCK_BYTES: Mapping[MacAlgorithm, int] = {MacAlgorithm.X9_19: 8, MacAlgorithm.SM4: 16}


def block_cipher(algorithm: MacAlgorithm, key: bytes) -> Cipher:
    """ECB under a 16-byte key: 3DES with K1 K2 K1 (x9.19's key as double-length 3DES) or
    SM4; ValueError for another size or an algorithm with no block cipher."""
    if algorithm not in BLOCK_BYTES:
        raise ValueError(f"a {algorithm} key has no block cipher (3DES or SM4 keys have)")
    if len(key) != 16:
        raise ValueError(f"a {algorithm} block cipher key is 16 bytes, not {len(key)}")
    cipher = TripleDES(key + key[:8]) if algorithm == MacAlgorithm.X9_19 else algorithms.SM4(key)
    return Cipher(cipher, modes.ECB())


class _Chain:
    """CBC-MAC with one cipher context kept for the key's lifetime: making a context costs
    more than the MAC itself. A CBC context carries its chain value into the next message,
    so each message's first block is XORed with it first: the chain then starts from zero,
    as if the context were new."""

    __slots__ = ("encryptor", "last")

    def __init__(self, algorithm, block_bytes: int) -> None:
        self.encryptor = Cipher(algorithm, modes.CBC(bytes(block_bytes))).encryptor()
        self.last = bytes(block_bytes)

    def last_block(self, padded: bytes) -> bytes:
        size = len(self.last)
        first = bytes(a ^ b for a, b in zip(padded[:size], self.last, strict=True))
        self.last = self.encryptor.update(first + padded[size:])[-size:]
        return self.last


class _X9_19:
    """ANSI X9.19: CBC-DES under the left half; the last block decrypted under the right
    half and encrypted under the left again."""

    __slots__ = ("chain", "right", "left")

    def __init__(self, key: bytes) -> None:
        left, right = TripleDES(key[:8] * 3), TripleDES(key[8:] * 3)  # K1 = K2 = K3: DES
        self.chain = _Chain(left, 8)
        self.right = Cipher(right, modes.ECB()).decryptor()
        self.left = Cipher(left, modes.ECB()).encryptor()

    def mac(self, data: bytes) -> bytes:
        padded = data + bytes(-len(data) % 8) if data else bytes(8)
        return self.left.update(self.right.update(self.chain.last_block(padded)))


class _Sm4:
    """CBC-MAC with SM4, padding method 2, the first 8 bytes of the last block."""

    __slots__ = ("chain",)

    def __init__(self, key: bytes) -> None:
        self.chain = _Chain(algorithms.SM4(key), 16)

    def mac(self, data: bytes) -> bytes:
        padded = data + b"\x80" + bytes(-(len(data) + 1) % 16)
        return self.chain.last_block(padded)[:MAC_SIZE_BYTES]


class _HmacSha256:
    __slots__ = ("key",)

    def __init__(self, key: bytes) -> None:
        self.key = key

    def mac(self, data: bytes) -> bytes:
        return hmac.new(self.key, data, hashlib.sha256).digest()[:MAC_SIZE_BYTES]


_MACS = {MacAlgorithm.HMAC_SHA256: _HmacSha256, MacAlgorithm.X9_19: _X9_19,
         MacAlgorithm.SM4: _Sm4}


def check_key(algorithm: str, key: bytes) -> MacAlgorithm:
    """The algorithm, once the key fits it; ValueError naming what is wrong."""
    try:
        known = MacAlgorithm(algorithm)
    except ValueError:
        raise ValueError(f"MAC algorithm {algorithm!r}: one of "
                         f"{', '.join(MacAlgorithm)}") from None
    sizes = KEY_SIZES[known]
    if len(key) not in sizes:
        wanted = (f"{sizes.start}" if len(sizes) == 1 else f"{sizes.start}-{sizes.stop - 1}")
        raise ValueError(f"a {known} key is {wanted} bytes ({2 * sizes.start}"
                         f"{'' if len(sizes) == 1 else '+'} hex digits), not {len(key)}")
    return known


class MacKey:
    """One terminal key: its algorithm and its bytes (never in its repr: the KCV is)."""

    __slots__ = ("algorithm", "key", "_mac")

    def __init__(self, algorithm: MacAlgorithm, key: bytes) -> None:
        self.algorithm = check_key(algorithm, key)
        self.key = key
        self._mac = _MACS[self.algorithm](key).mac

    @classmethod
    def parse(cls, algorithm: str, hex_key: str) -> MacKey:
        """From text (config, CLI, Redis); ValueError naming what is wrong."""
        try:
            key = bytes.fromhex(hex_key)
        except ValueError:
            raise ValueError("a MAC key is hex digits, e.g. 0123456789ABCDEFFEDCBA9876543210"
                             ) from None
        return cls(check_key(algorithm, key), key)

    def mac(self, data: bytes) -> bytes:
        """The 8-byte MAC of `data` (one event loop at a time: the cipher state is kept)."""
        return self._mac(data)

    def kcv(self) -> str:
        """Key check value: 6 upper-case hex digits (what `switch terminal show` prints)."""
        size = BLOCK_BYTES.get(self.algorithm)
        if size is None:
            value = self.mac(bytes(8))
        else:
            value = block_cipher(self.algorithm, self.key).encryptor().update(bytes(size))
        return value[:KCV_SIZE_BYTES].hex().upper()

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, MacKey) and self.algorithm == other.algorithm
                and hmac.compare_digest(self.key, other.key))

    def __hash__(self) -> int:
        return hash((self.algorithm, self.key))

    def __repr__(self) -> str:
        return f"MacKey({self.algorithm}, KCV {self.kcv()})"


def as_key(key: MacKey | bytes | None) -> MacKey | None:
    """A key as the ISO tools take one: bare bytes are an HMAC-SHA256 key."""
    if key is None or isinstance(key, MacKey):
        return key
    return MacKey(MacAlgorithm.HMAC_SHA256, key) if key else None


def mac_field(message: Mapping[str, Any]) -> str:
    """64, or 128 when the message has a secondary bitmap (any field above 64)."""
    above = any(key.isdigit() and int(key) > 64 for key in message)
    return "128" if above else "64"


class IsoMac:
    """One dialect's messages, signed and checked with a key given per message."""

    def __init__(self, codec: Codec) -> None:
        self.codec = codec
        self.binary = codec.dialect.field(64).encoding == "binary"  # F128 is alike
        self._width = MAC_SIZE_BYTES if self.binary else 2 * MAC_SIZE_BYTES
        self._placeholder = bytes(MAC_SIZE_BYTES) if self.binary else "0" * self._width

    def encode(self, fields: Mapping[str, Any], key: MacKey | None) -> bytes:
        """The message's bytes, its MAC last when there is a key.

        The MAC covers the bitmap with its own bit set, so the message is encoded with a
        placeholder MAC first, which the MAC over the bytes before it then replaces.
        """
        if key is None:
            return self.codec.encode(fields)
        body = self.codec.encode({**fields, mac_field(fields): self._placeholder})
        code = key.mac(body[: -self._width])
        return body[: -self._width] + (code if self.binary else code.hex().upper().encode())

    def given(self, message: Mapping[str, Any]) -> bytes | None:
        """The MAC a decoded message carries, as bytes, or None."""
        value = message.get(mac_field(message))
        if value is None:
            return None
        return value if isinstance(value, bytes) else bytes.fromhex(value)

    def signer(self, body: bytes, message: Mapping[str, Any], keys: Sequence[MacKey]
               ) -> tuple[str, MacKey | None]:
        """(problem, key): the first of `keys` whose MAC `message` (decoded from `body`)
        carries, with problem ""; else MAC_MISSING or MAC_MISMATCH and no key."""
        given = self.given(message)
        if given is None:
            return Reason.MAC_MISSING, None
        covered = body[: -self._width]  # the MAC field is the last one
        for key in keys:
            if hmac.compare_digest(given, key.mac(covered)):
                return "", key
        return Reason.MAC_MISMATCH, None


# --- who holds which key ------------------------------------------------------------------


class KeyLookup(Protocol):
    """Where a listener finds a terminal's keys (switch/terminal_keys.py keeps them in Redis
    and caches them; `KeyRing` holds a fixed set)."""

    def keys_for(self, acquirer: str, terminal: str) -> tuple[MacKey, ...] | None:
        """The keys a MAC of this terminal may be made with now (the current one first);
        () for a terminal with no key; None when they must be fetched first (KeyNeeded)."""
        ...

    def doubt(self, acquirer: str, terminal: str) -> bool:
        """A MAC failed under the keys given: True when they may be stale and were dropped
        (the request is then decided again on keys fetched afresh)."""
        ...


class AnyTerminal:
    """One key for whatever terminal a message names (the ISO tools' checks)."""

    def __init__(self, key: MacKey) -> None:
        self.key = key

    def keys_for(self, acquirer: str, terminal: str) -> tuple[MacKey, ...]:
        return (self.key,)

    def doubt(self, acquirer: str, terminal: str) -> bool:
        return False


class KeyRing:
    """A fixed set of terminal keys, by (acquirer, terminal); "*" as the terminal stands for
    every terminal of the acquirer that has no key of its own."""

    def __init__(self, keys: Mapping[tuple[str, str], MacKey] | None = None) -> None:
        self.keys = dict(keys or {})

    def keys_for(self, acquirer: str, terminal: str) -> tuple[MacKey, ...]:
        key = self.keys.get((acquirer, terminal)) or self.keys.get((acquirer, "*"))
        return () if key is None else (key,)

    def doubt(self, acquirer: str, terminal: str) -> bool:
        return False
