"""One WeChat Pay request read strictly, for the conformance kit (docs/channels/wechat.md).

The fields each `api` needs, their formats (the order number and nonce alphabets, fees of
digits, an 18-digit payment code, a card number with its check digit), a `sign_type` of MD5
(also when absent) or HMAC-SHA256, and the signature so made, in upper-case hex, under the
merchant's key (the switch also takes lower case; the v2 rule says upper). WeChat requests
carry no time of their own.
"""

from __future__ import annotations

import datetime
import re

from protocols.cardnumbers import luhn_valid, mask_pan
from protocols.codes import Reason
from protocols.conformance.iso_rules import AMOUNT_MAX_FEN
from protocols.conformance.session import UNKNOWN, Answered, Finding, Reading
from protocols.messages import MessageClass
from protocols.wechat import (
    APIS,
    AUTH_CODE,
    BANK_TYPE,
    FEE,
    HMAC_SHA256,
    IP,
    MD5,
    NONCE,
    ORDER_NO,
    REQUIRED,
    SIGN_TYPE_ABSENT,
    SIGN_TYPES,
    WechatError,
    parse_xml,
    sign,
)

ALWAYS = ("api", "appid", "mch_id", "nonce_str", "sign", "card_no")
SIGN_PATTERNS = {MD5: re.compile(r"[0-9A-F]{32}"), HMAC_SHA256: re.compile(r"[0-9A-F]{64}")}
CARD_PATTERN = re.compile(r"[0-9]{12,19}")
MCC_PATTERN = re.compile(r"[0-9]{4}")
FORMATS = (  # field, pattern, what it must be
    ("nonce_str", NONCE, "1-32 of A-Z a-z 0-9 _ -"),
    ("out_trade_no", ORDER_NO, "1-32 of A-Z a-z 0-9 _ - | * @"),
    ("out_refund_no", ORDER_NO, "1-32 of A-Z a-z 0-9 _ - | * @"),
    ("total_fee", FEE, "fen as digits, no leading zero"),
    ("refund_fee", FEE, "fen as digits, no leading zero"),
    ("auth_code", AUTH_CODE, "18 digits starting 10-15"),
    ("spbill_create_ip", IP, "an IP address"),
    ("mcc", MCC_PATTERN, "4 digits"),
)
# What a repeat's answer says anew: an order paid before is answered ORDERPAID, FAIL.
ANSWER_CHANGES = ("repeat", "sign", "result_code", "err_code", "err_code_des", "time_end")
FAULTS = {
    Reason.SIGNATURE_MISMATCH: ("sign", "the signature under the merchant's key"),
    Reason.MERCHANT_UNKNOWN: ("mch_id", "a merchant the switch has a key for"),
}


