"""The decision: validate -> rules -> ledger (card checks and balances, atomically in Redis).

Card lookups happen inside the ledger's Lua function so that a decision is one Redis call;
the rule verdict goes into the same call, which still checks the card first, so an unknown
or blocked card is named before a merchant rule.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import random
from collections.abc import Awaitable, Callable

import msgspec

from protocols.codes import Code, Reason
from protocols.messages import (
    CURRENCY_CNY,
    REFERENCING_CLASSES,
    AuthRequest,
    AuthResponse,
    MessageClass,
    decline,
    is_balance_inquiry,
)
from switch import limits
from switch.batches import Batches
from switch.faults import FaultRule, FaultSet
from switch.ledger import Ledger
from switch.pins import entered_hash
from switch.policy import Policy

# The classes whose PIN is checked (the cardholder at the terminal); a PIN sent with a
# completion, reversal or refund (the acquirer's messages) is not read.
PIN_CLASSES = frozenset({MessageClass.AUTH, MessageClass.SALE, MessageClass.INQUIRY})

# Auth ids need to be unlikely to repeat, not secret: a counter from a random start (each
# worker process its own) repeats only after a million approvals.
_auth_ids = itertools.count(random.randrange(1_000_000))


def new_auth_id() -> str:
    return f"{next(_auth_ids) % 1_000_000:06d}"


def malformed(request: AuthRequest) -> AuthResponse | None:
    """A request the ledger cannot even file (no usable card number or ids): answered here."""
    card = request.card
    if not (12 <= len(card) <= 19 and card.isdigit() and card.isascii()):
        return decline(Code.INVALID_CARD, Reason.CARD_NUMBER_MALFORMED)
    if not request.idempotency_key or not request.txn_ref:
        return decline(Code.FORMAT_ERROR, Reason.TRANSACTION_ID_MISSING)
    return None


def unproven(request: AuthRequest) -> AuthResponse | None:
    """A balance inquiry on a card number that does not prove the card: answered here, with
    no balance. Whoever holds a merchant's key could otherwise read any card's open-to-buy
    from its number alone; like a UnionPay balance inquiry (track 2, or the expiry), it
    must carry the card's expiry (JD cardExpiry; F14 or track 2 in F35). A wrong one is the
    ledger's 54 expiry_mismatch, which shows no balance either (switch/lua/prelude.lua)."""
    if is_balance_inquiry(request) and not request.expiry:
        return decline(Code.FORMAT_ERROR, Reason.CARD_PROOF_MISSING)
    return None


def refusal(request: AuthRequest) -> tuple[str, str] | None:
    """A format (30), amount (13) or support (12) problem, as (code, reason), or None.

    Like a rule decline, it is answered by the ledger's function, after the card checks, so
    the answer carries the open-to-buy and a repeat gets the same answer.
    """
    if request.message_class in REFERENCING_CLASSES and not request.original_ref:
        return Code.FORMAT_ERROR, Reason.ORIGINAL_REFERENCE_MISSING
    if request.mcc and not (len(request.mcc) == 4 and request.mcc.isdigit()):
        return Code.FORMAT_ERROR, Reason.MCC_MALFORMED
    if request.message_class in (MessageClass.AUTH, MessageClass.SALE) and not request.mcc:
        return Code.FORMAT_ERROR, Reason.MCC_MISSING
    if request.expiry and not (len(request.expiry) == 4 and request.expiry.isdigit()):
        return Code.FORMAT_ERROR, Reason.EXPIRY_MALFORMED
    if request.currency != CURRENCY_CNY:
        return Code.INVALID_TRANSACTION, Reason.CURRENCY_NOT_SUPPORTED
    if not 0 <= request.amount_fen <= limits.amount_max_fen:
        return Code.INVALID_AMOUNT, Reason.AMOUNT_OUT_OF_RANGE
    # Reversals may name 0 (= the whole original); every other money movement needs an amount.
    needs_amount = request.message_class not in (MessageClass.INQUIRY, MessageClass.REVERSAL)
    if needs_amount and request.amount_fen == 0:
        return Code.INVALID_AMOUNT, Reason.AMOUNT_ZERO
    return None


class Attempt:
    """What the engine submitted for one request (the server's record, to void it if the
    request is answered 91: switch/standin.py). Empty until the ledger call is made."""

    __slots__ = ("pan", "auth_id", "fault_use")

    def __init__(self) -> None:
        self.pan = ""
        self.auth_id = ""
        self.fault_use = ""  # a fault rule's use it took (switch/faults.py give_back)

    def unmade(self) -> Attempt:
        """The same card, but no call to undo (the ledger said it wrote nothing)."""
        bare = Attempt()
        bare.pan = self.pan
        return bare


# A channel whose card reference is not a PAN (x-pay tokens) resolves it first: it returns
# the request with the underlying PAN in `card`, or the answer that ends the decision.
CardResolver = Callable[[AuthRequest], Awaitable[AuthRequest | AuthResponse]]


