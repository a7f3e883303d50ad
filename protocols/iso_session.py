"""Terminal sessions of the ISO 8583 channels: sign-on with key exchange, sans-IO.

A terminal's key in the store (`switch terminal add`) is its master key (TMK): an x9.19
double-length 3DES key, or an SM4 key. A sign-on (0800, network code 001) is answered (0810)
with fresh 16-byte working keys the switch made, each encrypted under the TMK (ECB with the
TMK's cipher: 3DES K1 K2 K1, or SM4) with its check value (the first 4 bytes of the clear
key encrypting a zero block of its cipher: 8 bytes for 3DES, 16 for SM4), in F62 (upper-case
hex where F62 is text, raw bytes where it is binary, as in the unionpay dialect):

    PIK (16) + check (4)  |  MAK (16) + check (4)  |  TDK (16) + check (4)   = 60 bytes

From then on the terminal's MACs are made with the session MAK (the TMK's algorithm: X9.19
or the SM4 MAC) and its PINs (F52) encrypted under the session PIK (protocols/iso_pin.py);
its master key verifies only network management messages (a terminal that lost its
session signs on again). A key change (101) issues fresh keys and the old ones stop at
once; a sign-off (002) ends the session. A terminal marked to need a sign-on (`switch
terminal add --sign-on`) is refused money under its master key (A0, reason not_signed_on:
what UnionPay terminals answer by signing on again). An hmac-sha256 key has no cipher to
carry working keys: such a terminal signs on without them.

The network code is F70 (001 sign-on, 002 sign-off, 101 key change, 301 echo) or, from
terminals, F60.3 (F60 = 60.1 message type code `00` + 60.2 batch number n6 + 60.3 n3).
The Redis side is switch/terminal_sessions.py. Adapter documentation: docs/channels/pos.md,
"Sign-on and key exchange".
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any, NamedTuple

from protocols.channel import FieldError
from protocols.codes import Code, Reason
from protocols.iso_mac import BLOCK_BYTES, MacAlgorithm, MacKey, block_cipher
from protocols.iso_pin import PIN_KEY_SIZE_BYTES, PinError, decrypt_pin

CHECK_VALUE_SIZE_BYTES = 4  # what F62 carries after each key (UnionPay terminal practice)
WORKING_KEY_SIZE_BYTES = 16  # double-length 3DES or SM4: PIK, MAK and TDK alike
WORKING_KEYS = ("pik", "mak", "tdk")  # their order in F62
F62_SIZE_BYTES = len(WORKING_KEYS) * (WORKING_KEY_SIZE_BYTES + CHECK_VALUE_SIZE_BYTES)
NETWORK_MESSAGE_TYPE = "00"  # F60.1 of network management (UnionPay terminals)
F60_CODE_AT = slice(8, 11)  # F60.3 (n3) after 60.1 (n2) and 60.2 (n6)


class SessionAction(enum.StrEnum):
    SIGN_ON = "001"
    SIGN_OFF = "002"
    KEY_CHANGE = "101"


def network_code(message: Mapping[str, Any]) -> str:
    """The network management code of an 08xx: F70, else F60.3 when F60.1 is `00`."""
    code = message.get("70")
    if code:
        return code
    f60 = message.get("60", "")
    return f60[F60_CODE_AT] if f60[:2] == NETWORK_MESSAGE_TYPE else ""


def session_action(message: Mapping[str, Any]) -> SessionAction | None:
    try:
        return SessionAction(network_code(message))
    except ValueError:
        return None


def network_f60(action: str, batch: str = "000001") -> str:
    """F60 of a terminal's 0800: 60.1 `00`, 60.2 the batch number, 60.3 the code."""
    return f"{NETWORK_MESSAGE_TYPE}{batch:0>6}{action}"


def network_request(action: str, *, stan: str, transmitted: str, acquirer: str,
                    terminal: str) -> dict[str, Any]:
    """A terminal's 0800 (the client side: `switch terminal sign-on`), sent unsigned as
    terminals sign on before they have working keys."""
    return {"t": "0800", "7": transmitted, "11": stan, "32": acquirer, "41": terminal,
            "60": network_f60(action)}


# --- keys under the master key ---------------------------------------------------------------


def check_value(key: bytes, algorithm: MacAlgorithm = MacAlgorithm.X9_19) -> bytes:
    """The first 4 bytes of `key` encrypting a zero block of its cipher (8 bytes for 3DES,
    16 for SM4)."""
    zeros = bytes(BLOCK_BYTES[MacAlgorithm(algorithm)])
    return block_cipher(algorithm, key).encryptor().update(zeros)[:CHECK_VALUE_SIZE_BYTES]


def wrap(master: bytes, key: bytes, algorithm: MacAlgorithm = MacAlgorithm.X9_19) -> bytes:
    """`key` encrypted under the master key (ECB with the master key's cipher)."""
    if len(key) != WORKING_KEY_SIZE_BYTES:
        raise ValueError(f"a working key is {WORKING_KEY_SIZE_BYTES} bytes")
    return block_cipher(algorithm, master).encryptor().update(key)


