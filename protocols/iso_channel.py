"""ISO 8583 channels (pos, xpay), sans-IO: one mechanism for both.

Server side: a frame body becomes `Decoded(AuthRequest, message)` or ready reply bytes
(format errors, MAC failures, network management); a decision becomes the answer, which
echoes the request's data elements and adds 38 (auth id), 39 (response code), 44 (the
decline reason) and 54 (available credit). The client side is protocols/iso_client.py.

The channel-specific part (how the card is named: a PAN on pos, a wallet token on xpay) is
a subclass hook, `IsoChannel.build`. Adapter documentation: docs/channels/pos.md, xpay.md.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from protocols.batch import (
    BATCH_KINDS,
    SETTLEMENT_KIND,
    BatchWork,
    answer_f48,
    batch_number,
    read_batch,
)
from protocols.cardnumbers import mask_pan
from protocols.channel import Decoded, FieldError, KeyNeeded
from protocols.codes import APPROVING, Code, Reason
from protocols.framing import BINARY_2, HeaderFormat
from protocols.iso8583 import Iso8583Error, get_codec
from protocols.iso_envelope import NO_ENVELOPE, Envelope, EnvelopeError
from protocols.iso_fallbacks import with_fallbacks
from protocols.iso_mac import IsoMac, KeyLookup, MacKey
from protocols.iso_session import (
    MasterKey,
    SessionAction,
    SessionChange,
    entered_pin,
    session_action,
)
from protocols.messages import CURRENCY_CNY, AuthRequest, AuthResponse, MessageClass

log = logging.getLogger("protocols.iso_channel")

REASON_SIZE_MAX = 25  # F44 (additional response data) is LLVAR ..25
UNREADABLE_MTI = "0000"  # the answer's MTI when the request's own MTI cannot be read

# Request fields an answer carries back unchanged. Not echoed: 14 and 35 (card secrets),
# 52 (PIN block), 55 (the card's ICC data), 64/128 (the answer gets its own MAC).
ECHOED = ("2", "3", "4", "7", "11", "12", "13", "18", "22", "25", "32", "33", "37", "41", "42",
          "49", "60", "70", "90", "95")
# Set by the switch, never echoed (48: a settlement's answer, its totals reconciled; 62: a
# sign-on's working keys).
ADDED = frozenset({"38", "39", "44", "48", "54", "62", "63"})
STAND_IN_MARK = "STIP"  # F63 (private use) of an answer decided in stand-in (docs/channels/pos.md)
ANSWER_FIELDS = tuple(sorted(set(ECHOED) | ADDED, key=int))
NETWORK_CODES = frozenset({"001", "002", "301"})  # F70: sign-on, sign-off, echo test
SIGNED_BY = "mac"  # where a decoded request keeps the key that verified it (not a field)
FRONT = "front"  # where it keeps its TPDU and message header (Front), when the listener has them
# What `decode_request` is given when the keys could not be fetched (Redis unreachable).
KEYS_UNAVAILABLE = object()
# MTI digits 2-3 of a request -> processing type (F3 digits 1-2) -> message class.
CLASSES = {
    "10": {"00": MessageClass.AUTH, "31": MessageClass.INQUIRY},
    "20": {"00": MessageClass.SALE, "20": MessageClass.REFUND, "31": MessageClass.INQUIRY},
    "22": {"00": MessageClass.CAPTURE, "20": MessageClass.REFUND},
}
REVERSAL_KINDS = ("40", "42")
AMOUNT_CLASSES = frozenset({MessageClass.AUTH, MessageClass.SALE, MessageClass.CAPTURE,
                            MessageClass.REFUND})
# F60 sub-field 60.6 (UnionPay's layout: 60.1 n2, 60.2 n6, 60.3 n3, 60.4 n1, 60.5 n1, 60.6 n1),
# the 14th character: "1" = the terminal accepts a partial approval (docs/channels/pos.md).
PARTIAL_OK_AT = 13
PARTIAL_OK = "1"
PARTIAL_OK_F60 = "0" * PARTIAL_OK_AT + PARTIAL_OK  # what a client sends: 60.1-60.5 zeros
# F95 (replacement amounts, an42): its first 12 digits are the amount that remains of the
# original after a partial reversal; the rest (settlement amount, fees) is not read.
REPLACEMENT_DIGITS = 12
# Every request names its transaction by these: STAN, transmission time, terminal.
NAMING_FIELDS = ("11", "7", "41")


def must_be_signed(message: Mapping[str, Any]) -> bool:
    """Money never travels unsigned; network management (08xx) may (checked when signed)."""
    return message["t"][1:3] != "80"


def response_mti(mti: str) -> str:
    """0100 -> 0110, 0101 (repeat) -> 0110, 0420 -> 0430; an answer's MTI stays as it is."""
    function = int(mti[2])
    return f"{mti[:2]}{function + 1 if function % 2 == 0 else function}0"


