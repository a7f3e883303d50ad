"""Forced outcomes (`switch card force`) while Redis is frozen (SIGSTOP) or paused (CLIENT
PAUSE), over real TCP against a real switch and a redis-server of the test's own.

The forced outcome lives in the card's record and is taken inside the ledger's call, so a
request whose call Redis cannot run in time is answered 91 at its deadline (stand-in is off
in the shipped policy), its call refused by its fence when Redis runs it, and the force's
`times` is left as it was: the request never used it. The stall is placed exactly at the
card's call (tests/fault_proxy.py): the id's claim before it has been answered.
"""

from __future__ import annotations

import asyncio
import os
import signal

import pytest
import redis

from switch import limits, testing
from switch.ledger import STAND_IN, force_spec
from switch.lua_library import ledger_library
from tests.fault_proxy import FORWARD, FaultProxy
from tests.support import posted_is, until_true
from tests.test_forced_outcomes import SHORT_DEADLINE_MS, short_deadline_config, timed_send

AUTHORIZE_CALL = ledger_library().function("authorize").encode()
# Longer than the request deadline, so the switch has dropped its link when it ends.
PAUSE_MS = SHORT_DEADLINE_MS * 3
# An answer at the deadline, give or take a loaded machine: far below a hang.
ANSWER_BOUND_S = SHORT_DEADLINE_MS / 1000 + 1.0

FORCES = {  # the force, the answer it gives once Redis is back, and its spec after one use
    "delay": (dict(code="", times=2, delay_ms=200), "00", "|1||200"),
    "code": (dict(code="05", times=2, delay_ms=200), "05", "05|1||200"),
    "stand-in": (dict(code=STAND_IN, times=2), "00", f"{STAND_IN}|1|"),
}


def freezer(server):
    """SIGSTOP of Redis, undone by the test's SIGCONT."""
    def freeze() -> None:
        os.kill(server.process.pid, signal.SIGSTOP)
    return freeze


def pauser(server):
    """CLIENT PAUSE of every client for PAUSE_MS, from a client of the test's own."""
    def pause() -> None:
        with redis.Redis.from_url(server.url) as admin:
            admin.execute_command("CLIENT", "PAUSE", PAUSE_MS, "ALL")
    return pause


@pytest.mark.parametrize("force", sorted(FORCES))
@pytest.mark.parametrize("stall", ["sigstop", "client-pause"])
async def test_a_forced_card_answers_by_its_deadline_and_keeps_its_times_through_a_stall(
        private_redis, tmp_path, force, stall):
    spec, later_code, spec_after = FORCES[force]
    stop = freezer(private_redis) if stall == "sigstop" else pauser(private_redis)
    try:
        async with FaultProxy(private_redis.port, AUTHORIZE_CALL, FORWARD, stop) as proxy, \
                testing.start(short_deadline_config(), redis_url=proxy.url,
                              journal_dir=tmp_path / "run") as switch:
            pan = await switch.new_card(limit_fen=100_000)
            await switch.force(pan, **spec)
            stalled, waited_s = await timed_send(switch, "jd", pan, amount=1_000, mcc="5411")
            assert proxy.triggered.is_set()
            assert (stalled.response.response_code, stalled.response.reason) == (
                "91", "issuer_timeout")
            assert waited_s < ANSWER_BOUND_S
            os.kill(private_redis.process.pid, signal.SIGCONT)
            journal = switch.server.stand_in.journal
            await until_true(_drained(journal), "the stalled call's void forwarded")
            assert dict(switch.server.forwarder.report) == {"void:absent": 1}
            view = await switch.card(pan)
            assert (view.posted, view.forced, view.force, view.voids) == (
                0, 0, force_spec_of(spec), 0)

            after = await switch.send("jd", pan, amount=1_000, mcc="5411")
            assert after.response.response_code == later_code, after.response
            view = await switch.card(pan)
            assert (view.forced, view.force) == (1, spec_after)
            if later_code == "00":
                await until_true(lambda: posted_is(switch, pan, 1_000), "posted once")
            repeat = await switch.repeat(after)
            assert repeat.response.response_code == later_code
            view = await switch.card(pan)
            assert (view.forced, view.force, view.posted) == (
                1, spec_after, 1_000 if later_code == "00" else 0)
    finally:
        os.kill(private_redis.process.pid, signal.SIGCONT)


def force_spec_of(spec: dict) -> str:
    return force_spec(spec["code"], spec["times"], "", spec.get("delay_ms", 0))


def _drained(journal):
    async def drained() -> bool:
        return not journal.pending
    return drained


async def test_a_delay_past_the_deadline_is_voided_once_redis_is_back_and_keeps_its_use(
        private_redis, tmp_path):
    """Decided and posted, answered 91 at the deadline (the delay reaches it), and Redis
    frozen before the void can be forwarded: the void waits, and once Redis is back it takes
    the sale back, once; the forced use stays used (the 91 was the outcome asked for)."""
    async with testing.start(short_deadline_config(), redis_url=private_redis.url,
                             journal_dir=tmp_path / "run") as switch:
        pan = await switch.new_card(limit_fen=100_000)
        await switch.force(pan, "", times=1, delay_ms=limits.forced_delay_max_ms)
        late, waited_s = await timed_send(switch, "jd", pan, amount=1_000, mcc="5411")
        assert (late.response.response_code, waited_s < ANSWER_BOUND_S) == ("91", True)
        os.kill(private_redis.process.pid, signal.SIGSTOP)
        try:
            await asyncio.sleep(limits.saf_probe_interval_s * 3)  # probes fail meanwhile
            assert switch.server.stand_in.journal.pending
        finally:
            os.kill(private_redis.process.pid, signal.SIGCONT)
        await until_true(_drained(switch.server.stand_in.journal), "the void forwarded")
        assert dict(switch.server.forwarder.report) == {"void:voided": 1}
        view = await switch.card(pan)
        assert (view.posted, view.voids, view.force, view.forced) == (0, 1, "", 1)
