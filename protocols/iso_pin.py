"""PIN blocks (ISO 9564-1 format 0, ANSI X9.8) under a terminal's PIN key, sans-IO.

A format 0 block is 8 bytes: the PIN field `0` + PIN length + PIN digits + `F` padding
(16 hex digits) XOR the account field `0000` + the 12 rightmost digits of the card number
without its check digit. F52 carries it encrypted (3DES ECB, one block) under the session
PIN key a sign-on issued (protocols/iso_session.py). The switch decrypts it, reads the PIN
and checks it against the card's salted hash (switch/pins.py); the client makes it
(`switch send --pin`). Adapter documentation: docs/channels/pos.md, "PIN".
"""

from __future__ import annotations

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes

PIN_BLOCK_SIZE_BYTES = 8
PIN_DIGITS_MIN = 4  # ISO 9564-1: a PIN is 4 to 12 digits
PIN_DIGITS_MAX = 12
PIN_KEY_SIZE_BYTES = 16  # a double-length 3DES key (K1 K2, K3 = K1)


class PinError(ValueError):
    """A PIN or PIN block that cannot be used (the switch answers it 55 pin_block_malformed;
    the message never names the digits)."""


def check_pin(pin: str) -> str:
    """The PIN when it is 4-12 ASCII digits; PinError otherwise (never naming the digits)."""
    if not (PIN_DIGITS_MIN <= len(pin) <= PIN_DIGITS_MAX and pin.isascii() and pin.isdigit()):
        raise PinError(f"a PIN is {PIN_DIGITS_MIN}-{PIN_DIGITS_MAX} digits")
    return pin


def account_field(pan: str) -> bytes:
    """`0000` + the 12 rightmost digits of the PAN without its check digit (zero-filled on
    the left when shorter), as 8 bytes."""
    body = pan[:-1]
    if not (body.isascii() and body.isdigit()):
        raise PinError("the card number is not digits")
    return bytes.fromhex("0000" + body[-12:].rjust(12, "0"))


def clear_block(pin: str, pan: str) -> bytes:
    """The clear format 0 block of `pin` for card `pan`."""
    field = f"0{len(check_pin(pin)):X}{pin}".ljust(16, "F")
    return bytes(a ^ b for a, b in zip(bytes.fromhex(field), account_field(pan), strict=True))


def pin_of_block(block: bytes, pan: str) -> str:
    """The PIN a clear format 0 block holds; PinError when it is not one (another format,
    a length out of 4-12, a non-digit, padding other than F: typically a block made under
    another key or for another card)."""
    if len(block) != PIN_BLOCK_SIZE_BYTES:
        raise PinError("a PIN block is 8 bytes")
    field = bytes(a ^ b for a, b in zip(block, account_field(pan), strict=True)).hex().upper()
    length = int(field[1], 16)
    digits, padding = field[2:2 + length], field[2 + length:]
    if (field[0] != "0" or not PIN_DIGITS_MIN <= length <= PIN_DIGITS_MAX
            or not digits.isdigit() or padding != "F" * len(padding)):
        raise PinError("not an ISO 9564 format 0 PIN block")
    return digits


def _cipher(key: bytes) -> Cipher:
    if len(key) != PIN_KEY_SIZE_BYTES:
        raise ValueError(f"a PIN key is {PIN_KEY_SIZE_BYTES} bytes (double-length 3DES)")
    return Cipher(TripleDES(key + key[:8]), modes.ECB())


def encrypt_pin(key: bytes, pin: str, pan: str) -> bytes:
    """F52: the format 0 block of `pin` encrypted under the PIN key (the terminal's side)."""
    return _cipher(key).encryptor().update(clear_block(pin, pan))


def decrypt_pin(key: bytes, encrypted: bytes, pan: str) -> str:
    """The PIN in F52 (the switch's side); PinError when it does not decrypt to a block."""
    if len(encrypted) != PIN_BLOCK_SIZE_BYTES:
        raise PinError("F52 is 8 bytes")
    return pin_of_block(_cipher(key).decryptor().update(encrypted), pan)