def request_mti(mti: str) -> str:
    function = int(mti[2])
    return f"{mti[:2]}{function - 1 if function % 2 else function}0"


class IsoChannel:
    """Server side of one ISO 8583 listener; shared by all its connections (stateless)."""

    name = "iso"

    def __init__(self, dialect: str = "iso87ascii", header: HeaderFormat = BINARY_2,
                 keys: KeyLookup | None = None, envelope: Envelope = NO_ENVELOPE) -> None:
        """`keys`: where terminals' MAC keys are found; None: MACs are off (nothing is
        checked, answers are unsigned). `envelope`: the TPDU and message header before the
        MTI (protocols/iso_envelope.py)."""
        self.codec = get_codec(dialect)
        self.header = header
        self.envelope = envelope
        self.keys = keys
        self.mac = IsoMac(self.codec)
        # A sign-on's keys go in F62 as hex text (iso87), or as raw bytes where the dialect
        # carries F62 binary (unionpay).
        f62 = self.codec.dialect.field(62)
        self.f62_binary = f62 is not None and f62.encoding == "binary"

    # --- requests ---------------------------------------------------------------------------

    def decode_request(self, body: bytes, keys: tuple[MacKey, ...] | object | None = None
                       ) -> Decoded | bytes | KeyNeeded | SessionChange:
        """`keys`: the sender's keys as just fetched (after a KeyNeeded), instead of the
        lookup's."""
        front = None
        if self.envelope.size_bytes:
            try:
                front, body = self.envelope.split(body)
            except EnvelopeError as error:
                return self.answer({FRONT: error.front}, Code.FORMAT_ERROR,
                                   Reason.FORMAT.format(detail=error.part))
        try:
            message = self.codec.decode(body)
        except Iso8583Error as error:
            if front is not None:
                error.decoded[FRONT] = front
            return self._undecodable(error)
        if front is not None:
            message[FRONT] = front
        network = message["t"][1:3] == "80"
        if self.keys is not None:
            refused = self._verify(body, message, network, keys)
            if refused is not None:
                return refused
            if not network and isinstance(message.get(SIGNED_BY), MasterKey):
                # Money under the master key of a terminal that has a session or needs one.
                return self._refuse(message, Code.MAC_FAILURE, Reason.NOT_SIGNED_ON,
                                    institution(message.get("32", "")),
                                    message.get("41", "").rstrip())
        if network:
            return self._network(message)
        if message["t"][1:3] in BATCH_KINDS:
            return self._batch(message)
        try:
            # Read with the fields the dialect rebuilds (F7, F18 of a UnionPay terminal);
            # the answer echoes only what came.
            read = with_fallbacks(self.codec.dialect, message)
            basics = request_basics(self.name, read)
            number = batch_number(self.codec.dialect, message)
            if number:  # the terminal's batch: ACQUIRER:TERMINAL:BATCH
                acquirer = institution(message.get("32", ""))
                basics["batch"] = f"{acquirer}:{basics['terminal_id']}:{number}"
            request = self.build(read, basics)
        except FieldError as error:
            if error.reason == Reason.ORIGINAL_ACQUIRER_DIFFERS:
                return self._refuse(message, error.code, error.reason,
                                    institution(message.get("32", "")),
                                    message.get("41", "").rstrip())
            return self.answer(message, error.code, error.reason)
        return Decoded(request, message)

    def _batch(self, message: dict) -> BatchWork | bytes:
        """A settlement (0500) or upload (0320): the work for the server, or the answer."""
        terminal = message.get("41", "").rstrip()
        if not terminal:
            return self.answer(message, Code.FORMAT_ERROR, Reason.FIELD_MISSING.format(field=41))
        try:
            work = read_batch(self.codec.dialect, message,
                              f"{institution(message.get('32', ''))}:{terminal}")
        except FieldError as error:
            return self.answer(message, error.code, error.reason)
        return self.answer(message, Code.APPROVED) if work is None else work

    def answer_batch(self, work: BatchWork, code: str, reason: str = "") -> bytes:
        """The answer to a settlement (its F48 reconciled when it was compared: 00 or 95)
        or an upload, once decided."""
        compared = code in (Code.APPROVED, Code.RECONCILIATION_ERROR)
        extra = ({"48": answer_f48(work, code == Code.APPROVED)}
                 if work.kind == SETTLEMENT_KIND and compared else None)
        return self.answer(work.message, code, reason, extra=extra)

    def build(self, message: dict, basics: dict[str, Any]) -> AuthRequest:
        """The canonical request; channels override to read their own fields."""
        return AuthRequest(**basics)

    def encode_response(self, context: dict, response: AuthResponse) -> bytes:
        return self.answer(context, response.response_code, response.reason, response)

    def _verify(self, body: bytes, message: dict, network: bool,
                fetched: tuple[MacKey, ...] | object | None) -> bytes | KeyNeeded | None:
        """None when the MAC is right under the sender's key (kept in the message, to sign
        the answer with); else the answer that refuses it, or the keys to fetch first.

        The sender is F32 + F41. Network management may travel unsigned; money never does.
        """
        if not must_be_signed(message) and self.mac.given(message) is None:
            return None
        acquirer = institution(message.get("32", ""))
        terminal = message.get("41", "").rstrip()
        keys = self.keys.keys_for(acquirer, terminal) if fetched is None else fetched
        if keys is None:
            return KeyNeeded(acquirer, terminal)
        if keys is KEYS_UNAVAILABLE:
            return self.answer(message, Code.ISSUER_UNAVAILABLE, Reason.ISSUER_UNAVAILABLE)
        if not keys:
            if fetched is None and self.keys.doubt(acquirer, terminal):
                return KeyNeeded(acquirer, terminal)  # given a key since it was cached?
            return self._refuse(message, Code.NOT_PERMITTED_ON_TERMINAL,
                                Reason.TERMINAL_UNKNOWN, acquirer, terminal)
        problem, key = self.mac.signer(body, message, keys)
        if key is not None:
            message[SIGNED_BY] = key
            return None
        if fetched is None and problem == Reason.MAC_MISMATCH and self.keys.doubt(
                acquirer, terminal):
            return KeyNeeded(acquirer, terminal)  # rotated since they were cached?
        return self._refuse(message, Code.MAC_FAILURE, problem, acquirer, terminal)

    def _refuse(self, message: dict, code: str, reason: str, acquirer: str, terminal: str
                ) -> bytes:
        """A refusal of who sent it, logged (card masked) for the operator to see."""
        log.warning("%s: %s %s: acquirer %s terminal %r, MTI %s STAN %s card %s", self.name,
                    code, reason, acquirer, terminal, message["t"], message.get("11", "-"),
                    mask_pan(str(message.get("2", "-"))))
        return self.answer(message, code, reason)

    # --- answers ----------------------------------------------------------------------------

    def session_answer(self, change: SessionChange, code: str, reason: str = "",
                       f62: str = "") -> bytes:
        """The 0810 of a sign-on, sign-off or key change, F62 the keys of a new session."""
        value = bytes.fromhex(f62) if self.f62_binary else f62
        return self.answer(change.message, code, reason, extra={"62": value} if f62 else None)

    def answer(self, request: Mapping[str, Any], code: str, reason: str = "",
               response: AuthResponse | None = None,
               extra: Mapping[str, Any] | None = None) -> bytes:
        added = {"39": code} if extra is None else {**extra, "39": code}
        approved = code in APPROVING
        if approved and response is not None and response.auth_id:
            added["38"] = response.auth_id
        if code == Code.PARTIAL_APPROVAL and response is not None:
            added["4"] = f"{response.approved_fen:012d}"  # what was approved, not asked
        if reason and not approved:
            added["44"] = printable(reason)[:REASON_SIZE_MAX]
        if response is not None and response.stand_in:
            added["63"] = STAND_IN_MARK  # and no F54: stand-in does not know the balance
        elif approved and response is not None and "3" in request:
            added["54"] = available_credit(response.open_to_buy_fen, request.get("49", "156"))
        ordered = {"t": response_mti(request["t"]) if "t" in request else UNREADABLE_MTI}
        for key in ANSWER_FIELDS:  # in field order, without sorting per answer
            value = added.get(key) if key in added or key in ADDED else request.get(key)
            if value is not None:
                ordered[key] = value
        body = self.encode(ordered, request.get(SIGNED_BY))
        if self.envelope.size_bytes:
            return self.envelope.answer_front(request.get(FRONT)) + body
        return body

    def encode(self, fields: dict[str, Any], key: MacKey | None = None) -> bytes:
        """Encode a message, with its MAC under `key` (the key that verified the request;
        None: unsigned). Every answer goes through here: a subclass may encode otherwise
        (the bench's reference server)."""
        return self.mac.encode(fields, key)

    def _network(self, message: dict) -> bytes | SessionChange:
        action = session_action(message)
        terminal = message.get("41", "").rstrip()
        if action is not None and terminal and hasattr(self.keys, "change_session"):
            # Sign-on, sign-off, key change of a terminal: made in Redis by the server.
            return SessionChange(action, institution(message.get("32", "")), terminal, message)
        if action is SessionAction.KEY_CHANGE:  # no keys to change without a key store
            return self.answer(message, Code.INVALID_TRANSACTION, Reason.KEY_EXCHANGE_UNSUPPORTED)
        if message.get("70") not in NETWORK_CODES:
            return self.answer(message, Code.INVALID_TRANSACTION, Reason.NETWORK_CODE_UNSUPPORTED)
        return self.answer(message, Code.APPROVED)

    def _undecodable(self, error: Iso8583Error) -> bytes:
        """Answer 30 with what could be read: the MTI and the fields before the defect."""
        detail = "mti" if error.field == "MTI" else f"field_{error.field}"
        return self.answer(error.decoded, Code.FORMAT_ERROR, Reason.FORMAT.format(detail=detail))


