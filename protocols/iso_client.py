"""Client side of the ISO 8583 channels (pos, xpay): requests out, answers in, sans-IO.

Used by `switch send`, the tests and the load generator. Transactions are named by a
correlation id, MTI-STAN-F7 (e.g. 0200-000123-1129120000): all that F90 of a later capture,
reversal or refund needs to name them. The MAC is the server's (protocols/iso_mac.py).
"""

from __future__ import annotations

from typing import Any

from protocols.channel import ClientAnswer
from protocols.codes import APPROVING, Code, Reason
from protocols.iso8583 import get_codec
from protocols.iso_channel import (
    AMOUNT_CLASSES,
    PARTIAL_OK_F60,
    REPLACEMENT_DIGITS,
    STAND_IN_MARK,
    released_by,
    request_mti,
)
from protocols.iso_envelope import NO_ENVELOPE, Envelope
from protocols.iso_mac import IsoMac, MacKey
from protocols.messages import AuthRequest, AuthResponse, MessageClass

ANSWER_MAC_ERRORS = {
    Reason.MAC_MISSING: "answer carries no MAC",
    Reason.MAC_MISMATCH: "answer MAC does not match",
}
# Answers the switch gives before it knows the sender holds the key, so unsigned: the
# request's own MAC failed (A0), its terminal has no key (58), the keys could not be read
# (91), or it could not be read as a message (30).
UNSIGNED_ANSWER_CODES = frozenset({Code.MAC_FAILURE, Code.NOT_PERMITTED_ON_TERMINAL,
                                   Code.ISSUER_UNAVAILABLE, Code.FORMAT_ERROR})


class IsoClient:
    """Encodes requests and reads answers of an ISO 8583 listener (CLI, tests, load tests),
    as one terminal: `key` is its MAC key (None: MACs off)."""

    def __init__(self, dialect: str = "iso87ascii", key: MacKey | None = None,
                 envelope: Envelope = NO_ENVELOPE, front: bytes | None = None) -> None:
        """`envelope`: the TPDU and message header the listener expects; `front`: the
        bytes sent before each MTI (by default the envelope's client TPDU and header)."""
        self.codec = get_codec(dialect)
        self.key = key
        self.mac = IsoMac(self.codec)
        self.binary_mac = self.mac.binary  # binary data (F55 too) as raw bytes, not hex text
        self.envelope = envelope
        self.front = envelope.client_front() if front is None else front
        front_parts, _ = envelope.split(self.front)
        self.answer_front = envelope.answer_front(front_parts)  # what answers must start with

    def encode(self, fields: dict[str, Any]) -> bytes:
        return self.front + self.mac.encode(fields, self.key)

    def decode(self, body: bytes) -> dict[str, Any]:
        """The answer's fields; with a MAC key, ValueError when its MAC is wrong, or missing
        from an answer the switch signs (UNSIGNED_ANSWER_CODES are not signed). ValueError
        too when the answer's TPDU is not the request's with its addresses swapped."""
        if self.envelope.size_bytes:
            front = body[:self.envelope.size_bytes]
            if front[:5] != self.answer_front[:5]:
                raise ValueError(f"answer TPDU {front[:5].hex().upper()} is not "
                                 f"{self.answer_front[:5].hex().upper()} (the request's, "
                                 "addresses swapped)")
            body = body[self.envelope.size_bytes:]
        message = self.codec.decode(body)
        if self.key is None:
            return message
        if self.mac.given(message) is None and message.get("39") in UNSIGNED_ANSWER_CODES:
            return message
        problem, _ = self.mac.signer(body, message, (self.key,))
        if problem:
            raise ValueError(ANSWER_MAC_ERRORS[problem])
        return message

    def answer(self, body: bytes) -> ClientAnswer:
        return client_answer(self.decode(body))


def correlation_id(mti: str, stan: str, transmitted: str) -> str:
    """How `switch send` names a transaction: request MTI, STAN, F7 (all F90 needs)."""
    return f"{mti}-{stan}-{transmitted}"


