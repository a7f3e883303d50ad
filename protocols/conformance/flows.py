"""The message flows an adapter must exercise, per channel: data, one entry a flow.

A flow names its member messages (whose findings fail it) and the message that completes one
instance of it (its recogniser). It passes when at least one instance completed and none of
its members has a finding. A new flow (sign-on, batch settlement) is one more `Flow` in
REQUIRED: a name, the words of the report, two predicates over an `Exchange`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from protocols.codes import Code
from protocols.conformance.session import Exchange
from protocols.messages import MessageClass

Predicate = Callable[[Exchange], bool]


class Flow(NamedTuple):
    name: str  # the JUnit testcase's name
    title: str  # what it is, in the report
    how: str  # how an adapter exercises it (shown while it is missing)
    member: Predicate  # a message of this flow: its findings fail the flow
    completes: Predicate  # a message that completes one instance of it


class Outcome(NamedTuple):
    flow: Flow
    completed: list[Exchange]
    faulty: list[Exchange]  # members with findings

    @property
    def passed(self) -> bool:
        return bool(self.completed) and not self.faulty

    def reasons(self) -> list[str]:
        """One line per finding of a faulty member, or why the flow is missing."""
        lines = [f"#{exchange.seq} {exchange.reading.label}: {finding}"
                 for exchange in self.faulty for finding in exchange.findings]
        if not self.completed:
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

COMMON = (SALE, PRE_AUTH, REVERSAL, REPEAT, REFUND, INQUIRY)
# Channel -> its required flows. ISO sign-on (0800 with key exchange) and batch settlement
# (0500/0320) join pos and xpay here, one entry each, when the listener takes them.
# WeChat Pay has no pre-authorization and no balance inquiry (orderquery asks an order's
# state): its flows are the rest.
REQUIRED: dict[str, tuple[Flow, ...]] = {"pos": COMMON, "xpay": COMMON, "jd": COMMON,
                                         "wechat": (SALE, REVERSAL, REPEAT, REFUND)}


def outcomes(channel: str, exchanges: list[Exchange]) -> list[Outcome]:
    return [Outcome(flow, [e for e in exchanges if flow.completes(e)],
                    [e for e in exchanges if flow.member(e) and e.findings])
            for flow in REQUIRED[channel]]


def others(channel: str, exchanges: list[Exchange]) -> list[Exchange]:
    """Messages with findings that belong to no required flow (undecodable, network)."""
    flows = REQUIRED[channel]
    return [e for e in exchanges if e.findings and not any(f.member(e) for f in flows)]


def all_passed(channel: str, exchanges: list[Exchange]) -> bool:
    return all(outcome.passed for outcome in outcomes(channel, exchanges)) and not others(
        channel, exchanges)