# --- reading a request ----------------------------------------------------------------------


def request_basics(channel: str, message: dict) -> dict[str, Any]:
    """AuthRequest keyword arguments every ISO 8583 channel reads the same way."""
    message_class = request_class(message)
    card, expiry = card_of(message)
    for field in required_fields(message_class, message):
        required(message, field)
    stan, transmitted = message["11"], message["7"]
    terminal = message["41"].rstrip()
    if not terminal:  # all spaces: no terminal to name transactions by
        raise FieldError(Code.FORMAT_ERROR, Reason.FIELD_MISSING.format(field=41))
    acquirer = institution(message.get("32", ""))
    txn_ref = f"{channel}:{acquirer}:{terminal}:{stan}"
    pin = entered_pin(message, card, message.get(SIGNED_BY))
    return dict(
        message_class=message_class,
        channel=channel,
        card=card,
        amount_fen=amount_of(message, message_class),
        currency=currency_of(message),
        mcc=message.get("18", ""),
        expiry=message.get("14", expiry),
        merchant_id=message.get("42", "").rstrip(),
        terminal_id=terminal,
        txn_ref=txn_ref,
        original_ref=original_of(channel, message, message_class, txn_ref, terminal, acquirer),
        transmitted_at=transmitted,
        partial_ok=message.get("60", "")[PARTIAL_OK_AT:PARTIAL_OK_AT + 1] == PARTIAL_OK,
        entry_mode=message.get("22", ""),
        pin=pin,
        idempotency_key=f"{channel}:{id_kind(message_class)}:{acquirer}:{terminal}:{stan}:"
                        f"{transmitted}",
    )


