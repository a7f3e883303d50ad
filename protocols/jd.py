"""JD checkout channel: 4-byte big-endian length + UTF-8 JSON, signed with HMAC-SHA256.

Every field value is a JSON string. The wire format is documented for adapter authors in
docs/channels/jd.md; keep the two in step.
"""

from __future__ import annotations

import datetime
import re

import msgspec

from protocols.channel import (
    AnswerFields,
    Decoded,
    FieldError,
    sign_sorted_pairs,
    signature_matches,
    signed_answer_reader,
)
from protocols.codes import Code, Reason
from protocols.framing import BINARY_4
from protocols.messages import AuthRequest, AuthResponse, MessageClass

TRADE_TYPES = {
    "AUTH": MessageClass.AUTH,
    "SALE": MessageClass.SALE,
    "CAPTURE": MessageClass.CAPTURE,
    "REVERSE": MessageClass.REVERSAL,
    "REFUND": MessageClass.REFUND,
    "QUERY": MessageClass.INQUIRY,
}
TRADE_TYPE_OF_CLASS = {cls: name for name, cls in TRADE_TYPES.items()}

CURRENCIES = {"CNY": 156, "156": 156}
AMOUNT_OPTIONAL = (MessageClass.INQUIRY, MessageClass.REVERSAL)

# Response code -> JD-style result code and description (docs/channels/jd.md); every code of
# the vocabulary has its row (tests/test_codes.py checks).
RESULT_CODES: dict[str, tuple[str, str]] = {
    Code.APPROVED: ("000000", "success"),
    Code.PARTIAL_APPROVAL: ("000010", "partially approved"),
    Code.INVALID_MERCHANT: ("MERC01", "unknown merchant"),
    Code.DO_NOT_HONOUR: ("DECL01", "declined"),
    Code.INVALID_TRANSACTION: ("TRAD01", "transaction not supported"),
    Code.INVALID_AMOUNT: ("TRAD02", "invalid amount"),
    Code.INVALID_CARD: ("CARD01", "invalid card number"),
    Code.ORIGINAL_NOT_FOUND: ("ORIG01", "original trade not found"),
    Code.FORMAT_ERROR: ("PARA01", "parameter error"),
    Code.SUSPECTED_FRAUD: ("RISK03", "suspected fraud"),
    Code.LOST_CARD: ("CARD03", "card restricted"),
    Code.STOLEN_CARD: ("CARD03", "card restricted"),
    Code.INSUFFICIENT_CREDIT: ("BAL001", "insufficient available credit"),
    Code.EXPIRED_CARD: ("CARD02", "card expired"),
    Code.WRONG_PIN: ("RISK01", "not permitted for this card"),
    Code.PIN_TRIES_EXCEEDED: ("CARD03", "card restricted"),
    Code.NOT_PERMITTED_TO_CARDHOLDER: ("RISK01", "not permitted for this card"),
    Code.NOT_PERMITTED_ON_TERMINAL: ("RISK01", "not permitted for this card"),
    Code.EXCEEDS_AMOUNT_LIMIT: ("RISK02", "exceeds amount limit"),
    Code.RESTRICTED_CARD: ("CARD03", "card restricted"),
    Code.SECURITY_VIOLATION: ("SIGN01", "signature error"),
    Code.EXCEEDS_FREQUENCY_LIMIT: ("RISK02", "exceeds frequency limit"),
    Code.ISSUER_UNAVAILABLE: ("SYS001", "issuer unavailable, try later"),
    Code.DUPLICATE: ("TRAD03", "duplicate trade number with different content"),
    Code.RECONCILIATION_ERROR: ("SYS002", "reconciliation error"),  # POS batches only
    Code.SYSTEM_MALFUNCTION: ("SYS001", "system error"),
    Code.MAC_FAILURE: ("SIGN01", "signature error"),
}

STAND_IN_FIELD = {True: {"standIn": "1"}, False: {}}

