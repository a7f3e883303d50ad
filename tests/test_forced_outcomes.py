"""Forced outcomes per card (`switch card force`, Ledger.force, a scenario's `force` step):
over real TCP on every channel, against the real ledger in Redis."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from pathlib import Path

import pytest

from protocols.cardnumbers import mask_pan
from switch import limits, testing
from switch.config import Config, Listener, ServerLimits
from switch.ledger import NO_ANSWER, STAND_IN
from switch.scenario_file import scenario_from
from switch.scenario_run import PASS, Target, run_scenario
from tests.support import make_card, posted_is, switch_cli, until_true
from tests.test_ledger_guards import sale

CHANNELS = ("jd", "wechat", "pos", "xpay")


@pytest.mark.parametrize("channel", CHANNELS)
async def test_a_forced_code_answers_the_next_n_requests_and_changes_nothing(redis_url, channel):
    async with testing.start(redis_url=redis_url) as switch:
        pan = await switch.new_card(limit_fen=50_000)
        await switch.force(pan, "05", times=2)
        for _ in range(2):
            forced = await switch.send(channel, pan, amount=1_000, mcc="5411")
            assert (forced.response.response_code, forced.response.reason) == ("05", "forced")
            assert forced.response.approved_fen == 0
        view = await switch.card(pan)
        assert (view.posted, view.held, view.open_to_buy, view.beans) == (0, 0, 50_000, 0)
        assert (view.force, view.forced, view.transactions) == ("", 2, [])
        decided = await switch.send(channel, pan, amount=1_000, mcc="5411")
        assert decided.response.response_code == "00", decided.response
        assert (await switch.card(pan)).forced == 2


async def test_a_repeat_gets_its_first_answer_and_a_forced_answer_is_remembered(redis_url):
    async with testing.start(redis_url=redis_url) as switch:
        pan = await switch.new_card(limit_fen=50_000)
        sale = await switch.send("pos", pan, amount=1_000, mcc="5411")
        await switch.force(pan, "51")
        assert (await switch.repeat(sale)).response.response_code == "00"
        forced = await switch.send("pos", pan, amount=2_000, mcc="5411")
        assert forced.response.response_code == "51"
        await switch.force(pan, None)
        again = await switch.repeat(forced)
        assert (again.response.response_code, again.response.reason) == ("51", "forced")
        view = await switch.card(pan)
        assert (view.posted, view.forced, view.force) == (1_000, 1, "")


async def test_without_times_every_request_is_forced_until_cleared(redis_url):
    async with testing.start(redis_url=redis_url) as switch:
        pan = await switch.new_card(limit_fen=50_000)
        await switch.force(pan, "91")
        codes = [(await switch.send("jd", pan, amount=100, mcc="5411")).response.response_code
                 for _ in range(3)]
        assert codes == ["91"] * 3
        assert (await switch.card(pan)).force == "91||"
        await switch.force(pan, None)
        assert (await switch.send("jd", pan, amount=100, mcc="5411")).response.response_code \
            == "00"


async def test_a_channel_forced_leaves_the_others_decided(redis_url):
    async with testing.start(redis_url=redis_url) as switch:
        pan = await switch.new_card(limit_fen=50_000)
        await switch.force(pan, "05", times=1, channel="wechat")
        assert (await switch.send("jd", pan, amount=100, mcc="5411")).response.response_code \
            == "00"
        assert (await switch.card(pan)).force == "05|1|wechat"
        assert (await switch.send("wechat", pan, amount=100, mcc="5411")
                ).response.response_code == "05"
        assert (await switch.card(pan)).force == ""


async def test_a_forced_code_wins_over_the_cards_own_refusal(redis_url):
    async with testing.start(redis_url=redis_url) as switch:
        lost = await switch.new_card(limit_fen=50_000, status="lost")
        await switch.force(lost, "05", times=1)
        assert (await switch.send("jd", lost, amount=100, mcc="5411")).response.response_code \
            == "05"
        assert (await switch.send("jd", lost, amount=100, mcc="5411")).response.response_code \
            == "41"


async def test_concurrent_requests_never_take_more_than_n(redis_url):
    async with testing.start(redis_url=redis_url) as switch:
        pan = await switch.new_card(limit_fen=1_000_000)
        await switch.force(pan, "05", times=3)
        answers = await asyncio.gather(*(switch.send("jd", pan, amount=100, mcc="5411")
                                         for _ in range(10)))
        codes = sorted(answer.response.response_code for answer in answers)
        assert codes == ["00"] * 7 + ["05"] * 3
        assert (await switch.card(pan)).forced == 3


@pytest.mark.parametrize(("code", "times", "channel", "message"), [
    ("00", None, "", "not a declining response code"),
    ("10", None, "", "not a declining response code"),
    ("05", 0, "", "times must be 1.."),
    ("05", limits.forced_times_max + 1, "", "times must be 1.."),
    ("05", None, "fax", "channel must be one of"),
])
async def test_the_ledger_refuses_what_cannot_be_forced(redis_url, code, times, channel, message):
    async with testing.start(redis_url=redis_url) as switch:
        pan = await switch.new_card(limit_fen=100)
        with pytest.raises(ValueError, match=message):
            await switch.force(pan, code, times, channel)
        await switch.force(pan, "05", limits.forced_times_max)  # the bound itself is taken
        assert (await switch.card(pan)).force == f"05|{limits.forced_times_max}|"


async def test_forcing_a_card_that_does_not_exist_is_refused(redis_url):
    async with testing.start(redis_url=redis_url) as switch:
        with pytest.raises(ValueError, match="no such card"):
            await switch.force("6212340000000000000", "05")


async def test_the_command_forces_shows_and_clears(redis_url):
    env = dict(os.environ, REDIS_URL=redis_url)
    async with testing.start(redis_url=redis_url) as switch:
        pan = await switch.new_card(limit_fen=50_000)
        code, out, err = await switch_cli("card", "force", pan, "--code", "05", "--times", "2",
                                          "--channel", "pos", env=env)
        assert code == 0, err
        assert "the next 2 requests on pos answered 05" in out and pan not in out
        assert (await switch.send("pos", pan, amount=100, mcc="5411")).response.response_code \
            == "05"
        code, out, _ = await switch_cli("card", "show", pan, env=env)
        assert "forced: the next 1 request on pos answered 05" in out and "(1 answered" in out
        code, out, _ = await switch_cli("card", "show", pan, "--json", env=env)
        assert (json.loads(out)["force"], json.loads(out)["forced"]) == ("05|1|pos", 1)
        code, out, _ = await switch_cli("card", "force", pan, "--clear", env=env)
        assert code == 0 and "no forced outcome" in out
        assert (await switch.card(pan)).force == ""
        for bad, message in ((["--code", "00"], "not a declining"), ([], "say --code"),
                             (["--code", "05", "--clear"], "say --code"),
                             (["--code", "05", "--times", "0"], "times must be")):
            code, _, err = await switch_cli("card", "force", pan, *bad, env=env)
            assert code != 0 and message in err, (bad, err)
        code, _, err = await switch_cli("card", "force", "6212340000000000000", "--code", "05",
                                        env=env)
        assert code != 0 and "no card" in err


async def test_a_scenario_forces_then_clears(redis_url):
    document = {"cards": {"a": {"limit": 10_000}}, "step": [
        {"name": "force", "force": {"card": "a", "code": "51", "times": 1, "channel": "wechat"}},
        {"name": "jd", "channel": "jd", "type": "sale", "card": "a", "amount": 100,
         "mcc": "5411", "expect": {"response_code": "00"}},
        {"name": "declined", "channel": "wechat", "type": "sale", "card": "a", "amount": 100,
         "mcc": "5411", "expect": {"response_code": "51", "reason": "forced"}},
        {"name": "again", "force": {"card": "a", "code": "05"}},
        {"name": "cleared", "force": {"card": "a", "clear": True}, "channel": "pos",
         "type": "sale", "card": "a", "amount": 100, "mcc": "5411",
         "expect": {"response_code": "00"}, "card_after": {"posted": 200}},
    ]}
    scenario = scenario_from(Path("forced.toml"), document)
    async with testing.start(redis_url=redis_url) as switch:
        result = await run_scenario(scenario, Target(switch.host, switch.ports, redis_url),
                                    testing.send_parser())
    assert [r.outcome for r in result.steps] == [PASS] * 5, [r.detail for r in result.steps]


async def test_every_forced_answer_is_counted_and_logged_with_the_card_masked(redis_url,
                                                                             caplog):
    caplog.set_level(logging.INFO, logger="switch.server")
    async with testing.start(redis_url=redis_url) as switch:
        pan = await switch.new_card(limit_fen=50_000)
        await switch.force(pan, "05", times=1)
        await switch.send("xpay", pan, amount=100, mcc="5411")
        await switch.send("xpay", pan, amount=100, mcc="5411")  # decided: not counted
        assert switch.server.counters.forced == 1
    forced = [r.getMessage() for r in caplog.records if "forced outcome" in r.getMessage()]
    assert forced == [f"xpay: {mask_pan(pan)} answered 05 by the card's forced outcome"]


async def test_a_forced_no_answer_answers_nothing_on_every_channel(redis_url):
    async with testing.start(redis_url=redis_url) as switch:
        pans = {channel: await switch.new_card(limit_fen=50_000) for channel in CHANNELS}
        for pan in pans.values():
            await switch.force(pan, NO_ANSWER, times=1)

        async def unanswered(channel):
            with pytest.raises(TimeoutError):
                await switch.send(channel, pans[channel], amount=1_000, mcc="5411")

        await asyncio.gather(*(unanswered(channel) for channel in CHANNELS))
        for channel, pan in pans.items():
            view = await switch.card(pan)
            assert (view.posted, view.held, view.forced, view.force) == (0, 0, 1, ""), channel
            after = await switch.send(channel, pan, amount=1_000, mcc="5411")
            assert after.response.response_code == "00", (channel, after.response)
        assert switch.server.counters.forced == len(CHANNELS)


async def test_the_command_forces_no_answer(redis_url):
    env = dict(os.environ, REDIS_URL=redis_url)
    async with testing.start(redis_url=redis_url) as switch:
        pan = await switch.new_card(limit_fen=50_000)
        code, out, err = await switch_cli("card", "force", pan, "--no-answer", env=env)
        assert code == 0 and "every request never answered" in out, err
        assert (await switch.card(pan)).force == f"{NO_ANSWER}||"
        code, _, err = await switch_cli("card", "force", pan, "--no-answer", "--code", "05",
                                        env=env)
        assert code != 0 and "say --code CODE, --no-answer" in err


# --- a forced delay, a forced stand-in, and a void giving a forced answer's use back --------

DELAY_MS = 300
SHORT_DEADLINE_MS = 600  # a switch whose deadline a forced delay can pass, quickly


def short_deadline_config() -> Config:
    return Config(listeners={name: Listener(port=0) for name in CHANNELS}, test_clock=True,
                  server_limits=ServerLimits(request_deadline_ms=SHORT_DEADLINE_MS))


async def timed_send(switch, channel, pan, **message):
    loop = asyncio.get_running_loop()
    began = loop.time()
    answer = await switch.send(channel, pan, **message)
    return answer, loop.time() - began


@pytest.mark.parametrize("channel", CHANNELS)
async def test_a_forced_delay_holds_the_answer_then_decides_or_declines(redis_url, channel):
    async with testing.start(redis_url=redis_url) as switch:
        pan = await switch.new_card(limit_fen=50_000)
        await switch.force(pan, "", times=1, delay_ms=DELAY_MS)
        decided, waited_s = await timed_send(switch, channel, pan, amount=1_000, mcc="5411")
        assert decided.response.response_code == "00" and waited_s >= DELAY_MS / 1000
        view = await switch.card(pan)
        assert (view.posted, view.force, view.forced) == (1_000, "", 1)
        await switch.force(pan, "05", times=1, delay_ms=DELAY_MS)
        declined, waited_s = await timed_send(switch, channel, pan, amount=1_000, mcc="5411")
        assert (declined.response.response_code, declined.response.reason) == ("05", "forced")
        assert waited_s >= DELAY_MS / 1000
        quick, waited_s = await timed_send(switch, channel, pan, amount=1_000, mcc="5411")
        assert quick.response.response_code == "00" and waited_s < DELAY_MS / 1000
        assert switch.server.counters.forced == 2


async def test_a_delay_past_the_deadline_is_91_at_the_deadline_and_its_call_voided(
        redis_url, tmp_path):
    async with testing.start(short_deadline_config(), redis_url=redis_url,
                             journal_dir=tmp_path / "run") as switch:
        pan = await switch.new_card(limit_fen=50_000)
        await switch.force(pan, "", times=1, delay_ms=limits.forced_delay_max_ms)
        late, waited_s = await timed_send(switch, "jd", pan, amount=1_000, mcc="5411")
        assert (late.response.response_code, late.response.reason) == ("91", "issuer_timeout")
        # Answered at the deadline, not after the delay asked for.
        assert SHORT_DEADLINE_MS / 1000 <= waited_s < SHORT_DEADLINE_MS / 1000 + 1.0
        await until_true(lambda: posted_is(switch, pan, 0), "the late sale voided")
        view = await switch.card(pan)
        # The 91 was the outcome asked for: its use is not given back.
        assert (view.voids, view.force, view.forced) == (1, "", 1)
        assert switch.server.counters.timeouts == 1


async def test_a_void_of_a_forced_answer_gives_its_use_back(ledger):
    pan = await make_card(ledger, limit_fen=10_000)
    assert await ledger.force(pan, "05", times=2, channel="jd")
    request = sale(pan, 500)
    forced = await ledger.execute(request, "A00001")
    assert (forced.response_code, forced.forced) == ("05", "card")
    assert ((await ledger.card(pan)).force, (await ledger.card(pan)).forced) == ("05|1|jd", 1)
    assert await ledger.void(pan, request.idempotency_key, "A00001") == "voided"
    view = await ledger.card(pan)
    assert (view.force, view.forced, view.voids) == ("05|2|jd", 0, 1)
    # The last use, voided while the force is gone: it comes back as one use.
    last = sale(pan, 500)
    await ledger.execute(sale(pan, 500), "A00002")
    await ledger.execute(last, "A00003")
    assert (await ledger.card(pan)).force == ""
    assert await ledger.void(pan, last.idempotency_key, "A00003") == "voided"
    assert (await ledger.card(pan)).force == "05|1|jd"
    # A force changed since: nothing given back to the new one, but the count is.
    another = sale(pan, 500)
    await ledger.execute(another, "A00004")
    await ledger.force(pan, "51", times=5)
    assert await ledger.void(pan, another.idempotency_key, "A00004") == "voided"
    assert ((await ledger.card(pan)).force, (await ledger.card(pan)).forced) == ("51|5|", 1)


async def test_a_void_of_an_answer_forced_for_ever_changes_only_the_count(ledger):
    pan = await make_card(ledger, limit_fen=10_000)
    await ledger.force(pan, "", delay_ms=DELAY_MS)
    request = sale(pan, 500)
    approved = await ledger.execute(request, "A00001")
    assert (approved.response_code, approved.delay_ms, approved.forced) == ("00", DELAY_MS,
                                                                            "card")
    assert await ledger.void(pan, request.idempotency_key, "A00001") == "voided"
    view = await ledger.card(pan)
    assert (view.posted, view.force, view.forced) == (0, f"||{''}|{DELAY_MS}", 0)


@pytest.mark.parametrize("channel", CHANNELS)
async def test_a_forced_stand_in_is_journaled_answered_and_advised(redis_url, tmp_path,
                                                                   channel):
    async with testing.start(redis_url=redis_url, journal_dir=tmp_path / "run") as switch:
        assert not switch.server.stand_in.enabled  # the shipped policy: stand-in off
        pan = await switch.new_card(limit_fen=500_000)
        await switch.force(pan, STAND_IN, times=1)
        stood_in = await switch.send(channel, pan, amount=1_000, mcc="5411")
        assert (stood_in.response.response_code, stood_in.response.stand_in) == ("00", True)
        await until_true(lambda: posted_is(switch, pan, 1_000), "the stand-in approval advised")
        assert switch.server.stand_in.counters["stand_in_approved"] == 1
        # Over the policy's stand-in limit per transaction (50,000 fen by default): 61.
        await switch.force(pan, STAND_IN, times=1)
        over = await switch.send(channel, pan, amount=50_001, mcc="5411")
        assert (over.response.response_code, over.response.stand_in) == ("61", True)
        view = await switch.card(pan)
        assert (view.force, view.forced, view.posted) == ("", 2, 1_000)


async def test_a_forced_stand_in_without_a_journal_is_91(redis_url):
    async with testing.start(redis_url=redis_url) as switch:
        pan = await switch.new_card(limit_fen=50_000)
        await switch.force(pan, STAND_IN, times=1)
        answer = await switch.send("jd", pan, amount=1_000, mcc="5411")
        assert (answer.response.response_code, answer.response.reason) == (
            "91", "issuer_unavailable")
        assert (await switch.card(pan)).posted == 0


@pytest.mark.parametrize(("code", "delay", "message"), [
    (STAND_IN, 10, "only a code or a decision can be delayed"),
    (NO_ANSWER, 10, "only a code or a decision can be delayed"),
    ("", 0, "say a code"),
    (None, 10, "a delay needs no clearing"),
    ("05", limits.forced_delay_max_ms + 1, "delay must be 1.."),
    ("05", -1, "delay must be 1.."),
])
async def test_what_cannot_be_forced_with_a_delay(ledger, code, delay, message):
    pan = await make_card(ledger)
    with pytest.raises(ValueError, match=message):
        await ledger.force(pan, code, delay_ms=delay)
    assert await ledger.force(pan, "05", delay_ms=limits.forced_delay_max_ms)  # the bound
    assert (await ledger.card(pan)).force == f"05|||{limits.forced_delay_max_ms}"


async def test_the_command_forces_a_delay_and_a_stand_in(redis_url):
    env = dict(os.environ, REDIS_URL=redis_url)
    async with testing.start(redis_url=redis_url) as switch:
        pan = await switch.new_card(limit_fen=50_000)
        code, out, err = await switch_cli("card", "force", pan, "--delay-ms", "1500",
                                          "--times", "1", env=env)
        assert code == 0 and "the next 1 request decided as usual after 1500 ms" in out, err
        assert (await switch.card(pan)).force == "|1||1500"
        code, out, err = await switch_cli("card", "force", pan, "--code", "51", "--delay-ms",
                                          "200", env=env)
        assert code == 0 and "answered 51 (reason forced) after 200 ms" in out, err
        code, out, err = await switch_cli("card", "force", pan, "--stand-in", env=env)
        assert code == 0 and "every request decided by stand-in" in out, err
        assert (await switch.card(pan)).force == f"{STAND_IN}||"
        for bad, message in ((["--stand-in", "--no-answer"], "say --code CODE"),
                             (["--stand-in", "--delay-ms", "5"], "can be delayed"),
                             (["--delay-ms", "0"], "say --code CODE"),
                             (["--delay-ms", str(limits.forced_delay_max_ms + 1)], "delay"),
                             (["--clear", "--delay-ms", "5"], "say --code CODE")):
            code, _, err = await switch_cli("card", "force", pan, *bad, env=env)
            assert code == 2 and message in err, (bad, err)
        assert (await switch.card(pan)).force == f"{STAND_IN}||"

