"""WeChat Pay v2 channel: 4-byte big-endian length + the v2 API's flat XML, signed MD5 or
HMAC-SHA256 as the request's `sign_type` says.

XML, as the real v2 API speaks it, so an adapter can forward a merchant's request body as it
is (adding `api`, `card_no` and, if it likes, `mcc`). Parsing is strict and small: one <xml>
root, flat text fields, no DOCTYPE (so no entities at all), bounded field count and size.
The wire format for adapter authors is docs/channels/wechat.md; keep the two in step.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import re
from collections.abc import Callable
from typing import Any, NamedTuple
from xml.parsers import expat

from protocols.channel import (
    AnswerFields,
    ClientAnswer,
    Decoded,
    sign_sorted_pairs,
    signature_matches,
    signed_answer_reader,
    signing_text,
)
from protocols.codes import REPORTED_REFUNDED, Code, Reason, TransactionState
from protocols.framing import BINARY_4
from protocols.messages import AuthRequest, AuthResponse, MessageClass, RefundRecord

APIS = {
    "micropay": MessageClass.SALE,
    "refund": MessageClass.REFUND,
    "reverse": MessageClass.REVERSAL,
    "orderquery": MessageClass.INQUIRY,
    "refundquery": MessageClass.INQUIRY,  # an inquiry of the order, answered with its refunds
}
# A client's API for a message class (refundquery is asked for by name: `api=`).
API_OF_CLASS = {cls: api for api, cls in APIS.items() if api != "refundquery"}
REQUIRED = {
    "micropay": ("out_trade_no", "total_fee", "body", "spbill_create_ip"),
    "refund": ("out_trade_no", "out_refund_no", "total_fee", "refund_fee"),
    "reverse": ("out_trade_no",),
    "orderquery": ("out_trade_no",),
    "refundquery": ("out_trade_no",),  # the issuer files refunds under their order
}
MD5, HMAC_SHA256 = "MD5", "HMAC-SHA256"
SIGN_TYPES = (MD5, HMAC_SHA256)  # what WeChat v2 signs with; a merchant may accept fewer
SIGN_TYPE_ABSENT = MD5  # v2: a request without sign_type is signed MD5
SIGN_TYPE = HMAC_SHA256  # what this module's clients send unless told otherwise
BANK_TYPE = "PAB_CREDIT"  # the Ping An credit card, as WeChat names the funding bank

# A v2 request has about 20 fields of at most a few hundred characters (`detail` is the
# longest, 6,000); more is not a WeChat request.
FIELDS_MAX = 64
VALUE_MAX_CHARS = 8192

# Response code -> WeChat err_code and its description (docs/channels/wechat.md); every
# declining code of the vocabulary has its row (tests/test_codes.py checks).
ERR_CODES: dict[str, tuple[str, str]] = {
    Code.INSUFFICIENT_CREDIT: ("NOTENOUGH", "insufficient available credit"),
    Code.INVALID_TRANSACTION: ("TRADE_ERROR", "transaction not permitted by the issuer's rules"),
    Code.NOT_PERMITTED_TO_CARDHOLDER: ("TRADE_ERROR",
                                       "transaction not permitted by the issuer's rules"),
    Code.EXCEEDS_AMOUNT_LIMIT: ("TRADE_ERROR", "exceeds an amount limit"),
    Code.EXCEEDS_FREQUENCY_LIMIT: ("TRADE_ERROR", "exceeds a frequency limit"),
    Code.DO_NOT_HONOUR: ("TRADE_ERROR", "declined by the issuer"),
    Code.SUSPECTED_FRAUD: ("TRADE_ERROR", "declined by the issuer (suspected fraud)"),
    Code.NOT_PERMITTED_ON_TERMINAL: ("NOTSUPORTCARD", "the merchant does not accept credit cards"),
    Code.INVALID_CARD: ("NOTSUPORTCARD", "card unknown to the issuer"),
    Code.LOST_CARD: ("NOTSUPORTCARD", "card cannot be used (lost)"),
    Code.STOLEN_CARD: ("NOTSUPORTCARD", "card cannot be used (stolen)"),
    Code.EXPIRED_CARD: ("NOTSUPORTCARD", "card expired"),
    Code.WRONG_PIN: ("TRADE_ERROR", "declined by the issuer (PIN)"),
    Code.PIN_TRIES_EXCEEDED: ("NOTSUPORTCARD", "card cannot be used (PIN tries exceeded)"),
    Code.RESTRICTED_CARD: ("NOTSUPORTCARD", "card restricted or not activated"),
    Code.INVALID_AMOUNT: ("PARAM_ERROR", "invalid amount"),
    Code.FORMAT_ERROR: ("PARAM_ERROR", "parameter error"),
    Code.INVALID_MERCHANT: ("PARAM_ERROR", "unknown merchant"),
    Code.SECURITY_VIOLATION: ("SIGNERROR", "signature error"),
    Code.MAC_FAILURE: ("SIGNERROR", "signature error"),
    Code.DUPLICATE: ("OUT_TRADE_NO_USED", "out_trade_no already used with different content"),
    Code.ORIGINAL_NOT_FOUND: ("ORDERNOTEXIST", "order does not exist"),
    Code.ISSUER_UNAVAILABLE: ("SYSTEMERROR", "issuer unavailable, query the order or retry"),
    Code.SYSTEM_MALFUNCTION: ("SYSTEMERROR", "issuer system error, query the order or retry"),
    Code.RECONCILIATION_ERROR: ("SYSTEMERROR", "reconciliation error"),  # POS batches only
}
ORDERPAID = ("ORDERPAID", "order already paid")
REFUNDNOTEXIST = ("REFUNDNOTEXIST", "no refund of the order matches")
LACK_PARAMS = "LACK_PARAMS"
# What an order query reports (AuthResponse.state) -> WeChat trade_state; every reported
# state has its row (tests/test_codes.py checks).
TRADE_STATES: dict[str, str] = {
    TransactionState.CAPTURED: "SUCCESS",
    REPORTED_REFUNDED: "REFUND",
    TransactionState.REVERSED: "REVOKED",
    TransactionState.EXPIRED: "CLOSED",
    TransactionState.PENDING: "USERPAYING",
    TransactionState.VOIDED: "PAYERROR",  # answered as a system error; it did not take effect
    # A repayment is no payment a merchant can name (its reference is the issuer's own,
    # `repay:ID`); listed so that every state has an answer.
    TransactionState.REPAID: "PAYERROR",
}

ORDER_NO = re.compile(r"[A-Za-z0-9_\-|*@]{1,32}")  # WeChat's out_trade_no alphabet, no ':'
NONCE = re.compile(r"[A-Za-z0-9_\-]{1,32}")
AUTH_CODE = re.compile(r"1[0-5]\d{16}")  # the payment code shown in the payer's wallet
FEE = re.compile(r"[1-9]\d{0,11}")
IP = re.compile(r"[0-9A-Fa-f.:]{2,64}")
REFUND_ID = re.compile(r"\d{1,32}")
BEIJING = datetime.timezone(datetime.timedelta(hours=8))  # WeChat's times: UTC+8, no DST


class WechatError(ValueError):
    """A request that cannot be taken (answered ISO 30: PARAM_ERROR, or LACK_PARAMS)."""

    def __init__(self, detail: str, err_code: str = "") -> None:
        super().__init__(detail)
        self.err_code = err_code  # "": the table's for 30 (PARAM_ERROR)


class Merchant(NamedTuple):
    key: bytes  # the merchant's API key: HMAC key and `&key=` suffix of the signature
    mcc: str  # the category the merchant registered with (a request's `mcc` overrides it)
    sign_types: frozenset[str] = frozenset(SIGN_TYPES)  # the sign types its requests may use


# --- XML ----------------------------------------------------------------------------------


def parse_xml(body: bytes) -> dict[str, str]:
    """<xml><name>value</name>...</xml> -> {name: value}; WechatError on anything else."""
    fields: dict[str, str] = {}
    stack: list[str] = []
    text: list[str] = []

    def start(name: str, _attributes: dict) -> None:
        if len(stack) == 0 and name != "xml":
            raise WechatError(f"the root element is <{name}>, not <xml>")
        if len(stack) == 2:
            raise WechatError(f"<{name}> inside <{stack[1]}>: fields are flat text")
        stack.append(name)
        text.clear()

    def end(name: str) -> None:
        stack.pop()
        if len(stack) == 1:
            if name in fields:
                raise WechatError(f"field {name} appears twice")
            if len(fields) >= FIELDS_MAX:
                raise WechatError(f"more than {FIELDS_MAX} fields")
            fields[name] = "".join(text)

    def characters(data: str) -> None:
        if len(stack) == 2:
            text.append(data)
            if sum(map(len, text)) > VALUE_MAX_CHARS:
                raise WechatError(f"field {stack[1]} is longer than {VALUE_MAX_CHARS}")

    def refuse_doctype(*_args: Any) -> None:
        raise WechatError("DOCTYPE is not allowed (no DTDs, no entities)")

    parser = expat.ParserCreate("UTF-8")
    parser.buffer_text = True  # one handler call per text run, not one per line or entity
    parser.StartElementHandler, parser.EndElementHandler = start, end
    parser.CharacterDataHandler = characters
    parser.StartDoctypeDeclHandler = refuse_doctype
    parser.EntityDeclHandler = refuse_doctype
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    try:
        parser.Parse(body, True)
    except expat.ExpatError as error:
        raise WechatError(f"not well-formed XML: {expat.ErrorString(error.code)}") from None
    return fields


def to_xml(fields: dict[str, str]) -> bytes:
    """Flat XML as WeChat writes it: text in CDATA, plain digits bare."""
    parts = ["<xml>"]
    for name, value in fields.items():
        if not value.isdigit():
            value = "<![CDATA[" + value.replace("]]>", "]]]]><![CDATA[>") + "]]>"
        parts.append(f"<{name}>{value}</{name}>")
    parts.append("</xml>")
    return "".join(parts).encode()


def sign(fields: dict[str, str], key: bytes, sign_type: str = "") -> str:
    """The v2 rule: sorted non-empty k=v pairs, then &key=API_KEY; MD5 of that text, or
    HMAC-SHA256 keyed with the API key; upper hex. `sign_type`: else the fields' own
    (absent: MD5)."""
    sign_type = sign_type or fields.get("sign_type") or SIGN_TYPE_ABSENT
    suffix = "&key=" + key.decode()
    if sign_type == HMAC_SHA256:
        return sign_sorted_pairs(fields, key, suffix).upper()
    if sign_type == MD5:
        return hashlib.md5(signing_text(fields, suffix).encode()).hexdigest().upper()
    raise ValueError(f"sign_type {sign_type!r} is not one of {', '.join(SIGN_TYPES)}")


def signed(fields: dict[str, str], key: bytes, sign_type: str = "") -> dict[str, str]:
    return {**fields, "sign": sign(fields, key, sign_type)}


def answer_sign_type(request: dict[str, str]) -> str:
    """An answer is signed the way its request was; a request whose sign_type is unknown is
    refused with an HMAC-SHA256 signature (the stronger of the two)."""
    sign_type = request.get("sign_type") or SIGN_TYPE_ABSENT
    return sign_type if sign_type in SIGN_TYPES else HMAC_SHA256

# --- server side --------------------------------------------------------------------------


class WechatCodec:
    """Server side of the WeChat channel. `now_text` gives yyyyMMddHHmmss (Beijing time)."""

    name = "wechat"
    header = BINARY_4

    def __init__(self, merchants: dict[str, Merchant], now_text: Callable[[], str]) -> None:
        self.merchants = merchants
        self.now_text = now_text

    def decode_request(self, body: bytes) -> Decoded | bytes:
        try:
            fields = parse_xml(body)
        except WechatError as error:
            return to_xml({"return_code": "FAIL", "return_msg": str(error),
                           "iso_code": Code.FORMAT_ERROR})
        merchant = self.merchants.get(fields.get("mch_id", ""))
        if merchant is None:
            return to_xml({"return_code": "FAIL", "return_msg": "unknown mch_id",
                           "iso_code": Code.INVALID_MERCHANT,
                           "nonce_str": fields.get("nonce_str", "")})
        sign_type = fields.get("sign_type") or SIGN_TYPE_ABSENT
        if sign_type not in merchant.sign_types:  # checked first: no rule to verify by
            accepted = " or ".join(t for t in SIGN_TYPES if t in merchant.sign_types)
            return self._reply(fields, merchant, Code.FORMAT_ERROR, Reason.FORMAT.format(
                detail=f"sign_type must be {accepted} for this merchant"))
        if not signature_matches(sign(fields, merchant.key, sign_type), fields.get("sign", "")):
            return self._reply(fields, merchant, Code.SECURITY_VIOLATION, Reason.SIGNATURE_MISMATCH)
        try:
            request = request_from_fields(fields, merchant.mcc)
        except WechatError as error:
            return self._reply(fields, merchant, Code.FORMAT_ERROR,
                               Reason.FORMAT.format(detail=error), error.err_code)
        if request.message_class is MessageClass.SALE and fields.get("limit_pay") == "no_credit":
            # The merchant refuses credit cards, and this switch issues only a credit card.
            return self._reply(fields, merchant, Code.NOT_PERMITTED_ON_TERMINAL,
                               Reason.LIMIT_PAY_NO_CREDIT)
        return Decoded(request, (fields, merchant))

    def encode_response(self, context: tuple[dict[str, str], Merchant],
                        response: AuthResponse) -> bytes:
        fields, merchant = context
        reply = response_fields(fields, response, self.now_text())
        return to_xml(signed(reply, merchant.key, answer_sign_type(fields)))

    def _reply(self, fields: dict[str, str], merchant: Merchant, iso_code: str, reason: str,
               err_code: str = "") -> bytes:
        reply = response_fields(fields, AuthResponse(response_code=iso_code, reason=reason),
                                self.now_text())
        if err_code:
            reply["err_code"] = err_code
        return to_xml(signed(reply, merchant.key, answer_sign_type(fields)))


def request_from_fields(fields: dict[str, str], merchant_mcc: str) -> AuthRequest:
    api = fields.get("api", "")
    if api not in APIS:
        raise WechatError(f"api {api!r} is not one of {', '.join(APIS)}",
                          "" if api else LACK_PARAMS)
    for name in ("appid", "nonce_str", "card_no", *REQUIRED[api]):
        if not fields.get(name):
            raise WechatError(f"{name} is required for {api}", LACK_PARAMS)
    _check(fields, "nonce_str", NONCE)
    _check(fields, "out_trade_no", ORDER_NO)
    mch, order = fields["mch_id"], fields["out_trade_no"]
    common = dict(channel="wechat", card=fields["card_no"], merchant_id=mch,
                  terminal_id=fields.get("device_info", ""))
    if api == "micropay":
        return _micropay(fields, merchant_mcc, common)
    if api == "refund":
        _check(fields, "out_refund_no", ORDER_NO)
        refund, total = _fee(fields, "refund_fee"), _fee(fields, "total_fee")
        if refund > total:
            raise WechatError("refund_fee is more than total_fee")
        ref = f"wx:{mch}:r:{fields['out_refund_no']}"
        return AuthRequest(message_class=MessageClass.REFUND, amount_fen=refund, txn_ref=ref,
                           idempotency_key=ref, original_ref=f"wx:{mch}:{order}", **common)
    if api == "reverse":  # the whole order; one reversal per order, so its id is the order's
        ref = f"wx:{mch}:v:{order}"
        return AuthRequest(message_class=MessageClass.REVERSAL, amount_fen=0, txn_ref=ref,
                           idempotency_key=ref, original_ref=f"wx:{mch}:{order}", **common)
    if api == "refundquery":
        _check_refund_filter(fields)
    kind = "q" if api == "orderquery" else "rq"
    ref = f"wx:{mch}:{kind}:{order}:{fields['nonce_str']}"  # every query is answered afresh
    return AuthRequest(message_class=MessageClass.INQUIRY, amount_fen=0, txn_ref=ref,
                       idempotency_key=ref, original_ref=f"wx:{mch}:{order}", **common)


def _micropay(fields: dict[str, str], merchant_mcc: str, common: dict) -> AuthRequest:
    if not (fields.get("auth_code") or fields.get("openid")):
        raise WechatError("auth_code or openid is required for micropay", LACK_PARAMS)
    if fields.get("auth_code"):
        _check(fields, "auth_code", AUTH_CODE)
    _check(fields, "spbill_create_ip", IP)
    if fields.get("bank_type", BANK_TYPE) != BANK_TYPE:
        raise WechatError(f"bank_type must be {BANK_TYPE} (the card this issuer answers for)")
    ref = f"wx:{fields['mch_id']}:{fields['out_trade_no']}"
    return AuthRequest(
        message_class=MessageClass.SALE,
        amount_fen=_fee(fields, "total_fee"),
        currency=156 if fields.get("fee_type", "CNY") == "CNY" else 0,  # 0: engine says 12
        mcc=fields.get("mcc") or merchant_mcc,
        txn_ref=ref,
        idempotency_key=ref,
        **common,
    )


def _check_refund_filter(fields: dict[str, str]) -> None:
    """refundquery may name one refund of the order: by out_refund_no or refund_id."""
    if fields.get("out_refund_no"):
        _check(fields, "out_refund_no", ORDER_NO)
    if fields.get("refund_id"):
        _check(fields, "refund_id", REFUND_ID)


def _check(fields: dict[str, str], name: str, pattern: re.Pattern[str]) -> None:
    if not pattern.fullmatch(fields[name]):
        raise WechatError(f"{name} {fields[name][:40]!r} is malformed")


def _fee(fields: dict[str, str], name: str) -> int:
    _check(fields, name, FEE)
    return int(fields[name])


def err_code(response: AuthResponse) -> tuple[str, str] | None:
    """WeChat's err_code and description for a decline; None for an approval."""
    if response.approved:
        return None
    return ERR_CODES[response.response_code]


