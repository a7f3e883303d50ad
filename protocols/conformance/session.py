"""One conformance run: every message an adapter sent, its answer, and what is wrong with it.

A channel's rules (iso_rules.py, jd_rules.py) read one message on its own: its kind, its ids,
the original it names, its amount, and every finding about its fields. The session checks
each message against the ones before it, alike on every channel: an id used again is an
exact repeat or a fault, a transaction number is not reused, a completion, reversal or
refund names an original this adapter sent and stays within its amount. Sans-IO: the caller
gives the bytes, the answers and the time.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from protocols.cardnumbers import mask_card_numbers_in
from protocols.codes import APPROVING, MEANINGS, Code
from protocols.messages import MessageClass

NETWORK = "network"  # network management (0800): sign-on, echo test
UNKNOWN = "unknown"  # a message whose kind cannot be read
SETTLEMENT = "settlement"  # a terminal's batch settlement (0500)
UPLOAD = "batch upload"  # one transaction of a batch, uploaded (0320)
SIGN_ON = "sign-on"  # where a finding about the terminal's session goes

# Answers that say the adapter's message was at fault (not a decision about the card).
ADAPTER_FAULTS = frozenset({Code.INVALID_MERCHANT, Code.INVALID_TRANSACTION,
                            Code.INVALID_AMOUNT, Code.ORIGINAL_NOT_FOUND, Code.FORMAT_ERROR,
                            Code.NOT_PERMITTED_ON_TERMINAL, Code.SECURITY_VIOLATION,
                            Code.DUPLICATE, Code.MAC_FAILURE})
# How far a message's own clock may be from the kit's: a time zone either way (ISO 8583 F7
# is GMT, many terminals send local time, Beijing is UTC+8) and an hour of drift.
CLOCK_SKEW_MAX_S = 15 * 3600
# Which kind of original each referencing kind must name.
ORIGINAL_KINDS = {
    MessageClass.CAPTURE: (MessageClass.AUTH,),
    MessageClass.REVERSAL: (MessageClass.AUTH, MessageClass.SALE),
    MessageClass.REFUND: (MessageClass.SALE, MessageClass.CAPTURE, MessageClass.AUTH),
}
# Kinds whose amount may not exceed their original's.
WITHIN_ORIGINAL = (MessageClass.CAPTURE, MessageClass.REFUND, MessageClass.REVERSAL)


class Finding(NamedTuple):
    """One thing wrong with a message: where, what the spec asks, what came."""

    field: str
    expected: str
    got: str

    def __str__(self) -> str:
        return f"{self.field}: expected {self.expected}, got {self.got}"


@dataclass
class Reading:
    """What a channel's rules read in one request."""

    kind: str  # a MessageClass value, NETWORK or UNKNOWN
    label: str  # how the message is named in a line: "0200 sale STAN 000123"
    findings: list[Finding] = field(default_factory=list)
    card: str = ""  # masked
    id: str = ""  # the message's id in its channel's scope ("" when unreadable)
    txn: str = ""  # the transaction it is (how later messages name it)
    original: str = ""  # the txn of the original it names
    original_label: str = ""  # that original as the adapter wrote it: "F90 STAN 000999"
    original_field: str = ""  # where it names it: "F90", "originalTradeNum"
    amount_fen: int | None = None
    amount_field: str = ""
    whole_reversal: bool = False  # a reversal of all: its amount, when sent, is the original's
    balance: bool = False  # an inquiry of the card's balance (not of an order's state)
    content: dict[str, Any] = field(default_factory=dict)  # what a repeat carries unchanged
    exact: bool = True  # a repeat must be these very bytes (False: an 0xx1 repeat MTI)
    action: str = ""  # network management: sign-on, key change, sign-off, network (echo)
    signed_on: bool = False  # sent by a terminal whose sign-on had been answered 00


class Answered(NamedTuple):
    code: str  # ISO 8583 F39 (JD: isoCode)
    reason: str
    content: dict[str, Any]  # what a repeat's answer carries unchanged
    fault_field: str = "answer"  # where a refusal places the fault (the MAC, the signature)
    fault_expected: str = "a message the switch accepts"


class Rules(Protocol):
    """A channel's reading of its messages; one object per session (it may keep state)."""

    def read(self, body: bytes, now: datetime.datetime) -> Reading: ...

    def answer(self, body: bytes) -> Answered: ...


@dataclass
class Exchange:
    seq: int
    body: bytes
    reading: Reading
    answer: Answered | None = None
    repeat_of: Exchange | None = None
    original: Exchange | None = None  # the earlier message it names, when found
    original_unanswered: bool = False  # the original had no answer when this one came

    @property
    def findings(self) -> list[Finding]:
        return self.reading.findings

    @property
    def kind(self) -> str:
        return self.reading.kind

    @property
    def approved(self) -> bool:
        return self.answer is not None and self.answer.code in APPROVING


