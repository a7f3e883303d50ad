"""The ledger scripts against a plain Python model, driven by hypothesis.

Random authorize / sale / capture / reverse / refund / repay / repeat / settle sequences, with
the ledger's clock moving across a statement close, run against the real Lua scripts on a
real redis-server; after every step the answers and balances must equal the model's,
open-to-buy must be limit - posted - held and never negative, a credit balance (posted below
zero) never more than was repaid, the statement the posted balance at its close and what was
repaid since, a final transaction never changes again, and a repeat changes nothing.
"""

from __future__ import annotations

import asyncio
import itertools

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from protocols.messages import AuthRequest, MessageClass
from protocols.statement_calendar import next_close_ms
from switch.clock import DAY_MS
from switch.ledger import Ledger
from switch.redis_client import connect
from tests.support import FakeClock, new_pan

LIMIT_FEN = 10_000
FINAL = {"captured", "reversed", "expired", "repaid"}
STATEMENT_DAY = 5
amounts = st.integers(1, 6_000)
_ids = itertools.count()


class Model:
    """What the ledger should do, in plain Python."""

    def __init__(self, now_ms: int) -> None:
        self.posted = self.held = self.pending_credit = self.repaid = 0
        self.records: dict[str, dict] = {}
        self.answers: dict[str, tuple] = {}  # idempotency key -> (fingerprint, answer)
        self.cycle_end = next_close_ms(now_ms, STATEMENT_DAY)
        self.statement: int | None = None  # posted at the last close
        self.paid = 0  # repaid since

    def close_cycle(self, now_ms: int) -> None:
        """What the card's next call (or read) does first once its cycle has ended."""
        if now_ms >= self.cycle_end:
            self.statement, self.paid = self.posted, 0
            self.cycle_end = next_close_ms(now_ms, STATEMENT_DAY)

    def repay(self, ref: str, amount: int) -> str:
        record = self.records.get(ref)
        if record is not None:
            return "repeat" if record["amount"] == amount else "mismatch"
        self.posted -= amount
        self.repaid += amount
        self.paid += amount
        self.records[ref] = dict(kind="repay", state="repaid", hold=0, posted=-amount,
                                 refunded=0, amount=amount)
        return "repaid"

    @property
    def otb(self) -> int:
        return max(0, LIMIT_FEN - self.posted - self.held)

    def apply(self, request: AuthRequest) -> tuple[str, int]:
        fingerprint = (request.message_class, request.amount_fen, request.original_ref)
        if request.idempotency_key in self.answers:
            first_fp, answer = self.answers[request.idempotency_key]
            return answer if first_fp == fingerprint else ("94", 0)
        handler = {MessageClass.AUTH: self.authorize, MessageClass.SALE: self.authorize,
                   MessageClass.CAPTURE: self.capture, MessageClass.REVERSAL: self.reverse,
                   MessageClass.REFUND: self.refund}[request.message_class]
        answer = handler(request)
        self.answers[request.idempotency_key] = (fingerprint, answer)
        return answer

    def authorize(self, r: AuthRequest) -> tuple[str, int]:
        approved, code = r.amount_fen, "00"
        if approved > self.otb:
            if not r.partial_ok or self.otb == 0:
                return "51", 0
            approved, code = self.otb, "10"
        if r.message_class is MessageClass.AUTH:
            self.held += approved
            self.records[r.txn_ref] = dict(kind="auth", state="pending", hold=approved,
                                           posted=0, refunded=0)
        else:
            self.posted += approved
            self.records[r.txn_ref] = dict(kind="sale", state="captured", hold=0,
                                           posted=approved, refunded=0)
        return code, approved

    def capture(self, r: AuthRequest) -> tuple[str, int]:
        t = self.records.get(r.original_ref)
        if t is None:
            return "25", 0
        if t["kind"] != "auth" or t["state"] != "pending":
            return "12", 0
        if r.amount_fen > t["hold"]:
            return "13", 0
        self.held -= t["hold"]
        self.posted += r.amount_fen
        t.update(state="captured", hold=0, posted=r.amount_fen)
        return "00", r.amount_fen

    def reverse(self, r: AuthRequest) -> tuple[str, int]:
        t = self.records.get(r.original_ref)
        if t is None:
            return "25", 0
        if t["kind"] == "auth" and t["state"] == "pending":
            field = "hold"
        elif t["kind"] == "sale" and t["state"] == "captured" and t["refunded"] == 0:
            field = "posted"
        else:
            return "12", 0
        release = r.amount_fen or t[field]
        if release > t[field]:
            return "13", 0
        t[field] -= release
        if field == "hold":
            self.held -= release
        else:
            self.posted -= release
        if t[field] == 0:
            t["state"] = "reversed"
        return "00", release

    def refund(self, r: AuthRequest) -> tuple[str, int]:
        t = self.records.get(r.original_ref)
        if t is None:
            return "25", 0
        if t["state"] != "captured":
            return "12", 0  # a repayment's record ("repaid") too
        if r.amount_fen > t["posted"] - t["refunded"]:
            return "13", 0
        t["refunded"] += r.amount_fen
        if r.instant_refund:
            self.posted -= r.amount_fen
        else:
            self.pending_credit += r.amount_fen
        return "00", r.amount_fen