def response_fields(request: dict[str, str], response: AuthResponse, now_text: str
                    ) -> dict[str, str]:
    api = request.get("api", "")
    refunds = _refunds_asked(request, response) if api == "refundquery" else []
    error = err_code(response)
    if api == "micropay" and response.approved and response.repeat:
        error = ORDERPAID  # WeChat's answer to a paid order sent again
    if api == "refundquery" and (response.approved and not refunds or error
                                 and response.response_code == Code.ORIGINAL_NOT_FOUND):
        error = REFUNDNOTEXIST  # no order, no refund of it, or none that is asked for
    reply = {
        "return_code": "SUCCESS",
        "return_msg": "OK",
        "appid": request.get("appid", ""),
        "mch_id": request.get("mch_id", ""),
        "nonce_str": request.get("nonce_str", ""),
        "device_info": request.get("device_info", ""),
        "result_code": "FAIL" if error else "SUCCESS",
        "err_code": error[0] if error else "",
        "err_code_des": error[1] if error else "",
        "out_trade_no": request.get("out_trade_no", ""),
        # Simulator extensions, for testers: the decision behind the WeChat answer.
        "iso_code": response.response_code,
        "reason": response.reason,
        "approval_code": response.auth_id,
        "approved_fee": str(response.approved_fen),
        "available_fee": str(response.open_to_buy_fen),
        "beans": str(response.beans),
        "repeat": "1" if response.repeat else "0",
        "stand_in": "1" if response.stand_in else "",  # dropped below unless stand-in
    }
    if api == "refundquery" and refunds:
        reply |= refund_list_fields(request, response, refunds)
    elif response.approved and error is not REFUNDNOTEXIST:
        reply |= _approved_fields(api, request, response, now_text)
    return {name: value for name, value in reply.items() if value != ""}