def unwrap(master: bytes, wrapped: bytes, algorithm: MacAlgorithm = MacAlgorithm.X9_19
           ) -> bytes:
    return block_cipher(algorithm, master).decryptor().update(wrapped)


def can_exchange_keys(master: MacKey) -> bool:
    """A master key with a block cipher (x9.19's 3DES, SM4) carries working keys."""
    return master.algorithm in BLOCK_BYTES


class WorkingKeys(NamedTuple):
    pik: bytes
    mak: bytes
    tdk: bytes


def f62_of(master: bytes, keys: WorkingKeys,
           algorithm: MacAlgorithm = MacAlgorithm.X9_19) -> str:
    """F62 of a sign-on answer: each key under the master key, then its check value."""
    parts = []
    for key in keys:
        parts.append(wrap(master, key, algorithm) + check_value(key, algorithm))
    return b"".join(parts).hex().upper()


def binary_value(value: str | bytes) -> bytes:
    """A binary field (F52, F62) as its dialect decodes it: raw bytes where the field is
    binary (iso87binary, unionpay), hex text where it is `h` (iso87ascii); ValueError for
    text that is not hex."""
    return value if isinstance(value, bytes) else bytes.fromhex(value)


class KeysRejected(ValueError):
    """F62 that is not three keys under this master key (a terminal refuses them)."""


def keys_of_f62(master: bytes, f62: str | bytes,
                algorithm: MacAlgorithm = MacAlgorithm.X9_19) -> WorkingKeys:
    """The terminal's side: the clear keys, each checked against its check value
    (`algorithm`: the master key's, which the working keys share). `f62` as the dialect
    decodes it: hex text (iso87ascii, iso87binary) or raw bytes (unionpay's binary F62)."""
    try:
        raw = binary_value(f62)
    except ValueError:
        raise KeysRejected("F62 is not hex") from None
    if len(raw) != F62_SIZE_BYTES:
        raise KeysRejected(f"F62 is {F62_SIZE_BYTES} bytes, not {len(raw)}")
    size = WORKING_KEY_SIZE_BYTES + CHECK_VALUE_SIZE_BYTES
    keys = []
    for name, at in zip(WORKING_KEYS, range(0, F62_SIZE_BYTES, size), strict=True):
        key = unwrap(master, raw[at:at + WORKING_KEY_SIZE_BYTES], algorithm)
        if check_value(key, algorithm) != raw[at + WORKING_KEY_SIZE_BYTES:at + size]:
            raise KeysRejected(f"the {name.upper()} does not match its check value (another "
                               "master key?)")
        keys.append(key)
    return WorkingKeys(*keys)


# --- the keys a listener's lookup gives ------------------------------------------------------


class SessionKey(MacKey):
    """A session's MAK, with the session's PIN key: a request it verifies has its PIN block
    (F52) decrypted with that PIK. Both are of the master key's algorithm (x9.19: 3DES,
    sm4: SM4)."""

    __slots__ = ("pin_key",)

    def __init__(self, mak: bytes, pin_key: bytes,
                 algorithm: MacAlgorithm = MacAlgorithm.X9_19) -> None:
        super().__init__(algorithm, mak)
        if len(pin_key) != PIN_KEY_SIZE_BYTES:
            raise ValueError(f"a PIN key is {PIN_KEY_SIZE_BYTES} bytes")
        self.pin_key = pin_key


class MasterKey(MacKey):
    """A terminal's master key in the lookup when it may not sign money: the terminal has a
    session (money goes under its MAK) or must sign on first. It still verifies network
    management (a sign-on after the terminal lost its keys)."""

    __slots__ = ()


def master_only(key: MacKey) -> MasterKey:
    return MasterKey(key.algorithm, key.key)


class SessionChange(NamedTuple):
    """What a codec answers for a sign-on, sign-off or key change: the server makes the
    change in Redis (I/O) and has the codec answer it (`IsoChannel.session_answer`)."""

    action: SessionAction
    acquirer: str
    terminal: str
    message: dict


def entered_pin(message: Mapping[str, Any], card: str, signed_by: MacKey | None) -> str:
    """The PIN F52 carries ("" without F52), decrypted with the PIN key of the session whose
    MAK verified the message; FieldError (55) when there is no such key or the block is not
    a format 0 block for this card."""
    block = message.get("52")
    if block is None:
        return ""
    pin_key = getattr(signed_by, "pin_key", None)
    if pin_key is None:
        raise FieldError(Code.WRONG_PIN, Reason.PIN_KEY_MISSING)
    try:
        return decrypt_pin(pin_key, binary_value(block), card, signed_by.algorithm)
    except (PinError, ValueError):
        raise FieldError(Code.WRONG_PIN, Reason.PIN_BLOCK_MALFORMED) from None