class LedgerMachine(RuleBasedStateMachine):
    redis_url = ""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        # A day before a statement close: the clock's steps cross it (and stay well within the
        # 30 days a hold lives, which the model does not expire).
        now_ms = next_close_ms(FakeClock().now_ms(), STATEMENT_DAY) - DAY_MS
        self.clock = FakeClock(now_ms)
        self.ledger = Ledger(connect(self.redis_url), self.clock)
        self.pan = new_pan()
        self.run(self.ledger.start())
        self.run(self.ledger.set_card(self.pan, limit_fen=LIMIT_FEN, expiry="3012",
                                      statement_day=STATEMENT_DAY))
        self.model = Model(now_ms)
        self.sent: list[AuthRequest] = []
        self.finals: dict[str, str] = {}

    def run(self, coroutine):
        return self.loop.run_until_complete(coroutine)

    def teardown(self) -> None:
        self.run(self.ledger.aclose())
        self.loop.close()

    def send(self, kind: MessageClass, amount: int, original: str = "", **flags) -> None:
        ref = f"r{next(_ids)}"
        request = AuthRequest(message_class=kind, channel="jd", card=self.pan,
                              amount_fen=amount, mcc="5411", txn_ref=ref, idempotency_key=ref,
                              original_ref=original, **flags)
        self.check(request)
        self.sent.append(request)

    def check(self, request: AuthRequest) -> None:
        self.model.close_cycle(self.clock.now_ms())
        expected = self.model.apply(request)
        response = self.run(self.ledger.execute(request, auth_id="123456"))
        assert (response.response_code, response.approved_fen) == expected, request
        assert response.open_to_buy_fen == self.model.otb or response.repeat

    def refs(self) -> st.SearchStrategy[str]:
        return st.sampled_from(list(self.model.records))

    def read(self):
        self.model.close_cycle(self.clock.now_ms())
        return self.run(self.ledger.card(self.pan))

    @rule(amount=amounts, partial=st.booleans(), kind=st.sampled_from([MessageClass.AUTH,
                                                                       MessageClass.SALE]))
    def authorize(self, amount, partial, kind):
        self.send(kind, amount, partial_ok=partial)

    @precondition(lambda self: self.model.records)
    @rule(data=st.data(), amount=amounts)
    def capture(self, data, amount):
        self.send(MessageClass.CAPTURE, amount, data.draw(self.refs()))

    @precondition(lambda self: self.model.records)
    @rule(data=st.data(), amount=st.just(0) | st.integers(1, 6_000))
    def reverse(self, data, amount):
        self.send(MessageClass.REVERSAL, amount, data.draw(self.refs()))

    @precondition(lambda self: self.model.records)
    @rule(data=st.data(), amount=amounts, instant=st.booleans())
    def refund(self, data, amount, instant):
        self.send(MessageClass.REFUND, amount, data.draw(self.refs()), instant_refund=instant)

    @rule(amount=amounts, again=st.booleans(), other_amount=st.booleans())
    def repay(self, amount, again, other_amount):
        """A repayment, at times of more than is owed (a credit balance); or one made before
        sent again, with its amount (nothing changes) or another (refused)."""
        repaid = [ref for ref, r in self.model.records.items() if r["kind"] == "repay"]
        if again and repaid:
            ref = repaid[-1]
            amount = self.model.records[ref]["amount"] + (1 if other_amount else 0)
        else:
            ref = f"repay:p{next(_ids)}"
        self.model.close_cycle(self.clock.now_ms())
        expected = self.model.repay(ref, amount)
        repayment = self.run(self.ledger.repay(self.pan, amount, ref.removeprefix("repay:")))
        assert repayment.outcome == expected

    @rule(hours=st.integers(1, 20))
    def time_passes(self, hours):
        self.clock.advance(hours * 3600)

    @precondition(lambda self: self.model.records)
    @rule(data=st.data(), amount=amounts)
    def refund_a_repayment(self, data, amount):
        """A repayment's record is no purchase: a refund naming it is refused (12)."""
        repaid = [ref for ref, r in self.model.records.items() if r["kind"] == "repay"]
        if repaid:
            self.send(MessageClass.REFUND, amount, data.draw(st.sampled_from(repaid)))

    @rule()
    def settle(self):
        """Clearing: all pending credit comes off posted (below zero after a repayment: a
        credit balance); nothing pending settles nothing."""
        self.model.close_cycle(self.clock.now_ms())
        credit = self.model.pending_credit
        assert self.run(self.ledger.settle(self.pan)) == credit
        self.model.posted -= credit
        self.model.pending_credit -= credit

    @rule(kind=st.sampled_from([MessageClass.CAPTURE, MessageClass.REVERSAL,
                                MessageClass.REFUND]))
    def unknown_original(self, kind):
        self.send(kind, 100, "never-sent")

    @precondition(lambda self: self.sent)
    @rule(data=st.data())
    def repeat(self, data):
        before = self.read()
        self.check(data.draw(st.sampled_from(self.sent)))
        after = self.read()
        assert after == before  # a repeat changes nothing

    @invariant()
    def balances_match_the_model(self):
        view = self.read()
        assert (view.posted, view.held, view.pending_credit, view.repaid) == (
            self.model.posted, self.model.held, self.model.pending_credit, self.model.repaid)
        assert view.open_to_buy == LIMIT_FEN - view.posted - view.held >= 0
        assert view.posted >= -view.repaid  # a credit balance is money repaid, never more
        cycle = view.cycle
        assert cycle.end_ms == self.model.cycle_end
        assert cycle.statement_balance == (self.model.statement or 0)
        assert (cycle.statement_ms != 0) == (self.model.statement is not None)
        if self.model.statement is not None:
            assert cycle.paid == self.model.paid
            assert cycle.still_due == max(0, self.model.statement - self.model.paid)
        for t in view.transactions:
            if t.ref in self.finals:  # final once: never changes again
                assert t.state == self.finals[t.ref]
            elif t.state == "reversed" or (t.kind == "auth" and t.state in FINAL):
                self.finals[t.ref] = t.state  # (a captured sale may still be voided)
            assert t.state == self.model.records[t.ref]["state"]


