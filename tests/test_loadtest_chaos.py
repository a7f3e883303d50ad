"""`loadtest chaos`: the fault schedule, the books read from a real Redis, and short runs
against a real switch and a real durable Redis that the harness kills and restarts."""

from __future__ import annotations

import asyncio
import json

import pytest
import redis

from loadtest import cli
from loadtest.generator.cards import seed_cards
from loadtest.generator.client import LoadTestError
from loadtest.generator.history import Answer, Entry
from loadtest.generator.workload import Txn, load_test_pans
from loadtest.harness import chaos, chaos_ledger
from loadtest.harness.chaos_faults import (
    FAULT_KINDS,
    FREEZE_REDIS,
    KILL_REDIS,
    KILL_SWITCH,
    FaultPlan,
    check_plan,
    schedule,
)
from loadtest.harness.chaos_processes import DurableRedis, SwitchProcess
from loadtest.harness.history_check import Request, check
from protocols.cardnumbers import full_card_numbers_in
from protocols.ledger_layout import card_key
from protocols.messages import AuthRequest, MessageClass
from switch.config import Config
from switch.redis_runner import PrivateRedis
from tests.support import make_card

# --- the schedule ---------------------------------------------------------------------------


def test_every_kind_comes_once_before_any_comes_twice():
    for seed in range(20):
        planned = schedule(FaultPlan(every_s=1.0), 100.0, seed)
        first = [kind for _, kind in planned[:3]]
        assert sorted(first) == sorted(FAULT_KINDS), seed
        assert [kind for _, kind in planned[3:6]] == first  # then the same turns again


def test_faults_are_spaced_as_asked_and_none_starts_at_or_after_the_end():
    planned = schedule(FaultPlan(every_s=2.0), 200.0, seed=7)
    times = [at for at, _ in planned]
    assert 1.0 <= times[0] <= 2.0
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert all(1.0 <= gap <= 3.0 for gap in gaps)
    assert times[-1] < 200.0 and len(planned) >= 200 / 3.0
    assert schedule(FaultPlan(every_s=2.0), times[0], seed=7) == []  # none at the end itself
    assert schedule(FaultPlan(every_s=2.0), 200.0, seed=7) == planned  # the seed decides


def test_only_the_faults_asked_for_are_planned():
    planned = schedule(FaultPlan(kinds=(KILL_SWITCH,), every_s=1.0), 10.0, seed=1)
    assert planned and {kind for _, kind in planned} == {KILL_SWITCH}
    assert schedule(FaultPlan(kinds=(), every_s=1.0), 10.0, seed=1) == []


def test_a_bad_fault_plan_is_refused_with_its_reason():
    with pytest.raises(ValueError, match="no fault kill-disk"):
        check_plan(FaultPlan(kinds=("kill-disk",)))
    for bad in (FaultPlan(every_s=0), FaultPlan(freeze_s=0), FaultPlan(down_s=-1)):
        with pytest.raises(ValueError, match="must be positive"):
            check_plan(bad)
    check_plan(FaultPlan(down_s=0))  # restarted at once is allowed


def test_the_command_wants_one_of_duration_and_requests(capsys):
    assert cli.main(["chaos", "--rate", "10"]) == 2
    assert "give one of --duration and --requests" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["chaos", "--duration", "1", "--requests", "10"])


# --- the books, read from a real Redis --------------------------------------------------------


async def test_the_books_read_from_redis_agree_with_the_ledgers_answers(ledger, redis_url):
    pan = await make_card(ledger, limit_fen=100_000)
    requests = []
    for ref, message_class, amount, original in (
            ("s1", MessageClass.SALE, 1000, ""), ("a1", MessageClass.AUTH, 3000, ""),
            ("c1", MessageClass.CAPTURE, 2500, "a1"), ("r1", MessageClass.REFUND, 400, "s1")):
        request = AuthRequest(message_class=message_class, channel="jd", card=pan,
                              amount_fen=amount, txn_ref=ref, original_ref=original,
                              idempotency_key=f"k:{ref}")
        response = await ledger.execute(request, auth_id=f"X{ref}")
        assert response.response_code == "00"
        requests.append(Request(ref, pan, message_class.value, original or ref,
                                Answer("00", response.approved_fen, response.auth_id)))
    cards = chaos_ledger.read_cards(redis_url, [pan], {pan: {"s1", "a1", "gone"}})
    assert set(cards[pan].records) == {"s1", "a1"}
    assert (cards[pan].posted, cards[pan].held, cards[pan].pending_credit) == (3500, 0, 400)
    assert check(requests, cards).clean
    # the books changed behind the ledger's back: the check sees it
    await ledger.client.hincrby(f"{{c:{pan}}}", "posted", 100)
    cards = chaos_ledger.read_cards(redis_url, [pan], {})
    assert check(requests, cards).doubled == 1


def test_cards_are_read_in_batches_and_every_one_comes_back(redis_url, monkeypatch):
    pans = load_test_pans(5, seed=77)
    seed_cards(redis_url, pans)
    client = redis.Redis.from_url(redis_url)
    for i, pan in enumerate(pans):
        client.hset(card_key(pan), "posted", i)
    monkeypatch.setattr(chaos_ledger, "READ_BATCH_CARDS", 2)  # batches of 2, 2 and 1
    cards = chaos_ledger.read_cards(redis_url, pans, {})
    assert [cards[pan].posted for pan in pans] == [0, 1, 2, 3, 4]


async def test_the_wait_for_the_journals_is_bounded(monkeypatch):
    class NeverDrained:
        asked = 0

        def journals_drained(self) -> bool:
            self.asked += 1
            return False

    monkeypatch.setattr(chaos, "JOURNAL_DRAIN_TIMEOUT_S", 0.3)
    monkeypatch.setattr(chaos, "JOURNAL_POLL_S", 0.05)
    switch, said = NeverDrained(), []
    await asyncio.wait_for(chaos._drained(switch, said.append), timeout=5)
    assert switch.asked >= 3 and said == ["waiting for the stand-in journals to be forwarded"]


