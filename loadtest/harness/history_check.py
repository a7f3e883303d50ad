"""The history check of `loadtest chaos`: what the clients were answered against what the
ledger holds. Pure: the harness reads both (chaos.py) and hands them here.

Each request names the ledger record it makes or changes (`ref`: its own txn_ref for a sale
or an authorization, its original's for a capture, reversal or refund), with the last
answer its client saw. Three kinds of finding, each of which must stay at zero:
- lost: an approval the client saw that the ledger does not hold with its amount (a sale
  or authorization whose record is missing or differs in amount or auth id; a capture,
  reversal or refund whose effect on its original's record is missing);
- doubled: one request with more than one effect (a record shows a capture, reversal or
  refund more than once), or a card whose balances exceed what the approvals its clients
  saw add up to, where no record explains it;
- invented: an effect no client saw approved (a record, or a capture, reversal or refund
  on one, with no approval seen for it; a stand-in answer counts when its client saw it).
A voided record (the switch took back a call it had answered 91) is no effect.
"""

from __future__ import annotations

from collections import defaultdict
from typing import NamedTuple

from loadtest.generator.history import Answer
from protocols.cardnumbers import mask_pan
from protocols.codes import TransactionState
from switch.ledger import Transaction as Record

OPENING = ("sale", "auth")  # message classes that make a record
FOLLOWING = ("capture", "reversal", "refund")  # ... and that change one
EXAMPLES_KEPT_MAX = 20  # findings listed in full in the report; the counts cover the rest


class Request(NamedTuple):
    key: str  # channel and correlation id: how the report names it
    card: str  # PAN
    message_class: str
    ref: str  # the ledger record it makes (sale, auth) or changes (capture, reversal, refund)
    answer: Answer | None  # the answer that stands (history.Entry.last); None: never answered
    sent_s: float | None = None  # when it first went out, in seconds of the run


class Card(NamedTuple):
    posted: int
    held: int
    pending_credit: int
    records: dict[str, Record]  # by ref: every record of the card


class Finding(NamedTuple):
    kind: str  # lost, doubled, invented
    card: str  # masked
    ref: str
    detail: str


class Findings(NamedTuple):
    lost: int
    doubled: int
    invented: int
    examples: list[Finding]

    @property
    def clean(self) -> bool:
        return not (self.lost or self.doubled or self.invented)


class _Expected(NamedTuple):
    """A record's money as the approvals seen make it: net posted (posted - refunded), held."""

    net: int
    held: int


def check(requests: list[Request], cards: dict[str, Card]) -> Findings:
    found: list[Finding] = []
    by_record: dict[tuple[str, str], list[Request]] = defaultdict(list)
    for request in requests:
        if request.message_class in OPENING or request.message_class in FOLLOWING:
            by_record[request.card, request.ref].append(request)
    expected: dict[str, list[_Expected]] = defaultdict(list)
    troubled: set[str] = set()  # cards with a finding on a record
    for (pan, ref), touching in by_record.items():
        record = _effective(cards.get(pan, Card(0, 0, 0, {})).records.get(ref))
        before = len(found)
        expected[pan].append(_check_record(pan, ref, touching, record, found))
        if len(found) > before:
            troubled.add(pan)
    for pan, card in cards.items():
        for ref, record in card.records.items():
            if (pan, ref) not in by_record and _effective(record) is not None:
                troubled.add(pan)
                found.append(Finding("invented", mask_pan(pan), ref,
                                     f"a {record.kind} of {record.amount} fen no request made"))
        if pan not in troubled:
            _check_card(pan, card, expected[pan], found)
    counts = {kind: sum(1 for f in found if f.kind == kind)
              for kind in ("lost", "doubled", "invented")}
    return Findings(**counts, examples=found[:EXAMPLES_KEPT_MAX])


def _effective(record: Record | None) -> Record | None:
    """The record, or None when it had no effect: a voided one (Ledger.void took back a call
    the switch had answered 91) stays as a trace with nothing held or posted."""
    if record is None or record.state == TransactionState.VOIDED:
        return None
    return record


def _approved(requests: list[Request], classes: tuple[str, ...]) -> list[Request]:
    return [r for r in requests
            if r.message_class in classes and r.answer is not None and r.answer.approved]


