"""`switch audit` on a real Redis: books made by the real ledger add up; each rule, broken on
purpose by writing to Redis directly, is found; the scan, its batches and its progress; the
command's exit codes.

Tests on the shared Redis audit the cards they made (audit(keys=...)); those that scan a
whole Redis start their own.
"""

from __future__ import annotations

import itertools
import os
import random
import subprocess
import sys
from collections import Counter

import pytest
import redis
import redis.asyncio as aioredis

from protocols.cardnumbers import mask_pan
from protocols.ledger_layout import FRESH_CARD_BALANCES, card_key
from protocols.messages import AuthRequest, MessageClass
from switch import limits
from switch.audit import RULES, audit, journal_findings
from switch.journal import Advice, Journal, Void
from switch.ledger import Ledger
from switch.redis_client import connect
from switch.redis_runner import PrivateRedis
from switch.terms import Terms
from tests.support import CLI_WAIT_S, FakeClock, make_card, new_pan
from tests.test_policy_support import new_ref

C = MessageClass
TERMS = Terms(hold_expiry_ms=60_000, capture_tolerance_percent=10)
OPERATIONS = ("auth", "sale", "capture", "reverse", "refund", "settle", "repeat", "wait",
              "void", "advise", "repay")
WEIGHTS = (3, 2, 3, 2, 3, 2, 1, 1, 2, 1, 2)
_auth_ids = itertools.count(1)


def request(pan: str, cls: MessageClass, amount_fen: int, original: str = "",
            **fields) -> AuthRequest:
    return AuthRequest(message_class=cls, channel="jd", card=pan, amount_fen=amount_fen,
                       mcc="5411", txn_ref=new_ref("A"), original_ref=original,
                       idempotency_key=new_ref("K"), **fields)


async def run(ledger: Ledger, req: AuthRequest, auth_id: str = "A00001") -> str:
    return (await ledger.execute(req, auth_id=auth_id, terms=TERMS)).response_code


async def random_books(ledger: Ledger, clock: FakeClock, rng: random.Random, cards: int,
                       steps: int) -> tuple[list[str], Counter]:
    """Cards and `steps` random operations on them through the real ledger; what happened."""
    pans = [await make_card(ledger, limit_fen=rng.choice([5_000, 20_000])) for _ in range(cards)]
    made: list[tuple[str, str]] = []  # (pan, txn_ref) of approved authorizations and sales
    sent: list[AuthRequest] = []
    attempts: list[tuple[str, str, str]] = []  # (pan, idempotency key, auth id) of each call
    seen: Counter = Counter()
    for _ in range(steps):
        pan = rng.choice(pans)
        op = rng.choices(OPERATIONS, weights=WEIGHTS)[0]
        # Mostly recent originals: the ones whose holds are still pending.
        original = rng.choice(made[-6:]) if made else (pan, "none")
        if op in ("auth", "sale"):
            req = request(pan, C.AUTH if op == "auth" else C.SALE, rng.randrange(1, 4_000),
                          partial_ok=rng.random() < 0.3)
        elif op in ("capture", "reverse", "refund"):
            cls = {"capture": C.CAPTURE, "reverse": C.REVERSAL, "refund": C.REFUND}[op]
            amount = rng.choice([0, rng.randrange(1, 4_400)]) if op == "reverse" else (
                rng.randrange(1, 4_400))
            req = request(original[0], cls, amount, original[1],
                          instant_refund=rng.random() < 0.5)
        elif op == "settle":
            seen["settled"] += bool(await ledger.settle(pan))
            continue
        elif op == "repay":  # at times more than is owed: a credit balance
            repayment = await ledger.repay(pan, rng.randrange(1, 6_000))
            seen[f"repay {repayment.outcome}"] += 1
            continue
        elif op == "repeat" and sent:
            req = rng.choice(sent)
        elif op == "void" and attempts:
            # What the switch does for a request it answered 91: take its attempt back.
            outcome = await ledger.void(*rng.choice(attempts[-8:]))
            seen[f"void {outcome}"] += 1
            continue
        elif op == "advise":
            # A stand-in approval posted later, whatever the card's open-to-buy says now.
            req = request(pan, rng.choice([C.AUTH, C.SALE]), rng.randrange(1, 4_000))
            outcome = await ledger.advise(req, f"{next(_auth_ids):06d}", req.amount_fen,
                                          new_ref("V"), terms=TERMS)
            seen[f"advise {outcome}"] += 1
            if outcome == "applied":
                made.append((pan, req.txn_ref))
            continue
        else:
            clock.advance(rng.randrange(0, 30))
            continue
        auth_id = f"{next(_auth_ids):06d}"
        code = await run(ledger, req, auth_id)
        seen[f"{op} {code}"] += 1
        sent.append(req)
        attempts.append((req.card, req.idempotency_key, auth_id))
        if code in ("00", "10") and op in ("auth", "sale") and req.txn_ref not in {
                ref for _, ref in made}:
            made.append((req.card, req.txn_ref))
    for pan in pans:  # one hold left pending on each card that has room for it
        seen["last auth " + await run(ledger, request(pan, C.AUTH, 1))] += 1
    return pans, seen