def _refunds_asked(request: dict[str, str], response: AuthResponse) -> list[RefundRecord]:
    """The order's refunds the query asks for: all, or the one its out_refund_no or
    refund_id names."""
    mch = request.get("mch_id", "")
    wanted_no, wanted_id = request.get("out_refund_no"), request.get("refund_id")
    return [r for r in response.refunds
            if (not wanted_no or out_refund_no(r) == wanted_no)
            and (not wanted_id or refund_id(mch, out_refund_no(r)) == wanted_id)]


def refund_list_fields(request: dict[str, str], response: AuthResponse,
                       refunds: list[RefundRecord]) -> dict[str, str]:
    """refundquery's answer: the order, then refund_*_$n for each refund (n from 0)."""
    mch, order = request.get("mch_id", ""), request.get("out_trade_no", "")
    fields = {"transaction_id": transaction_id(mch, order), "total_fee": str(response.approved_fen),
              "cash_fee": str(response.approved_fen), "fee_type": "CNY",
              "refund_fee": str(sum(r.amount_fen for r in refunds)),
              "refund_count": str(len(refunds))}
    for n, refund in enumerate(refunds):
        number = out_refund_no(refund)
        fields |= {f"out_refund_no_{n}": number, f"refund_id_{n}": refund_id(mch, number),
                   f"refund_channel_{n}": "ORIGINAL", f"refund_fee_{n}": str(refund.amount_fen),
                   f"settlement_refund_fee_{n}": str(refund.amount_fen),
                   f"refund_status_{n}": "SUCCESS",  # a refund the ledger holds is made
                   f"refund_recv_accout_{n}": "Ping An Bank credit card",  # WeChat's spelling
                   f"refund_success_time_{n}": beijing_time(refund.at_ms)}
    return fields