def id_kind(message_class: MessageClass) -> str:
    """The kind of id STAN + transmission time are for a terminal: a reversal may repeat its
    original's STAN (it names the original by it, without F90), so reversals are a scope of
    their own; every other message (sale, auth, inquiry, completion, refund) shares one, so
    a STAN and time reused for another type is 94, not a second transaction."""
    return "reversal" if message_class is MessageClass.REVERSAL else "txn"


def request_class(message: Mapping[str, Any]) -> MessageClass:
    """The class of a request; FieldError (12) for an MTI or an F3 the switch does not take."""
    mti = message["t"]
    if mti[0] != "0" or mti[3] not in "01":
        raise FieldError(Code.INVALID_TRANSACTION, Reason.MTI_NOT_SUPPORTED)
    return class_of(mti, message)


def required_fields(message_class: MessageClass, message: Mapping[str, Any]) -> tuple[str, ...]:
    """The fields a request of this class must carry besides its card (F2, or track 2 in F35)
    and the F90 of a capture or refund: what request_basics checks, in this order, and what
    `switch iso validate` lists (docs/channels/pos.md, "Fields per message")."""
    fields = NAMING_FIELDS if message_class is MessageClass.REVERSAL else ("3", *NAMING_FIELDS)
    if message_class in AMOUNT_CLASSES:
        fields += ("4",)
    if message_class is MessageClass.REVERSAL and not message.get("90"):
        fields += ("37",)  # without F90 a reversal names its original by STAN, F41 and RRN
    return fields