async def states_of(client, pans: list[str]) -> Counter:
    states: Counter = Counter()
    for pan in pans:
        for key in await client.zrange(f"{card_key(pan)}:tx", 0, -1):
            record = await client.hgetall(key)
            states[record["state"]] += 1
            states["refunded"] += int(record["refunded"]) > 0
    return states


@pytest.mark.parametrize("seed", range(4))
async def test_books_made_by_the_ledger_add_up(redis_url, seed):
    clock = FakeClock()
    ledger = Ledger(connect(redis_url), clock)
    await ledger.start()
    try:
        pans, seen = await random_books(ledger, clock, random.Random(seed), cards=3, steps=300)
        states = await states_of(ledger.client, pans)
        report = await audit(ledger.client, keys=[card_key(pan) for pan in pans])
    finally:
        await ledger.aclose()
    # The sequence reached every state and path whose bookkeeping the rules restate.
    assert all(states[s] for s in ("pending", "captured", "reversed", "expired", "voided",
                                   "refunded", "repaid"))
    assert seen["settled"] and seen["capture 00"] and seen["reverse 00"] and seen["repeat 00"]
    assert seen["void voided"] and seen["advise applied"] and seen["repay repaid"]
    assert report.findings == []
    assert (report.cards, report.transactions) == (3, sum(
        states[s] for s in ("pending", "captured", "reversed", "expired", "voided", "repaid")))


# --- each rule, broken on purpose --------------------------------------------------------------

@pytest.fixture
async def books(ledger):
    """A card with a pending hold, a captured pre-authorization, a sale with an ordinary
    refund not yet settled, and a reversed hold; the keys to break."""
    pan = await make_card(ledger, limit_fen=100_000)
    held = request(pan, C.AUTH, 3_000)
    captured = request(pan, C.AUTH, 2_000)
    sold = request(pan, C.SALE, 5_000)
    reversed_ = request(pan, C.AUTH, 700)
    for req in (held, captured, sold, reversed_):
        assert await run(ledger, req) == "00"
    assert await run(ledger, request(pan, C.CAPTURE, 1_500, captured.txn_ref)) == "00"
    assert await run(ledger, request(pan, C.REFUND, 1_200, sold.txn_ref)) == "00"
    assert await run(ledger, request(pan, C.REVERSAL, 0, reversed_.txn_ref)) == "00"
    key = card_key(pan)
    records = {name: f"{key}:t:{req.txn_ref}" for name, req in (
        ("held", held), ("captured", captured), ("sold", sold), ("reversed", reversed_))}
    assert await found(ledger, pan) == set()
    return pan, key, records


async def found(ledger: Ledger, pan: str) -> set[str]:
    report = await audit(ledger.client, keys=[card_key(pan)])
    assert all(f.card == mask_pan(pan) for f in report.findings)
    return {f.rule for f in report.findings}


@pytest.mark.parametrize(("field", "value"), [
    ("limit", "-1"), ("limit", "1.5"), ("posted", "x"), ("held", ""), ("pending_credit", None)])
async def test_balances_that_are_not_whole_numbers_are_found(ledger, books, field, value):
    pan, key, _ = books
    if value is None:
        await ledger.client.hdel(key, field)
    else:
        await ledger.client.hset(key, field, value)
    assert await found(ledger, pan) == {"balances_readable"}


async def test_a_limit_of_zero_is_readable(ledger):
    pan = await make_card(ledger, limit_fen=0)
    assert await found(ledger, pan) == set()


