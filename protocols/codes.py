"""The switch's one vocabulary: response codes, decline reasons, transaction and card states.

Every response code the switch can give (ISO 8583 field 39), every reason id a decline can
name, every state a transaction or a card can be in, is declared here once. Channels map
`Code` to their own answers with tables keyed by it (protocols/jd.py, protocols/wechat.py);
the Lua functions in switch/lua/ write the same strings, and tests/test_codes.py scans every
source (Python and Lua) and fails on a code, reason or state that is not declared here, or a
channel table that lacks a code.

Reason ids are plain snake_case words; a family of reasons carries a parameter, written as a
template (`mcc_blocked:{mcc}`, `field_{field}_missing`) and filled with `str.format`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping


class Code(enum.StrEnum):
    """ISO 8583 field 39, as this issuer answers (REFERENCE.md lists the full standard set)."""

    APPROVED = "00"
    INVALID_MERCHANT = "03"
    DO_NOT_HONOUR = "05"  # no rule of ours gives it; a policy file may
    PARTIAL_APPROVAL = "10"
    INVALID_TRANSACTION = "12"
    INVALID_AMOUNT = "13"
    INVALID_CARD = "14"
    ORIGINAL_NOT_FOUND = "25"
    FORMAT_ERROR = "30"
    SUSPECTED_FRAUD = "34"
    LOST_CARD = "41"
    STOLEN_CARD = "43"
    INSUFFICIENT_CREDIT = "51"
    EXPIRED_CARD = "54"
    WRONG_PIN = "55"
    NOT_PERMITTED_TO_CARDHOLDER = "57"
    NOT_PERMITTED_ON_TERMINAL = "58"
    EXCEEDS_AMOUNT_LIMIT = "61"
    RESTRICTED_CARD = "62"
    SECURITY_VIOLATION = "63"
    EXCEEDS_FREQUENCY_LIMIT = "65"
    PIN_TRIES_EXCEEDED = "75"
    ISSUER_UNAVAILABLE = "91"
    DUPLICATE = "94"
    RECONCILIATION_ERROR = "95"  # a batch's totals differ from the switch's (0510)
    SYSTEM_MALFUNCTION = "96"
    MAC_FAILURE = "A0"


MEANINGS: Mapping[Code, str] = {
    Code.APPROVED: "approved",
    Code.INVALID_MERCHANT: "invalid merchant",
    Code.DO_NOT_HONOUR: "do not honour",
    Code.PARTIAL_APPROVAL: "approved for part of the amount",
    Code.INVALID_TRANSACTION: "invalid transaction (not supported, or not in this state)",
    Code.INVALID_AMOUNT: "invalid amount",
    Code.INVALID_CARD: "invalid card number (or token)",
    Code.ORIGINAL_NOT_FOUND: "original transaction not found",
    Code.FORMAT_ERROR: "format error",
    Code.SUSPECTED_FRAUD: "suspected fraud (cryptogram or chip data wrong)",
    Code.LOST_CARD: "lost card",
    Code.STOLEN_CARD: "stolen card",
    Code.INSUFFICIENT_CREDIT: "insufficient open-to-buy (over the credit limit)",
    Code.EXPIRED_CARD: "expired card",
    Code.WRONG_PIN: "wrong PIN (or a PIN required and missing, or unreadable)",
    Code.NOT_PERMITTED_TO_CARDHOLDER: "not permitted to the cardholder",
    Code.NOT_PERMITTED_ON_TERMINAL: "not permitted on this terminal or merchant",
    Code.EXCEEDS_AMOUNT_LIMIT: "exceeds an amount limit",
    Code.RESTRICTED_CARD: "restricted card",
    Code.SECURITY_VIOLATION: "security violation",
    Code.EXCEEDS_FREQUENCY_LIMIT: "exceeds a frequency limit",
    Code.PIN_TRIES_EXCEEDED: "PIN tries exceeded",
    Code.ISSUER_UNAVAILABLE: "issuer unavailable or timed out",
    Code.DUPLICATE: "duplicate transmission",
    Code.RECONCILIATION_ERROR: "reconciliation error (batch totals differ)",
    Code.SYSTEM_MALFUNCTION: "system malfunction",
    Code.MAC_FAILURE: "MAC failure",
}

# What the sender of a request (an adapter, a terminal, an acquirer host) does with each
# answer: `switch iso explain` and docs/codes.md say it.
_DECLINED = "declined: do not send it again; the cardholder pays another way"
_FIX = "fix the request (F44 names what is wrong) and send it as a new transaction"
ADAPTER_ACTIONS: Mapping[Code, str] = {
    Code.APPROVED: "done; if the sale then fails at your end, reverse it",
    Code.INVALID_MERCHANT: "check the merchant id and its configuration; do not retry as is",
    Code.DO_NOT_HONOUR: _DECLINED,
    Code.PARTIAL_APPROVAL: "approved for the amount in the answer: collect the rest another "
    "way, or reverse it",
    Code.INVALID_TRANSACTION: "not supported, or the original is already final: do not retry",
    Code.INVALID_AMOUNT: _FIX,
    Code.INVALID_CARD: _DECLINED,
    Code.ORIGINAL_NOT_FOUND: "check how the request names its original (F90, or STAN + "
    "terminal + RRN); a reversal of an unknown original needs no retry",
    Code.FORMAT_ERROR: _FIX,
    Code.SUSPECTED_FRAUD: _DECLINED,
    Code.LOST_CARD: _DECLINED,
    Code.STOLEN_CARD: _DECLINED,
    Code.INSUFFICIENT_CREDIT: _DECLINED,
    Code.EXPIRED_CARD: _DECLINED,
    Code.WRONG_PIN: "ask the cardholder for the PIN again (F44 says whether it was wrong, "
    "missing or unreadable) and send a new transaction",
    Code.NOT_PERMITTED_TO_CARDHOLDER: _DECLINED,
    Code.NOT_PERMITTED_ON_TERMINAL: _DECLINED,
    Code.EXCEEDS_AMOUNT_LIMIT: _DECLINED,
    Code.RESTRICTED_CARD: _DECLINED,
    Code.SECURITY_VIOLATION: "check the signing key and the signature; nothing changed",
    Code.EXCEEDS_FREQUENCY_LIMIT: "declined for now: a later attempt may pass the window",
    Code.PIN_TRIES_EXCEEDED: "declined: the card takes no PIN until the issuer resets its "
    "tries (`switch card set --pin-stdin` sets a new PIN)",
    Code.ISSUER_UNAVAILABLE: "the outcome is unknown: reverse it (0400/0420, JD REVERSE), "
    "then send a new transaction if still wanted",
    Code.DUPLICATE: "a transaction id (STAN, tradeNum, out_trade_no) reused in its scope "
    "for different content or another card: send it with a new one; a true repeat gets the "
    "first answer instead",
    Code.RECONCILIATION_ERROR: "upload the batch's transactions (0320), then settle again "
    "after upload (0500, F60.3 202)",
    Code.SYSTEM_MALFUNCTION: "the outcome is unknown: reverse it, as for 91",
    Code.MAC_FAILURE: "check the MAC key and what the MAC covers; nothing changed. With "
    "reason not_signed_on: sign on (0800) and send it again under the session MAC key",
}

# Plain strings, not the enum's members: what is looked up is mostly a code read off the wire
# (a str), and a set of plain strings matches it without calling the enum's comparison; the
# load generator asks once per answer.
APPROVING: frozenset[str] = frozenset({Code.APPROVED.value, Code.PARTIAL_APPROVAL.value})
DECLINING: frozenset[str] = frozenset(Code) - APPROVING


def approves(code: str) -> bool:
    return code in APPROVING


class Reason(enum.StrEnum):
    """Why a request was declined: the rule or check that made the decision."""

    # The request itself (switch/engine.py, the channel codecs).
    FORMAT = "format:{detail}"  # a field the codec could not read; detail names it
    FIELD_MISSING = "field_{field}_missing"
    TRANSACTION_ID_MISSING = "transaction_id_missing"
    ORIGINAL_REFERENCE_MISSING = "original_reference_missing"
    ORIGINAL_DATA_MISSING = "original_data_missing"
    CARD_MISSING = "card_missing"
    CARD_NUMBER_MALFORMED = "card_number_malformed"
    MCC_MALFORMED = "mcc_malformed"
    MCC_MISSING = "mcc_missing"
    EXPIRY_MALFORMED = "expiry_malformed"
    # A balance inquiry on a card number must prove the card: its expiry (JD cardExpiry,
    # ISO 8583 F14 or track 2 in F35). Without it no balance is shown (switch/engine.py).
    CARD_PROOF_MISSING = "card_proof_missing"
    CURRENCY_NOT_NUMERIC = "currency_not_numeric"
    CURRENCY_NOT_SUPPORTED = "currency_not_supported"
    AMOUNT_OUT_OF_RANGE = "amount_out_of_range"
    AMOUNT_ZERO = "amount_zero"
    MTI_NOT_SUPPORTED = "mti_not_supported"
    PROCESSING_NOT_SUPPORTED = "processing_not_supported"
    NETWORK_CODE_UNSUPPORTED = "network_code_unsupported"
    ENTRY_MODE_NOT_WALLET = "entry_mode_not_wallet"
    ICC_FIELD_NOT_TLV = "field_55_not_tlv"
    ICC_TAG_MALFORMED = "tag_{tag}_malformed"
    ICC_TAG_NOT_BCD = "tag_{tag}_not_bcd"
    ICC_AMOUNT_MISMATCH = "icc_amount_mismatch"
    ICC_CURRENCY_MISMATCH = "icc_currency_mismatch"
    # Who sent it, and its signature.
    MERCHANT_UNKNOWN = "merchant_unknown"
    SIGNATURE_MISMATCH = "signature_mismatch"
    MAC_MISSING = "mac_missing"
    MAC_MISMATCH = "mac_mismatch"
    TERMINAL_UNKNOWN = "terminal_unknown"  # no MAC key for this acquirer and terminal
    # Sessions (protocols/iso_session.py): a terminal that must sign on, has no session and
    # sends money under its master key; a sign-on the switch cannot answer with keys.
    NOT_SIGNED_ON = "not_signed_on"
    KEY_EXCHANGE_UNSUPPORTED = "key_exchange_unsupported"
    # PINs (protocols/iso_pin.py; the tries in switch/lua/prelude.lua).
    PIN_REQUIRED = "pin_required"  # the policy's [pin] asks for one and F52 is absent
    PIN_BLOCK_MALFORMED = "pin_block_malformed"  # F52 does not decrypt to a format 0 block
    PIN_KEY_MISSING = "pin_key_missing"  # F52 from a terminal with no session PIN key
    PIN_NOT_SET = "pin_not_set"  # a PIN sent for a card that has none
    PIN_WRONG = "pin_wrong"
    PIN_TRIES_EXCEEDED = "pin_tries_exceeded"
    LIMIT_PAY_NO_CREDIT = "limit_pay_no_credit"  # a WeChat merchant that refuses credit cards
    # Repeats.
    DUPLICATE_KEY_MISMATCH = "duplicate_key_mismatch"  # same id, different content
    DUPLICATE_REFERENCE = "duplicate_reference"  # the transaction id is taken
    # The id is taken in its channel's scope by a request on another card (a claim:
    # protocols/ledger_layout.py claim_key).
    DUPLICATE_ID_OTHER_CARD = "duplicate_id_other_card"
    # The card (switch/lua/prelude.lua).
    CARD_UNKNOWN = "card_unknown"
    CARD_LOST = "card_lost"
    CARD_STOLEN = "card_stolen"
    CARD_FROZEN = "card_frozen"
    CARD_RESTRICTED = "card_restricted"
    CARD_NOT_ACTIVATED = "card_not_activated"
    CARD_EXPIRED = "card_expired"
    CARD_STATUS = "card_status_{status}"  # a status this table does not name
    EXPIRY_MISMATCH = "expiry_mismatch"
    # A card bound to a JD user (`switch card set --jd-user`): a JD request names another
    # userId, or a balance QUERY names none.
    USER_CARD_MISMATCH = "user_card_mismatch"
    USER_REQUIRED = "user_required"
    # Wallet tokens (switch/tokens.py, switch/lua/token_use.lua).
    TOKEN_MALFORMED = "token_malformed"
    TOKEN_UNKNOWN = "token_unknown"
    TOKEN_DELETED = "token_deleted"
    TOKEN_SUSPENDED = "token_suspended"
    TOKEN_STATUS = "token_status_{status}"
    TOKEN_EXPIRED = "token_expired"
    CRYPTOGRAM_MISMATCH = "cryptogram_mismatch"
    ATC_REPLAY = "atc_replay"
    # The policy (switch/policy.py and the counters of switch/lua/authorize.lua).
    CHANNEL_CLASS = "channel_class:{channel}"
    MCC_BLOCKED = "mcc_blocked:{mcc}"
    CHANNEL_CAP = "channel_cap:{channel}"
    MCC_CAP = "mcc_cap:{rule}"
    CHANNEL_DAILY = "channel_daily:{channel}"
    VELOCITY_COUNT = "velocity_count:{rule}"
    VELOCITY_AMOUNT = "velocity_amount:{rule}"
    # Money and originals (switch/lua/).
    INSUFFICIENT_OPEN_TO_BUY = "insufficient_open_to_buy"
    ORIGINAL_NOT_FOUND = "original_not_found"
    ORIGINAL_ACQUIRER_DIFFERS = "original_acquirer_differs"  # F90 names another acquirer
    ORIGINAL_NOT_AN_AUTHORIZATION = "original_not_an_authorization"
    ORIGINAL_NOT_CAPTURED = "original_not_captured"
    ORIGINAL_ALREADY = "original_already_{state}"
    ORIGINAL_ALREADY_CAPTURED_OR_REFUNDED = "original_already_captured_or_refunded"
    CAPTURE_EXCEEDS_HOLD = "capture_exceeds_hold"
    REFUND_EXCEEDS_ORIGINAL = "refund_exceeds_original"
    REVERSAL_EXCEEDS_ORIGINAL = "reversal_exceeds_original"
    # F95 of a partial reversal leaves as much as F4 or more: nothing to release.
    REPLACEMENT_TOO_LARGE = "replacement_too_large"
    # Batch settlement of terminals (protocols/batch.py, switch/lua/batch.lua).
    BATCH_NUMBER_MISSING = "batch_number_missing"  # no six-digit F60.2 on a 0500 / 0320
    BATCH_TOTALS_DIFFER = "batch_totals_differ"
    BATCH_ENTRIES_OVER_LIMIT = "batch_entries_over_limit"  # limits.batch_entries_max
    # The switch itself (switch/server.py).
    ISSUER_TIMEOUT = "issuer_timeout"
    ISSUER_UNAVAILABLE = "issuer_unavailable"
    SYSTEM_ERROR = "system_error"
    # Stand-in processing while Redis is unreachable (switch/standin.py).
    STAND_IN_LIMIT = "stand_in_limit"  # over the per-transaction stand-in limit
    STAND_IN_CARD_LIMIT = "stand_in_card_limit"  # over the card's cumulative stand-in limit
    SAF_JOURNAL_FULL = "saf_journal_full"  # no room to record a stand-in approval
    # A tester's forced outcome on the card (`switch card force`), not a decision.
    FORCED = "forced"
    # A fault rule's forced outcome (switch/faults.py, `switch fault add`), named by its id.
    FAULT_RULE = "fault:{rule}"


_POLICY_CHOSEN = DECLINING  # a policy file picks the code of these rules

# The codes each reason may come with.
REASON_CODES: Mapping[Reason, frozenset[str]] = {
    Reason.FORMAT: frozenset({Code.FORMAT_ERROR}),
    Reason.FIELD_MISSING: frozenset({Code.FORMAT_ERROR}),
    Reason.TRANSACTION_ID_MISSING: frozenset({Code.FORMAT_ERROR}),
    Reason.ORIGINAL_REFERENCE_MISSING: frozenset({Code.FORMAT_ERROR}),
    Reason.ORIGINAL_DATA_MISSING: frozenset({Code.FORMAT_ERROR}),
    Reason.CARD_MISSING: frozenset({Code.FORMAT_ERROR}),
    Reason.CARD_NUMBER_MALFORMED: frozenset({Code.INVALID_CARD}),
    Reason.MCC_MALFORMED: frozenset({Code.FORMAT_ERROR}),
    Reason.MCC_MISSING: frozenset({Code.FORMAT_ERROR}),
    Reason.EXPIRY_MALFORMED: frozenset({Code.FORMAT_ERROR}),
    Reason.CARD_PROOF_MISSING: frozenset({Code.FORMAT_ERROR}),
    Reason.CURRENCY_NOT_NUMERIC: frozenset({Code.FORMAT_ERROR}),
    Reason.CURRENCY_NOT_SUPPORTED: frozenset({Code.INVALID_TRANSACTION}),
    Reason.AMOUNT_OUT_OF_RANGE: frozenset({Code.INVALID_AMOUNT}),
    Reason.AMOUNT_ZERO: frozenset({Code.INVALID_AMOUNT}),
    Reason.MTI_NOT_SUPPORTED: frozenset({Code.INVALID_TRANSACTION}),
    Reason.PROCESSING_NOT_SUPPORTED: frozenset({Code.INVALID_TRANSACTION}),
    Reason.NETWORK_CODE_UNSUPPORTED: frozenset({Code.INVALID_TRANSACTION}),
    Reason.ENTRY_MODE_NOT_WALLET: frozenset({Code.FORMAT_ERROR}),
    Reason.ICC_FIELD_NOT_TLV: frozenset({Code.FORMAT_ERROR}),
    Reason.ICC_TAG_MALFORMED: frozenset({Code.FORMAT_ERROR}),
    Reason.ICC_TAG_NOT_BCD: frozenset({Code.FORMAT_ERROR}),
    Reason.ICC_AMOUNT_MISMATCH: frozenset({Code.SUSPECTED_FRAUD}),
    Reason.ICC_CURRENCY_MISMATCH: frozenset({Code.SUSPECTED_FRAUD}),
    Reason.MERCHANT_UNKNOWN: frozenset({Code.INVALID_MERCHANT}),
    Reason.SIGNATURE_MISMATCH: frozenset({Code.SECURITY_VIOLATION}),
    Reason.MAC_MISSING: frozenset({Code.MAC_FAILURE}),
    Reason.MAC_MISMATCH: frozenset({Code.MAC_FAILURE}),
    Reason.TERMINAL_UNKNOWN: frozenset({Code.NOT_PERMITTED_ON_TERMINAL}),
    Reason.NOT_SIGNED_ON: frozenset({Code.MAC_FAILURE}),
    Reason.KEY_EXCHANGE_UNSUPPORTED: frozenset({Code.INVALID_TRANSACTION}),
    Reason.PIN_REQUIRED: frozenset({Code.WRONG_PIN}),
    Reason.PIN_BLOCK_MALFORMED: frozenset({Code.WRONG_PIN}),
    Reason.PIN_KEY_MISSING: frozenset({Code.WRONG_PIN}),
    Reason.PIN_NOT_SET: frozenset({Code.WRONG_PIN}),
    Reason.PIN_WRONG: frozenset({Code.WRONG_PIN}),
    Reason.PIN_TRIES_EXCEEDED: frozenset({Code.PIN_TRIES_EXCEEDED}),
    Reason.LIMIT_PAY_NO_CREDIT: frozenset({Code.NOT_PERMITTED_ON_TERMINAL}),
    Reason.DUPLICATE_KEY_MISMATCH: frozenset({Code.DUPLICATE}),
    Reason.DUPLICATE_REFERENCE: frozenset({Code.DUPLICATE}),
    Reason.DUPLICATE_ID_OTHER_CARD: frozenset({Code.DUPLICATE}),
    Reason.CARD_UNKNOWN: frozenset({Code.INVALID_CARD}),
    Reason.CARD_LOST: frozenset({Code.LOST_CARD}),
    Reason.CARD_STOLEN: frozenset({Code.STOLEN_CARD}),
    Reason.CARD_FROZEN: frozenset({Code.RESTRICTED_CARD}),
    Reason.CARD_RESTRICTED: frozenset({Code.RESTRICTED_CARD}),
    Reason.CARD_NOT_ACTIVATED: frozenset({Code.RESTRICTED_CARD}),
    Reason.CARD_EXPIRED: frozenset({Code.EXPIRED_CARD}),
    Reason.CARD_STATUS: frozenset({Code.RESTRICTED_CARD}),
    Reason.EXPIRY_MISMATCH: frozenset({Code.EXPIRED_CARD}),
    Reason.USER_CARD_MISMATCH: frozenset({Code.NOT_PERMITTED_TO_CARDHOLDER}),
    Reason.USER_REQUIRED: frozenset({Code.NOT_PERMITTED_TO_CARDHOLDER}),
    Reason.TOKEN_MALFORMED: frozenset({Code.INVALID_CARD}),
    Reason.TOKEN_UNKNOWN: frozenset({Code.INVALID_CARD}),
    Reason.TOKEN_DELETED: frozenset({Code.INVALID_CARD}),
    Reason.TOKEN_SUSPENDED: frozenset({Code.RESTRICTED_CARD}),
    Reason.TOKEN_STATUS: frozenset({Code.RESTRICTED_CARD}),
    Reason.TOKEN_EXPIRED: frozenset({Code.EXPIRED_CARD}),
    Reason.CRYPTOGRAM_MISMATCH: frozenset({Code.SUSPECTED_FRAUD}),
    Reason.ATC_REPLAY: frozenset({Code.SECURITY_VIOLATION}),
    Reason.CHANNEL_CLASS: _POLICY_CHOSEN,
    Reason.MCC_BLOCKED: _POLICY_CHOSEN,
    Reason.CHANNEL_CAP: frozenset({Code.EXCEEDS_AMOUNT_LIMIT}),
    Reason.MCC_CAP: frozenset({Code.EXCEEDS_AMOUNT_LIMIT}),
    Reason.CHANNEL_DAILY: frozenset({Code.EXCEEDS_AMOUNT_LIMIT}),
    Reason.VELOCITY_COUNT: frozenset({Code.EXCEEDS_FREQUENCY_LIMIT}),
    Reason.VELOCITY_AMOUNT: frozenset({Code.EXCEEDS_AMOUNT_LIMIT}),
    Reason.INSUFFICIENT_OPEN_TO_BUY: frozenset({Code.INSUFFICIENT_CREDIT}),
    Reason.ORIGINAL_NOT_FOUND: frozenset({Code.ORIGINAL_NOT_FOUND}),
    Reason.ORIGINAL_ACQUIRER_DIFFERS: frozenset({Code.ORIGINAL_NOT_FOUND}),
    Reason.ORIGINAL_NOT_AN_AUTHORIZATION: frozenset({Code.INVALID_TRANSACTION}),
    Reason.ORIGINAL_NOT_CAPTURED: frozenset({Code.INVALID_TRANSACTION}),
    Reason.ORIGINAL_ALREADY: frozenset({Code.INVALID_TRANSACTION}),
    Reason.ORIGINAL_ALREADY_CAPTURED_OR_REFUNDED: frozenset({Code.INVALID_TRANSACTION}),
    Reason.CAPTURE_EXCEEDS_HOLD: frozenset({Code.INVALID_AMOUNT}),
    Reason.REFUND_EXCEEDS_ORIGINAL: frozenset({Code.INVALID_AMOUNT}),
    Reason.REVERSAL_EXCEEDS_ORIGINAL: frozenset({Code.INVALID_AMOUNT}),
    Reason.REPLACEMENT_TOO_LARGE: frozenset({Code.INVALID_AMOUNT}),
    Reason.BATCH_NUMBER_MISSING: frozenset({Code.FORMAT_ERROR}),
    Reason.BATCH_TOTALS_DIFFER: frozenset({Code.RECONCILIATION_ERROR}),
    Reason.BATCH_ENTRIES_OVER_LIMIT: frozenset({Code.RECONCILIATION_ERROR}),
    Reason.ISSUER_TIMEOUT: frozenset({Code.ISSUER_UNAVAILABLE}),
    Reason.ISSUER_UNAVAILABLE: frozenset({Code.ISSUER_UNAVAILABLE}),
    Reason.SYSTEM_ERROR: frozenset({Code.SYSTEM_MALFUNCTION}),
    Reason.STAND_IN_LIMIT: _POLICY_CHOSEN,
    Reason.STAND_IN_CARD_LIMIT: _POLICY_CHOSEN,
    Reason.SAF_JOURNAL_FULL: frozenset({Code.ISSUER_UNAVAILABLE}),
    Reason.FORCED: DECLINING,  # the code the tester chose
    Reason.FAULT_RULE: DECLINING,  # the rule's code
}


def reason_of(text: str) -> Reason | None:
    """The declared reason a reason string is an instance of (exact id or a template's)."""
    try:
        return Reason(text)
    except ValueError:
        pass
    for reason in _TEMPLATES:
        head, tail = _template_parts(reason)
        if (text.startswith(head) and text.endswith(tail)
                and len(text) > len(head) + len(tail)):
            return reason
    return None


def _template_parts(reason: Reason) -> tuple[str, str]:
    head, _, rest = reason.value.partition("{")
    return head, rest.partition("}")[2]


# Exact ids first: "original_already_captured_or_refunded" is its own reason.
_TEMPLATES = tuple(reason for reason in Reason if "{" in reason.value)


class TransactionState(enum.StrEnum):
    """A transaction record's state in the ledger ({c:PAN}:t:REF, field `state`)."""

    PENDING = "pending"  # an authorization's hold, waiting for its capture
    CAPTURED = "captured"  # posted: a captured authorization, or a sale
    REVERSED = "reversed"  # released (an auth's hold) or taken back (a sale, unrefunded)
    EXPIRED = "expired"  # a hold that lapsed uncaptured
    VOIDED = "voided"  # made by a call the switch answered 91: it did not happen (Ledger.void)
    REPAID = "repaid"  # a repayment (Ledger.repay): posted lowered by its amount; final


# The kind of record a repayment is (switch/lua/repay.lua); authorizations are "auth" and
# sales "sale" (MessageClass).
REPAYMENT_KIND = "repay"


# The state a new transaction starts in, by the message class that makes it.
INITIAL_STATES: Mapping[str, TransactionState] = {
    "auth": TransactionState.PENDING,
    "sale": TransactionState.CAPTURED,
    REPAYMENT_KIND: TransactionState.REPAID,
}

# Every change of state the ledger makes, and the operation that makes it; anything else is
# a bug. Reversed, expired and repaid are final.
TRANSITIONS: Mapping[tuple[TransactionState, TransactionState], str] = {
    (TransactionState.PENDING, TransactionState.CAPTURED): "capture",
    (TransactionState.PENDING, TransactionState.REVERSED): "reversal",
    (TransactionState.CAPTURED, TransactionState.REVERSED): "reversal",  # a sale, unrefunded
    (TransactionState.PENDING, TransactionState.EXPIRED): "expiry",
    # A void takes back the call that made or changed the record: a new record becomes
    # voided; a changed one gets its fields back (a voided record may be decided afresh).
    (TransactionState.PENDING, TransactionState.VOIDED): "void",
    (TransactionState.CAPTURED, TransactionState.VOIDED): "void",
    (TransactionState.CAPTURED, TransactionState.PENDING): "void",  # a capture taken back
    (TransactionState.REVERSED, TransactionState.PENDING): "void",  # a reversal taken back
    (TransactionState.REVERSED, TransactionState.CAPTURED): "void",
    (TransactionState.VOIDED, TransactionState.PENDING): "authorization",  # decided afresh
    (TransactionState.VOIDED, TransactionState.CAPTURED): "authorization",
}

# What an inquiry reports: the state, except that a captured transaction with refunds
# is reported "refunded" (switch/lua/inquiry.lua).
REPORTED_REFUNDED = "refunded"
REPORTED_STATES: frozenset[str] = frozenset(TransactionState) | {REPORTED_REFUNDED}


def may_move(old: str, new: str, operation: str) -> bool:
    return TRANSITIONS.get((old, new)) == operation


class CardStatus(enum.StrEnum):
    ACTIVE = "active"
    INACTIVE = "inactive"
    FROZEN = "frozen"
    RESTRICTED = "restricted"
    LOST = "lost"
    STOLEN = "stolen"
    EXPIRED = "expired"


# What a card that is not active answers (switch/lua/prelude.lua STATUS_DECLINES).
CARD_STATUS_DECLINES: Mapping[CardStatus, tuple[Code, Reason]] = {
    CardStatus.LOST: (Code.LOST_CARD, Reason.CARD_LOST),
    CardStatus.STOLEN: (Code.STOLEN_CARD, Reason.CARD_STOLEN),
    CardStatus.FROZEN: (Code.RESTRICTED_CARD, Reason.CARD_FROZEN),
    CardStatus.RESTRICTED: (Code.RESTRICTED_CARD, Reason.CARD_RESTRICTED),
    CardStatus.INACTIVE: (Code.RESTRICTED_CARD, Reason.CARD_NOT_ACTIVATED),
    CardStatus.EXPIRED: (Code.EXPIRED_CARD, Reason.CARD_EXPIRED),
}


class TokenStatus(enum.StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"
    DELETED = "deleted"
