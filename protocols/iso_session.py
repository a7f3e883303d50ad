"""Terminal sessions of the ISO 8583 channels: sign-on with key exchange, sans-IO.

A terminal's key in the store (`switch terminal add`, an x9.19 double-length 3DES key) is
its master key (TMK). A sign-on (0800, network code 001) is answered (0810) with fresh
working keys the switch made, each encrypted under the TMK (3DES ECB) with its check value
(the first 4 bytes of the clear key encrypting 8 zero bytes), in F62 as upper-case hex:

    PIK (16) + check (4)  |  MAK (16) + check (4)  |  TDK (16) + check (4)   = 60 bytes

From then on the terminal's MACs are made with the session MAK (X9.19) and its PINs (F52)
encrypted under the session PIK; its master key verifies only network management messages
(a terminal that lost its session signs on again). A key change (101) issues fresh keys and
the old ones stop at once; a sign-off (002) ends the session. A terminal marked to need a
sign-on (`switch terminal add --sign-on`) is refused money under its master key (A0,
reason not_signed_on: what UnionPay terminals answer by signing on again).

The network code is F70 (001 sign-on, 002 sign-off, 101 key change, 301 echo) or, from
terminals, F60.3 (F60 = 60.1 message type code `00` + 60.2 batch number n6 + 60.3 n3).
The Redis side is switch/terminal_sessions.py. Adapter documentation: docs/channels/pos.md,
"Sign-on and key exchange".
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any, NamedTuple

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes

from protocols.channel import FieldError
from protocols.codes import Code, Reason
from protocols.iso_mac import MacAlgorithm, MacKey
from protocols.iso_pin import PIN_KEY_SIZE_BYTES, PinError, decrypt_pin

CHECK_VALUE_SIZE_BYTES = 4  # what F62 carries after each key (UnionPay terminal practice)
WORKING_KEY_SIZE_BYTES = 16  # double-length 3DES: PIK, MAK (X9.19) and TDK alike
WORKING_KEYS = ("pik", "mak", "tdk")  # their order in F62
F62_SIZE_BYTES = len(WORKING_KEYS) * (WORKING_KEY_SIZE_BYTES + CHECK_VALUE_SIZE_BYTES)
NETWORK_MESSAGE_TYPE = "00"  # F60.1 of network management (UnionPay terminals)
F60_CODE_AT = slice(8, 11)  # F60.3 (n3) after 60.1 (n2) and 60.2 (n6)


class SessionAction(enum.StrEnum):
    SIGN_ON = "001"
    SIGN_OFF = "002"
    KEY_CHANGE = "101"


ECHO_TEST = "301"


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


def _3des(key: bytes) -> TripleDES:
    if len(key) != WORKING_KEY_SIZE_BYTES:
        raise ValueError(f"a 3DES key here is {WORKING_KEY_SIZE_BYTES} bytes")
    return TripleDES(key + key[:8])


def check_value(key: bytes) -> bytes:
    """The first 4 bytes of `key` (double-length 3DES) encrypting 8 zero bytes."""
    encrypted = Cipher(_3des(key), modes.ECB()).encryptor().update(bytes(8))
    return encrypted[:CHECK_VALUE_SIZE_BYTES]


def wrap(master: bytes, key: bytes) -> bytes:
    """`key` encrypted under the master key (3DES ECB, two blocks)."""
    if len(key) != WORKING_KEY_SIZE_BYTES:
        raise ValueError(f"a working key is {WORKING_KEY_SIZE_BYTES} bytes")
    return Cipher(_3des(master), modes.ECB()).encryptor().update(key)


def unwrap(master: bytes, wrapped: bytes) -> bytes:
    return Cipher(_3des(master), modes.ECB()).decryptor().update(wrapped)


def can_exchange_keys(master: MacKey) -> bool:
    """Only a 3DES master key (the x9.19 algorithm's) carries working keys."""
    return master.algorithm is MacAlgorithm.X9_19


class WorkingKeys(NamedTuple):
    pik: bytes
    mak: bytes
    tdk: bytes


def f62_of(master: bytes, keys: WorkingKeys) -> str:
    """F62 of a sign-on answer: each key under the master key, then its check value."""
    parts = []
    for key in keys:
        parts.append(wrap(master, key) + check_value(key))
    return b"".join(parts).hex().upper()


class KeysRejected(ValueError):
    """F62 that is not three keys under this master key (a terminal refuses them)."""


def keys_of_f62(master: bytes, f62: str) -> WorkingKeys:
    """The terminal's side: the clear keys, each checked against its check value."""
    try:
        raw = bytes.fromhex(f62)
    except ValueError:
        raise KeysRejected("F62 is not hex") from None
    if len(raw) != F62_SIZE_BYTES:
        raise KeysRejected(f"F62 is {F62_SIZE_BYTES} bytes, not {len(raw)}")
    size = WORKING_KEY_SIZE_BYTES + CHECK_VALUE_SIZE_BYTES
    keys = []
    for name, at in zip(WORKING_KEYS, range(0, F62_SIZE_BYTES, size), strict=True):
        key = unwrap(master, raw[at:at + WORKING_KEY_SIZE_BYTES])
        if check_value(key) != raw[at + WORKING_KEY_SIZE_BYTES:at + size]:
            raise KeysRejected(f"the {name.upper()} does not match its check value (another "
                               "master key?)")
        keys.append(key)
    return WorkingKeys(*keys)


# --- the keys a listener's lookup gives ------------------------------------------------------


class SessionKey(MacKey):
    """A session's MAK (X9.19), with the session's PIN key: a request it verifies has its
    PIN block (F52) decrypted with that PIK."""

    __slots__ = ("pin_key",)

    def __init__(self, mak: bytes, pin_key: bytes) -> None:
        super().__init__(MacAlgorithm.X9_19, mak)
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
        raw = block if isinstance(block, bytes) else bytes.fromhex(block)
        return decrypt_pin(pin_key, raw, card)
    except (PinError, ValueError):
        raise FieldError(Code.WRONG_PIN, Reason.PIN_BLOCK_MALFORMED) from None
