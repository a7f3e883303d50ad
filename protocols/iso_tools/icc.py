"""Field 55 (ICC data, BER-TLV) tag by tag: EMV names, values in words, card data masked.

The TLV itself is read by protocols/iso8583/tlv.py; which tags the x-pay channel checks and
how long each must be is protocols/xpay.py's ICC_TAG_SIZES.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import msgspec

from protocols.iso8583 import Iso8583Error, parse_tlv
from protocols.iso_tools.meanings import CURRENCIES, TRANSACTION_TYPES, mask_track, yuan
from protocols.xpay import ICC_TAG_SIZES

TAG_NAMES = {
    "4F": "Application Identifier (AID)",
    "50": "Application Label",
    "56": "Track 1 Data",
    "57": "Track 2 Equivalent Data",
    "5A": "Application PAN",
    "5F20": "Cardholder Name",
    "5F24": "Application Expiration Date",
    "5F2A": "Transaction Currency Code",
    "5F34": "PAN Sequence Number",
    "82": "Application Interchange Profile (AIP)",
    "84": "Dedicated File Name",
    "95": "Terminal Verification Results (TVR)",
    "9A": "Transaction Date",
    "9C": "Transaction Type",
    "9F02": "Amount, Authorised",
    "9F03": "Amount, Other",
    "9F09": "Application Version Number",
    "9F10": "Issuer Application Data (IAD)",
    "9F1A": "Terminal Country Code",
    "9F1E": "Interface Device Serial Number",
    "9F26": "Application Cryptogram (ARQC)",
    "9F27": "Cryptogram Information Data (CID)",
    "9F33": "Terminal Capabilities",
    "9F34": "Cardholder Verification Method Results",
    "9F35": "Terminal Type",
    "9F36": "Application Transaction Counter (ATC)",
    "9F37": "Unpredictable Number",
    "9F41": "Transaction Sequence Counter",
    "9F6B": "Track 2 Data",
}
# Card data inside the chip data: never shown whole.
SECRET_TAGS = frozenset({"56", "57", "5A", "5F20", "9F6B"})
CRYPTOGRAM_TYPES = {"00": "AAC (declined offline)", "40": "TC (approved offline)",
                    "80": "ARQC (online authorization requested)"}


class TagView(msgspec.Struct):
    tag: str
    name: str
    value: str  # hex, masked for card data
    meaning: str = ""


def bcd_amount(value: bytes) -> str:
    digits = value.hex()
    return f"{int(digits)} fen = {yuan(int(digits))}" if digits.isdigit() else ""


def currency_code(value: bytes) -> str:
    digits = value.hex()
    return CURRENCIES.get(digits[-3:], "") if digits.isdigit() else ""


def counter(value: bytes) -> str:
    return f"{int.from_bytes(value, 'big')}"


def date(value: bytes) -> str:
    digits = value.hex()
    return f"20{digits[:2]}-{digits[2:4]}-{digits[4:6]}" if len(value) == 3 else ""


MEANERS: Mapping[str, Callable[[bytes], str]] = {
    "9F02": bcd_amount,
    "9F03": bcd_amount,
    "5F2A": currency_code,
    "9F36": counter,
    "9F41": counter,
    "9A": date,
    "9C": lambda value: TRANSACTION_TYPES.get(value.hex(), ""),
    "9F27": lambda value: CRYPTOGRAM_TYPES.get(value.hex()[:2], ""),
}


def tag_view(tag: str, value: bytes) -> TagView:
    text = value.hex().upper()
    meaning = MEANERS.get(tag, lambda _: "")(value)
    if tag in SECRET_TAGS:
        text = mask_track(text) if tag != "5F20" else "*" * len(text)
        meaning = "card data, masked"
    size = ICC_TAG_SIZES.get(tag)
    if size is not None and len(value) != size:
        meaning = f"{len(value)} bytes: x-pay wants {size}" + (f"; {meaning}" if meaning else "")
    return TagView(tag, TAG_NAMES.get(tag, "unknown tag"), text, meaning)


def icc_tags(value: str | bytes) -> tuple[list[TagView], str]:
    """F55's tags, and "" or why it is not BER-TLV (the error names the offset)."""
    try:
        raw = value if isinstance(value, bytes) else bytes.fromhex(value)
    except ValueError:
        return [], "not hex"
    try:
        tags = parse_tlv(raw)
    except Iso8583Error as error:
        return [], f"not BER-TLV: at offset {error.offset}: {error.reason}"
    return [tag_view(tag, tag_value) for tag, tag_value in tags.items()], ""
