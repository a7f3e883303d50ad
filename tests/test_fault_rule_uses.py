"""A fault rule's `times` counts only the requests the rule answered, as a card's forced
outcome does: a repeat gets its first answer and uses nothing; a request whose answer a void
takes back gives its use back; a use taken by a call Redis ran past its fence is none.
Real switch over TCP, real Redis (the suite's, or one of the test's own to freeze)."""

from __future__ import annotations

import os
import signal

import pytest

from switch import limits
from switch.faults import COUNTS_KEY, give_back, takers_key
from switch.lua_library import ledger_library
from tests.fault_proxy import CUT, FORWARD, HOLD, FaultProxy
from tests.support import until_true
from tests.test_fault_rules import faulted, rule_on
from tests.test_forced_faults import ANSWER_BOUND_S, freezer
from tests.test_forced_outcomes import short_deadline_config, timed_send


async def used(switch, rule_id: str) -> int:
    return int(await switch.ledger.client.hget(COUNTS_KEY, f"{rule_id}:used") or 0)


async def codes(switch, pan: str, count: int) -> list[str]:
    return [(await switch.send("jd", pan, amount=100, mcc="5411")).response.response_code
            for _ in range(count)]


async def fcalls(switch) -> int:
    stats = await switch.ledger.client.info("commandstats")
    return stats.get("cmdstat_fcall", {}).get("calls", 0)


def drained(switch):
    async def check() -> bool:
        return not switch.server.stand_in.journal.pending
    return check


async def test_a_repeat_of_a_rule_forced_request_uses_none_of_its_times(redis_url):
    async with faulted(redis_url=redis_url) as switch:
        pan = await switch.new_card(limit_fen=100_000)
        await rule_on(switch, pan, "twice", code="05", times=2)
        first = await switch.send("jd", pan, amount=100, mcc="5411")
        again = await switch.repeat(first)
        assert (again.response.response_code, again.response.repeat) == ("05", True)
        assert await used(switch, "twice") == 1
        assert await codes(switch, pan, 2) == ["05", "00"]
        assert await used(switch, "twice") == 2
        assert switch.server.counters.faults == 2


async def test_a_repeat_of_a_request_decided_before_the_rule_uses_none(redis_url):
    async with faulted(redis_url=redis_url) as switch:
        pan = await switch.new_card(limit_fen=100_000)
        decided = await switch.send("jd", pan, amount=100, mcc="5411")
        await rule_on(switch, pan, "once", code="05", times=1)
        again = await switch.repeat(decided)
        assert (again.response.response_code, again.response.repeat) == ("00", True)
        assert await used(switch, "once") == 0
        assert await codes(switch, pan, 2) == ["05", "00"]


async def test_a_spent_rule_counts_no_more_uses_than_its_times(redis_url):
    async with faulted(redis_url=redis_url) as switch:
        pan = await switch.new_card(limit_fen=100_000)
        await rule_on(switch, pan, "once", code="05", times=1)
        assert await codes(switch, pan, 3) == ["05", "00", "00"]
        assert await used(switch, "once") == 1  # never past N: a use given back is a use
        await switch.clear_faults("once")
        assert not await switch.ledger.client.exists(takers_key("once"))


@pytest.mark.parametrize("forced_by", ["card", "rule"])
async def test_a_void_of_a_forced_answer_gives_its_use_back_for_a_card_and_a_rule_alike(
        private_redis, tmp_path, forced_by):
    """The card's call ran and forced 05, and its answer was lost on the way back (the
    connection cut): answered 91, journaled, voided, and the use is given back."""
    authorize = ledger_library().function("authorize").encode()
    async with FaultProxy(private_redis.port, authorize, CUT) as proxy, \
            faulted(redis_url=proxy.url, journal_dir=tmp_path / "run") as switch:
        pan = await switch.new_card(limit_fen=100_000)
        if forced_by == "card":
            await switch.force(pan, "05", times=2)
        else:
            await rule_on(switch, pan, "twice", code="05", times=2)
        lost = await switch.send("jd", pan, amount=100, mcc="5411")
        assert proxy.triggered.is_set()
        assert lost.response.response_code == "91"
        await until_true(drained(switch), "the lost answer's void forwarded")
        assert dict(switch.server.forwarder.report) == {"void:voided": 1}
        assert await codes(switch, pan, 3) == ["05", "05", "00"]
        view = await switch.card(pan)
        assert view.voids == 1
        if forced_by == "card":
            assert (view.forced, view.force) == (2, "")
        else:
            assert await used(switch, "twice") == 2


