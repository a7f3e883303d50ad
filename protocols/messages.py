"""Canonical messages: what every channel decodes into and encodes from.

The codecs (protocols/) make them from the wire and the engine (switch/) decides on them.
This module imports only the vocabulary (protocols/codes.py); nothing in protocols/ imports
switch/ (tests/test_layering.py). Money is an integer number of fen; currency is ISO 4217
numeric.
"""

from __future__ import annotations

import enum

import msgspec

from protocols.codes import APPROVING


class MessageClass(enum.StrEnum):
    AUTH = "auth"  # authorization / pre-authorization: places a hold
    SALE = "sale"  # purchase: approved and posted at once
    CAPTURE = "capture"  # completion of a pre-authorization: posts (part of) a hold
    REVERSAL = "reversal"  # voids an auth (releases the hold) or a sale (un-posts it)
    REFUND = "refund"  # credits back (part of) a posted transaction
    INQUIRY = "inquiry"  # balance inquiry: changes nothing


# Classes that carry a reference to an earlier transaction of the same card.
REFERENCING_CLASSES = frozenset({MessageClass.CAPTURE, MessageClass.REVERSAL, MessageClass.REFUND})

CURRENCY_CNY = 156


class AuthRequest(msgspec.Struct, kw_only=True):
    message_class: MessageClass
    channel: str  # listener name: jd, wechat, xpay, pos
    card: str  # PAN, or a wallet token (DPAN) on the x-pay channel
    amount_fen: int
    currency: int = CURRENCY_CNY
    mcc: str = ""
    expiry: str = ""  # YYMM as on the card; empty when the channel does not send it
    merchant_id: str = ""
    terminal_id: str = ""
    txn_ref: str = ""  # the channel's own id of this transaction (how later messages name it)
    original_ref: str = ""  # txn_ref of the original, for capture, reversal and refund
    transmitted_at: str = ""  # the channel's transmission time, as sent
    partial_ok: bool = False  # the acquirer accepts a partial approval (code 10)
    instant_refund: bool = False  # JD "lightning refund": credit restored at once
    entry_mode: str = ""  # ISO 8583 F22 (POS entry mode), "" on channels without one
    # The PIN the cardholder entered (F52 decrypted by the codec), "" for none. Never logged
    # nor journaled: the engine turns it into a salted hash (switch/pins.py) and the ledger
    # call carries only that; stand-in does not decide a request with a PIN.
    pin: str = ""
    # The request's id in the scope its channel defines, written by its codec: JD
    # jd:MERCHANT:TRADENUM, WeChat wx:MCH_ID:OUT_TRADE_NO (wx:MCH_ID:r:OUT_REFUND_NO, ...),
    # ISO 8583 CHANNEL:KIND:ACQUIRER:TERMINAL:STAN:TRANSMISSION_TIME (KIND: reversal or txn).
    # A repeat with the same key gets the first answer; the same key with other content or
    # another card is 94 (docs/reliability.md, "Ids in their scope").
    idempotency_key: str = ""
    # The account holder the channel names: JD's userId. A card bound to a JD user
    # (`switch card set --jd-user`) refuses JD requests naming another one.
    user_id: str = ""
    # A UnionPay terminal's batch the request belongs to, ACQUIRER:TERMINAL:BATCH (F60.2):
    # its approval counts in the batch's totals for settlement (switch/batches.py).
    batch: str = ""


class RefundRecord(msgspec.Struct, array_like=True, frozen=True):
    """One refund of a transaction, as its record lists it (switch/lua/refund.lua)."""

    refund_ref: str  # the refund's own id: its idempotency key (WeChat wx:MCH:r:OUT_REFUND_NO)
    amount_fen: int
    at_ms: int  # when it was made (the ledger's clock)

    def __repr__(self) -> str:  # the PIN never shows, not even in a traceback's locals
        shown = (f"{name}={'<pin>' if name == 'pin' and self.pin else getattr(self, name)!r}"
                 for name in self.__struct_fields__)
        return f"{type(self).__name__}({', '.join(shown)})"


class AuthResponse(msgspec.Struct, kw_only=True):
    response_code: str  # ISO 8583 field 39
    approved_fen: int = 0
    auth_id: str = ""  # 6 characters, field 38
    open_to_buy_fen: int = 0  # available credit after this message
    reason: str = ""  # the rule or check that made a decline; empty when approved
    beans: int = 0  # JD beans earned (negative when a reversal or refund takes them back)
    repeat: bool = False  # this answer is the stored answer of an earlier identical request
    state: str = ""  # an inquiry naming an original: its state (pending, captured, ...)
    stand_in: bool = False  # decided in stand-in while Redis was unreachable (switch/standin.py)
    refunds: tuple[RefundRecord, ...] = ()  # an inquiry naming an original: its refunds
    # Forced by a tester rather than decided, or delayed on purpose: by whom ("card": its
    # `switch card force`; "rule:ID": a fault rule, switch/faults.py; "" decided), and the
    # wait before the answer goes out. The switch's own: no channel sends them.
    forced: str = ""
    delay_ms: int = 0

    @property
    def approved(self) -> bool:
        return self.response_code in APPROVING


def is_balance_inquiry(request: AuthRequest) -> bool:
    """An inquiry of a card's balance (not of an original's state): on a card number it must
    prove the card with its expiry (switch/engine.py unproven)."""
    return request.message_class is MessageClass.INQUIRY and not request.original_ref


def decline(code: str, reason: str) -> AuthResponse:
    return AuthResponse(response_code=code, reason=reason)