@pytest.mark.parametrize("field", ["held", "pending_credit"])
async def test_a_negative_balance_is_found(ledger, field):
    pan = await make_card(ledger)
    # Both balances of the posted rule move together, so only the sign is wrong.
    moves = {"pending_credit": ("posted", "pending_credit")}
    for name in moves.get(field, (field,)):
        await ledger.client.hset(card_key(pan), name, -1)
    assert f"{field}_not_negative" in await found(ledger, pan)
    for name in moves.get(field, (field,)):
        await ledger.client.hset(card_key(pan), name, 0)  # the bound itself is fine
    assert await found(ledger, pan) == set()


async def test_a_credit_balance_beyond_the_repayments_is_found(ledger):
    """posted below zero is fine up to what was repaid (an overpayment), not a fen more."""
    pan = await make_card(ledger)
    assert (await ledger.repay(pan, 500)).outcome == "repaid"
    assert await found(ledger, pan) == set()  # posted -500, repaid 500: a credit balance
    # One fen more credit, on the card and on a record alike (posted_is_transactions holds).
    await ledger.client.hset(card_key(pan), mapping={"posted": -501, "pending_credit": -1})
    assert await found(ledger, pan) == {"posted_not_below_repaid", "pending_credit_not_negative"}


async def test_repaid_that_is_not_the_repayments_is_found(ledger, books):
    pan, key, _ = books
    assert (await ledger.repay(pan, 800, "r1")).outcome == "repaid"
    assert await found(ledger, pan) == set()
    await ledger.client.hincrby(key, "repaid", 1)
    assert await found(ledger, pan) == {"repaid_is_repayments"}
    await ledger.client.hincrby(key, "repaid", -1)
    await ledger.client.hincrby(f"{key}:t:repay:r1", "posted", -1)  # the record says 801
    assert await found(ledger, pan) >= {"repaid_is_repayments", "posted_is_transactions"}


async def test_held_that_is_not_the_pending_holds_is_found(ledger, books):
    pan, key, _ = books
    await ledger.client.hincrby(key, "held", 1)
    assert await found(ledger, pan) == {"held_is_pending_holds"}


async def test_a_hold_left_on_a_record_that_is_not_pending_counts_nothing(ledger, books):
    pan, _, records = books
    await ledger.client.hset(records["reversed"], "hold", 700)
    assert await found(ledger, pan) == set()


@pytest.mark.parametrize("field", ["posted", "pending_credit"])
async def test_posted_that_is_not_the_transactions_is_found(ledger, books, field):
    pan, key, _ = books
    await ledger.client.hincrby(key, field, 1)
    assert await found(ledger, pan) == {"posted_is_transactions"}


@pytest.mark.parametrize(("record", "field"), [("sold", "posted"), ("captured", "refunded")])
async def test_a_record_that_is_not_the_balance_is_found(ledger, books, record, field):
    pan, _, records = books
    await ledger.client.hincrby(records[record], field, 1)
    assert await found(ledger, pan) == {"posted_is_transactions"}


async def test_a_pending_hold_missing_from_the_index_is_found(ledger, books):
    pan, key, records = books
    await ledger.client.zrem(f"{key}:h", records["held"])
    assert await found(ledger, pan) == {"holds_index_is_pending"}


async def test_an_index_entry_for_a_hold_no_longer_pending_is_found(ledger, books):
    pan, key, records = books
    await ledger.client.zadd(f"{key}:h", {records["captured"]: 1})
    assert await found(ledger, pan) == {"holds_index_is_pending"}


@pytest.mark.parametrize("index", ["tx", "h"])
async def test_an_index_naming_a_missing_transaction_is_found(ledger, books, index):
    pan, key, _ = books
    await ledger.client.zadd(f"{key}:{index}", {f"{key}:t:gone": 1})
    assert await found(ledger, pan) == {"indexed_transactions_exist"}


async def test_a_deleted_transaction_is_found(ledger, books):
    pan, _, records = books
    await ledger.client.delete(records["sold"])
    assert "indexed_transactions_exist" in await found(ledger, pan)


@pytest.mark.parametrize(("field", "value"), [("state", "lost"), ("hold", "x"),
                                              ("posted", ""), ("refunded", "1e3")])
async def test_an_unreadable_transaction_is_found(ledger, books, field, value):
    pan, _, records = books
    await ledger.client.hset(records["captured"], field, value)
    assert "transactions_readable" in await found(ledger, pan)


# --- a card that changes while it is read --------------------------------------------------------

