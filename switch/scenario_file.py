"""Scenario files: a tester's script of requests and the answers they expect (TOML).

Read and checked here, before anything is sent: a bad file gets one error naming the file,
the step and the key. The format is in docs/testing.md ("Scenarios"); the runner is
switch/scenario_run.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from protocols.codes import DECLINING, CardStatus
from protocols.demo import TEST_CARD_LIMIT_FEN, TEST_CARDS
from protocols.iso_pin import PinError, check_pin
from protocols.messages import AuthResponse
from switch import limits
from switch.cards import pan_of_test_card
from switch.clock import DAY_MS, duration_ms
from switch.config import read_toml
from switch.faults import FaultError, rule_from
from switch.ledger import REPAYMENT_REF
from switch.statement import check_day

CHANNELS = ("jd", "wechat", "pos", "xpay")
STEP_TYPES = ("auth", "sale", "capture", "reverse", "refund", "inquiry")
# What `expect` may name: the fields of the answer `switch send --json` prints.
ANSWER_FIELDS = tuple(f.name for f in msgspec.structs.fields(AuthResponse)) + ("id",)
# What `card_after` may name: the card as `switch card show` reads it from the ledger.
# and its statement cycle (switch/statement.py Cycle; 0 and false before the first statement).
CARD_FIELDS = ("limit", "posted", "held", "pending_credit", "open_to_buy", "beans", "status",
               "repaid")
CYCLE_FIELDS = ("statement_balance", "minimum_payment", "past_due", "paid", "still_due",
                "overdue")
CARD_KEYS = ("limit", "status", "expiry", "statement_day", "pin", "test_card")
STEP_KEYS = ("name", "channel", "type", "card", "amount", "mcc", "original", "repeat",
             "lightning", "partial", "expiry", "merchant", "atc", "pin", "terminal", "sleep_ms",
             "expect", "card_after", "force", "advance_clock", "advance_to", "repay", "fault",
             "fault_clear")
# `advance_to`: the test clock moved to a minute past the step's card's next statement close
# or its last statement's due date (instants a scenario cannot know when it is written).
ADVANCE_TO = ("statement", "due")
FORCE_KEYS = ("card", "code", "times", "channel", "clear")
REPAY_KEYS = ("card", "amount", "ref")
SCENARIO_KEYS = ("name", "cards", "step")
SLEEP_MAX_MS = 60_000  # a step's wait; longer belongs to the test clock, not a real wait
DEFAULT_CARD_EXPIRY = "3012"


class ScenarioError(ValueError):
    """A scenario file that cannot run as written; the message names file, step and key."""


@dataclass(frozen=True)
class CardSpec:
    limit: int
    status: str = "active"
    expiry: str = DEFAULT_CARD_EXPIRY
    statement_day: int | None = None  # None: the switch's default
    pin: str = ""  # the card's PIN ("": none)
    test_card: str = ""  # one of the ready-made test cards, by its outcome (protocols/demo.py)


@dataclass(frozen=True)
class Step:
    index: int  # 1-based, as a person counts steps
    name: str
    channel: str = ""
    type: str = ""
    card: str = ""
    amount: int = 0
    mcc: str = ""
    original: str = ""  # the step whose transaction this one refers to
    repeat: str = ""  # the step whose message this one sends again, byte for byte
    lightning: bool = False
    partial: bool = False
    expiry: str = ""
    merchant: str = ""
    atc: int = -1  # x-pay: the ATC to send (-1: the token's next)
    pin: str = ""  # pos: the PIN entered (F52); "" for none
    terminal: str = ""  # pos, xpay: F41 ("": the demo terminal)
    sleep_ms: int = 0
    expect: dict[str, Any] = field(default_factory=dict)
    card_after: dict[str, Any] = field(default_factory=dict)
    force: dict[str, Any] = field(default_factory=dict)  # card, code/clear, times, channel
    repay: dict[str, Any] = field(default_factory=dict)  # card, amount, ref (Ledger.repay)
    advance_clock_ms: int = 0  # move the switch's test clock forward first
    advance_to: str = ""  # or to a minute past the card's "statement" or "due" (ADVANCE_TO)
    fault: dict[str, Any] = field(default_factory=dict)  # a fault rule to add first
    fault_clear: bool = False  # clear the fault rules this run added, first

    @property
    def sends(self) -> bool:
        return bool(self.channel or self.repeat)


@dataclass(frozen=True)
class Scenario:
    path: Path
    name: str
    cards: dict[str, CardSpec]
    steps: list[Step]


def load_scenario(path: Path) -> Scenario:
    document = read_toml(path, ScenarioError)
    return scenario_from(path, document)


def scenario_from(path: Path, document: dict[str, Any]) -> Scenario:
    _known_keys(document, SCENARIO_KEYS, f"{path}")
    cards = _table(document.get("cards", {}), f"{path}: [cards]")
    specs = {alias: _card(path, alias, spec) for alias, spec in cards.items()}
    raw_steps = document.get("step", [])
    if not isinstance(raw_steps, list) or not raw_steps:
        raise ScenarioError(f"{path}: no [[step]]: a scenario needs at least one step")
    steps: list[Step] = []
    for index, raw in enumerate(raw_steps, start=1):
        steps.append(_step(path, index, _table(raw, f"{path}: step {index}"), specs, steps))
    name = document.get("name", path.stem)
    if not isinstance(name, str) or not name:
        raise ScenarioError(f"{path}: name: must be a non-empty string")
    return Scenario(path, name, specs, steps)


def _card(path: Path, alias: str, raw: Any) -> CardSpec:
    where = f"{path}: [cards.{alias}]"
    spec = _table(raw, where)
    _known_keys(spec, CARD_KEYS, where)
    if "test_card" in spec:
        if set(spec) != {"test_card"} or pan_of_test_card(str(spec["test_card"])) is None:
            outcomes = ", ".join(repr(outcome) for _, outcome, _ in TEST_CARDS)
            raise ScenarioError(f"{where}: test_card: alone, one of {outcomes} (the "
                                "ready-made test card that answers it)")
        return CardSpec(limit=TEST_CARD_LIMIT_FEN, test_card=spec["test_card"])
    if "limit" not in spec:
        raise ScenarioError(f"{where}: limit: required (fen)")
    limit = _fen(spec["limit"], f"{where}: limit", allow_zero=True)
    status = spec.get("status", "active")
    if status not in {s.value for s in CardStatus}:
        raise ScenarioError(f"{where}: status: {status!r} is not one of "
                            f"{', '.join(s.value for s in CardStatus)}")
    expiry = spec.get("expiry", DEFAULT_CARD_EXPIRY)
    if not _is_yymm(expiry):
        raise ScenarioError(f"{where}: expiry: {expiry!r} is not YYMM")
    day = spec.get("statement_day")
    if day is not None:
        try:
            check_day(day if type(day) is int else 0)
        except ValueError as error:
            raise ScenarioError(f"{where}: statement_day: {error}") from None
    pin = spec.get("pin", "")
    if "pin" in spec:
        _check_pin(pin, f"{where}: pin")
    return CardSpec(limit=limit, status=status, expiry=expiry, statement_day=day, pin=pin)


def _check_pin(pin: Any, where: str) -> None:
    if not isinstance(pin, str):
        raise ScenarioError(f"{where}: must be a string of digits, e.g. \"1234\"")
    try:
        check_pin(pin)
    except PinError as error:
        raise ScenarioError(f"{where}: {error}") from None


def _step(path: Path, index: int, raw: dict[str, Any], cards: dict[str, CardSpec],
          earlier: list[Step]) -> Step:
    name = raw.get("name", f"step {index}")
    where = f"{path}: step {index}" + (f" ({name})" if "name" in raw else "")
    _known_keys(raw, STEP_KEYS, where)
    if not isinstance(name, str) or not name:
        raise ScenarioError(f"{where}: name: must be a non-empty string")
    if any(step.name == name for step in earlier):
        raise ScenarioError(f"{where}: name: another step is already called {name!r}")
    named = {step.name: step for step in earlier}
    values: dict[str, Any] = {"index": index, "name": name}
    for key in ("channel", "type", "card", "mcc", "original", "repeat", "expiry", "merchant",
                "pin", "terminal"):
        if key in raw:
            if not isinstance(raw[key], str):
                raise ScenarioError(f"{where}: {key}: must be a string")
            values[key] = raw[key]
    for key in ("lightning", "partial"):
        if key in raw:
            if not isinstance(raw[key], bool):
                raise ScenarioError(f"{where}: {key}: must be true or false")
            values[key] = raw[key]
    if "amount" in raw:
        values["amount"] = _fen(raw["amount"], f"{where}: amount", allow_zero=True)
    if "atc" in raw:
        if type(raw["atc"]) is not int or not 0 <= raw["atc"] <= limits.atc_max:
            raise ScenarioError(f"{where}: atc: must be 0..{limits.atc_max}")
        values["atc"] = raw["atc"]
    if "sleep_ms" in raw:
        sleep = raw["sleep_ms"]
        if type(sleep) is not int or not 0 <= sleep <= SLEEP_MAX_MS:
            raise ScenarioError(f"{where}: sleep_ms: must be 0..{SLEEP_MAX_MS}")
        values["sleep_ms"] = sleep
    for key, allowed in (("expect", ANSWER_FIELDS), ("card_after", CARD_FIELDS + CYCLE_FIELDS)):
        if key in raw:
            table = _table(raw[key], f"{where}: {key}")
            _known_keys(table, allowed, f"{where}: {key}")
            values[key] = table
    if "advance_clock" in raw:
        try:
            values["advance_clock_ms"] = duration_ms(raw["advance_clock"])
        except (ValueError, TypeError, AttributeError):
            raise ScenarioError(f"{where}: advance_clock: a duration such as \"36h\", "
                                "\"30d\", \"1d12h\", \"90m\"") from None
        if not 1_000 <= values["advance_clock_ms"] <= limits.test_clock_offset_max_ms:
            raise ScenarioError(f"{where}: advance_clock: 1s.."
                                f"{limits.test_clock_offset_max_ms // DAY_MS}d")
    if "advance_to" in raw:
        if raw["advance_to"] not in ADVANCE_TO or "advance_clock" in raw:
            raise ScenarioError(f"{where}: advance_to: one of {', '.join(ADVANCE_TO)} (the "
                                "step's card's), and no advance_clock beside it")
        if raw.get("card") not in cards:
            raise ScenarioError(f"{where}: card: advance_to needs a card declared in [cards]")
        values["advance_to"] = raw["advance_to"]
    if "force" in raw:
        values["force"] = _force(_table(raw["force"], f"{where}: force"), f"{where}: force",
                                 cards)
    if "repay" in raw:
        values["repay"] = _repay(_table(raw["repay"], f"{where}: repay"), f"{where}: repay",
                                 cards)
        values.setdefault("card", values["repay"]["card"])  # what card_after reads
    if "pin" in raw:
        _check_pin(values["pin"], f"{where}: pin")
        if values.get("channel") != "pos":
            raise ScenarioError(f"{where}: pin: a PIN is sent on pos steps only")
    if "terminal" in raw:
        terminal = values["terminal"]
        if values.get("channel") not in ("pos", "xpay"):
            raise ScenarioError(f"{where}: terminal: only pos and xpay steps name a terminal")
        if not (0 < len(terminal) <= 8 and terminal.isascii() and terminal.isprintable()):
            raise ScenarioError(f"{where}: terminal: F41 is 1-8 printable characters")


    if "fault" in raw:
        values["fault"] = _fault(_table(raw["fault"], f"{where}: fault"), f"{where}: fault",
                                 cards, name)
    if "fault_clear" in raw:
        if raw["fault_clear"] is not True:
            raise ScenarioError(f"{where}: fault_clear: takes only `fault_clear = true`")
        values["fault_clear"] = True
    step = Step(**values)
    _check_references(step, where, cards, named)
    return step


def _check_references(step: Step, where: str, cards: dict[str, CardSpec],
                      named: dict[str, Step]) -> None:
    if step.repeat:
        if step.channel or step.type:
            raise ScenarioError(f"{where}: repeat: a repeat sends the step's message again; "
                                "it takes no channel or type of its own")
        if step.repeat not in named or not named[step.repeat].sends:
            raise ScenarioError(f"{where}: repeat: no earlier step {step.repeat!r} that sends")
        return
    if not step.channel:  # a step that waits or checks a card, sending nothing
        if step.type or step.expect or step.original:
            raise ScenarioError(f"{where}: channel: required to send "
                                f"({' | '.join(CHANNELS)})")
        if step.card_after and step.card not in cards:
            raise ScenarioError(f"{where}: card: card_after needs a card declared in [cards] "
                                f"({', '.join(cards) or 'none declared'})")
        return
    if step.channel not in CHANNELS:
        raise ScenarioError(f"{where}: channel: {step.channel!r} is not one of "
                            f"{', '.join(CHANNELS)}")
    if step.type and step.type not in STEP_TYPES:
        raise ScenarioError(f"{where}: type: {step.type!r} is not one of "
                            f"{', '.join(STEP_TYPES)}")
    if step.original:
        if step.original not in named or not named[step.original].sends:
            raise ScenarioError(f"{where}: original: no earlier step {step.original!r} "
                                "that sends")
    elif step.type in ("capture", "reverse", "refund"):
        raise ScenarioError(f"{where}: original: a {step.type} names its original step")
    if not step.card and not step.original:
        raise ScenarioError(f"{where}: card: required (one of [cards]: "
                            f"{', '.join(cards) or 'none declared'})")
    if step.card and step.card not in cards:
        raise ScenarioError(f"{where}: card: {step.card!r} is not declared in [cards] "
                            f"({', '.join(cards) or 'none declared'})")
    if step.lightning and (step.channel, step.type) != ("jd", "refund"):
        raise ScenarioError(f"{where}: lightning: only a JD refund can be a lightning refund")
    if step.atc >= 0 and step.channel != "xpay":
        raise ScenarioError(f"{where}: atc: only an xpay step carries an ATC")
    if step.expiry and not _is_yymm(step.expiry):
        raise ScenarioError(f"{where}: expiry: {step.expiry!r} is not YYMM")


def _force(force: dict[str, Any], where: str, cards: dict[str, CardSpec]) -> dict[str, Any]:
    """A step's `force` table: the card's forced outcome (Ledger.force), checked."""
    _known_keys(force, FORCE_KEYS, where)
    if force.get("card") not in cards:
        raise ScenarioError(f"{where}: card: one of [cards] required "
                            f"({', '.join(cards) or 'none declared'})")
    if "clear" in force:
        if force["clear"] is not True or set(force) != {"card", "clear"}:
            raise ScenarioError(f"{where}: clear: takes only `clear = true` and the card")
        return force
    if force.get("code") not in DECLINING:
        raise ScenarioError(f"{where}: code: a declining response code required "
                            f"({', '.join(sorted(DECLINING))}), or clear = true")
    times = force.get("times")
    if times is not None and (type(times) is not int
                              or not 1 <= times <= limits.forced_times_max):
        raise ScenarioError(f"{where}: times: must be 1..{limits.forced_times_max}")
    if force.get("channel", "") not in ("", *CHANNELS):
        raise ScenarioError(f"{where}: channel: {force['channel']!r} is not one of "
                            f"{', '.join(CHANNELS)}")
    return force


def _repay(repay: dict[str, Any], where: str, cards: dict[str, CardSpec]) -> dict[str, Any]:
    """A step's `repay` table: a repayment of one card (Ledger.repay), checked."""
    _known_keys(repay, REPAY_KEYS, where)
    if repay.get("card") not in cards:
        raise ScenarioError(f"{where}: card: one of [cards] required "
                            f"({', '.join(cards) or 'none declared'})")
    if "amount" not in repay:
        raise ScenarioError(f"{where}: amount: required (fen)")
    _fen(repay["amount"], f"{where}: amount", allow_zero=False)
    ref = repay.get("ref")
    if ref is not None and not (isinstance(ref, str) and REPAYMENT_REF.fullmatch(ref)):
        raise ScenarioError(f"{where}: ref: {limits.repayment_ref_max_chars} letters, digits, "
                            "'_' or '-' at most")
    return repay


