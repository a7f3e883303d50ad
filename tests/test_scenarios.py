"""`switch scenario run`: the scenario library against a real switch on every channel, a
wrong expectation failing readably (text and JUnit), and every check of a scenario file."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from protocols.demo import DEMO_ACQUIRER, DEMO_POS_MAC
from protocols.iso_mac import MacKey
from switch import testing
from switch.redis_client import connect
from switch.scenario_file import ScenarioError, load_scenario, scenario_from
from switch.scenario_run import ERROR, FAIL, PASS, SKIPPED, Target, run_scenarios
from switch.terminal_keys import TerminalKeyStore
from tests.support import SWITCH, run_command
from tests.test_terminal_keys import new_terminal

LIBRARY = Path(__file__).resolve().parent.parent / "scenarios"
CHANNELS = ("jd", "wechat", "pos", "xpay")


@pytest.fixture
async def every_channel(redis_url):
    async with testing.start(redis_url=redis_url) as switch:
        yield Target(switch.host, switch.ports, redis_url)


def port_options(target: Target) -> list[str]:
    return [f"--port={channel}={port}" for channel, port in target.ports.items()]


def moves_the_clock(scenario) -> bool:
    return any(step.advance_clock_ms or step.advance_to for step in scenario.steps)


async def test_the_scenario_library_passes_on_every_channel(every_channel):
    scenarios = [load_scenario(path) for path in sorted(LIBRARY.glob("*.toml"))]
    assert len(scenarios) >= 9
    timeless = [scenario for scenario in scenarios if not moves_the_clock(scenario)]
    results = await run_scenarios(timeless, every_channel, testing.send_parser(), parallel=4)
    for scenario in scenarios:  # each its own switch: the clock is the whole switch's
        if moves_the_clock(scenario):
            async with testing.start() as switch:
                results += await run_scenarios(
                    [scenario], Target(switch.host, switch.ports, switch.redis_url),
                    testing.send_parser())
    assert len(results) == len(scenarios)
    failed = [f"{r.scenario.path.name} {s.step.name}: {s.outcome} {s.detail}"
              for r in results for s in r.steps if s.outcome != PASS]
    assert failed == []
    channels = {step.channel for s in scenarios for step in s.steps if step.channel}
    assert channels == set(CHANNELS)


async def test_a_scenario_runs_again_and_in_parallel_on_fresh_cards(every_channel):
    scenario = load_scenario(LIBRARY / "jd-checkout.toml")
    results = await run_scenarios([scenario] * 3, every_channel, testing.send_parser(), parallel=3)
    assert all(result.passed for result in results)
    assert len({result.cards["a"] for result in results}) == 3


WRONG = '''
name = "expects a decline that does not come"
[cards.a]
limit = 100000
[[step]]
name = "buy"
channel = "jd"
type = "sale"
card = "a"
amount = 1000
mcc = "5411"
expect = { response_code = "05", approved_fen = 1000 }
[[step]]
name = "after"
channel = "jd"
type = "reverse"
original = "buy"
expect = { response_code = "00" }
'''


async def test_a_wrong_expectation_fails_readably_in_text_and_junit(every_channel, tmp_path):
    path = tmp_path / "wrong.toml"
    path.write_text(WRONG)
    junit, report = tmp_path / "junit.xml", tmp_path / "report.json"
    code, out, err = await run_command(
        SWITCH, "scenario", "run", str(path), *port_options(every_channel),
        "--redis", every_channel.redis_url, "--junit", str(junit), "--json", str(report))
    assert code == 1, err
    assert "FAIL    wrong.toml :: 1. buy" in out
    assert "response_code: expected '05', got '00'" in out
    assert "SKIPPED wrong.toml :: 2. after" in out
    assert "0 of 1 scenarios passed; steps: 0 pass, 1 fail, 1 skipped" in out
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite.get("tests") == "2" and suite.get("failures") == "1"
    assert suite.get("skipped") == "1"
    failure = suite.find("testcase").find("failure")
    assert "expected '05', got '00'" in failure.get("message")
    assert '"outcome": "FAIL"' in report.read_text()


async def test_keep_going_runs_the_steps_after_a_failure(every_channel, tmp_path):
    path = tmp_path / "wrong.toml"
    path.write_text(WRONG)
    results = await run_scenarios([load_scenario(path)], every_channel, testing.send_parser(),
                                  keep_going=True)
    assert [s.outcome for s in results[0].steps] == [FAIL, PASS]
    stopped = await run_scenarios([load_scenario(path)], every_channel, testing.send_parser())
    assert [s.outcome for s in stopped[0].steps] == [FAIL, SKIPPED]


async def test_a_channel_nobody_listens_on_is_an_error_not_a_failure(every_channel, tmp_path):
    path = tmp_path / "wrong.toml"
    path.write_text(WRONG)
    closed = Target("127.0.0.1", {**every_channel.ports, "jd": 1}, every_channel.redis_url)
    results = await run_scenarios([load_scenario(path)], closed, testing.send_parser())
    assert results[0].steps[0].outcome == ERROR


async def test_the_command_passes_on_the_library_and_exits_0(every_channel):
    code, out, err = await run_command(
        SWITCH, "scenario", "run", str(LIBRARY / "declines.toml"), *port_options(every_channel),
        "--redis", every_channel.redis_url)
    assert code == 0, out + err
    assert "1 of 1 scenarios passed" in out


PIN_SCENARIO = """
name = "pin at the till"
[cards.a]
limit = 100_000
pin = "2468"