def class_of(mti: str, message: Mapping[str, Any]) -> MessageClass:
    kind = mti[1:3]
    if kind in REVERSAL_KINDS:
        return MessageClass.REVERSAL
    by_processing = CLASSES.get(kind)
    if by_processing is None:
        raise FieldError(Code.INVALID_TRANSACTION, Reason.MTI_NOT_SUPPORTED)
    message_class = by_processing.get(required(message, "3")[:2])
    if message_class is None:
        raise FieldError(Code.INVALID_TRANSACTION, Reason.PROCESSING_NOT_SUPPORTED)
    return message_class


def card_of(message: dict) -> tuple[str, str]:
    """(PAN or token, expiry YYMM from track 2 or ""): F2, else the start of track 2 (F35)."""
    if "2" in message:
        return message["2"], ""
    track = message.get("35", "")
    for separator in ("=", "D"):
        pan, found, rest = track.partition(separator)
        if found:
            return pan, rest[:4] if len(rest) >= 4 else ""
    raise FieldError(Code.FORMAT_ERROR, Reason.CARD_MISSING)


def amount_of(message: dict, message_class: MessageClass) -> int:
    if message_class in AMOUNT_CLASSES:
        return int(message["4"])  # required_fields names it
    if message_class is MessageClass.INQUIRY:
        return int(message.get("4", "0"))
    return released_by(message)


def released_by(message: dict) -> int:
    """What a reversal releases: all that remains (0) without F95; with F95 (a partial
    reversal), F4 (the amount as it stands) minus F95's replacement amount (what is to
    remain). Less than nothing or all of it (a partial reversal of nothing) is 13."""
    replacement = message.get("95", "")[:REPLACEMENT_DIGITS]
    if not replacement:
        return 0
    if not replacement.isdigit():
        raise FieldError(Code.FORMAT_ERROR, Reason.FORMAT.format(detail="field_95"))
    release = int(required(message, "4")) - int(replacement)
    if release <= 0:
        raise FieldError(Code.INVALID_AMOUNT, Reason.REPLACEMENT_TOO_LARGE)
    return release


def currency_of(message: dict) -> int:
    code = message.get("49", str(CURRENCY_CNY))
    if not code.isdigit():
        raise FieldError(Code.FORMAT_ERROR, Reason.CURRENCY_NOT_NUMERIC)
    return int(code)


def original_of(channel: str, message: dict, message_class: MessageClass, txn_ref: str,
                terminal: str, acquirer: str) -> str:
    """The original's txn_ref: from F90 (its STAN) + our F32 and F41, else this STAN.

    A transaction is known by acquirer + terminal + STAN (txn_ref), so a message can name
    only originals of its own acquirer and terminal, which its MAC vouches for. F90 names
    the original's STAN and acquirer but not its terminal, which is this message's F41; an
    F90 acquirer other than this message's own is refused (25): one acquirer never reverses,
    completes or refunds another's transactions. A reversal without F90 repeats the
    original's STAN, terminal and RRN.
    """
    if message_class not in (MessageClass.REVERSAL, MessageClass.CAPTURE, MessageClass.REFUND):
        return ""
    original = message.get("90", "")
    if original:
        stan, original_acquirer = original[4:10], original[20:31]
        # Acquirers that leave it zero mean themselves.
        if int(original_acquirer) != 0 and institution(original_acquirer) != acquirer:
            raise FieldError(Code.ORIGINAL_NOT_FOUND, Reason.ORIGINAL_ACQUIRER_DIFFERS)
        return f"{channel}:{acquirer}:{terminal}:{stan}"
    if message_class is MessageClass.REVERSAL:  # required_fields named its RRN (F37)
        return txn_ref
    raise FieldError(Code.FORMAT_ERROR, Reason.ORIGINAL_DATA_MISSING)


def institution(code: str) -> str:
    """F32 (n..11) and the F90 acquirer (n11, zero-padded) name one institution alike."""
    return code.lstrip("0") or "0"


def required(message: dict, field: str) -> str:
    value = message.get(field)
    if value is None or value == "":
        raise FieldError(Code.FORMAT_ERROR, Reason.FIELD_MISSING.format(field=field))
    return value


def printable(text: str) -> str:
    return "".join(c if " " <= c <= "~" else "?" for c in text)


def available_credit(open_to_buy_fen: int, currency: str) -> str:
    """F54: account type 30 (credit), amount type 02 (available), currency, C, 12 digits."""
    return f"3002{currency:0>3}C{open_to_buy_fen:012d}"