class Engine:
    def __init__(self, ledger: Ledger, policy: Policy,
                 resolvers: dict[str, CardResolver] | None = None,
                 faults: FaultSet | None = None) -> None:
        self.ledger = ledger
        self.policy = policy
        self.resolvers = resolvers or {}
        self.batches = Batches(ledger.scripts, ledger.clock)  # terminals' settlement
        self.faults = faults or FaultSet()  # the fault rules in force (switch/faults.py)

    async def decide(self, request: AuthRequest, attempt: Attempt | None = None,
                     deadline_s: float | None = None) -> AuthResponse:
        """`deadline_s`: the request's local deadline (Ledger.deadline), taken before a card
        resolver's own round trip so the ledger call's fence still falls before it."""
        resolver = self.resolvers.get(request.channel)
        if deadline_s is None and (resolver is not None or request.pin):
            deadline_s = self.ledger.deadline()
        if resolver is not None:
            resolved = await resolver(request)
            if isinstance(resolved, AuthResponse):
                return resolved
            request = resolved
        pin_hash = ""
        if request.pin and request.message_class in PIN_CLASSES and malformed(request) is None:
            pin_hash = await entered_hash(self.ledger.client, request.card, request.pin)
        if self.faults.rules:  # matched on the card number, not its token
            candidates = self.faults.matching(request)
            if candidates:
                return await self._faulted(request, attempt, deadline_s, candidates, pin_hash)
        outcome = self._judge(request, attempt, deadline_s, pin_hash)
        return outcome if isinstance(outcome, AuthResponse) else await outcome

    def start(self, request: AuthRequest, attempt: Attempt | None = None
              ) -> AuthResponse | asyncio.Future[AuthResponse]:
        """`decide` for the server's hot path: the answer now, or its future. Only a channel
        with a card resolver costs a task; the rest is a callback on the ledger's future.
        `attempt` is filled in with what the ledger call carries. A PIN costs a task too:
        its hash is made off the loop (switch/pins.py)."""
        if request.channel in self.resolvers or request.pin:
            return asyncio.ensure_future(self.decide(request, attempt, self.ledger.deadline()))
        if self.faults.rules:  # no rules: this one test is all a request pays
            candidates = self.faults.matching(request)
            if candidates:
                return asyncio.ensure_future(self._faulted(request, attempt,
                                                           self.ledger.deadline(), candidates))
        return self._judge(request, attempt)

    async def _faulted(self, request: AuthRequest, attempt: Attempt | None,
                       deadline_s: float | None, candidates: list[FaultRule],
                       pin_hash: str = "") -> AuthResponse:
        """A request some fault rules match: the first that acts on it (its use counted in
        Redis) has the ledger's call carry out its outcome; closing needs no call. A use the
        call did not spend on the rule's answer (a repeat got its first answer, the call was
        refused) is given back at once, off the answer's path; one whose call gets no answer
        in time goes with the request's void (`attempt.fault_use`, switch/forwarder.py)."""
        if deadline_s is None:
            deadline_s = self.ledger.deadline()
        rule, use = await self.faults.pick(self.ledger, candidates, request,
                                           deadline_s - self.ledger.fence_guard_s)
        if rule is not None and rule.close:
            return rule.closing()
        if attempt is not None:
            attempt.fault_use = use
        outcome = self._judge(request, attempt, deadline_s, pin_hash,
                              rule.outcome() if rule else "")
        response = outcome if isinstance(outcome, AuthResponse) else await outcome
        if rule is not None and response.forced == "rule":
            response.forced = f"rule:{rule.id}"
        elif use:  # never awaited: the answer stands whatever Redis does with it
            self.faults.give_back(self.ledger, use, request.idempotency_key)
            if attempt is not None:
                attempt.fault_use = ""
        return response

    def _judge(self, request: AuthRequest, attempt: Attempt | None = None,
               deadline_s: float | None = None, pin_hash: str = "", fault: str = ""
               ) -> AuthResponse | asyncio.Future[AuthResponse]:
        problem = malformed(request)
        if problem is None and request.channel not in self.resolvers:
            problem = unproven(request)  # a resolved token proved its card (x-pay cryptogram)
        if problem is not None:
            return problem
        problem = refusal(request)
        if problem is not None:  # the policy's cache assumes a sound request
            if problem[1] == Reason.EXPIRY_MALFORMED:
                # Not the card's expiry by its form: the ledger's card check must not compare
                # it, or the answer would name a mismatch (54) instead of the format error.
                request = msgspec.structs.replace(request, expiry="")
            return self.ledger.submit(request, auth_id="", rule_decline=problem,
                                      terms=self.policy.base_terms, deadline_s=deadline_s,
                                      fault=fault)
        verdict = self.policy.judge(request)
        auth_id = new_auth_id()
        if attempt is not None:
            attempt.pan, attempt.auth_id = request.card, auth_id
        decided = self.ledger.submit(
            request,
            auth_id=auth_id,
            rule_decline=verdict.decline,
            beans_per_yuan=verdict.beans_per_yuan,
            terms=verdict.terms,
            deadline_s=deadline_s,
            pin_hash=pin_hash, fault=fault,
        )
        if request.batch:  # a terminal's batch counts its approval (switch/batches.py)
            decided.add_done_callback(functools.partial(self.batches.note, request))
        return decided