class Session:
    def __init__(self, rules: Rules) -> None:
        self.rules = rules
        self.exchanges: list[Exchange] = []
        self.by_id: dict[str, Exchange] = {}
        self.by_txn: dict[str, Exchange] = {}

    def request(self, body: bytes, now: datetime.datetime) -> Exchange:
        exchange = Exchange(len(self.exchanges) + 1, body, self.rules.read(body, now))
        self.exchanges.append(exchange)
        reading = exchange.reading
        # What came is shown as it came, but never a card number in full.
        reading.findings[:] = [finding._replace(got=mask_card_numbers_in(finding.got))
                               for finding in reading.findings]
        if reading.id and reading.id in self.by_id:
            self._again(exchange, self.by_id[reading.id])
            return exchange
        if reading.id:
            self.by_id[reading.id] = exchange
        if reading.original:
            self._names_original(exchange)
        if reading.txn and reading.kind != MessageClass.REVERSAL:
            earlier = self.by_txn.get(reading.txn)
            if earlier is not None:
                reading.findings.append(Finding(
                    "id", "a new transaction number for a new transaction",
                    f"{reading.label}: its number is #{earlier.seq}'s ({earlier.reading.label})"))
            self.by_txn[reading.txn] = exchange
        return exchange

    def answered(self, exchange: Exchange, body: bytes) -> None:
        exchange.answer = answer = self.rules.answer(body)
        first = exchange.repeat_of
        if first is not None and first.answer is not None and not exchange.findings:
            changed = differing(first.answer.content, answer.content)
            if changed:
                exchange.findings.append(Finding(
                    "answer", f"#{first.seq}'s answer again", f"{', '.join(changed)} changed"))
        if answer.code in ADAPTER_FAULTS and not exchange.findings and not self._excused(
                exchange):
            words = MEANINGS.get(answer.code, "")
            got = " ".join(part for part in (answer.code, answer.reason) if part)
            exchange.findings.append(Finding(answer.fault_field, answer.fault_expected,
                                             f"{got} ({words})" if words else got))

    def _again(self, exchange: Exchange, first: Exchange) -> None:
        """The id of an earlier message: an exact repeat, or an id reused for other content."""
        exchange.repeat_of = first
        reading = exchange.reading
        changed = differing(first.reading.content, reading.content)
        if changed:
            reading.findings.append(Finding(
                "repeat", f"#{first.seq} again unchanged (or a new id for a new message)",
                f"{', '.join(changed)} changed"))
        elif reading.exact and first.reading.exact and exchange.body != first.body:
            reading.findings.append(Finding(
                "repeat", f"#{first.seq}'s bytes again", "the same fields in other bytes"))

    def _names_original(self, exchange: Exchange) -> None:
        reading = exchange.reading
        original = self.by_txn.get(reading.original)
        if original is None:
            reading.findings.append(Finding(
                reading.original_field, "a transaction this adapter sent in this run",
                f"{reading.original_label}, never sent"))
            return
        exchange.original = original
        exchange.original_unanswered = original.answer is None
        kinds = ORIGINAL_KINDS.get(reading.kind, ())
        if kinds and original.kind not in kinds:
            reading.findings.append(Finding(
                reading.original_field, f"the {' or '.join(kinds)} this {reading.kind} is for",
                f"#{original.seq}, a {original.kind}"))
        self._within(exchange, original)

    def _within(self, exchange: Exchange, original: Exchange) -> None:
        reading, first = exchange.reading, original.reading
        if reading.kind not in WITHIN_ORIGINAL or reading.amount_fen is None or (
                first.amount_fen is None):
            return
        if reading.whole_reversal and reading.amount_fen not in (0, first.amount_fen):
            reading.findings.append(Finding(
                reading.amount_field, f"{first.amount_fen} (#{original.seq}'s amount)",
                str(reading.amount_fen)))
        elif reading.amount_fen > first.amount_fen:
            reading.findings.append(Finding(
                reading.amount_field, f"at most {first.amount_fen} (#{original.seq}'s amount)",
                str(reading.amount_fen)))

    def _excused(self, exchange: Exchange) -> bool:
        """25 to a reversal of an original that never reached the books (unanswered, 91,
        refused) is what the issuer must say: not the adapter's fault."""
        original = exchange.original
        return (exchange.answer.code == Code.ORIGINAL_NOT_FOUND and original is not None
                and not original.approved)


def differing(first: dict[str, Any], again: dict[str, Any]) -> list[str]:
    """The names of the fields that differ: F4 for ISO 8583 field 4, MTI, or a JSON name."""
    return [f"F{name}" if name.isdigit() else "MTI" if name == "t" else name
            for name in sorted(first.keys() | again.keys(), key=field_order)
            if first.get(name) != again.get(name)]


def field_order(name: str) -> tuple[int, str]:
    return (int(name), "") if name.isdigit() else (1000, name)


def clock_finding(name: str, text: str, layout: str, now: datetime.datetime,
                  years: tuple[int, ...] = ()) -> Finding | None:
    """A finding when `text` (in `layout`, strptime's) is no time, or is further from `now`
    (UTC) than CLOCK_SKEW_MAX_S. `years`: the candidates when the layout has none (F7 is
    MMDDhhmmss): the nearest counts."""
    expected = f"a time {layout_words(layout)} within {CLOCK_SKEW_MAX_S // 3600} h of now"
    candidates = [f"{year:04d}{text}" for year in years] if years else [text]
    layout = "%Y" + layout if years else layout
    times = []
    for candidate in candidates:
        try:
            times.append(datetime.datetime.strptime(candidate, layout).replace(
                tzinfo=datetime.UTC))
        except ValueError:
            continue
    if not times:
        return Finding(name, expected, repr(text))
    nearest = min(abs((moment - now).total_seconds()) for moment in times)
    if nearest > CLOCK_SKEW_MAX_S:
        return Finding(name, expected, f"{text} ({nearest / 3600:.0f} h away)")
    return None


def layout_words(layout: str) -> str:
    for code, word in (("%Y", "yyyy"), ("%m", "MM"), ("%d", "dd"), ("%H", "HH"), ("%M", "mm"),
                       ("%S", "ss")):
        layout = layout.replace(code, word)
    return layout


def around(now: datetime.datetime) -> tuple[int, ...]:
    """The years a yearless date may be in (a terminal's F7 just before or after new year)."""
    return (now.year - 1, now.year, now.year + 1)
