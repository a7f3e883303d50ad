"""The ledger scripts against a plain Python model, driven by hypothesis.

Random authorize / sale / capture / reverse / refund / repeat sequences run against the real
Lua scripts on a real redis-server; after every step the answers and balances must equal the
model's, open-to-buy must be limit - posted - held and never negative, a final transaction
never changes again, and a repeat changes nothing.
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
from switch.ledger import Ledger
from switch.redis_client import connect
from tests.support import new_pan

LIMIT_FEN = 10_000
FINAL = {"captured", "reversed", "expired"}
amounts = st.integers(1, 6_000)
_ids = itertools.count()


class Model:
    """What the ledger should do, in plain Python."""

    def __init__(self) -> None:
        self.posted = self.held = self.pending_credit = 0
        self.records: dict[str, dict] = {}
        self.answers: dict[str, tuple] = {}  # idempotency key -> (fingerprint, answer)

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
            return "12", 0
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
        self.ledger = Ledger(connect(self.redis_url))
        self.pan = new_pan()
        self.run(self.ledger.start())
        self.run(self.ledger.set_card(self.pan, limit_fen=LIMIT_FEN, expiry="3012"))
        self.model = Model()
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
        expected = self.model.apply(request)
        response = self.run(self.ledger.execute(request, auth_id="123456"))
        assert (response.response_code, response.approved_fen) == expected, request
        assert response.open_to_buy_fen == self.model.otb or response.repeat

    def refs(self) -> st.SearchStrategy[str]:
        return st.sampled_from(list(self.model.records))

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

    @rule()
    def settle(self):
        """Clearing: pending credit (at most what is posted) comes off posted; nothing
        pending settles nothing."""
        credit = min(self.model.pending_credit, self.model.posted)
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
        before = self.run(self.ledger.card(self.pan))
        self.check(data.draw(st.sampled_from(self.sent)))
        after = self.run(self.ledger.card(self.pan))
        assert after == before  # a repeat changes nothing

    @invariant()
    def balances_match_the_model(self):
        view = self.run(self.ledger.card(self.pan))
        assert (view.posted, view.held, view.pending_credit) == (
            self.model.posted, self.model.held, self.model.pending_credit)
        assert view.open_to_buy == LIMIT_FEN - view.posted - view.held >= 0
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
