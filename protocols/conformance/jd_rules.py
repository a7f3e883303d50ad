"""One JD checkout request read strictly, for the conformance kit (docs/channels/jd.md).

Every rule of the request table: the fields each `tradeType` needs, their formats (a
`tradeNum` of 1-32 of `A-Z a-z 0-9 _ -`, an amount of digits only, a card number of 12-19
digits with its check digit, YYMM, yyyyMMddHHmmss near now), flags that are `1` or absent,
and the signature under the merchant's key. The switch reads some of these leniently (an
amount of `0`, a card without its check digit reach the decision); the kit does not.
"""

from __future__ import annotations

import datetime
import re

import msgspec

from protocols.cardnumbers import luhn_valid, mask_pan
from protocols.channel import sign_sorted_pairs, signature_matches
from protocols.codes import Reason
from protocols.conformance.iso_rules import AMOUNT_CLASSES, AMOUNT_MAX_FEN
from protocols.conformance.session import UNKNOWN, Answered, Finding, Reading, clock_finding
from protocols.jd import CURRENCIES, TRADE_NUM_PATTERN, TRADE_TIME_PATTERN, TRADE_TYPES
from protocols.messages import MessageClass

_fields = msgspec.json.Decoder(dict[str, str])
ALWAYS = ("merchant", "tradeNum", "tradeType", "cardNo", "tradeTime", "sign")
NEEDS = {  # fields a trade type needs besides ALWAYS
    MessageClass.SALE: ("amount", "industryCategoryCode"),
    MessageClass.AUTH: ("amount", "industryCategoryCode"),
    MessageClass.CAPTURE: ("amount", "originalTradeNum"),
    MessageClass.REFUND: ("amount", "originalTradeNum"),
    MessageClass.REVERSAL: ("originalTradeNum",),
    MessageClass.INQUIRY: (),
}
FLAGS = ("partialApproval", "lightningRefund")  # "1", "0" or absent
SIGN_PATTERN = re.compile(r"[0-9a-f]{64}")
DIGITS = re.compile(r"[0-9]+")
MCC_PATTERN = re.compile(r"[0-9]{4}")
CARD_PATTERN = re.compile(r"[0-9]{12,19}")
EXPIRY_PATTERN = re.compile(r"[0-9]{2}(0[1-9]|1[0-2])")
ANSWER_CHANGES = ("repeat", "sign")  # what a repeat's answer says anew
FAULTS = {  # a refusal's reason -> where the fault is, what was expected there
    Reason.SIGNATURE_MISMATCH: ("sign", "the signature under the merchant's key"),
    Reason.MERCHANT_UNKNOWN: ("merchant", "a merchant the switch has a key for"),
}


class JdRules:
    def __init__(self, merchant_keys: dict[str, bytes]) -> None:
        self.merchant_keys = merchant_keys

    def read(self, body: bytes, now: datetime.datetime) -> Reading:
        try:
            fields = _fields.decode(body)
        except (msgspec.DecodeError, UnicodeDecodeError) as error:
            return Reading(UNKNOWN, "not JSON", [Finding(
                "body", "one JSON object whose values are all strings", str(error))])
        trade_type = fields.get("tradeType", "")
        kind = TRADE_TYPES.get(trade_type)
        trade_num = fields.get("tradeNum", "")
        if kind is None:
            return Reading(UNKNOWN, f"{trade_type or '-'} {trade_num or '-'}", [Finding(
                "tradeType", f"one of {', '.join(TRADE_TYPES)}", repr(trade_type))],
                content=fields)
        reading = identify(fields, kind)
        findings = reading.findings
        original = fields.get("originalTradeNum", "")
        balance = kind is MessageClass.INQUIRY and not original
        needed = ALWAYS + NEEDS[kind] + (("cardExpiry",) if balance else ())
        findings += [Finding(name, "present", "nothing") for name in needed
                     if fields.get(name, "") == ""]
        findings += formats(fields, kind, now)
        findings += self.signature(fields)
        return reading

    def answer(self, body: bytes) -> Answered:
        try:
            fields = _fields.decode(body)
        except (msgspec.DecodeError, UnicodeDecodeError) as error:
            return Answered("", f"answer undecodable: {error}", {})
        reason = fields.get("reason", "")
        return Answered(fields.get("isoCode", ""), reason,
                        {k: v for k, v in fields.items() if k not in ANSWER_CHANGES},
                        *FAULTS.get(reason, ("answer", "a message the switch accepts")))

    def signature(self, fields: dict[str, str]) -> list[Finding]:
        given = fields.get("sign", "")
        key = self.merchant_keys.get(fields.get("merchant", ""))
        if key is None:
            return [Finding("merchant", "a merchant the switch has a key for",
                            repr(fields.get("merchant", "")))]
        if not given:
            return []  # named missing already
        if not SIGN_PATTERN.fullmatch(given):
            return [Finding("sign", "64 lower-case hex digits", repr(given))]
        if not signature_matches(sign_sorted_pairs(fields, key), given):
            return [Finding("sign", "HMAC-SHA256 of the sorted non-empty fields under the "
                            "merchant's key", "another signature")]
        return []