[[step]]
name = "right pin"
channel = "pos"
terminal = "{terminal}"
type = "sale"
card = "a"
amount = 1_000
mcc = "5411"
pin = "2468"
expect = {{ response_code = "00" }}

[[step]]
name = "wrong pin"
channel = "pos"
terminal = "{terminal}"
type = "sale"
card = "a"
amount = 1_000
mcc = "5411"
pin = "1357"
expect = {{ response_code = "55", reason = "pin_wrong" }}
card_after = {{ posted = 1_000 }}
"""


async def test_pos_steps_enter_pins_at_a_terminal_signed_on_first(every_channel, tmp_path):
    terminal = new_terminal()
    client = connect(every_channel.redis_url)
    try:
        await TerminalKeyStore(client).add(DEMO_ACQUIRER, terminal,
                                           MacKey.parse("x9.19", DEMO_POS_MAC[1]))
    finally:
        await client.aclose()
    path = tmp_path / "pin.toml"
    path.write_text(PIN_SCENARIO.format(terminal=terminal))
    results = await run_scenarios([load_scenario(path)], every_channel, testing.send_parser())
    assert [step.outcome for step in results[0].steps] == [PASS, PASS], results[0].steps


async def test_the_command_refuses_a_bad_file_naming_it(tmp_path, redis_url):
    path = tmp_path / "bad.toml"
    path.write_text(WRONG.replace('mcc = "5411"', 'mcc = "5411"\namout = 5', 1))
    code, _, err = await run_command(SWITCH, "scenario", "run", str(path), "--redis", redis_url)
    assert code == 2
    assert f"{path}: step 1 (buy): amout: not a known key" in err


GOOD_STEP = {"name": "buy", "channel": "jd", "type": "sale", "card": "a", "amount": 100,
             "mcc": "5411"}


def forcing(**force):
    return [GOOD_STEP | {"force": force}]


def repaying(**repay):
    return [{"name": "pay", "repay": repay}]


@pytest.mark.parametrize(("change", "message"), [
    ({"cards": {"a": {}}}, "[cards.a]: limit: required"),
    ({"cards": {"a": {"limit": -1}}}, "[cards.a]: limit: must be a whole number of fen"),
    ({"cards": {"a": {"limit": 5, "status": "gone"}}}, "[cards.a]: status: 'gone'"),
    ({"cards": {"a": {"limit": 5, "expiry": "3013"}}}, "[cards.a]: expiry: '3013' is not YYMM"),
    ({"cards": {"a": {"limit": 5, "colour": "red"}}}, "[cards.a]: colour: not a known key"),
    ({"step": []}, "no [[step]]"),
    ({"title": "x"}, "title: not a known key"),
    ({"name": ""}, "name: must be a non-empty string"),
    ({"step": [GOOD_STEP, GOOD_STEP]}, "step 2 (buy): name: another step is already called"),
    ({"step": [GOOD_STEP | {"channel": "fax"}]}, "step 1 (buy): channel: 'fax' is not one of"),
    ({"step": [GOOD_STEP | {"type": "gift"}]}, "step 1 (buy): type: 'gift' is not one of"),
    ({"step": [GOOD_STEP | {"card": "b"}]}, "step 1 (buy): card: 'b' is not declared"),
    ({"step": [GOOD_STEP | {"card": ""}]}, "step 1 (buy): card: required"),
    ({"step": [GOOD_STEP | {"amount": "12"}]}, "step 1 (buy): amount: must be a whole number"),
    ({"step": [GOOD_STEP | {"amount": 10_000_001}]}, "step 1 (buy): amount: must be"),
    ({"step": [GOOD_STEP | {"partial": "yes"}]}, "step 1 (buy): partial: must be true or false"),
    ({"step": [GOOD_STEP | {"mcc": 5411}]}, "step 1 (buy): mcc: must be a string"),
    ({"step": [GOOD_STEP | {"expiry": "1"}]}, "step 1 (buy): expiry: '1' is not YYMM"),
    ({"step": [GOOD_STEP | {"sleep_ms": 60_001}]}, "step 1 (buy): sleep_ms: must be 0..60000"),
    ({"step": [GOOD_STEP | {"expect": {"code": "00"}}]}, "step 1 (buy): expect: code: not a"),
    ({"step": [GOOD_STEP | {"card_after": {"otb": 1}}]}, "step 1 (buy): card_after: otb: not"),
    ({"step": [GOOD_STEP | {"lightning": True}]}, "lightning: only a JD refund"),
    ({"step": [GOOD_STEP | {"atc": 3}]}, "atc: only an xpay step carries an ATC"),
    ({"step": [GOOD_STEP | {"channel": "xpay", "atc": 65_536}]}, "atc: must be 0..65535"),
    ({"step": [GOOD_STEP | {"type": "capture"}]}, "original: a capture names its original"),
    ({"step": [GOOD_STEP | {"original": "later"}]}, "original: no earlier step 'later'"),
    ({"step": [GOOD_STEP, {"repeat": "nope"}]}, "step 2: repeat: no earlier step 'nope'"),
    ({"step": [GOOD_STEP, {"repeat": "buy", "channel": "jd"}]}, "repeat: a repeat sends"),
    ({"step": [{"expect": {"response_code": "00"}}]}, "step 1: channel: required to send"),
    ({"step": [{"card_after": {"posted": 0}}]}, "step 1: card: card_after needs a card"),
    ({"step": ["buy"]}, "step 1: must be a table"),
    ({"step": [GOOD_STEP | {"force": "a"}]}, "step 1 (buy): force: must be a table"),
    ({"step": [GOOD_STEP | {"advance_clock": "36"}]}, "advance_clock: a duration such as"),
    ({"step": [GOOD_STEP | {"advance_clock": 36}]}, "advance_clock: a duration such as"),
    ({"step": [GOOD_STEP | {"advance_clock": "0s"}]}, "advance_clock: 1s..3650d"),
    ({"step": [GOOD_STEP | {"advance_clock": "3650d1s"}]}, "advance_clock: 1s..3650d"),
    ({"step": forcing(code="05")}, "force: card: one of [cards] required"),
    ({"step": forcing(card="b", code="05")}, "force: card: one of [cards]"),
    ({"step": forcing(card="a")}, "force: code: a declining response code"),
    ({"step": forcing(card="a", code="00")}, "force: code: a declining"),
    ({"step": forcing(card="a", code="05", times=0)}, "force: times: must be 1.."),
    ({"step": forcing(card="a", code="05", times=1_000_001)}, "times: must be"),
    ({"step": forcing(card="a", code="05", times="1")}, "force: times: must be"),
    ({"step": forcing(card="a", code="05", channel="fax")}, "force: channel: 'fax'"),
    ({"step": forcing(card="a", code="05", once=True)}, "force: once: not a known"),
    ({"step": forcing(card="a", clear=False)}, "force: clear: takes only `clear = true`"),
    ({"step": forcing(card="a", clear=True, code="05")}, "force: clear: takes only"),
    ({"step": repaying(amount=5)}, "step 1 (pay): repay: card: one of [cards] required"),
    ({"step": repaying(card="b", amount=5)}, "repay: card: one of [cards]"),
    ({"step": repaying(card="a")}, "step 1 (pay): repay: amount: required"),
    ({"step": repaying(card="a", amount=0)}, "repay: amount: must be a whole number"),
    ({"step": repaying(card="a", amount=10_000_001)}, "repay: amount: must be"),
    ({"step": repaying(card="a", amount=5, ref="a:b")}, "repay: ref: 64 letters"),
    ({"step": repaying(card="a", amount=5, ref="x" * 65)}, "repay: ref: 64 letters"),
    ({"step": repaying(card="a", amount=5, when="now")}, "repay: when: not a known key"),
    ({"step": [{"advance_to": "statement"}]}, "step 1: card: advance_to needs a card"),
    ({"step": [{"advance_to": "payday", "card": "a"}]}, "advance_to: one of statement, due"),
    ({"step": [{"advance_to": "due", "card": "a", "advance_clock": "1d"}]},
     "no advance_clock beside it"),
    ({"cards": {"a": {"limit": 5, "statement_day": 29}}}, "[cards.a]: statement_day: statement "
     "day must be 1..28"),
    ({"cards": {"a": {"limit": 5, "statement_day": 0}}}, "statement_day: statement day must"),
    ({"cards": {"a": {"limit": 5, "statement_day": "5"}}}, "statement_day: statement day must"),
    ({"step": [GOOD_STEP | {"pin": "1234"}]}, "pin: a PIN is sent on pos steps only"),
    ({"step": [GOOD_STEP | {"channel": "pos", "pin": "123"}]}, "pin: a PIN is 4-12 digits"),
    ({"step": [GOOD_STEP | {"channel": "pos", "pin": 1234}]}, "pin: must be a string"),
    ({"step": [GOOD_STEP | {"terminal": "T1"}]}, "terminal: only pos and xpay steps"),
    ({"step": [GOOD_STEP | {"channel": "pos", "terminal": "TERMINAL9"}]}, "F41 is 1-8"),
    ({"cards": {"a": {"limit": 100, "pin": "12a4"}}}, "[cards.a]: pin: a PIN is 4-12"),
])
def test_every_check_of_a_scenario_file_names_file_step_and_key(change, message):
    document = {"name": "n", "cards": {"a": {"limit": 100}}, "step": [GOOD_STEP]} | change
    with pytest.raises(ScenarioError) as raised:
        scenario_from(Path("s.toml"), document)
    assert str(raised.value).startswith("s.toml: ")
    assert message in str(raised.value)


def test_the_bounds_of_a_repayment_step_and_a_statement_day_are_accepted():
    scenario = scenario_from(Path("s.toml"), {
        "cards": {"a": {"limit": 100, "statement_day": 28}, "b": {"limit": 1,
                                                               "statement_day": 1}},
        "step": [{"name": "low", "repay": {"card": "a", "amount": 1, "ref": "x" * 64}},
                 {"name": "high", "repay": {"card": "b", "amount": 10_000_000}},
                 {"name": "due", "advance_to": "due", "card": "a"}]})
    assert [c.statement_day for c in scenario.cards.values()] == [28, 1]
    assert scenario.steps[0].card == "a" and scenario.steps[1].repay["amount"] == 10_000_000
    assert scenario.steps[2].advance_to == "due"


def test_a_good_document_reads_back_as_written():
    scenario = scenario_from(Path("s.toml"), {"cards": {"a": {"limit": 100}},
                                              "step": [GOOD_STEP, {"repeat": "buy"},
                                                       {"sleep_ms": 60_000}]})
    assert scenario.name == "s" and scenario.cards["a"].limit == 100
    assert scenario.steps[0].amount == 100 and scenario.steps[1].repeat == "buy"
    assert scenario.steps[2].sleep_ms == 60_000 and not scenario.steps[2].sends


def test_a_file_that_is_not_toml_is_named(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text("name = ")
    with pytest.raises(ScenarioError, match=r"broken\.toml: not valid TOML"):
        load_scenario(path)


async def test_the_command_refuses_a_bad_port_option(redis_url):
    code, _, err = await run_command(SWITCH, "scenario", "run", str(LIBRARY), "--port",
                                     "fax=1", "--redis", redis_url)
    assert code == 2 and "--port 'fax=1': expected CHANNEL=PORT" in err
