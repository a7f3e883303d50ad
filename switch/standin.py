"""Stand-in processing: what the switch answers when its ledger cannot (Redis unreachable, or
a ledger call that missed its deadline), and what it records to put the books right later.

Like a card network's stand-in (STIP), the switch decides alone within limits the issuer set
(the policy's `[stand_in]`): authorizations and sales only, the policy's static rules (message
classes, blocked categories, per-transaction caps: the same `Policy.judge` as online), the
card's status as last seen, a per-transaction and a per-card stand-in limit. Every stand-in
answer is marked as such on its channel. An approval is journaled (switch/journal.py) as an
advice before it is answered; the forwarder (switch/forwarder.py) posts it when Redis is back.

Whether or not stand-in is on, a request answered 91 (or in stand-in) whose ledger call was
made gets a void in the journal, before its answer goes out: the call may still have run
(its reply lost or late), and the forwarder undoes it (`Ledger.void`) before posting that
request's stand-in advice. So a request answered 91 never changes the books.

The card status cache: statuses learnt from the ledger's own answers (an approval: active;
a status decline: that status; an unknown card: forgotten), for the cards that passed this
process. It is as stale as the last answer on the card: a card blocked with `switch card set`
since is still seen active until the ledger answers for it again. A card this process never
saw is not stood in (91): the switch cannot tell whether it exists.
"""

from __future__ import annotations

import asyncio
import logging
import secrets

import msgspec

from protocols.codes import CARD_STATUS_DECLINES, CardStatus, Code, Reason
from protocols.messages import AuthRequest, AuthResponse, MessageClass, decline
from switch import limits
from switch.clock import Clock, SystemClock, month_of
from switch.engine import Attempt, new_auth_id, refusal
from switch.journal import Advice, Journal, JournalFull, Record, Void
from switch.policy import Policy

log = logging.getLogger("switch.standin")

STOOD_IN_CLASSES = frozenset({MessageClass.AUTH, MessageClass.SALE})
STATUS_OF_REASON = {reason: status for status, (_, reason) in CARD_STATUS_DECLINES.items()}


class CardStatuses:
    """Card number -> status, from the ledger's answers; bounded (oldest forgotten first)."""

    def __init__(self, size_max: int = limits.stand_in_cards_cached_max) -> None:
        self.size_max = size_max
        self.statuses: dict[str, str] = {}

    def note(self, pan: str, response: AuthResponse) -> None:
        if response.stand_in or response.repeat:  # not the ledger's word of now
            return
        if response.approved:
            status = CardStatus.ACTIVE
        elif response.reason in STATUS_OF_REASON:
            status = STATUS_OF_REASON[response.reason]
        elif response.reason == Reason.CARD_UNKNOWN:
            self.statuses.pop(pan, None)
            return
        else:
            return  # a decline that says nothing of the card's status
        statuses = self.statuses
        if statuses.get(pan) == status:
            return
        statuses.pop(pan, None)  # re-inserted last: the most recently changed is kept longest
        if len(statuses) >= self.size_max:
            del statuses[next(iter(statuses))]
        statuses[pan] = status

    def status(self, pan: str) -> str | None:
        return self.statuses.get(pan)