def _check_record(pan: str, ref: str, touching: list[Request], record: Record | None,
                  found: list[Finding]) -> _Expected:
    card = mask_pan(pan)
    openers = _approved(touching, OPENING)
    follows = _approved(touching, FOLLOWING)
    if record is None:
        for request in openers + follows:
            found.append(Finding("lost", card, ref, f"{request.message_class} {request.key} "
                                 f"approved {request.answer.approved_fen} fen, no record"))
        return _Expected(0, 0)
    if not openers:
        found.append(Finding("invented", card, ref, f"a {record.kind} of {record.amount} fen "
                             f"that no client saw approved ({_answers(touching, OPENING)})"))
    for opener in openers[:1]:
        answer = opener.answer
        if (record.kind, record.amount, record.auth_id) != (
                opener.message_class, answer.approved_fen, answer.auth_id):
            found.append(Finding("lost", card, ref, f"{opener.message_class} {opener.key} "
                                 f"approved {answer.approved_fen} fen (auth {answer.auth_id}); "
                                 f"the record: {record.kind} of {record.amount} fen "
                                 f"(auth {record.auth_id})"))
    for extra in openers[1:]:
        found.append(Finding("doubled", card, ref, f"{extra.message_class} {extra.key} is a "
                             "second approval of one record"))
    base = openers[0].answer.approved_fen if openers else record.amount
    seen = _seen(base, follows)
    applied = _applied(record)
    for message_class in FOLLOWING:
        in_ledger = applied.get(message_class)
        if in_ledger is not None:
            _match(card, ref, message_class, seen[message_class], in_ledger, touching, found)
    return _expected(record.kind, openers, seen)


def _seen(base: int, follows: list[Request]) -> dict[str, list[int]]:
    """The fen of the following approvals seen, by class. A reversal approved with no
    amount reverses all that remained (an ISO 8583 answer echoes the request's F4, and a
    whole reversal sends none): it counts as what `base` (the opener's approval, else the
    record's amount) left after the partial reversals."""
    seen = {message_class: [r.answer.approved_fen for r in follows
                            if r.message_class == message_class and r.answer.approved_fen]
            for message_class in FOLLOWING}
    whole = any(r.message_class == "reversal" and not r.answer.approved_fen for r in follows)
    if whole:
        seen["reversal"].append(base - sum(seen["reversal"]))
    return seen


def _answers(requests: list[Request], classes: tuple[str, ...]) -> str:
    """What the clients were answered, for a finding: 'answered 91', 'no answer', ..."""
    said = [(f"answered {r.answer.code}" if r.answer else "no answer")
            + (f", sent at {r.sent_s:.1f} s" if r.sent_s is not None else "")
            for r in requests if r.message_class in classes]
    return ", ".join(said) or "no such request"


def _applied(record: Record) -> dict[str, int]:
    """The fen each following class has moved on this record, where the record tells."""
    if record.kind == "sale":
        return {"capture": 0, "reversal": record.amount - record.posted,
                "refund": record.refunded}
    if record.state == "captured":  # the hold's reversals before the capture are gone
        return {"capture": record.posted, "refund": record.refunded}
    if record.state == "expired":
        return {"capture": 0, "refund": 0}
    return {"capture": 0, "reversal": record.amount - record.hold, "refund": 0}


def _match(card: str, ref: str, message_class: str, seen: list[int], in_ledger: int,
           touching: list[Request], found: list[Finding]) -> None:
    """Each approval seen must be in the ledger's total once; what is left over is an
    approval applied twice (when one seen fits in it) or an invented one."""
    left = in_ledger
    for amount in seen:
        if amount <= left:
            left -= amount
        else:
            found.append(Finding("lost", card, ref, f"a {message_class} of {amount} fen seen "
                                 "approved is not on the record"))
    if left > 0:
        kind = "doubled" if any(0 < amount <= left for amount in seen) else "invented"
        found.append(Finding(kind, card, ref, f"{left} fen of {message_class} on the record "
                             f"beyond the approvals seen ({_answers(touching, (message_class,))})"))


def _expected(kind: str, openers: list[Request], seen: dict[str, list[int]]) -> _Expected:
    if not openers:
        return _Expected(0, 0)
    amount = openers[0].answer.approved_fen
    refunded, reversed_ = sum(seen["refund"]), sum(seen["reversal"])
    if kind == "sale":
        return _Expected(amount - reversed_ - refunded, 0)
    if seen["capture"]:
        return _Expected(sum(seen["capture"]) - refunded, 0)
    return _Expected(-refunded, amount - reversed_)


def _check_card(pan: str, card: Card, expected: list[_Expected], found: list[Finding]) -> None:
    """The card's balances against what the approvals seen add up to (called where no
    finding on its records already explains a difference)."""
    masked = mask_pan(pan)
    net = sum(e.net for e in expected)
    held = sum(e.held for e in expected)
    for name, in_ledger, seen in (("net posted", card.posted - card.pending_credit, net),
                                  ("held", card.held, held)):
        if in_ledger > seen:
            found.append(Finding("doubled", masked, "", f"{name} {in_ledger} fen, the "
                                 f"approvals seen add up to {seen} fen"))
        elif in_ledger < seen:
            found.append(Finding("lost", masked, "", f"{name} {in_ledger} fen, the approvals "
                                 f"seen add up to {seen} fen"))
