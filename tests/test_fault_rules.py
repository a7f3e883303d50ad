"""Fault rules (switch/faults.py, `switch fault`, `switch serve --faults`, a scenario's
`fault` steps): each action on every channel over real TCP, what a rule matches, N times
exact across two worker processes, a seeded fraction the same every run, the rule file's
errors naming rule and key, and the commands."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import subprocess
from pathlib import Path

import pytest

from protocols.cardnumbers import mask_pan
from protocols.messages import AuthRequest, MessageClass
from switch import limits, send, testing
from switch.channel_client import ChannelClient
from switch.config import Config, Listener, ServerLimits
from switch.faults import (
    COUNTS_KEY,
    FaultError,
    FaultRule,
    load_rule_file,
    rule_from,
    selected,
    stored_rules,
)
from switch.ledger import Ledger
from switch.redis_client import connect
from switch.scenario_file import ScenarioError, scenario_from
from switch.scenario_run import PASS, Target, fresh_card_number, run_scenario
from tests.support import posted_is, switch_cli, until_true
from tests.test_cli import SWITCH, WAIT_S, read_banner, stop

CHANNELS = ("jd", "wechat", "pos", "xpay")
DELAY_MS = 300


@contextlib.asynccontextmanager
async def faulted(*args, **kwargs):
    """testing.start, with no fault rule in force before or after: the rules are the whole
    Redis', and the tests' Redis is shared."""
    async with testing.start(*args, **kwargs) as switch:
        await switch.clear_faults()
        try:
            yield switch
        finally:
            await switch.clear_faults()


async def rule_on(switch, pan: str, rule_id: str, **action) -> None:
    await switch.add_fault(id=rule_id, card=pan, **action)


# --- each action, on every channel, over TCP ------------------------------------------------

@pytest.mark.parametrize("channel", CHANNELS)
async def test_every_action_on_every_channel(redis_url, tmp_path, channel, monkeypatch):
    monkeypatch.setattr(send, "ANSWER_WAIT_S", 1.0)  # the no-answer step waits this long
    async with faulted(redis_url=redis_url, journal_dir=tmp_path / "run") as switch:
        pan = await switch.new_card(limit_fen=100_000)
        loop = asyncio.get_running_loop()

        await rule_on(switch, pan, "code", code="05", times=1)
        coded = await switch.send(channel, pan, amount=1_000, mcc="5411")
        assert (coded.response.response_code, coded.response.reason) == ("05", "fault:code")

        await rule_on(switch, pan, "slow", delay_ms=DELAY_MS, times=1)
        began = loop.time()
        slow = await switch.send(channel, pan, amount=1_000, mcc="5411")
        assert slow.response.response_code == "00" and loop.time() - began >= DELAY_MS / 1000

        await rule_on(switch, pan, "silent", no_answer=True, times=1)
        with pytest.raises(TimeoutError):
            await switch.send(channel, pan, amount=1_000, mcc="5411")

        await rule_on(switch, pan, "cut", close=True, times=1)
        with pytest.raises(ConnectionError, match="closed the connection"):
            await switch.send(channel, pan, amount=1_000, mcc="5411")

        await rule_on(switch, pan, "standin", stand_in=True, times=1)
        stood_in = await switch.send(channel, pan, amount=2_000, mcc="5411")
        assert (stood_in.response.response_code, stood_in.response.stand_in) == ("00", True)
        await until_true(lambda: posted_is(switch, pan, 3_000), "the stand-in advised")

        decided = await switch.send(channel, pan, amount=1_000, mcc="5411")
        assert decided.response.response_code == "00" and not decided.response.stand_in
        view = await switch.card(pan)
        assert (view.posted, view.forced) == (4_000, 0)  # a rule's answers: not the card's
        assert switch.server.counters.faults == 5
        assert switch.server.counters.forced == 5


async def test_a_rule_wins_over_the_cards_own_force_and_its_decline_is_remembered(redis_url):
    async with faulted(redis_url=redis_url) as switch:
        pan = await switch.new_card(limit_fen=100_000)
        await switch.force(pan, "51", times=1)
        await rule_on(switch, pan, "first", code="05", times=1)
        ruled = await switch.send("jd", pan, amount=100, mcc="5411")
        assert ruled.response.response_code == "05"
        again = await switch.repeat(ruled)
        assert (again.response.response_code, again.response.repeat) == ("05", True)
        assert (await switch.send("jd", pan, amount=100, mcc="5411")).response.response_code \
            == "51"  # the card's own, untouched by the rule
        assert switch.server.counters.faults == 1


# --- what a rule matches --------------------------------------------------------------------

def request(**fields) -> AuthRequest:
    values = {"message_class": MessageClass.SALE, "channel": "pos",
              "card": "6253681234567890", "amount_fen": 1_000, "mcc": "5411",
              "merchant_id": "M1", "terminal_id": "T1"} | fields
    return AuthRequest(**values)


@pytest.mark.parametrize(("rule", "matching", "other"), [
    ({"channel": "pos"}, {}, {"channel": "jd"}),
    ({"class": "auth"}, {"message_class": MessageClass.AUTH}, {}),
    ({"card": "6253681234567890"}, {}, {"card": "6253681234567891"}),
    ({"card_prefix": "625368"}, {}, {"card": "6253691234567890"}),
    ({"amount_min": 1_000}, {}, {"amount_fen": 999}),
    ({"amount_max": 1_000}, {}, {"amount_fen": 1_001}),
    ({"mcc": "5411"}, {}, {"mcc": "5412"}),
    ({"merchant": "M1"}, {}, {"merchant_id": "M2"}),
    ({"terminal": "T1"}, {}, {"terminal_id": "T2"}),
    ({"channel": "pos", "mcc": "5411"}, {}, {"mcc": "7995"}),  # every key must match
])
def test_a_rule_matches_on_each_key(rule, matching, other):
    checked = rule_from({"id": "r", "code": "05"} | rule, "test")
    assert checked.matches(request(**matching))
    assert not checked.matches(request(**other))
    assert rule_from({"id": "all", "code": "05"}, "test").matches(request(**other))


async def test_the_first_matching_rule_wins_and_a_spent_one_lets_the_next_act(redis_url):
    async with faulted(redis_url=redis_url) as switch:
        pan = await switch.new_card(limit_fen=100_000)
        await switch.add_fault(id="big", amount_min=5_000, code="61")
        await switch.add_fault(id="once", card=pan, code="05", times=1)
        await switch.add_fault(id="then", card=pan, code="51")
        codes = [(await switch.send("pos", pan, amount=amount, mcc="5411")).response.reason
                 for amount in (5_000, 100, 100)]
        assert codes == ["fault:big", "fault:once", "fault:then"]
        await switch.clear_faults()
        assert (await switch.send("pos", pan, amount=5_000, mcc="5411")).response.response_code \
            == "00"


async def test_a_card_rule_matches_an_xpay_token_by_its_card(redis_url):
    async with faulted(redis_url=redis_url) as switch:
        pan = await switch.new_card(limit_fen=100_000)
        await switch.add_fault(id="wallet", card_prefix=pan[:12], channel="xpay", code="05")
        answer = await switch.send("xpay", pan, amount=100, mcc="5411")
        assert answer.response.reason == "fault:wallet"


# --- how often: times across workers, a seeded fraction --------------------------------------

async def test_a_seeded_fraction_picks_the_same_matches_every_run(redis_url):
    async with faulted(redis_url=redis_url) as switch:
        pan = await switch.new_card(limit_fen=1_000_000)
        runs = []
        for _ in range(2):
            await switch.add_fault(id="some", card=pan, code="05", fraction=0.5, seed=7)
            runs.append([(await switch.send("jd", pan, amount=100, mcc="5411")
                          ).response.response_code == "05" for _ in range(16)])
            await switch.clear_faults("some")
        expected = [selected(7, match, 0.5) for match in range(1, 17)]
        assert runs == [expected, expected] and 3 <= sum(expected) <= 13
        assert expected != [selected(8, match, 0.5) for match in range(1, 17)]


def test_a_fraction_selects_that_share():
    picked = sum(selected(3, match, 0.25) for match in range(1, 4001))
    assert 900 <= picked <= 1100
    assert all(selected(3, match, 1.0) for match in range(1, 100))


def test_two_workers_apply_a_rule_exactly_n_times(tmp_path):
    faults = tmp_path / "faults.toml"
    faults.write_text('[[rule]]\nid = "three"\nchannel = "jd"\ncode = "05"\ntimes = 3\n')
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env["SWITCH_RUN_DIR"] = str(tmp_path / "run")
    process = subprocess.Popen(
        [*SWITCH, "serve", "--demo", "--ephemeral", "--workers", "2", "--faults", str(faults),
         "--listen", "jd=127.0.0.1:0"], env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    try:
        banner = read_banner(process)
        assert "1 fault rule in force" in banner
        port = int(banner.split("jd      listening on 127.0.0.1:")[1].split()[0])
        redis_url = (tmp_path / "run" / "redis.url").read_text().strip()
        codes = asyncio.run(send_many(redis_url, port, 12))
        assert sorted(codes) == ["00"] * 9 + ["05"] * 3
    finally:
        stop(process)


async def send_many(redis_url: str, port: int, count: int) -> list[str]:
    """`count` JD sales at once, each on its own connection (spread over the workers)."""
    ledger = Ledger(connect(redis_url))
    try:
        await ledger.start()
        client = ChannelClient("127.0.0.1", {"jd": port}, testing.send_parser(), ledger)
        pans = [await testing_card(ledger) for _ in range(count)]
        sent = await asyncio.gather(*(client.send("jd", pan, amount=100, mcc="5411")
                                      for pan in pans))
        return [one.answer.response.response_code for one in sent]
    finally:
        await ledger.aclose()


async def testing_card(ledger: Ledger) -> str:
    pan = await fresh_card_number(ledger)
    await ledger.set_card(pan, limit_fen=10_000, expiry="3012")
    return pan


# --- a delay is bounded by the deadline -------------------------------------------------------

async def test_a_rule_delay_past_the_deadline_answers_91_at_the_deadline(redis_url):
    config = Config(listeners={"pos": Listener(port=0)}, test_clock=True,
                    server_limits=ServerLimits(request_deadline_ms=600))
    async with faulted(config, redis_url=redis_url) as switch:
        pan = await switch.new_card(limit_fen=100_000)
        await rule_on(switch, pan, "stall", delay_ms=limits.forced_delay_max_ms)
        loop = asyncio.get_running_loop()
        began = loop.time()
        late = await switch.send("pos", pan, amount=100, mcc="5411")
        assert (late.response.response_code, late.response.reason) == ("91", "issuer_timeout")
        assert 0.6 <= loop.time() - began < 1.6


# --- counted and logged ----------------------------------------------------------------------

async def test_every_faulted_answer_is_counted_and_logged_with_its_rule(redis_url, caplog):
    caplog.set_level(logging.INFO, logger="switch.server")
    async with faulted(redis_url=redis_url) as switch:
        pan = await switch.new_card(limit_fen=100_000)
        await rule_on(switch, pan, "logged", code="43", times=1)
        await switch.send("wechat", pan, amount=100, mcc="5411")
        await switch.send("wechat", pan, amount=100, mcc="5411")
        assert (switch.server.counters.faults, switch.server.counters.forced) == (1, 1)
        counts = await switch.ledger.client.hgetall(COUNTS_KEY)
        assert counts == {"logged:used": "1"}  # the worker knew it spent: asked no more
    lines = [r.getMessage() for r in caplog.records if "fault rule:" in r.getMessage()]
    assert lines == [f"wechat: {mask_pan(pan)} answered 43 by fault rule:logged"]


# --- rule files and their errors --------------------------------------------------------------

@pytest.mark.parametrize(("text", "message"), [
    ('[[rule]]\nid = "a"\ncode = "05"\ncolour = "red"\n', "rule 1 (a): colour: not a known key"),
    ('[[rule]]\ncode = "05"\n', "rule 1: id: required"),
    ('[[rule]]\nid = "a b"\ncode = "05"\n', "rule 1 (a b): id: 1-40 letters"),
    ('[[rule]]\nid = "a"\n', "rule 1 (a): code: an action is required"),
    ('[[rule]]\nid = "a"\ncode = "00"\n', "rule 1 (a): code: '00' is not a declining"),
    ('[[rule]]\nid = "a"\ncode = "05"\nclose = true\n', "rule 1 (a): close: one action"),
    ('[[rule]]\nid = "a"\nno_answer = true\ndelay_ms = 5\n', "delay_ms: goes with a code"),
    ('[[rule]]\nid = "a"\ncode = "05"\ntimes = 0\n', "rule 1 (a): times: must be 1.."),
    (f'[[rule]]\nid = "a"\ncode = "05"\ntimes = {limits.forced_times_max + 1}\n', "times"),
    ('[[rule]]\nid = "a"\ncode = "05"\ntimes = "3"\n', "rule 1 (a): times: Expected `int"),
    ('[[rule]]\nid = "a"\ncode = "05"\nfraction = 0.0\n', "fraction: must be above 0"),
    ('[[rule]]\nid = "a"\ncode = "05"\nfraction = 1.5\n', "fraction: must be above 0"),
    (f'[[rule]]\nid = "a"\ndelay_ms = {limits.forced_delay_max_ms + 1}\n', "delay_ms: must"),
    ('[[rule]]\nid = "a"\ncode = "05"\nchannel = "fax"\n', "channel: 'fax' is not one of"),
    ('[[rule]]\nid = "a"\ncode = "05"\nclass = "sell"\n', "class: 'sell' is not one of"),
    ('[[rule]]\nid = "a"\ncode = "05"\nmcc = "54"\n', "mcc: four digits"),
    ('[[rule]]\nid = "a"\ncode = "05"\ncard_prefix = "62x"\n', "card_prefix: digits only"),
    ('[[rule]]\nid = "a"\ncode = "05"\namount_min = 10\namount_max = 9\n', "amount_max: is below"),
    ('[[rule]]\nid = "a"\ncode = "05"\n[[rule]]\nid = "a"\ncode = "51"\n',
     "rule 2 (a): id: another rule has it"),
    ('[[rule]]\nid = "a"\ncode = "05"\n[[rule]]\nid = "b"\nclose = "yes"\n',
     "rule 2 (b): close: Expected `bool"),
    ("[rule]\nid = 1\n", "rule: must be [[rule]] tables"),
    ("rules = 1\n", "rules: not a known key"),
    ("[[rule]\n", "not valid TOML"),
])
def test_a_bad_rule_file_is_one_error_naming_rule_and_key(tmp_path, text, message):
    path = tmp_path / "faults.toml"
    path.write_text(text)
    with pytest.raises(FaultError, match=None) as error:
        load_rule_file(path)
    assert message in str(error.value) and str(path) in str(error.value), str(error.value)


def test_the_bounds_themselves_are_taken(tmp_path):
    path = tmp_path / "faults.toml"
    path.write_text(f'[[rule]]\nid = "{"x" * 40}"\ncode = "05"\ntimes = '
                    f'{limits.forced_times_max}\ndelay_ms = {limits.forced_delay_max_ms}\n'
                    'fraction = 1.0\namount_min = 0\namount_max = 0\n'
                    '[[rule]]\nid = "b"\ndelay_ms = 1\ntimes = 1\n')
    first, second = load_rule_file(path)
    assert (first.times, first.delay_ms, second.delay_ms) == (
        limits.forced_times_max, limits.forced_delay_max_ms, 1)
    with pytest.raises(FaultError, match="id: 1-40"):
        rule_from({"id": "x" * 41, "code": "05"}, "r")
    too_many = "".join(f'[[rule]]\nid = "r{i}"\ncode = "05"\n'
                       for i in range(limits.fault_rules_max + 1))
    path.write_text(too_many)
    with pytest.raises(FaultError, match=f"at most {limits.fault_rules_max}"):
        load_rule_file(path)
    path.write_text(too_many.rsplit("[[rule]]", 1)[0])
    assert len(load_rule_file(path)) == limits.fault_rules_max


def test_serve_refuses_a_bad_rule_file_before_starting(tmp_path):
    path = tmp_path / "faults.toml"
    path.write_text('[[rule]]\nid = "a"\ncode = "05"\ntimes = 0\n')
    done = subprocess.run([*SWITCH, "serve", "--ephemeral", "--faults", str(path)],
                          capture_output=True, text=True, timeout=WAIT_S,
                          env=dict(os.environ, SWITCH_RUN_DIR=str(tmp_path / "run")))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"switch: {path}: rule 1 (a): times: must be 1..{limits.forced_times_max}"]


# --- the commands -----------------------------------------------------------------------------

async def test_the_commands_add_list_and_clear_rules_a_running_switch_applies(redis_url,
                                                                              tmp_path):
    env = dict(os.environ, REDIS_URL=redis_url)
    async with faulted(redis_url=redis_url) as switch:
        pan = await switch.new_card(limit_fen=100_000)
        code, out, err = await switch_cli("fault", "add", "declined", "--card", pan,
                                          "--code", "05", "--times", "2", env=env)
        assert code == 0 and "1 in force" in out and "1 worker applying them now" in out, err
        assert (await switch.send("jd", pan, amount=100, mcc="5411")).response.response_code \
            == "05"
        code, out, _ = await switch_cli("fault", "list", env=env)
        assert f"1. id=declined card={mask_pan(pan)} code=05 times=2  (used 1 of 2)" in out
        assert pan not in out
        code, out, _ = await switch_cli("fault", "list", "--json", env=env)
        assert json.loads(out)[0]["used"] == 1
        path = tmp_path / "more.toml"
        path.write_text('[[rule]]\nid = "slow"\nmcc = "7995"\ndelay_ms = 10\n')
        code, out, err = await switch_cli("fault", "add", "--file", str(path), env=env)
        assert code == 0 and "2 in force" in out, err
        for bad, message in ((["declined", "--code", "05"], "id: a rule with that id"),
                             (["x", "--code", "05", "--close"], "close: one action"),
                             (["x", "--fraction", "2", "--code", "05"], "fraction: must"),
                             (["--file", str(path), "x"], "not both"),
                             ([], "not both")):
            code, _, err = await switch_cli("fault", "add", *bad, env=env)
            assert code == 2 and message in err and "Traceback" not in err, (bad, err)
        assert [rule.id for rule in (await stored_rules(switch.ledger.client))[1]] == [
            "declined", "slow"]  # nothing applied by a refused command
        code, out, err = await switch_cli("fault", "clear", "--id", "declined", env=env)
        assert code == 0 and "fault rule declined cleared; 1 in force" in out, err
        code, _, err = await switch_cli("fault", "clear", "--id", "declined", env=env)
        assert code == 2 and "no rule declined" in err
        assert (await switch.send("jd", pan, amount=100, mcc="5411")).response.response_code \
            == "00"
        code, out, _ = await switch_cli("fault", "clear", env=env)
        assert code == 0 and "every fault rule cleared; 0 in force" in out
        code, out, _ = await switch_cli("fault", "list", env=env)
        assert out.strip() == "no fault rules in force"


# --- scenarios -----------------------------------------------------------------------------

async def test_a_scenario_adds_clears_and_leaves_no_rule_behind(redis_url):
    document = {"cards": {"a": {"limit": 10_000}}, "step": [
        {"name": "slow", "fault": {"card": "a", "code": "51", "channel": "pos"}},
        {"name": "declined", "channel": "pos", "type": "sale", "card": "a", "amount": 100,
         "mcc": "5411", "expect": {"response_code": "51", "reason": "fault:slow"}},
        {"name": "other", "fault": {"id": "left", "card": "a", "code": "05", "channel": "jd"}},
        {"name": "cleared", "fault_clear": True, "channel": "pos", "type": "sale",
         "card": "a", "amount": 100, "mcc": "5411", "expect": {"response_code": "00"}},
        {"name": "again", "fault": {"id": "end", "card": "a", "code": "05"}},
    ]}
    scenario = scenario_from(Path("faults.toml"), document)
    async with faulted(redis_url=redis_url) as switch:
        result = await run_scenario(scenario, Target(switch.host, switch.ports, redis_url),
                                    testing.send_parser())
        assert [r.outcome for r in result.steps] == [PASS] * 5, [r.detail for r in result.steps]
        assert (await stored_rules(switch.ledger.client))[1] == []


@pytest.mark.parametrize(("fault", "message"), [
    ({"card": "b", "code": "05"}, "fault: card: one of [cards]"),
    ({"code": "05", "times": 0}, "fault (step-1): times: must be 1.."),
    ({"code": "05", "colour": 1}, "fault (step-1): colour: not a known key"),
])
def test_a_scenarios_bad_fault_names_step_and_key(fault, message):
    with pytest.raises(ScenarioError, match=None) as error:
        scenario_from(Path("s.toml"), {"cards": {"a": {"limit": 1}}, "step": [{"fault": fault}]})
    assert message in str(error.value) and "step 1" in str(error.value), str(error.value)



def test_a_rule_shows_no_card_number():
    rule = FaultRule(id="r", card="6253681234567890", code="05")
    assert "6253681234567890" not in rule.text() and mask_pan(rule.card) in rule.text()