def identify(fields: dict[str, str], kind: MessageClass) -> Reading:
    merchant, trade_num = fields.get("merchant", ""), fields.get("tradeNum", "")
    txn = f"{merchant}:{trade_num}" if trade_num else ""
    reading = Reading(kind.value, f"{fields['tradeType']} {trade_num or '-'}", [], id=txn,
                      txn=txn, content=fields)
    card = fields.get("cardNo", "")
    reading.card = mask_pan(card) if card else ""
    original = fields.get("originalTradeNum", "")
    if original:
        reading.original = f"{merchant}:{original}"
        reading.original_label = f"originalTradeNum {original}"
        reading.original_field = "originalTradeNum"
    reading.balance = kind is MessageClass.INQUIRY and not original
    amount = fields.get("amount", "")
    if DIGITS.fullmatch(amount) and int(amount):
        reading.amount_fen, reading.amount_field = int(amount), "amount"
    return reading


def formats(fields: dict[str, str], kind: MessageClass, now: datetime.datetime
            ) -> list[Finding]:
    found = []

    def check(name: str, good: bool, expected: str) -> None:
        if name in fields and fields[name] != "" and not good:
            found.append(Finding(name, expected, repr(fields[name])))

    get = fields.get
    check("tradeNum", bool(TRADE_NUM_PATTERN.fullmatch(get("tradeNum", ""))),
          "1-32 of A-Z a-z 0-9 _ -")
    check("originalTradeNum", bool(TRADE_NUM_PATTERN.fullmatch(get("originalTradeNum", ""))),
          "1-32 of A-Z a-z 0-9 _ -")
    amount = get("amount", "")
    within = bool(DIGITS.fullmatch(amount)) and 0 < int(amount) <= AMOUNT_MAX_FEN
    check("amount", within if kind in AMOUNT_CLASSES else bool(DIGITS.fullmatch(amount)),
          f"fen as digits only, 1..{AMOUNT_MAX_FEN}" if kind in AMOUNT_CLASSES
          else "fen as digits only")
    check("currency", get("currency") in CURRENCIES, " or ".join(CURRENCIES))
    card = get("cardNo", "")
    if card and not (CARD_PATTERN.fullmatch(card) and luhn_valid(card)):
        found.append(Finding("cardNo", "12-19 digits with a right check digit (Luhn)",
                             mask_pan(card) if card.isdigit() else repr(card)))
    check("cardExpiry", bool(EXPIRY_PATTERN.fullmatch(get("cardExpiry", ""))), "YYMM")
    check("industryCategoryCode", bool(MCC_PATTERN.fullmatch(get("industryCategoryCode", ""))),
          "4 digits")
    for flag in FLAGS:
        check(flag, get(flag) in ("1", "0"), "1 or 0, or the field left out")
    if get("lightningRefund") == "1" and kind is not MessageClass.REFUND:
        found.append(Finding("lightningRefund", "only on a REFUND", fields["tradeType"]))
    trade_time = get("tradeTime", "")
    if trade_time and not TRADE_TIME_PATTERN.fullmatch(trade_time):
        found.append(Finding("tradeTime", "yyyyMMddHHmmss", repr(trade_time)))
    elif trade_time:
        finding = clock_finding("tradeTime", trade_time, "%Y%m%d%H%M%S", now)
        found += [finding] if finding else []
    return found