def test_ledger_matches_model(redis_url):
    LedgerMachine.redis_url = redis_url
    run_state_machine_as_test(
        LedgerMachine, settings=settings(max_examples=100, stateful_step_count=30, deadline=None))


@settings(max_examples=25, deadline=None)
@given(amounts=st.lists(st.integers(1, 4_000), min_size=1, max_size=60),
       partial=st.lists(st.booleans(), min_size=60, max_size=60))
def test_concurrent_authorizations_never_pass_the_limit(redis_url, amounts, partial):
    """Random bursts in one event-loop tick (one pipeline): approvals never exceed the limit,
    and what was approved is exactly what is held."""

    async def burst():
        ledger = Ledger(connect(redis_url))
        try:
            await ledger.start()
            pan = new_pan()
            await ledger.set_card(pan, limit_fen=LIMIT_FEN, expiry="3012")
            requests = [AuthRequest(message_class=MessageClass.AUTH, channel="jd", card=pan,
                                    amount_fen=amount, mcc="5411", txn_ref=f"{pan}c{i}",
                                    idempotency_key=f"{pan}c{i}", partial_ok=partial[i])
                        for i, amount in enumerate(amounts)]
            answers = await asyncio.gather(*(ledger.execute(r, "000001") for r in requests))
            return answers, await ledger.card(pan)
        finally:
            await ledger.aclose()

    answers, view = asyncio.run(burst())
    approved = sum(a.approved_fen for a in answers if a.approved)
    assert approved == view.held <= LIMIT_FEN
    assert view.open_to_buy == LIMIT_FEN - approved
    assert all(a.response_code in ("00", "10", "51") for a in answers)
    if any(a.response_code == "51" for a in answers):  # declined only when it did not fit
        assert view.open_to_buy < min(a for a, r in zip(amounts, answers, strict=True)
                                      if r.response_code == "51")