class StandIn:
    """Stand-in decisions and the journal records behind them, for one switch process."""

    def __init__(self, policy: Policy, journal: Journal, request_deadline_ms: int,
                 void_reserve_records: int = limits.saf_void_reserve_records,
                 clock: Clock | None = None) -> None:
        self.clock = clock or SystemClock()
        self.policy = policy
        self.spec = policy.spec.stand_in
        self.journal = journal
        self.request_deadline_ms = request_deadline_ms
        self.void_reserve_records = void_reserve_records
        self.cards = CardStatuses()
        self.enabled = self.spec.enabled
        # Since the journal's last drain: stand-in approvals per card (the per-card limit)
        # and their answers by idempotency key, with the card numbers they were given for
        # (a repeat gets the same answer; the same id on another card, 94).
        self.approved_fen: dict[str, int] = {}
        self.answers: dict[str, tuple[frozenset[str], AuthResponse]] = {}
        for record in journal.records:
            if isinstance(record, Advice):
                self._count(record)
        journal.on_drain.append(self._drained)
        self.counters = dict.fromkeys(
            ("stand_in_approved", "stand_in_declined", "voids_journaled", "journal_full",
             "journal_failed"), 0)

    # --- the server's side ------------------------------------------------------------------

    def repeat(self, request: AuthRequest) -> AuthResponse | None:
        """The stand-in answer of a request sent again before its advice was forwarded; 94
        for its id on another card (its claim is not made until the advice is forwarded)."""
        kept = self.answers.get(request.idempotency_key)
        if kept is None:
            return None
        cards, answer = kept
        if request.card not in cards:
            return _marked(decline(Code.DUPLICATE, Reason.DUPLICATE_ID_OTHER_CARD))
        return _as_repeat(answer)

    def answer(self, request: AuthRequest, attempt: Attempt, no_answer: tuple[str, str],
               forced_status: str | None = None
               ) -> AuthResponse | asyncio.Future[AuthResponse]:
        """The answer to a request whose ledger call failed or missed its deadline: a
        stand-in decision, else `no_answer` (91 issuer_timeout or issuer_unavailable), once
        the journal holds what must be undone or posted. `forced_status`: a tester forced
        this request into stand-in (`switch card force --stand-in`, a fault rule): it is
        decided even with stand-in off in the policy (by its limits, else their defaults),
        with the card's status the ledger just read ("" for no such card)."""
        # The same request, stood in while this one waited. No void for this one's call: it
        # would come after the first one's advice in the journal, and if this call ran and
        # the advice found the key taken ("conflict"), the void would undo the one posting.
        earlier = self.repeat(request)
        if earlier is not None:
            return earlier
        now_ms = self.clock.now_ms()
        records: list[Record] = []
        if attempt.auth_id or attempt.fault_use:  # its call was made: it may have run
            records.append(Void(
                id=_record_id(), pan=attempt.pan or request.card,
                idempotency_key=request.idempotency_key, auth_id=attempt.auth_id,
                not_before_ms=now_ms + self.request_deadline_ms, written_ms=now_ms,
                fault_use=attempt.fault_use))
        response = self.decide(request, attempt, forced_status) or decline(*no_answer)
        advice = None
        if response.stand_in and response.approved:
            pan = attempt.pan or request.card
            posted = request if request.card == pan else msgspec.structs.replace(
                request, card=pan)  # x-pay: the card behind the token
            advice = Advice(id=_record_id(), request=posted, auth_id=response.auth_id,
                            approved_fen=response.approved_fen,
                            beans_per_yuan=self.policy.judge(request).beans_per_yuan,
                            written_ms=now_ms)
            if self.journal.room() - self.void_reserve_records < len(records) + 1:
                self.counters["journal_full"] += 1
                advice, response = None, _marked(decline(Code.ISSUER_UNAVAILABLE,
                                                         Reason.SAF_JOURNAL_FULL))
            else:
                records.append(advice)
        if response.stand_in:
            self.counters["stand_in_approved" if advice else "stand_in_declined"] += 1
        if not records:
            return response
        try:
            written = self.journal.append(records)
        except JournalFull:
            self.counters["journal_full"] += 1
            log.error("journal full: a void of %s (auth id %s) is not recorded",
                      request.idempotency_key, attempt.auth_id)
            return decline(*no_answer)
        self.counters["voids_journaled"] += len(records) - (advice is not None)
        if advice is not None:
            self._count(advice, request.card)
        result = asyncio.get_running_loop().create_future()
        written.add_done_callback(lambda done: self._written(done, result, response, advice,
                                                             no_answer))
        return result

    def _written(self, written: asyncio.Future, result: asyncio.Future, response: AuthResponse,
                 advice: Advice | None, no_answer: tuple[str, str]) -> None:
        if written.exception() is None:
            result.set_result(response)
            return
        self.counters["journal_failed"] += 1
        if advice is not None:  # not recorded, so not approved
            self._uncount(advice)
        result.set_result(decline(*no_answer))

    # --- the decision -----------------------------------------------------------------------

    def decide(self, request: AuthRequest, attempt: Attempt,
               forced_status: str | None = None) -> AuthResponse | None:
        """The stand-in decision, or None when stand-in cannot decide (the answer is 91)."""
        forced = forced_status is not None
        if not (self.enabled or forced) or request.message_class not in STOOD_IN_CLASSES:
            return None
        if request.pin:  # its hash is in Redis: a PIN is never taken unchecked (nor journaled)
            return None
        problem = refusal(request) or self.policy.judge(request).decline
        if problem is not None:
            return _marked(decline(*problem))
        pan = attempt.pan or request.card
        status = (forced_status or None) if forced else self.cards.status(pan)
        if status is None:
            return None
        if status != CardStatus.ACTIVE:
            return _marked(decline(*CARD_STATUS_DECLINES[CardStatus(status)]))
        # The card's own expiry is in Redis; an expiry the request sends that has passed
        # is enough to refuse (YYMM compares as a number, good through its month).
        if request.expiry and int(request.expiry) < int(month_of(self.clock.now_ms())):
            return _marked(decline(Code.EXPIRED_CARD, Reason.CARD_EXPIRED))
        spec = self.spec
        if request.amount_fen > spec.per_transaction_max_fen:
            return _marked(decline(spec.decline_code, Reason.STAND_IN_LIMIT))
        if self.approved_fen.get(pan, 0) + request.amount_fen > spec.per_card_max_fen:
            return _marked(decline(spec.decline_code, Reason.STAND_IN_CARD_LIMIT))
        return AuthResponse(response_code=Code.APPROVED, approved_fen=request.amount_fen,
                            auth_id=new_auth_id(), stand_in=True)

    # --- bookkeeping since the last drain ----------------------------------------------------

    def _count(self, advice: Advice, sent_card: str = "") -> None:
        """`sent_card`: the card as the request named it (x-pay: its token), besides the
        number the advice posts to."""
        request = advice.request
        self.approved_fen[request.card] = (self.approved_fen.get(request.card, 0)
                                           + advice.approved_fen)
        self.answers[request.idempotency_key] = (
            frozenset({request.card, sent_card or request.card}),
            AuthResponse(response_code=Code.APPROVED, approved_fen=advice.approved_fen,
                         auth_id=advice.auth_id, stand_in=True))

    def _uncount(self, advice: Advice) -> None:
        request = advice.request
        self.approved_fen[request.card] -= advice.approved_fen
        self.answers.pop(request.idempotency_key, None)

    def _drained(self) -> None:
        self.approved_fen.clear()
        self.answers.clear()


def _marked(response: AuthResponse) -> AuthResponse:
    response.stand_in = True
    return response


def _as_repeat(response: AuthResponse) -> AuthResponse:
    return msgspec.structs.replace(response, repeat=True)


def _record_id() -> str:
    """Unique across processes and restarts: the ledger's idempotency for a record."""
    return secrets.token_hex(12)