TRADE_NUM_PATTERN = re.compile(r"[A-Za-z0-9_\-]{1,32}")
TRADE_TIME_PATTERN = re.compile(r"\d{14}")
FLAGS = ("1", "0")  # partialApproval, lightningRefund: 1 yes, 0 (or absent) no

_json_fields = msgspec.json.Decoder(dict[str, str])
_json_encode = msgspec.json.Encoder().encode


def malformed(detail: str) -> FieldError:
    """A request field is missing or malformed (answered with parameter error, ISO 30)."""
    return FieldError(Code.FORMAT_ERROR, Reason.FORMAT.format(detail=detail))


def result_code(iso_code: str) -> tuple[str, str]:
    return RESULT_CODES[iso_code]


class JdCodec:
    """Server side of the JD channel. `merchant_keys` maps merchant id -> HMAC key."""

    name = "jd"
    header = BINARY_4

    def __init__(self, merchant_keys: dict[str, bytes]) -> None:
        self.merchant_keys = merchant_keys

    def decode_request(self, body: bytes) -> Decoded | bytes:
        try:
            fields = _json_fields.decode(body)
        except (msgspec.DecodeError, UnicodeDecodeError) as error:
            problem = Reason.FORMAT.format(detail=f"not a JSON object of strings: {error}")
            return self._error_reply({}, Code.FORMAT_ERROR, problem)
        key = self.merchant_keys.get(fields.get("merchant", ""))
        if key is None:
            return self._error_reply(fields, Code.INVALID_MERCHANT, Reason.MERCHANT_UNKNOWN)
        if not signature_matches(sign_sorted_pairs(fields, key), fields.get("sign", "")):
            return self._error_reply(fields, Code.SECURITY_VIOLATION,
                                     Reason.SIGNATURE_MISMATCH, key)
        try:
            request = request_from_fields(fields)
        except FieldError as error:
            return self._error_reply(fields, error.code, error.reason, key)
        return Decoded(request, fields)

    def encode_response(self, context: dict[str, str], response: AuthResponse) -> bytes:
        key = self.merchant_keys[context["merchant"]]
        return _json_encode(signed(response_fields(context, response), key))

    def _error_reply(
        self, fields: dict[str, str], iso_code: str, detail: str, key: bytes | None = None
    ) -> bytes:
        reply = response_fields(fields, AuthResponse(response_code=iso_code, reason=detail))
        return _json_encode(signed(reply, key) if key else reply)


def request_from_fields(fields: dict[str, str]) -> AuthRequest:
    trade_type = _required(fields, "tradeType")
    message_class = TRADE_TYPES.get(trade_type)
    if message_class is None:
        raise malformed(f"tradeType {trade_type!r} is not one of {', '.join(TRADE_TYPES)}")
    merchant = fields["merchant"]
    trade_num = _matching(fields, "tradeNum", TRADE_NUM_PATTERN)
    original = fields.get("originalTradeNum", "")
    if original and not TRADE_NUM_PATTERN.fullmatch(original):
        raise malformed("originalTradeNum must be 1-32 letters, digits, '_' or '-'")
    # An inquiry carries no amount; a reversal without one reverses all that remains.
    amount = fields.get("amount", "0" if message_class in AMOUNT_OPTIONAL else "")
    if not amount.isdigit() or not amount.isascii():
        raise malformed("amount must be a whole number of fen, as digits")
    currency = CURRENCIES.get(fields.get("currency", "CNY"), 0)  # 0: unsupported, engine says 12
    txn_ref = f"jd:{merchant}:{trade_num}"
    return AuthRequest(
        message_class=message_class,
        channel="jd",
        card=_required(fields, "cardNo"),
        amount_fen=int(amount),
        currency=currency,
        mcc=fields.get("industryCategoryCode", ""),
        expiry=fields.get("cardExpiry", ""),
        merchant_id=merchant,
        terminal_id=fields.get("device", ""),
        txn_ref=txn_ref,
        original_ref=f"jd:{merchant}:{original}" if original else "",
        transmitted_at=_trade_time(fields),
        partial_ok=_flag(fields, "partialApproval"),
        instant_refund=_lightning(fields, message_class),
        idempotency_key=txn_ref,
        user_id=fields.get("userId", ""),
    )