class Interrupting(aioredis.Redis):
    """A real client whose audit re-reads are each interrupted, `times` times, by a change
    to the card made from another connection (as a busy switch would)."""

    def __init__(self, url: str, key: str, times: int) -> None:
        pool = aioredis.ConnectionPool.from_url(url, decode_responses=True)
        super().__init__(connection_pool=pool)
        self.key, self.times, self.rereads = key, times, 0
        self.other = redis.Redis.from_url(url)

    def pipeline(self, transaction: bool = True, shard_hint=None):
        pipe = super().pipeline(transaction, shard_hint)
        if transaction:
            client = self
            original_multi = pipe.multi

            def multi():
                client.rereads += 1
                if client.rereads <= client.times:
                    client.other.hincrby(client.key, "beans", 1)  # beans: no rule reads them
                return original_multi()

            pipe.multi = multi
        return pipe


@pytest.mark.parametrize(("times", "rules"), [
    (limits.audit_rereads_max, {"card_kept_changing"}),
    (limits.audit_rereads_max - 1, {"held_is_pending_holds"}),
])
async def test_a_card_that_looks_broken_is_read_again_until_unchanged(ledger, books, redis_url,
                                                                      times, rules):
    pan, key, _ = books
    await ledger.client.hincrby(key, "held", 1)
    client = Interrupting(redis_url, key, times)
    try:
        report = await audit(client, keys=[key])
    finally:
        await client.aclose()
        client.other.close()
    assert {f.rule for f in report.findings} == rules
    assert client.rereads == min(times + 1, limits.audit_rereads_max)


# --- the scan, its batches, its progress -------------------------------------------------------

@pytest.fixture
def own_redis(tmp_path):
    server = PrivateRedis(tmp_path / "redis")
    server.start()
    yield server.url
    server.stop()


def write_cards(url: str, count: int) -> list[str]:
    """`count` idle cards written directly, with keys of other kinds beside them."""
    pans = [f"6253990{i:09d}" for i in range(count)]
    client = redis.Redis.from_url(url)
    pipe = client.pipeline(transaction=False)
    for pan in pans:
        pipe.hset(card_key(pan), mapping={"limit": 1000, "status": "active", "expiry": "3012",
                                          **FRESH_CARD_BALANCES})
    pipe.set(f"{card_key(pans[0])}:i:x}}", "an answer")  # not a card, though it ends in }
    pipe.hset(f"{card_key(pans[0])}:n", "f", "1")
    pipe.hset("{t:6253990000000000}", "pan", pans[0])
    pipe.execute()
    client.close()
    return pans


async def test_the_scan_checks_every_card_and_reports_progress(own_redis):
    every = limits.audit_progress_every_cards
    write_cards(own_redis, every - 1)
    client = aioredis.Redis.from_url(own_redis, decode_responses=True)
    calls = []
    try:
        report = await audit(client, progress=lambda cards, broken: calls.append(cards))
        assert (report.cards, report.findings, calls) == (every - 1, [], [])
        await client.hset(card_key("6253991000000000"), mapping={
            "limit": 5, "status": "active", "expiry": "3012", **FRESH_CARD_BALANCES})
        await client.hset(card_key("6253991000000000"), "held", 3)
        report = await audit(client, progress=lambda cards, broken: calls.append((cards,
                                                                                   broken)))
    finally:
        await client.aclose()
    assert report.cards == every and calls == [(every, 1)]


async def test_records_past_one_pipeline_are_all_read(own_redis, monkeypatch):
    monkeypatch.setattr(limits, "audit_pipeline_commands_max", 10)
    client = aioredis.Redis.from_url(own_redis, decode_responses=True)
    key = card_key("6253992000000000")
    try:
        await client.hset(key, mapping={"limit": 100_000, "status": "active", "expiry": "3012",
                                        **FRESH_CARD_BALANCES, "posted": 21})
        for i in range(21):  # 3 pipelines: 10, 10 and 1
            await client.hset(f"{key}:t:r{i}", mapping={"kind": "sale", "state": "captured",
                                                        "hold": 0, "posted": 1, "refunded": 0})
            await client.zadd(f"{key}:tx", {f"{key}:t:r{i}": i})
        assert (await audit(client)).findings == []
        await client.hset(f"{key}:t:r20", "posted", 2)  # the one record of the last pipeline
        assert {f.rule for f in (await audit(client)).findings} == {"posted_is_transactions"}
    finally:
        await client.aclose()