async def test_a_use_taken_past_its_fence_is_none(private_redis, tmp_path):
    """Redis frozen with the rule's take in flight: 91 at the deadline, and when Redis runs
    the take on SIGCONT it is past its fence and takes nothing."""
    take = ledger_library().function("fault_take").encode()
    try:
        async with FaultProxy(private_redis.port, take, FORWARD,
                              freezer(private_redis)) as proxy, \
                faulted(short_deadline_config(), redis_url=proxy.url,
                        journal_dir=tmp_path / "run") as switch:
            pan = await switch.new_card(limit_fen=100_000)
            await rule_on(switch, pan, "once", code="05", times=1)
            ran_before = await fcalls(switch)
            stalled, waited_s = await timed_send(switch, "jd", pan, amount=100, mcc="5411")
            assert proxy.triggered.is_set()
            assert (stalled.response.response_code, waited_s < ANSWER_BOUND_S) == ("91", True)
            os.kill(private_redis.process.pid, signal.SIGCONT)

            async def took() -> bool:  # the take has run (its reply gone with the link)
                return await fcalls(switch) > ran_before
            await until_true(took, "the frozen take ran")
            assert await used(switch, "once") == 0
            assert await codes(switch, pan, 2) == ["05", "00"]
    finally:
        os.kill(private_redis.process.pid, signal.SIGCONT)


async def test_a_rule_delay_past_the_deadline_keeps_its_use_as_a_card_force_does(
        redis_url, tmp_path):
    async with faulted(short_deadline_config(), redis_url=redis_url,
                       journal_dir=tmp_path / "run") as switch:
        pan = await switch.new_card(limit_fen=100_000)
        await rule_on(switch, pan, "slow", delay_ms=limits.forced_delay_max_ms, times=1)
        late, _ = await timed_send(switch, "jd", pan, amount=1_000, mcc="5411")
        assert late.response.response_code == "91"
        await until_true(drained(switch), "the late sale's void forwarded")
        assert dict(switch.server.forwarder.report) == {"void:voided": 1}
        assert (await switch.card(pan)).posted == 0
        assert await used(switch, "slow") == 1


async def take(switch, rule_id: str, times: int, key: str, token: str) -> str:
    """The use `FaultSet.pick` takes for the request under `key` (fault_take, direct)."""
    return await switch.ledger.scripts.call(
        "fault_take", (COUNTS_KEY, takers_key(rule_id)),
        (rule_id, times, key, token, limits.idempotency_ttl_s), None,
        switch.ledger.deadline())


async def test_a_use_given_back_after_its_count_was_reset_leaves_it_at_zero(redis_url):
    """The taker is still recorded when the count is gone (a reset in between): giving its
    use back must not make the count -1, or the rule's next holder of the id gets N+1."""
    async with faulted(redis_url=redis_url) as switch:
        assert await take(switch, "reset", 1, "k-reset", "t1") == "taken"
        await switch.ledger.client.hdel(COUNTS_KEY, "reset:used")
        assert await give_back(switch.ledger, "reset|t1", "k-reset") is False
        assert await used(switch, "reset") == 0
        assert not await switch.ledger.client.hexists(takers_key("reset"), "k-reset")


@pytest.mark.parametrize("cleared", ["the rule", "every rule"])
async def test_a_rule_cleared_with_a_use_out_and_added_again_forces_exactly_its_times(
        redis_url, cleared):
    """A use taken before the clear and given back after it (a late void) is none of the new
    rule's: the new rule forces exactly its N answers."""
    async with faulted(redis_url=redis_url) as switch:
        pan = await switch.new_card(limit_fen=100_000)
        await rule_on(switch, pan, "again", code="05", times=2)
        assert await take(switch, "again", 2, "k-out", "t1") == "taken"
        await switch.clear_faults("again" if cleared == "the rule" else None)
        assert (await used(switch, "again"),
                await switch.ledger.client.exists(takers_key("again"))) == (0, 0)
        await rule_on(switch, pan, "again", code="05", times=2)
        assert await give_back(switch.ledger, "again|t1", "k-out") is False
        assert await codes(switch, pan, 3) == ["05", "05", "00"]
        assert await used(switch, "again") == 2