def _required(fields: dict[str, str], name: str) -> str:
    value = fields.get(name, "")
    if not value:
        raise malformed(f"{name} is required")
    return value


def _trade_time(fields: dict[str, str]) -> str:
    """tradeTime: yyyyMMddHHmmss, a moment that exists on the calendar."""
    value = _matching(fields, "tradeTime", TRADE_TIME_PATTERN)
    try:
        datetime.datetime.strptime(value, "%Y%m%d%H%M%S")
    except ValueError:
        raise malformed(f"tradeTime {value!r} is not a yyyyMMddHHmmss time") from None
    return value


def _flag(fields: dict[str, str], name: str) -> bool:
    value = fields.get(name, "0")
    if value not in FLAGS:
        raise malformed(f"{name} must be 1 or 0, not {value[:8]!r}")
    return value == "1"


def _lightning(fields: dict[str, str], message_class: MessageClass) -> bool:
    """A lightning refund is a kind of REFUND: on any other trade the flag is an error."""
    lightning = _flag(fields, "lightningRefund")
    if lightning and message_class is not MessageClass.REFUND:
        raise malformed("lightningRefund applies to a REFUND only")
    return lightning


def _matching(fields: dict[str, str], name: str, pattern: re.Pattern[str]) -> str:
    value = _required(fields, name)
    if not pattern.fullmatch(value):
        raise malformed(f"{name} {value!r} is malformed")
    return value


def response_fields(request: dict[str, str], response: AuthResponse) -> dict[str, str]:
    code, desc = result_code(response.response_code)
    return {
        "merchant": request.get("merchant", ""),
        "tradeNum": request.get("tradeNum", ""),
        "tradeType": request.get("tradeType", ""),
        "code": code,
        "desc": desc,
        "isoCode": response.response_code,
        "authCode": response.auth_id,
        "amount": str(response.approved_fen),
        "availableAmount": str(response.open_to_buy_fen),
        "beans": str(response.beans),
        "reason": response.reason,
        "repeat": "1" if response.repeat else "0",
        "tradeState": response.state,
        # Only on a stand-in answer (docs/channels/jd.md): older adapters see no new field.
        **STAND_IN_FIELD[response.stand_in],
    }


def signed(fields: dict[str, str], key: bytes) -> dict[str, str]:
    return {**fields, "sign": sign_sorted_pairs(fields, key)}


# --- client side: used by `switch send` and the load generator -----------------------------


def encode_request(request: AuthRequest, key: bytes, **extra: str) -> bytes:
    """The signed JSON body for a request (`extra` adds or overrides wire fields).

    On the client side `txn_ref` and `original_ref` hold the bare JD trade numbers.
    """
    fields = {
        "version": "V2.0",
        "merchant": request.merchant_id,
        "tradeNum": request.txn_ref,
        "tradeType": TRADE_TYPE_OF_CLASS[request.message_class],
        "amount": str(request.amount_fen),
        "currency": "CNY",
        "cardNo": request.card,
        "cardExpiry": request.expiry,
        "industryCategoryCode": request.mcc,
        "tradeTime": request.transmitted_at,
        "originalTradeNum": request.original_ref,
        "partialApproval": "1" if request.partial_ok else "",
        "lightningRefund": "1" if request.instant_refund else "",
        **extra,
    }
    return _json_encode(signed({k: v for k, v in fields.items() if v != ""}, key))


ANSWER_FIELDS = AnswerFields(code="isoCode", approved_fen="amount", auth_id="authCode",
                             open_to_buy_fen="availableAmount", correlation_id="tradeNum",
                             state="tradeState", stand_in="standIn")


# Reads an answer (body, key=None); with the key, it must be signed with it (ValueError
# otherwise).
decode_response = signed_answer_reader(_json_fields.decode, sign_sorted_pairs, ANSWER_FIELDS)