def out_refund_no(refund: RefundRecord) -> str:
    """The merchant's refund number, from the refund's id wx:MCH_ID:r:OUT_REFUND_NO."""
    return refund.refund_ref.rsplit(":", 1)[-1]


def beijing_time(at_ms: int) -> str:
    """yyyy-MM-dd HH:mm:ss in Beijing time, as refundquery writes refund_success_time."""
    moment = datetime.datetime.fromtimestamp(at_ms // 1000, BEIJING)
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _approved_fields(api: str, request: dict[str, str], response: AuthResponse,
                     now_text: str) -> dict[str, str]:
    mch, order = request.get("mch_id", ""), request.get("out_trade_no", "")
    if api == "micropay":
        return {
            "openid": request.get("openid") or _openid(mch, request.get("auth_code", "")),
            "is_subscribe": "N", "trade_type": "MICROPAY", "bank_type": BANK_TYPE,
            "fee_type": "CNY", "total_fee": str(response.approved_fen),
            "cash_fee": str(response.approved_fen), "transaction_id": transaction_id(mch, order),
            "time_end": now_text, "attach": request.get("attach", ""),
        }
    if api == "refund":
        return {"out_refund_no": request.get("out_refund_no", ""),
                "refund_id": refund_id(mch, request.get("out_refund_no", "")),
                "transaction_id": transaction_id(mch, order),
                "refund_fee": str(response.approved_fen),
                "total_fee": request.get("total_fee", ""),
                "cash_refund_fee": str(response.approved_fen)}
    if api == "reverse":
        return {"recall": "N"}  # nothing left to retry: the order is reversed
    return {  # orderquery
        "trade_state": TRADE_STATES.get(response.state, "PAYERROR"),  # PAYERROR: no state known
        "transaction_id": transaction_id(mch, order), "trade_type": "MICROPAY",
        "bank_type": BANK_TYPE, "total_fee": str(response.approved_fen),
        "cash_fee": str(response.approved_fen), "fee_type": "CNY",
    }


def transaction_id(mch_id: str, out_trade_no: str) -> str:
    """WeChat's 28-digit order id, the same every time for the same order."""
    return _digits("order", mch_id, out_trade_no, 28, prefix="42")


def refund_id(mch_id: str, out_refund_no: str) -> str:
    """WeChat's 29-digit refund id, the same every time for the same refund."""
    return _digits("refund", mch_id, out_refund_no, 29, prefix="50")


def _digits(kind: str, mch_id: str, ref: str, length: int, prefix: str) -> str:
    digest = hashlib.sha256(f"{kind}:{mch_id}:{ref}".encode()).hexdigest()
    return prefix + str(int(digest, 16))[: length - len(prefix)]


def _openid(mch_id: str, auth_code: str) -> str:
    """A stand-in for the payer's openid (28 characters), the same for the same payment code."""
    return "o" + hashlib.sha256(f"openid:{mch_id}:{auth_code}".encode()).hexdigest()[:27]


# --- client side: `switch send`, the load generator, the tests -----------------------------

DEMO_AUTH_CODE = "134567890123456789"


def request_fields(request: AuthRequest, appid: str, **extra: str) -> dict[str, str]:
    """Unsigned wire fields for a request (`extra` adds or overrides fields; an empty value
    drops one: `sign_type=""` sends none, so MD5; `api="refundquery"` on an inquiry).

    Client-side `txn_ref` and `original_ref` hold bare WeChat order numbers; `txn_ref` is
    also the nonce_str, so answers can be matched to requests by it.
    """
    api = API_OF_CLASS.get(request.message_class)
    if api is None:
        raise ValueError(f"WeChat Pay has no {request.message_class.value}: micropay is a sale "
                         "(no pre-authorization or capture)")
    order = request.txn_ref if api == "micropay" else request.original_ref
    fields = {
        "api": api, "appid": appid, "mch_id": request.merchant_id,
        "nonce_str": request.txn_ref, "sign_type": SIGN_TYPE, "card_no": request.card,
        "out_trade_no": order, "device_info": request.terminal_id,
    }
    if api == "micropay":
        fields |= {"total_fee": str(request.amount_fen), "fee_type": "CNY",
                   "body": "switch simulator purchase", "auth_code": DEMO_AUTH_CODE,
                   "spbill_create_ip": "127.0.0.1", "mcc": request.mcc}
    elif api == "refund":
        fields |= {"out_refund_no": request.txn_ref, "refund_fee": str(request.amount_fen),
                   "total_fee": str(request.amount_fen)}
    return {k: v for k, v in (fields | extra).items() if v != ""}


def encode_request(request: AuthRequest, key: bytes, appid: str, **extra: str) -> bytes:
    """Signed the way its sign_type says (HMAC-SHA256 unless `extra` says otherwise)."""
    return to_xml(signed(request_fields(request, appid, **extra), key))


ANSWER_FIELDS = AnswerFields(code="iso_code", approved_fen="approved_fee",
                             auth_id="approval_code", open_to_buy_fen="available_fee",
                             correlation_id="nonce_str", stand_in="stand_in")


# An answer carries no sign_type: it is signed as its request was, so the client says how.
_READERS = {sign_type: signed_answer_reader(parse_xml, functools.partial(sign, sign_type=sign_type),
                                            ANSWER_FIELDS) for sign_type in SIGN_TYPES}


def decode_response(body: bytes, key: bytes | None = None, sign_type: str = SIGN_TYPE
                    ) -> ClientAnswer:
    """Reads an answer; with `key`, it must be signed with it the way the request was signed
    (`sign_type`; "" for a request sent without one: MD5) (ValueError otherwise)."""
    answer = _READERS[sign_type or SIGN_TYPE_ABSENT](body, key)
    if not answer.response.reason:  # a FAIL return_code says why in return_msg
        answer.response.reason = _transport_failure(answer.fields)
    return answer


def _transport_failure(fields: dict[str, str]) -> str:
    return fields.get("return_msg", "") if fields.get("return_code") == "FAIL" else ""
