"""The message flows an adapter must exercise, per channel: data, one entry a flow.

A flow names its member messages (whose findings fail it) and the message that completes one
instance of it (its recogniser). It passes when at least one instance completed and none of
its members has a finding. A new flow is one more `Flow` in REQUIRED: a name, the words of
the report, two predicates over an `Exchange` (and, optionally, what an instance left
unfinished says while the flow has not passed).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from protocols.codes import Code, Reason
from protocols.conformance.session import NETWORK, SETTLEMENT, SIGN_ON, UPLOAD, Exchange
from protocols.messages import MessageClass

Predicate = Callable[[Exchange], bool]
Unfinished = Callable[[Exchange], str]  # why an instance this message began is unfinished


class Flow(NamedTuple):
    name: str  # the JUnit testcase's name
    title: str  # what it is, in the report
    how: str  # how an adapter exercises it (shown while it is missing)
    member: Predicate  # a message of this flow: its findings fail the flow
    completes: Predicate  # a message that completes one instance of it
    unfinished: Unfinished | None = None


class Outcome(NamedTuple):
    flow: Flow
    completed: list[Exchange]
    faulty: list[Exchange]  # members with findings
    unfinished: list[str]  # what instances left unfinished, while none completed

    @property
    def passed(self) -> bool:
        return bool(self.completed) and not self.faulty

    def reasons(self) -> list[str]:
        """One line per finding of a faulty member, or why the flow is missing."""
        lines = [f"#{exchange.seq} {exchange.reading.label}: {finding}"
                 for exchange in self.faulty for finding in exchange.findings]
        if not self.completed:
            lines += self.unfinished
            lines.append(f"not exercised: {self.flow.how}")
        return lines


def of_kind(*kinds: MessageClass) -> Predicate:
    return lambda exchange: exchange.kind in kinds and exchange.repeat_of is None


def clean(exchange: Exchange) -> bool:
    return not exchange.findings and exchange.approved


def sale_done(exchange: Exchange) -> bool:
    return exchange.kind == MessageClass.SALE and exchange.repeat_of is None and clean(exchange)


def completion_done(exchange: Exchange) -> bool:
    original = exchange.original
    return (exchange.kind == MessageClass.CAPTURE and clean(exchange) and original is not None
            and original.kind == MessageClass.AUTH and clean(original))


def reversal_of_unanswered(exchange: Exchange) -> bool:
    """A reversal of an original whose answer the adapter had not had when it reversed:
    still unanswered (late, or never answered), or answered 91 (no decision in time)."""
    original = exchange.original
    if exchange.kind != MessageClass.REVERSAL or original is None or exchange.findings:
        return False
    timed_out = exchange.original_unanswered or (
        original.answer is not None and original.answer.code == Code.ISSUER_UNAVAILABLE)
    answered = exchange.answer is not None and (
        exchange.approved or exchange.answer.code == Code.ORIGINAL_NOT_FOUND)
    return timed_out and answered


def is_repeat(exchange: Exchange) -> bool:
    return exchange.repeat_of is not None


def repeat_done(exchange: Exchange) -> bool:
    """An exact resend answered as the first was (its findings say when it was not)."""
    first = exchange.repeat_of
    return (first is not None and not exchange.findings and exchange.answer is not None
            and first.answer is not None)


def refund_done(exchange: Exchange) -> bool:
    original = exchange.original
    return (exchange.kind == MessageClass.REFUND and clean(exchange) and original is not None
            and original.approved)


def is_balance_inquiry(exchange: Exchange) -> bool:
    return exchange.kind == MessageClass.INQUIRY and exchange.reading.balance and (
        exchange.repeat_of is None)


def inquiry_done(exchange: Exchange) -> bool:
    return is_balance_inquiry(exchange) and clean(exchange)


MONEY = frozenset(MessageClass) | {SETTLEMENT, UPLOAD}  # what a terminal MACs with its MAK


def is_session_member(exchange: Exchange) -> bool:
    """A sign-on, key change or sign-off, or money the terminal sent outside its session."""
    return (exchange.kind == NETWORK and exchange.reading.action not in ("", "network")) or any(
        finding.field == SIGN_ON for finding in exchange.findings)


def signed_on_money(exchange: Exchange) -> bool:
    """Money after a sign-on answered 00, approved: MAC'd under the session MAK (the switch
    refuses the master key then, A0 not_signed_on)."""
    return exchange.kind in MONEY and exchange.reading.signed_on and (
        exchange.repeat_of is None) and not exchange.findings and exchange.answer is not None and (
        exchange.answer.reason != Reason.NOT_SIGNED_ON) and (exchange.approved or (
        exchange.kind == SETTLEMENT and exchange.answer.code == Code.RECONCILIATION_ERROR))


def settled(exchange: Exchange) -> bool:
    """A settlement answered 00: the totals agreed (at once, or after an upload)."""
    return exchange.kind == SETTLEMENT and clean(exchange)


def not_settled(exchange: Exchange) -> str:
    answer = exchange.answer
    if exchange.kind != SETTLEMENT or answer is None or answer.code != (
            Code.RECONCILIATION_ERROR):
        return ""
    return (f"#{exchange.seq} {exchange.reading.label}: answered {answer.code} {answer.reason}, "
            "and no upload (0320) and settlement after upload (0500, 60.3 202) answered 00 "
            "followed")


SALE = Flow("sale", "sale", "send a purchase the switch approves",
            of_kind(MessageClass.SALE), sale_done)
PRE_AUTH = Flow("pre_auth_completion", "pre-authorization + completion",
                "send a pre-authorization, then its completion naming it",
                of_kind(MessageClass.AUTH, MessageClass.CAPTURE), completion_done)
REVERSAL = Flow("reversal_after_timeout", "reversal after a timeout",
                "send a request, and its reversal before you have its answer (your timeout)",
                of_kind(MessageClass.REVERSAL), reversal_of_unanswered)
REPEAT = Flow("repeat", "repeat (exact resend, same answer)",
              "send a request again, byte for byte, under the same id", is_repeat, repeat_done)
REFUND = Flow("refund", "refund", "refund (part of) an approved purchase, naming it",
              of_kind(MessageClass.REFUND), refund_done)
INQUIRY = Flow("balance_inquiry", "balance inquiry with card proof",
               "ask a card's balance, proving the card (its expiry)", is_balance_inquiry,
               inquiry_done)

SIGN_ON_FLOW = Flow("sign_on", "sign-on + session MAK",
                    "sign on (0800, network code 001), then send money MAC'd under the MAK "
                    "of the answer's F62", is_session_member, signed_on_money)
BATCH = Flow("batch_settlement", "batch settlement",
             "settle a batch (0500, 60.3 201) with totals the switch agrees with, or, "
             "answered 95, upload it (0320) and settle after upload (60.3 202)",
             of_kind(SETTLEMENT, UPLOAD), settled, not_settled)

COMMON = (SALE, PRE_AUTH, REVERSAL, REPEAT, REFUND, INQUIRY)
# Channel -> its required flows. A UnionPay terminal signs on and settles its batches; an
# x-pay wallet does neither. WeChat Pay has no pre-authorization and no balance inquiry
# (orderquery asks an order's state): its flows are the rest.
REQUIRED: dict[str, tuple[Flow, ...]] = {"pos": (SIGN_ON_FLOW, *COMMON, BATCH),
                                         "xpay": COMMON, "jd": COMMON,
                                         "wechat": (SALE, REVERSAL, REPEAT, REFUND)}


def outcomes(channel: str, exchanges: list[Exchange]) -> list[Outcome]:
    return [Outcome(flow, completed, [e for e in exchanges if flow.member(e) and e.findings],
                    [] if completed or flow.unfinished is None else
                    [words for e in exchanges if (words := flow.unfinished(e))])
            for flow in REQUIRED[channel]
            for completed in ([e for e in exchanges if flow.completes(e)],)]


def others(channel: str, exchanges: list[Exchange]) -> list[Exchange]:
    """Messages with findings that belong to no required flow (undecodable, network)."""
    flows = REQUIRED[channel]
    return [e for e in exchanges if e.findings and not any(f.member(e) for f in flows)]


def all_passed(channel: str, exchanges: list[Exchange]) -> bool:
    return all(outcome.passed for outcome in outcomes(channel, exchanges)) and not others(
        channel, exchanges)

