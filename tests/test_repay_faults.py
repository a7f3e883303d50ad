"""Repayments under faults, with a real redis-server of the test's own (AOF, appendfsync
always): the answer a repayment gets (the command's, the admin API's) and the books agree,
and the ref is what makes a repayment whose answer was lost exactly once.

- Redis frozen (SIGSTOP) with the repayment in flight: the command and the admin call end
  with an error naming the ref, within the request deadline; on SIGCONT Redis runs the call
  past its fence, which changes nothing; the same ref then repays once.
- The way cut at the repayment (tests/fault_proxy.py): before Redis has it (not made), or
  after Redis ran it and before its answer came back (made): either way the same ref leaves
  exactly one repayment.
- Redis killed (SIGKILL) and restarted on its data between repayments, and with one in
  flight: nothing lost or doubled, a ref repaid before is a repeat.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal

import redis.asyncio as aioredis

from switch.audit import audit
from switch.ledger import Ledger, RepaymentUnconfirmed
from switch.lua_library import ledger_library
from switch.redis_client import connect
from tests.admin_support import admin_switch
from tests.fault_proxy import CUT, FORWARD, HOLD, FaultProxy
from tests.support import ANSWER_WAIT_S, make_card, switch_cli, until_true
from tests.test_ledger_guards import sale

REPAY_CALL = ledger_library().function("repay").encode()  # the FCALL the proxy cuts at
SPENT_FEN = 30_000  # posted on the card before it is repaid
REF_SAID = re.compile(r"repayment (R[0-9a-f]{16}) of")
# A command's bound while Redis stalls: each of its Redis steps gives up at the request
# deadline (2 s); far below this, which only tells a hang from an answer.
COMMAND_BOUND_S = 12.0


async def spent_card(url: str) -> str:
    """A card with SPENT_FEN posted (a sale through the ledger)."""
    ledger = Ledger(connect(url))
    await ledger.start()
    try:
        pan = await make_card(ledger, limit_fen=100_000)
        assert (await ledger.execute(sale(pan, SPENT_FEN), "A00001")).response_code == "00"
        return pan
    finally:
        await ledger.aclose()


async def books(url: str, pan: str) -> tuple[int, int, list[str]]:
    """(posted, repaid, refs of the card's repayment records), and the card audits clean."""
    ledger = Ledger(connect(url))
    await ledger.start()
    try:
        view = await ledger.card(pan)
        report = await audit(ledger.client, [f"{{c:{pan}}}"])
        assert not report.findings, report.findings
        return view.posted, view.repaid, sorted(t.ref for t in view.transactions
                                                if t.kind == "repay")
    finally:
        await ledger.aclose()


async def repay_cli(url: str, pan: str, fen: int, *ref: str) -> tuple[int, str, str]:
    return await run_bounded(switch_cli("card", "repay", pan, str(fen), *ref,
                                        env=dict(os.environ, REDIS_URL=url)))


async def run_bounded(command):
    async with asyncio.timeout(COMMAND_BOUND_S):
        return await command


async def fcalls(url: str) -> int:
    admin = aioredis.Redis.from_url(url)
    try:
        stats = await admin.info("commandstats")
        return stats.get("cmdstat_fcall", {}).get("calls", 0)
    finally:
        await admin.aclose()


async def test_a_repayment_redis_never_got_is_made_once_by_the_ref_the_error_names(
        private_redis):
    """No --ref: the command makes one, and its error names it, so the retry is safe."""
    pan = await spent_card(private_redis.url)
    async with FaultProxy(private_redis.port, REPAY_CALL, HOLD) as proxy:
        code, out, err = await repay_cli(proxy.url, pan, 10_000)
        assert proxy.triggered.is_set()
    assert code == 2 and "not confirmed: Redis did not answer" in err, (out, err)
    assert "it may have been made before then; it cannot be made later" in err
    ref = REF_SAID.search(err).group(1)
    assert f"same ref ({ref})" in err
    assert await books(private_redis.url, pan) == (SPENT_FEN, 0, [])
    code, out, err = await repay_cli(private_redis.url, pan, 10_000, "--ref", ref)
    assert code == 0 and f"repaid 10000 fen on {pan[:6]}" in out and f"(ref {ref})" in out, err
    code, out, _ = await repay_cli(private_redis.url, pan, 10_000, "--ref", ref)
    assert code == 0 and "was already made (nothing changed)" in out
    assert await books(private_redis.url, pan) == (SPENT_FEN - 10_000, 10_000,
                                                   [f"repay:{ref}"])


async def test_a_repayment_whose_answer_was_lost_is_not_made_again(private_redis):
    pan = await spent_card(private_redis.url)
    async with FaultProxy(private_redis.port, REPAY_CALL, CUT) as proxy:
        code, _, err = await repay_cli(proxy.url, pan, 10_000, "--ref", "bank-77")
        assert proxy.triggered.is_set()
    assert code == 2 and "repayment bank-77 of 10000 fen not confirmed" in err, err
    # Redis ran it: the books have it, once, though the command could not say so.
    assert await books(private_redis.url, pan) == (SPENT_FEN - 10_000, 10_000,
                                                   ["repay:bank-77"])
    code, out, _ = await repay_cli(private_redis.url, pan, 10_000, "--ref", "bank-77")
    assert code == 0 and "was already made" in out
    assert await books(private_redis.url, pan) == (SPENT_FEN - 10_000, 10_000,
                                                   ["repay:bank-77"])


async def test_a_repayment_in_flight_while_redis_is_frozen_ends_and_is_never_made_late(
        private_redis):
    """The call reaches Redis as it stops: the command ends at its deadline; on SIGCONT Redis
    runs the call, past its fence, and it changes nothing (without the fence it would repay
    behind the error the user was shown)."""
    pan = await spent_card(private_redis.url)
    pid = private_redis.process.pid
    ran_before = await fcalls(private_redis.url)
    try:
        async with FaultProxy(private_redis.port, REPAY_CALL, FORWARD,
                              lambda: os.kill(pid, signal.SIGSTOP)) as proxy:
            code, _, err = await repay_cli(proxy.url, pan, 10_000, "--ref", "frozen-1")
            assert proxy.triggered.is_set()
    finally:
        os.kill(pid, signal.SIGCONT)
    assert code == 2 and "repayment frozen-1 of 10000 fen not confirmed" in err, err
    # The FCALLs before it (the library's load, the repayment itself) have run.
    await until_true(lambda: _ran(private_redis.url, ran_before + 1), "the frozen call ran")
    assert await books(private_redis.url, pan) == (SPENT_FEN, 0, [])
    code, out, _ = await repay_cli(private_redis.url, pan, 10_000, "--ref", "frozen-1")
    assert code == 0 and "repaid 10000 fen" in out
    assert await books(private_redis.url, pan) == (SPENT_FEN - 10_000, 10_000,
                                                   ["repay:frozen-1"])


# Long enough that a test process stalled for seconds still resumes Redis past the fence
# (half of it) and before the reply's deadline.
FENCED_DEADLINE_MS = 6_000
# Past the fence in Redis' clock too: the fence is written in it, measured to about a round
# trip.
FENCE_MARGIN_S = 0.2


async def _ran(url: str, count: int) -> bool:
    return await fcalls(url) >= count


async def test_the_ledger_says_a_repayment_run_past_its_fence_was_not_made(private_redis):
    """Redis stopped longer than the fence and resumed before the reply's deadline: the call
    runs, refuses, and says so (not made), rather than leaving the caller to guess. Redis
    resumes once the loop's clock is past the fence (half the deadline): the other half is
    the slack a stalled test process has before the reply's deadline."""
    ledger = Ledger(connect(private_redis.url), request_deadline_ms=FENCED_DEADLINE_MS,
                    ledger_fence_guard_ms=FENCED_DEADLINE_MS // 2)
    await ledger.start()
    pid = private_redis.process.pid
    try:
        pan = await make_card(ledger, limit_fen=100_000)
        await ledger.card(pan)  # the pipeline's link is open: the call is written at once
        os.kill(pid, signal.SIGSTOP)
        try:
            repaying = asyncio.ensure_future(ledger.repay(pan, 500, "late-1"))
            await asyncio.sleep(0)  # the call is made, its fence set, in this tick
            # A sleep ends no sooner than asked: Redis resumes past the fence; a stall
            # that makes it later has the deadline's other half.
            await asyncio.sleep(FENCED_DEADLINE_MS / 2 / 1000 + FENCE_MARGIN_S)
        finally:
            os.kill(pid, signal.SIGCONT)
        try:
            async with asyncio.timeout(ANSWER_WAIT_S):
                await repaying
        except RepaymentUnconfirmed as error:
            assert (error.ref, error.applied) == ("late-1", False)
            assert "it was not made" in error.retry_advice()
        else:
            raise AssertionError("a repayment past its fence was answered as made")
        assert (await ledger.card(pan)).repaid == 0
        assert (await ledger.repay(pan, 500, "late-1")).outcome == "repaid"
    finally:
        await ledger.aclose()


async def test_redis_killed_between_repayments_and_with_one_in_flight(private_redis):
    pan = await spent_card(private_redis.url)
    code, _, err = await repay_cli(private_redis.url, pan, 1_000, "--ref", "k-1")
    assert code == 0, err
    private_redis.process.kill()
    private_redis.process.wait()
    code, _, err = await repay_cli(private_redis.url, pan, 1_000, "--ref", "k-1")
    assert code == 2 and "does not answer" in err  # down: refused before anything is sent
    private_redis.start()
    code, out, _ = await repay_cli(private_redis.url, pan, 1_000, "--ref", "k-1")
    assert code == 0 and "was already made" in out  # kept through the kill
    # Killed with the next one on its way: Redis never ran it.
    proc = private_redis.process
    async with FaultProxy(private_redis.port, REPAY_CALL, FORWARD, proc.kill) as proxy:
        code, _, err = await repay_cli(proxy.url, pan, 2_000, "--ref", "k-2")
        assert proxy.triggered.is_set()
    assert code == 2 and "repayment k-2 of 2000 fen not confirmed" in err, err
    proc.wait()
    private_redis.start()
    assert await books(private_redis.url, pan) == (SPENT_FEN - 1_000, 1_000, ["repay:k-1"])
    for _ in range(2):
        code, _, err = await repay_cli(private_redis.url, pan, 2_000, "--ref", "k-2")
        assert code == 0, err
    assert await books(private_redis.url, pan) == (SPENT_FEN - 3_000, 3_000,
                                                   ["repay:k-1", "repay:k-2"])


async def test_the_admin_api_answers_a_frozen_repayment_503_with_its_ref(private_redis):
    async with admin_switch(private_redis.url) as admin:
        pan = await admin.switch.new_card(limit_fen=100_000)
        await admin.switch.card(pan)  # the switch's link to Redis is open
        pid = private_redis.process.pid
        ran_before = await fcalls(private_redis.url)
        os.kill(pid, signal.SIGSTOP)
        try:
            status, answer = await run_bounded(admin.call("POST", f"/cards/{pan}/repay",
                                                          body={"amount_fen": 700}))
        finally:
            os.kill(pid, signal.SIGCONT)
        assert status == 503 and "not confirmed: Redis did not answer" in answer["error"]
        ref = answer["ref"]
        assert f"repayment {ref} of 700 fen" in answer["error"]
        await until_true(lambda: _ran(private_redis.url, ran_before + 1), "the frozen call ran")
        assert (await admin.switch.card(pan)).repaid == 0
        for outcome in ("repaid", "repeat"):
            status, answer = await admin.call("POST", f"/cards/{pan}/repay",
                                              body={"amount_fen": 700, "ref": ref})
            assert (status, answer["outcome"]) == (200, outcome)
        assert (await admin.switch.card(pan)).repaid == 700


MADE_REF = r"repayment (R[0-9a-f]{16}) of 1000 fen"


async def test_without_a_ref_every_redis_error_names_the_ref_the_command_made(private_redis):
    """Redis down, or refusing the ledger's start (a user without FUNCTION): not made, the
    ref named. Redis refusing the call itself (a user without FCALL): its outcome unknown to
    the command, the ref named to repay with."""
    pan = await spent_card(private_redis.url)
    client = aioredis.Redis.from_url(private_redis.url)
    port = private_redis.url.rsplit(":", 1)[1]
    try:
        for user in ("function", "fcall"):
            await client.acl_setuser(f"no{user}", enabled=True, passwords=["+pw"], keys=["*"],
                                     channels=["*"], commands=["+@all", f"-{user}"])
    finally:
        await client.aclose()
    for user, outcome in (("function", r"not made"),
                          ("fcall", r"may have been made; repay again with --ref \1")):
        code, _, err = await repay_cli(f"redis://no{user}:pw@127.0.0.1:{port}", pan, 1_000)
        assert code == 2 and "Redis answered an error" in err and "permissions" in err, err
        assert re.search(MADE_REF + r" on \S+ " + outcome, err), err
    private_redis.process.kill()
    private_redis.process.wait()
    code, _, err = await repay_cli(private_redis.url, pan, 1_000)
    assert code == 2 and "does not answer" in err, err
    assert re.search(MADE_REF + r" on \S+ not made", err), err
