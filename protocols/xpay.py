"""x-pay channel (Apple Pay, Huawei Pay, Mi Pay): ISO 8583 like pos, but F2 is a wallet token.

The token (DPAN) stands for the card in the switch's token vault (switch/tokens.py), which
turns it into the card number before the decision. Payments the device makes (purchase,
pre-authorization, inquiry) carry the device's cryptogram data in F55:
  9F26 cryptogram (8 bytes)    9F36 ATC (2 bytes)        9F37 unpredictable number (4)
  9F02 amount (n12, 6 bytes)   5F2A currency (n4, 2 bytes)
The cryptogram is the first 8 bytes of HMAC-SHA256, keyed with the token's key, over
9F02 || 5F2A || 9F36 || 9F37 (their value bytes, in that order). 9F02 must equal F4 and 5F2A
F49, so the cryptogram binds the amount the switch decides on. Captures, reversals and
refunds come from the acquirer, not the device, and carry no cryptogram.

Adapter documentation: docs/channels/xpay.md.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from protocols.channel import FieldError
from protocols.codes import Code, Reason
from protocols.iso8583 import Iso8583Error, build_tlv, parse_tlv
from protocols.iso_channel import IsoChannel
from protocols.messages import AuthRequest, MessageClass

CRYPTOGRAM_SIZE_BYTES = 8
# The wallet's own payments; only these carry (and must carry) a cryptogram.
DEVICE_CLASSES = frozenset({MessageClass.AUTH, MessageClass.SALE, MessageClass.INQUIRY})
# F22 of a wallet payment: 07x contactless (qPBOC) at a terminal, 81x in-app / e-commerce.
WALLET_ENTRY_MODES = ("07", "81")
# Tag -> value size in bytes, as EMV defines them.
ICC_TAG_SIZES = {"9F26": 8, "9F36": 2, "9F37": 4, "9F02": 6, "5F2A": 2}
WALLETS = ("apple", "huawei", "mi")


class XpayRequest(AuthRequest, kw_only=True):
    """A wallet request: `card` holds the token until the vault resolves it to the PAN."""

    cryptogram: bytes = b""  # 9F26 as sent
    cryptogram_data: bytes = b""  # what the cryptogram covers: 9F02 || 5F2A || 9F36 || 9F37
    atc: int = -1  # 9F36; -1 when the message carries no cryptogram (acquirer messages)


def cryptogram(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()[:CRYPTOGRAM_SIZE_BYTES]


def cryptogram_data(amount_fen: int, currency: int, atc: int, unpredictable: bytes) -> bytes:
    return (bcd(f"{amount_fen:012d}") + bcd(f"{currency:04d}") + atc.to_bytes(2, "big")
            + unpredictable)


def bcd(digits: str) -> bytes:
    return bytes.fromhex(digits)


class XpayCodec(IsoChannel):
    """Server side of the `xpay` listener."""

    name = "xpay"

    def build(self, message: dict, basics: dict[str, Any]) -> AuthRequest:
        if basics["message_class"] not in DEVICE_CLASSES:
            return XpayRequest(**basics)
        if message.get("22", "")[:2] not in WALLET_ENTRY_MODES:
            raise FieldError(Code.FORMAT_ERROR, Reason.ENTRY_MODE_NOT_WALLET)
        tags = icc_tags(message)
        if int(tags["9F02"].hex()) != basics["amount_fen"]:
            raise FieldError(Code.SUSPECTED_FRAUD, Reason.ICC_AMOUNT_MISMATCH)
        if int(tags["5F2A"].hex()) != basics["currency"]:
            raise FieldError(Code.SUSPECTED_FRAUD, Reason.ICC_CURRENCY_MISMATCH)
        return XpayRequest(
            **basics,
            cryptogram=tags["9F26"],
            cryptogram_data=tags["9F02"] + tags["5F2A"] + tags["9F36"] + tags["9F37"],
            atc=int.from_bytes(tags["9F36"], "big"),
        )


def icc_tags(message: dict) -> dict[str, bytes]:
    """F55's cryptogram tags, each checked for its size and, for n fields, its digits."""
    raw = message.get("55")
    if raw is None:
        raise FieldError(Code.FORMAT_ERROR, Reason.FIELD_MISSING.format(field=55))
    try:
        tags = parse_tlv(raw if isinstance(raw, bytes) else bytes.fromhex(raw))
    except (Iso8583Error, ValueError):
        raise FieldError(Code.FORMAT_ERROR, Reason.ICC_FIELD_NOT_TLV) from None
    for tag, size in ICC_TAG_SIZES.items():
        value = tags.get(tag)
        if value is None or len(value) != size:
            raise FieldError(Code.FORMAT_ERROR, Reason.ICC_TAG_MALFORMED.format(tag=tag))
    for tag in ("9F02", "5F2A"):
        if not tags[tag].hex().isdigit():
            raise FieldError(Code.FORMAT_ERROR, Reason.ICC_TAG_NOT_BCD.format(tag=tag))
    return tags


# --- client side ----------------------------------------------------------------------------


def icc_field(amount_fen: int, currency: int, atc: int, unpredictable: bytes, key: bytes,
              binary: bool) -> str | bytes:
    """F55 for a wallet payment: the cryptogram tags (+ 9F27 = 80, an ARQC), as the dialect
    carries binary data (raw bytes, or upper-case hex text in the ASCII dialect)."""
    data = cryptogram_data(amount_fen, currency, atc, unpredictable)
    tlv = build_tlv({
        "9F26": cryptogram(key, data),
        "9F27": b"\x80",
        "9F36": atc.to_bytes(2, "big"),
        "9F37": unpredictable,
        "9F02": data[:6],
        "5F2A": data[6:8],
    })
    return tlv if binary else tlv.hex().upper()