def _fault(fault: dict[str, Any], where: str, cards: dict[str, CardSpec], step_name: str
           ) -> dict[str, Any]:
    """A step's `fault` table: a fault rule (switch/faults.py) whose `card` names one of
    [cards]; checked as `switch fault add` checks one. Its id defaults to the step's name
    (what a rule id cannot hold made '-': "step 3" is step-3)."""
    rule = {"id": re.sub(r"[^A-Za-z0-9_.-]", "-", step_name)[:40]} | fault
    if "card" in rule:
        if rule["card"] not in cards:
            raise ScenarioError(f"{where}: card: one of [cards] "
                                f"({', '.join(cards) or 'none declared'})")
        rule["card"] = "6" * 16  # checked as a number here; the run's card stands in it
    try:
        rule_from(rule, where)
    except FaultError as error:
        raise ScenarioError(str(error)) from None
    return {"id": rule["id"]} | fault


def card_of(step: Step, steps: dict[str, Step]) -> str:
    """The card alias a step uses: its own, else its original's (or its repeat's)."""
    while not step.card and (step.original or step.repeat):
        step = steps[step.original or step.repeat]
    return step.card


def _known_keys(table: dict[str, Any], known: tuple[str, ...], where: str) -> None:
    for key in table:
        if key not in known:
            raise ScenarioError(f"{where}: {key}: not a known key (known: {', '.join(known)})")


def _table(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ScenarioError(f"{where}: must be a table")
    return value


def _fen(value: Any, where: str, allow_zero: bool) -> int:
    if type(value) is not int or not (0 if allow_zero else 1) <= value <= limits.amount_max_fen:
        raise ScenarioError(f"{where}: must be a whole number of fen, 0..{limits.amount_max_fen}")
    return value


def _is_yymm(value: Any) -> bool:
    return (isinstance(value, str) and len(value) == 4 and value.isdigit()
            and 1 <= int(value[2:]) <= 12)