async def test_a_card_gone_since_the_scan_is_left_out(ledger):
    report = await audit(ledger.client, keys=[card_key(new_pan())])
    assert (report.cards, report.findings) == (0, [])


async def test_an_error_reply_fails_the_audit(ledger):
    key = card_key(new_pan())
    await ledger.client.set(key, "not a card")  # HMGET answers WRONGTYPE
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        await audit(ledger.client, keys=[key])


# --- the stand-in journals ---------------------------------------------------------------------

PANS = ("6253990000000018", "6253990000000026")


def void(n: int, pan: str = PANS[0]) -> Void:
    return Void(id=f"v{n}", pan=pan, idempotency_key=f"jd:m:T{n}", auth_id=f"{n:06d}",
                not_before_ms=1000 + n, written_ms=n)


def advice(n: int, pan: str = PANS[1]) -> Advice:
    return Advice(id=f"a{n}", request=request(pan, C.SALE, 100), auth_id=f"{n:06d}",
                  approved_fen=100, beans_per_yuan=0, written_ms=n)


async def test_records_waiting_in_a_journal_are_found_per_card(tmp_path):
    assert journal_findings(tmp_path / "none") == []
    journal = Journal.open_locked(tmp_path / "saf-0.journal")
    try:
        await journal.append([void(1), void(2), advice(3)])
        journal.advance(1)  # the first was forwarded
        found = journal_findings(tmp_path)
        assert sorted(found) == sorted([
            (mask_pan(PANS[0]), "journal_drained", "1 record(s) waiting in saf-0.journal"),
            (mask_pan(PANS[1]), "journal_drained", "1 record(s) waiting in saf-0.journal")])
        journal.advance(2)
        assert journal_findings(tmp_path) == []
    finally:
        journal.close()


def test_a_damaged_journal_is_found(tmp_path):
    (tmp_path / "saf-0.journal").write_bytes(b"not a journal at all")
    (finding,) = journal_findings(tmp_path)
    assert finding.rule == "journal_drained" and "unreadable" in finding.detail


# --- the command -------------------------------------------------------------------------------

def audit_cli(*args: str, url: str, journals: str = "/nonexistent") -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env["SWITCH_RUN_DIR"] = journals
    return subprocess.run([sys.executable, "-m", "switch.cli", "audit", "--redis", url, *args],
                          env=env, capture_output=True, text=True, timeout=CLI_WAIT_S)


def test_the_command_exits_0_clean_1_broken_2_unreachable(own_redis):
    pans = write_cards(own_redis, 3)
    clean = audit_cli(url=own_redis)
    assert clean.returncode == 0, clean.stderr
    assert clean.stdout.strip() == "audit: 3 cards, 0 transactions: the books add up"

    redis.Redis.from_url(own_redis).hset(card_key(pans[1]), "posted", 5)
    broken = audit_cli(url=own_redis)
    assert broken.returncode == 1
    assert f"{mask_pan(pans[1])}  posted_is_transactions" in broken.stdout
    assert pans[1] not in broken.stdout + broken.stderr, "a full card number was printed"
    assert "1 cards broken" in broken.stdout and RULES["posted_is_transactions"] in broken.stdout
    as_json = audit_cli("--json", url=own_redis)
    assert as_json.returncode == 1
    assert '"clean":false' in as_json.stdout and '"rule":"posted_is_transactions"' in as_json.stdout

    gone = audit_cli(url="redis://127.0.0.1:1/0")
    assert gone.returncode == 2 and len(gone.stderr.strip().splitlines()) == 1
    assert "does not answer" in gone.stderr


async def test_the_command_is_not_clean_while_a_journal_waits(own_redis, tmp_path):
    write_cards(own_redis, 2)
    journal = Journal.open_locked(tmp_path / "saf-0.journal")
    try:
        await journal.append([advice(1)])
        waiting = audit_cli(url=own_redis, journals=str(tmp_path))
        assert waiting.returncode == 1
        assert f"{mask_pan(PANS[1])}  journal_drained  1 record(s) waiting" in waiting.stdout
        elsewhere = audit_cli("--journal-dir", str(tmp_path / "none"), url=own_redis,
                              journals=str(tmp_path))
        assert elsewhere.returncode == 0, "--journal-dir names the journals to check"
        journal.advance(1)
        assert audit_cli(url=own_redis, journals=str(tmp_path)).returncode == 0
    finally:
        journal.close()