class WechatRules:
    def __init__(self, merchant_keys: dict[str, bytes]) -> None:
        self.merchant_keys = merchant_keys

    def read(self, body: bytes, now: datetime.datetime) -> Reading:
        try:
            fields = parse_xml(body)
        except WechatError as error:
            return Reading(UNKNOWN, "not WeChat XML", [Finding(
                "body", "flat <xml> of text fields", str(error))])
        api = fields.get("api", "")
        kind = APIS.get(api)
        if kind is None:
            return Reading(UNKNOWN, f"{api or '-'} {fields.get('out_trade_no', '-')}", [Finding(
                "api", f"one of {', '.join(APIS)}", repr(api))], content=fields)
        reading = identify(fields, api, kind)
        needed = ALWAYS + REQUIRED[api]
        reading.findings += [Finding(name, "present", "nothing") for name in needed
                             if not fields.get(name)]
        reading.findings += formats(fields, api)
        reading.findings += self.signature(fields)
        return reading

    def answer(self, body: bytes) -> Answered:
        try:
            fields = parse_xml(body)
        except WechatError as error:
            return Answered("", f"answer undecodable: {error}", {})
        reason = fields.get("reason", "") or fields.get("return_msg", "")
        return Answered(fields.get("iso_code", ""), reason,
                        {k: v for k, v in fields.items() if k not in ANSWER_CHANGES},
                        *FAULTS.get(reason, ("answer", "a message the switch accepts")))

    def signature(self, fields: dict[str, str]) -> list[Finding]:
        key = self.merchant_keys.get(fields.get("mch_id", ""))
        given = fields.get("sign", "")
        if key is None:
            return [Finding("mch_id", "a merchant the switch has a key for",
                            repr(fields.get("mch_id", "")))]
        if not given:
            return []  # named missing already
        sign_type = fields.get("sign_type") or SIGN_TYPE_ABSENT
        if sign_type not in SIGN_TYPES:
            return []  # named by formats()
        digits = 64 if sign_type == HMAC_SHA256 else 32
        if not SIGN_PATTERNS[sign_type].fullmatch(given):
            return [Finding("sign", f"{digits} upper-case hex digits ({sign_type})", repr(given))]
        if sign(fields, key, sign_type) != given:
            return [Finding("sign", f"{sign_type} of the sorted non-empty fields and &key= "
                            "under the merchant's key", "another signature")]
        return []


def identify(fields: dict[str, str], api: str, kind: MessageClass) -> Reading:
    """An order is (mch_id, out_trade_no); a refund (mch_id, out_refund_no); a reverse is
    its order's one reversal; an order query is answered afresh (no id to repeat)."""
    mch, order = fields.get("mch_id", ""), fields.get("out_trade_no", "")
    reading = Reading(kind.value, f"{api} {order or '-'}", [], content=fields)
    if order and kind is MessageClass.SALE:
        reading.id = reading.txn = f"{mch}:{order}"
    elif order:
        reading.original, reading.original_field = f"{mch}:{order}", "out_trade_no"
        reading.original_label = f"out_trade_no {order}"
    if kind is MessageClass.REFUND and fields.get("out_refund_no"):
        reading.id = reading.txn = f"{mch}:r:{fields['out_refund_no']}"
    if kind is MessageClass.REVERSAL and order:
        reading.id = f"{mch}:v:{order}"
    card = fields.get("card_no", "")
    reading.card = mask_pan(card) if card else ""
    fee = fields.get("refund_fee" if kind is MessageClass.REFUND else "total_fee", "")
    if FEE.fullmatch(fee):
        reading.amount_fen = int(fee)
        reading.amount_field = "refund_fee" if kind is MessageClass.REFUND else "total_fee"
    return reading


def formats(fields: dict[str, str], api: str) -> list[Finding]:
    found = [Finding(name, expected, repr(fields[name])) for name, pattern, expected in FORMATS
             if fields.get(name) and not pattern.fullmatch(fields[name])]
    for name in ("total_fee", "refund_fee"):
        value = fields.get(name, "")
        if FEE.fullmatch(value) and int(value) > AMOUNT_MAX_FEN:
            found.append(Finding(name, f"at most {AMOUNT_MAX_FEN} fen", value))
    card = fields.get("card_no", "")
    if card and not (CARD_PATTERN.fullmatch(card) and luhn_valid(card)):
        found.append(Finding("card_no", "12-19 digits with a right check digit (Luhn)",
                             mask_pan(card) if card.isdigit() else repr(card)))
    for name, only in (("fee_type", "CNY"), ("bank_type", BANK_TYPE)):
        if fields.get(name) and fields[name] != only:
            found.append(Finding(name, only, repr(fields[name])))
    if fields.get("sign_type") and fields["sign_type"] not in SIGN_TYPES:
        found.append(Finding("sign_type", " or ".join(SIGN_TYPES), repr(fields["sign_type"])))
    if api == "micropay" and not (fields.get("auth_code") or fields.get("openid")):
        found.append(Finding("auth_code", "the payment code (or openid)", "neither"))
    return found