@pytest.mark.parametrize("mode", [CUT, HOLD])
async def test_a_give_back_redis_fails_never_changes_the_answer_and_is_tried_again(
        private_redis, tmp_path, mode):
    """A repeat of a request decided before the rule takes a use and gets its first answer
    (00): the use is given back. Redis fails that one call (CUT: it ran, its reply lost;
    HOLD: it never arrives, the link given up at the deadline): the answer is still 00, no
    void is journaled, and the use is back (tried again) so the rule forces its one answer."""
    give = ledger_library().function("fault_give_back").encode()
    async with FaultProxy(private_redis.port, give, mode) as proxy, \
            faulted(short_deadline_config(), redis_url=proxy.url,
                    journal_dir=tmp_path / "run") as switch:
        pan = await switch.new_card(limit_fen=100_000)
        decided = await switch.send("jd", pan, amount=100, mcc="5411")
        await rule_on(switch, pan, "once", code="05", times=1)
        again = await switch.repeat(decided)
        assert proxy.triggered.is_set()
        assert (again.response.response_code, again.response.repeat) == ("00", True)
        assert not switch.server.stand_in.journal.pending  # no void of the approval
        assert switch.server.counters.redis_errors == 0

        async def given_back() -> bool:
            return (await used(switch, "once"),
                    await switch.ledger.client.hlen(takers_key("once"))) == (0, 0)
        await until_true(given_back, "the use given back")
        assert await codes(switch, pan, 2) == ["05", "00"]
        assert (await switch.card(pan)).posted == 200  # the first sale and the last: no void


async def test_a_spent_rule_asks_redis_no_more_until_its_recheck(redis_url, monkeypatch):
    """Found spent, a rule costs a matching request no call (the pipeline's count: the
    ledger's call alone) until the set changes or the recheck interval has passed."""
    monkeypatch.setattr(limits, "fault_spent_recheck_s", 3_600)
    async with faulted(redis_url=redis_url) as switch:
        pan, unruled = [await switch.new_card(limit_fen=100_000) for _ in range(2)]
        await rule_on(switch, pan, "once", code="05", times=1)
        assert await codes(switch, pan, 2) == ["05", "00"]  # the second found it spent

        async def calls_of(card: str) -> int:  # a sale's calls to Redis
            before = switch.ledger.scripts.calls
            assert await codes(switch, card, 1) == ["00"]
            return switch.ledger.scripts.calls - before
        ledger_calls = await calls_of(unruled)
        assert [await calls_of(pan) for _ in range(3)] == [ledger_calls] * 3  # no take
        await rule_on(switch, pan, "other", mcc="0000", code="05")  # a new set: asked again
        assert await calls_of(pan) == ledger_calls + 1


async def test_a_use_a_void_gives_back_to_a_rule_found_spent_is_taken_within_the_recheck(
        private_redis, tmp_path):
    """times=1: the first answer is lost (voided later, its use given back); a sale meanwhile
    finds the rule spent. After the void, the rule forces its one answer again within the
    recheck interval: exactly one 05 reaches the client."""
    authorize = ledger_library().function("authorize").encode()
    async with FaultProxy(private_redis.port, authorize, CUT) as proxy, \
            faulted(redis_url=proxy.url, journal_dir=tmp_path / "run") as switch:
        pan = await switch.new_card(limit_fen=100_000)
        await rule_on(switch, pan, "once", code="05", times=1)
        lost = await switch.send("jd", pan, amount=100, mcc="5411")
        assert (proxy.triggered.is_set(), lost.response.response_code) == (True, "91")
        assert await codes(switch, pan, 1) == ["00"]  # spent: the lost one holds the use
        await until_true(drained(switch), "the lost answer's void forwarded")
        assert await used(switch, "once") == 0
        answered: list[str] = []

        async def forced_again() -> bool:
            answered.extend(await codes(switch, pan, 1))
            return answered[-1] == "05"
        await until_true(forced_again, "the given-back use taken",
                         wait_s=limits.fault_spent_recheck_s + 2)
        assert set(answered[:-1]) <= {"00"}
        assert await codes(switch, pan, 2) == ["00", "00"]
        assert await used(switch, "once") == 1
