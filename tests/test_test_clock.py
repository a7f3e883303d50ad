"""The test clock (`switch serve --test-clock`, `switch clock`, the embedded `switch.clock`,
a scenario's `advance_clock`): every worker takes a new time before the command returns,
holds and windows follow it, and without --test-clock every command refuses."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from switch import limits, testing
from switch.clock import (
    DAY_MS,
    TEST_CLOCK_CHANNEL,
    TEST_CLOCK_KEY,
    TestClockOff,
    duration_ms,
    instant_ms,
)
from switch.config import Config, Listener
from switch.scenario_file import scenario_from
from switch.scenario_run import ERROR, Target, run_scenario
from tests.test_cli import run, serve, stop

HOLD_LIFE_MS = 30 * DAY_MS  # the shipped policy's [holds] expiry_days


async def test_a_hold_lapses_when_the_clock_passes_its_life():
    async with testing.start() as switch:  # a private Redis: the clock is the whole switch's
        pan = await switch.new_card(limit_fen=100_000)
        auth = await switch.send("pos", pan, type="auth", amount=30_000, mcc="7011")
        assert auth.response.response_code == "00"
        before = switch.clock.now_ms()
        await switch.clock.advance(HOLD_LIFE_MS - 60_000)
        assert (await switch.card(pan)).held == 30_000  # a minute short of its life
        await switch.clock.advance("2m")
        assert switch.clock.now_ms() - before >= HOLD_LIFE_MS + 60_000
        sale = await switch.send("jd", pan, amount=100, mcc="5411")
        assert sale.response.open_to_buy_fen == 100_000 - 100  # the hold is gone
        assert (await switch.card(pan)).transactions[0].state == "expired"


async def test_set_goes_forward_only_and_reset_returns_to_real_time():
    async with testing.start() as switch:
        control = switch.clock.control
        await switch.clock.set("2031-06-01T10:00")
        now_ms, offset_ms, workers = await control.show()
        assert abs(now_ms - instant_ms("2031-06-01T10:00")) < 60_000 and workers == 1
        with pytest.raises(ValueError, match="does not go back"):
            await switch.clock.set("2031-05-31T10:00")
        assert await control.offset_ms() == offset_ms
        await switch.clock.reset()
        assert await control.offset_ms() == 0


async def test_the_bounds_of_a_move():
    async with testing.start() as switch:
        control = switch.clock.control
        with pytest.raises(ValueError, match="advance by 1s"):
            await control.advance(999)
        with pytest.raises(ValueError, match="advance by 1s"):
            await control.advance(limits.test_clock_offset_max_ms + 1)
        await control.advance(1_000)
        await control.reset()
        await control.advance(limits.test_clock_offset_max_ms)  # the bound itself is taken
        with pytest.raises(ValueError, match="at most 3650 days"):
            await control.advance(1_000)
        assert await control.offset_ms() == limits.test_clock_offset_max_ms


@pytest.mark.parametrize(("text", "ms"), [("36h", 36 * 3_600_000), ("1d12h", 36 * 3_600_000),
                                          ("90m", 5_400_000), ("45s", 45_000)])
def test_durations(text, ms):
    assert duration_ms(text) == ms


@pytest.mark.parametrize("text", ["36", "h", "1.5h", "-1h", "1w", ""])
def test_what_is_not_a_duration(text):
    with pytest.raises(ValueError, match="not a duration"):
        duration_ms(text)


async def test_without_the_test_clock_every_command_refuses_and_changes_nothing():
    config = Config(listeners={"jd": Listener(port=0)})  # test_clock off
    async with testing.start(config) as switch:
        for move in (switch.clock.advance("1h"), switch.clock.reset(),
                     switch.clock.control.show()):
            with pytest.raises(TestClockOff, match="--test-clock"):
                await move
        assert await switch.ledger.client.exists(TEST_CLOCK_KEY) == 0
        env = dict(os.environ, REDIS_URL=switch.redis_url)
        done = run(["clock", "advance", "36h"], env, check=False)
        assert done.returncode == 2 and "no switch started with --test-clock" in done.stderr
        scenario = scenario_from(Path("s.toml"), {"step": [{"advance_clock": "1h"}]})
        result = await run_scenario(scenario, Target(switch.host, switch.ports,
                                                     switch.redis_url), testing.send_parser())
        assert result.steps[0].outcome == ERROR and "--test-clock" in result.steps[0].detail


async def test_a_listener_that_does_not_acknowledge_is_named_within_the_bound(monkeypatch):
    monkeypatch.setattr(limits, "announce_ack_wait_s", 0.3)
    async with testing.start() as switch:
        silent = switch.ledger.client.pubsub()
        await silent.subscribe(TEST_CLOCK_CHANNEL)
        try:
            with pytest.raises(TimeoutError, match="only 1 of 2 listeners"):
                await switch.clock.advance("1h")
        finally:
            await silent.aclose()
        assert await switch.clock.control.offset_ms() == 3_600_000  # written, and taken
        assert switch.ledger.clock.now_ms() - switch.clock.now_ms() < 1_000


def test_every_worker_has_the_new_time_when_the_command_returns(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env["SWITCH_RUN_DIR"] = str(tmp_path / "run")
    process, _, port = serve(env, ["--ephemeral", "--workers", "2", "--test-clock"])
    try:
        shown = run(["clock", "show"], env).stdout
        assert "+0d 0h 0m 0s from real time; 2 workers following" in shown
        send = ["send", "--port", str(port), "--pan", "demo2", "--mcc", "7011", "--json"]
        auth = json.loads(run([*send, "--type", "auth", "--amount", "50000"], env).stdout)
        assert auth["response_code"] == "00"
        limit = json.loads(run(["card", "show", "demo2", "--json"], env).stdout)["limit"]
        moved = run(["clock", "advance", "30d1h"], env).stdout
        assert re.search(r"test clock \d{4}-\d\d-\d\dT.* \(\+30d 1h 0m \d+s from real time; "
                         r"2 workers following\)", moved), moved
        # New connections land on either worker (SO_REUSEPORT): each answer sees the hold gone.
        for _ in range(6):
            sale = json.loads(run([*send, "--amount", "1"], env).stdout)
            assert sale["response_code"] == "00"
            limit -= 1
            assert sale["open_to_buy_fen"] == limit
        back = run(["clock", "set", "2020-01-01T00:00"], env, check=False)
        assert back.returncode == 2 and "does not go back" in back.stderr
    finally:
        stop(process)