def test_the_switch_audit_it_runs_reports_broken_books(tmp_path):
    server = PrivateRedis(tmp_path / "redis")  # its own: the audit reads every card
    url = server.start()
    try:
        pan = load_test_pans(1, seed=5)[0]
        seed_cards(url, [pan])
        switch = SwitchProcess(url, ["jd"], tmp_path, tmp_path / "run")
        assert switch.journals_drained()  # no journal at all: nothing waits
        status, report = switch.audit(url)
        assert status == 0 and report["clean"] and report["broken"] == []
        redis.Redis.from_url(url).hincrby(card_key(pan), "posted", 100)
        status, report = switch.audit(url)
        assert status == 1
        assert [b["rule"] for b in report["broken"]] == ["posted_is_transactions"]
    finally:
        server.stop()


def test_a_request_the_harness_cannot_read_but_was_approved_stops_the_check():
    request = AuthRequest(message_class=MessageClass.SALE, channel="jd", card="6253800000000001",
                          amount_fen=100, txn_ref="t1")
    entry = Entry(Txn(1, "sale", "jd", request, None, wire=("t1", b"not json")))
    entry.answers.append(Answer("30", 0, ""))  # refused by the switch too: no ledger effect
    assert chaos_ledger.requests_of([entry], Config()) == []
    entry.answers.append(Answer("00", 100, "A"))
    with pytest.raises(LoadTestError, match="cannot check it"):
        chaos_ledger.requests_of([entry], Config())


def test_a_killed_redis_comes_back_on_its_port_with_its_data(tmp_path):
    server = DurableRedis(tmp_path / "redis", "always")
    url = server.start()
    try:
        redis.Redis.from_url(url).set("kept", "yes")
        server.freeze()
        server.thaw()
        server.kill()
        assert server.process.poll() is not None
        assert server.start() == url  # the same port: clients find it where it was
        assert redis.Redis.from_url(url).get("kept") == b"yes"
    finally:
        server.stop()


# --- runs against a real switch ----------------------------------------------------------------

RATE = 150.0
# Faults come one after another, and a switch restart takes seconds on a loaded machine:
# 8 s leaves room for every kind (or two kills) before the load ends, whatever the delays.
DURATION_S = 8.0


DEADLINE_MS = 500  # the switch's request deadline in these runs: a freeze of 1 s passes it


def short_plan(kinds: tuple[str, ...], folder, every_s: float = 1.5, **more) -> chaos.ChaosPlan:
    config = folder / "switch.toml"
    config.write_text(f"[limits]\nrequest_deadline_ms = {DEADLINE_MS}\n")
    return chaos.ChaosPlan(rate=RATE, duration_s=DURATION_S, mix={"jd": 1, "pos": 1},
                           faults=FaultPlan(kinds=kinds, every_s=every_s, freeze_s=1.0,
                                            down_s=0.3), cards=200, timeout_s=5.0,
                           switch_config=str(config), **more)


async def test_switch_kills_lose_double_and_invent_nothing(tmp_path):
    plan = short_plan((KILL_SWITCH,), tmp_path)
    _, outcome = await chaos.run_chaos(plan, tmp_path / "run", say=lambda _: None)
    assert outcome.faults[KILL_SWITCH] >= 2, outcome.fault_log
    # the generator found the restarted switch again: nearly every request went out
    assert outcome.requests >= 0.8 * RATE * DURATION_S
    assert outcome.resent > 0 and outcome.unanswered == 0  # in flight at a kill: sent again
    assert (outcome.lost, outcome.doubled, outcome.invented) == (0, 0, 0), outcome.examples
    assert outcome.audit == [] and outcome.passed
    assert (tmp_path / "run" / "switch-2.log").exists()
    history = (tmp_path / "run" / "history.jsonl").read_text()
    assert len(history.splitlines()) == outcome.requests
    assert not full_card_numbers_in(history)  # cards masked
    first = json.loads(history.splitlines()[0])
    assert first["answers"] and first["sends"] >= 1 and first["card"][6:12] == "******"


async def test_every_fault_at_once_loses_doubles_and_invents_nothing(tmp_path):
    plan = short_plan(FAULT_KINDS, tmp_path, every_s=1.0)
    _, outcome = await chaos.run_chaos(plan, tmp_path / "run", say=lambda _: None)
    assert all(outcome.faults[kind] >= 1 for kind in FAULT_KINDS), outcome.fault_log
    # a freeze longer than the deadline: the switch answered 91 meanwhile
    assert outcome.codes.get("91", 0) > 0 and outcome.approvals > 0
    assert outcome.unanswered == 0 and outcome.audit == []
    assert (outcome.lost, outcome.doubled, outcome.invented) == (0, 0, 0), outcome.examples


async def test_requests_answered_91_sent_again_after_the_outage_agree_with_the_books(tmp_path):
    plan = short_plan((FREEZE_REDIS, KILL_REDIS), tmp_path, every_s=1.0, resend_undecided=True)
    _, outcome = await chaos.run_chaos(plan, tmp_path / "run", say=lambda _: None)
    assert outcome.faults[FREEZE_REDIS] >= 1, outcome.fault_log
    # every request answered 91 during a freeze went again, and was decided this time
    assert outcome.resent > 0 and outcome.codes.get("91", 0) == 0, outcome.codes
    assert outcome.unanswered == 0 and outcome.audit == []
    assert (outcome.lost, outcome.doubled, outcome.invented) == (0, 0, 0), outcome.examples