def client_answer(message: dict[str, Any]) -> ClientAnswer:
    code = message.get("39", "")
    approved = code in APPROVING
    balance = message.get("54", "")
    if not approved:
        approved_fen = 0
    elif message.get("95"):  # a partial reversal: F4 less what remains
        approved_fen = released_by(message)
    else:  # F4: in a partial approval (10), the amount approved
        approved_fen = int(message.get("4", "0"))
    response = AuthResponse(
        response_code=code,
        approved_fen=approved_fen,
        auth_id=message.get("38", "").rstrip(),
        open_to_buy_fen=int(balance[8:20]) if len(balance) >= 20 else 0,
        reason=message.get("44", ""),
        stand_in=message.get("63") == STAND_IN_MARK,
    )
    ident = correlation_id(request_mti(message["t"]), message.get("11", ""),
                           message.get("7", ""))
    return ClientAnswer(ident, response, message)


# Message class -> (MTI, processing code F3, POS condition code F25) of a client request.
REQUEST_SHAPES = {
    MessageClass.AUTH: ("0100", "000000", "06"),  # pre-authorization: a hold
    MessageClass.SALE: ("0200", "000000", "00"),
    MessageClass.CAPTURE: ("0220", "000000", "06"),  # completion of the pre-authorization
    MessageClass.REFUND: ("0200", "200000", "00"),
    MessageClass.REVERSAL: ("0400", "000000", "00"),
    MessageClass.INQUIRY: ("0200", "310000", "00"),
}


def request_message(request: AuthRequest, *, stan: str, transmitted: str, terminal: str,
                    acquirer: str, original: str = "", entry_mode: str = "052",
                    remaining_fen: int | None = None) -> dict:
    """The ISO 8583 fields of a client request. `original`: the correlation id of the
    transaction a capture, reversal or refund names (it becomes F90). `remaining_fen`: a
    partial reversal, what is to remain of the original (F95; F4 is the request's amount,
    the original's as it stands); ValueError on another class, or without an amount."""
    mti, processing, condition = REQUEST_SHAPES[request.message_class]
    fields: dict[str, Any] = {"t": mti, "2": request.card, "3": processing}
    if request.amount_fen or request.message_class in AMOUNT_CLASSES:
        fields["4"] = f"{request.amount_fen:012d}"
    fields |= {"7": transmitted, "11": stan, "12": transmitted[4:], "13": transmitted[:4]}
    if request.expiry:
        fields["14"] = request.expiry
    if request.mcc:
        fields["18"] = request.mcc
    fields |= {"22": entry_mode, "25": condition, "32": acquirer,
               "37": f"{transmitted[4:]}{stan}", "41": terminal}
    if request.merchant_id:
        fields["42"] = request.merchant_id
    fields["49"] = f"{request.currency:03d}"
    if request.partial_ok:
        fields["60"] = PARTIAL_OK_F60
    if original:
        fields["90"] = original_data(original, acquirer)
    if remaining_fen is not None:
        fields["95"] = replacement_amounts(request, remaining_fen)
    return fields


def replacement_amounts(request: AuthRequest, remaining_fen: int) -> str:
    """F95 (an42): transaction and settlement amounts that remain, fees (x+n9) of zero."""
    if request.message_class is not MessageClass.REVERSAL:
        raise ValueError("a remaining amount (F95) is for a reversal only")
    if not 0 <= remaining_fen < request.amount_fen:
        raise ValueError("a partial reversal needs the original's amount (F4) above the "
                         f"amount to remain ({remaining_fen} fen)")
    amount = f"{remaining_fen:0{REPLACEMENT_DIGITS}d}"
    return f"{amount}{amount}C00000000C00000000"


def original_data(original_id: str, acquirer: str) -> str:
    """F90: original MTI, STAN, F7, acquirer (n11), forwarding institution (n11, zeros)."""
    mti, stan, transmitted = parse_correlation_id(original_id)
    return f"{mti}{stan}{transmitted}{acquirer:0>11}{'0' * 11}"


def parse_correlation_id(value: str) -> tuple[str, str, str]:
    parts = value.split("-")
    if [len(p) for p in parts] != [4, 6, 10] or not all(p.isdigit() for p in parts):
        raise ValueError(f"{value!r} is not MTI-STAN-F7, e.g. 0200-000123-1129120000")
    return parts[0], parts[1], parts[2]
