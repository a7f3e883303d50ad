"""PIN blocks (ISO 9564-1 format 0, ANSI X9.8) under a terminal's PIN key, sans-IO.

A format 0 block is 8 bytes: the PIN field `0` + PIN length + PIN digits + `F` padding
(16 hex digits) XOR the account field `0000` + the 12 rightmost digits of the card number
without its check digit. F52 carries it encrypted (3DES ECB, one block) under the session
PIN key a sign-on issued (protocols/iso_session.py).

A terminal whose keys are SM4 (a 16-byte block) widens the same block to 16 bytes, as
Chinese national-cryptography PIN pads do: the PIN field `F`-padded to 32 hex digits XOR the
account field zero-filled on the left to 32 (`0000...` + the same 12 digits), encrypted
with SM4 ECB. F52 then carries 16 bytes.

The switch decrypts it, reads the PIN and checks it against the card's salted hash
(switch/pins.py); the client makes it (`switch send --pin`). Adapter documentation:
docs/channels/pos.md, "PIN".
"""

from __future__ import annotations

from protocols.iso_mac import BLOCK_BYTES, MacAlgorithm, block_cipher

PIN_BLOCK_SIZE_BYTES = 8  # format 0 under 3DES
PIN_DIGITS_MIN = 4  # ISO 9564-1: a PIN is 4 to 12 digits
PIN_DIGITS_MAX = 12
PIN_KEY_SIZE_BYTES = 16  # a double-length 3DES key (K1 K2, K3 = K1), or an SM4 key
ACCOUNT_DIGITS = 12  # of the card number, in the account field


class PinError(ValueError):
    """A PIN or PIN block that cannot be used (the switch answers it 55 pin_block_malformed;
    the message never names the digits)."""


def check_pin(pin: str) -> str:
    """The PIN when it is 4-12 ASCII digits; PinError otherwise (never naming the digits)."""
    if not (PIN_DIGITS_MIN <= len(pin) <= PIN_DIGITS_MAX and pin.isascii() and pin.isdigit()):
        raise PinError(f"a PIN is {PIN_DIGITS_MIN}-{PIN_DIGITS_MAX} digits")
    return pin


def block_size(algorithm: MacAlgorithm) -> int:
    """How many bytes a PIN block is under keys of `algorithm`: 8 (3DES) or 16 (SM4)."""
    return BLOCK_BYTES[MacAlgorithm(algorithm)]


def account_field(pan: str, size: int = PIN_BLOCK_SIZE_BYTES) -> bytes:
    """The 12 rightmost digits of the PAN without its check digit (zero-filled on the left
    when shorter), zero-filled on the left to `size` bytes."""
    body = pan[:-1]
    if not (body.isascii() and body.isdigit()):
        raise PinError("the card number is not digits")
    return bytes.fromhex(body[-ACCOUNT_DIGITS:].rjust(2 * size, "0"))


def clear_block(pin: str, pan: str, size: int = PIN_BLOCK_SIZE_BYTES) -> bytes:
    """The clear format 0 block of `pin` for card `pan`, `size` bytes long."""
    field = f"0{len(check_pin(pin)):X}{pin}".ljust(2 * size, "F")
    return bytes(a ^ b for a, b in zip(bytes.fromhex(field), account_field(pan, size),
                                       strict=True))


def pin_of_block(block: bytes, pan: str) -> str:
    """The PIN a clear format 0 block (8 or 16 bytes) holds; PinError when it is not one
    (another format, a length out of 4-12, a non-digit, padding other than F: typically a
    block made under another key or for another card)."""
    if len(block) not in BLOCK_BYTES.values():
        raise PinError("a PIN block is 8 or 16 bytes")
    field = bytes(a ^ b for a, b in zip(block, account_field(pan, len(block)), strict=True)
                  ).hex().upper()
    length = int(field[1], 16)
    digits, padding = field[2:2 + length], field[2 + length:]
    if (field[0] != "0" or not PIN_DIGITS_MIN <= length <= PIN_DIGITS_MAX
            or not digits.isdigit() or padding != "F" * len(padding)):
        raise PinError("not an ISO 9564 format 0 PIN block")
    return digits


def encrypt_pin(key: bytes, pin: str, pan: str,
                algorithm: MacAlgorithm = MacAlgorithm.X9_19) -> bytes:
    """F52: the PIN's block encrypted under the PIN key (the terminal's side); 8 bytes
    under a 3DES key, 16 under an SM4 key."""
    size = block_size(algorithm)
    return block_cipher(algorithm, key).encryptor().update(clear_block(pin, pan, size))


def decrypt_pin(key: bytes, encrypted: bytes, pan: str,
                algorithm: MacAlgorithm = MacAlgorithm.X9_19) -> str:
    """The PIN in F52 (the switch's side); PinError when it is not one block of the key's
    cipher or does not decrypt to a format 0 block."""
    size = block_size(algorithm)
    if len(encrypted) != size:
        raise PinError(f"F52 under a {algorithm} PIN key is {size} bytes, not "
                       f"{len(encrypted)}")
    return pin_of_block(block_cipher(algorithm, key).decryptor().update(encrypted), pan)
