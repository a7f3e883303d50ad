"""Running scenarios (switch/scenario_file.py) against a running switch over TCP.

Each run makes the scenario's cards afresh in the switch's Redis (new numbers every run, so
a scenario can run again, or in parallel, against a shared switch), then sends each step
with the code `switch send` uses (switch/send.py), and compares the answer and the card
with what the step expects.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from protocols.cardnumbers import luhn_check_digit, mask_pan
from protocols.ledger_layout import card_key
from switch import send
from switch.app import force_test_cards
from switch.cards import DEMO_BIN, pan_of_test_card
from switch.channel_client import ChannelClient, Sent
from switch.clock import TestClock, TestClockControl, TestClockOff
from switch.faults import FaultError, add_rules, clear_rules, rule_from
from switch.ledger import CardView, Ledger, RepaymentUnconfirmed
from switch.redis_client import connect
from switch.scenario_file import CARD_FIELDS, CYCLE_FIELDS, Scenario, Step, card_of
from switch.statement import Cycle

PASS, FAIL, TIMEOUT, ERROR, SKIPPED = "PASS", "FAIL", "TIMEOUT", "ERROR", "SKIPPED"
FRESH_NUMBER_ATTEMPTS_MAX = 8  # random numbers tried before a card range counts as full
ADVANCE_PAST_MS = 60_000  # `advance_to` lands this far past the instant it names


@dataclass(frozen=True)
class Target:
    host: str
    ports: dict[str, int]  # channel -> port
    redis_url: str


@dataclass
class StepResult:
    step: Step
    outcome: str
    detail: str = ""  # what differed, or what went wrong
    seconds: float = 0.0
    answer: dict[str, Any] | None = None


@dataclass
class ScenarioResult:
    scenario: Scenario
    steps: list[StepResult] = field(default_factory=list)
    cards: dict[str, str] = field(default_factory=dict)  # alias -> masked card number

    @property
    def passed(self) -> bool:
        return all(result.outcome == PASS for result in self.steps)


class Run:
    """One scenario's run: its cards, its tokens, what each step sent."""

    def __init__(self, scenario: Scenario, target: Target, send_parser: argparse.ArgumentParser,
                 ledger: Ledger) -> None:
        self.scenario = scenario
        self.ledger = ledger
        self.steps = {step.name: step for step in scenario.steps}
        self.pans: dict[str, str] = {}
        self.client = ChannelClient(target.host, target.ports, send_parser, ledger)
        self.sent: dict[str, Sent] = {}
        self.clock = ledger.clock
        self.fault_ids: list[str] = []  # the fault rules this run added and not yet cleared

    async def make_cards(self) -> None:
        for alias, spec in self.scenario.cards.items():
            if spec.test_card:  # the ready-made card (loaded afresh if a tester changed it)
                self.pans[alias] = pan_of_test_card(spec.test_card)
                await force_test_cards(self.ledger, [self.pans[alias]])
                continue
            pan = await fresh_card_number(self.ledger)
            await self.ledger.set_card(pan, limit_fen=spec.limit, status=spec.status,
                                       expiry=spec.expiry, statement_day=spec.statement_day)
            if spec.pin:
                await self.ledger.set_pin(pan, spec.pin)
            self.pans[alias] = pan

    async def step(self, step: Step) -> StepResult:
        began = time.perf_counter()
        if step.sleep_ms:
            await asyncio.sleep(step.sleep_ms / 1000)
        if step.advance_clock_ms or step.advance_to:
            try:
                self.clock.offset_ms = await TestClockControl(self.ledger.client).advance(
                    step.advance_clock_ms or await self._until(step))
            except (TestClockOff, TimeoutError, ValueError) as error:
                return StepResult(step, ERROR, str(error), time.perf_counter() - began)
        if step.force:
            force = step.force
            await self.ledger.force(self.pans[force["card"]], force.get("code"),
                                    force.get("times"), force.get("channel", ""))
        try:
            if step.fault_clear:
                await self.clear_faults()
            if step.fault:
                await self._add_fault(step.fault)
        except (FaultError, TimeoutError) as error:
            return StepResult(step, ERROR, str(error), time.perf_counter() - began)
        problems: list[str] = []
        answer: dict[str, Any] | None = None
        if step.repay:
            problems += await self._repay(step.repay)
        if step.sends:
            try:
                answer = await self._send(step)
            except TimeoutError:
                return StepResult(step, TIMEOUT, f"no answer within {send.ANSWER_WAIT_S:g} s",
                                  time.perf_counter() - began)
            except (OSError, ValueError) as error:
                return StepResult(step, ERROR, str(error) or type(error).__name__,
                                  time.perf_counter() - began)
            problems += differences(step.expect, answer)
        if step.card_after:
            view = await self.ledger.card(self.pans[card_of(step, self.steps)])
            problems += [f"card_after.{p}" for p in differences(step.card_after,
                                                                card_fields(view))]
        outcome = FAIL if problems else PASS
        return StepResult(step, outcome, "; ".join(problems), time.perf_counter() - began,
                          answer)

    async def _until(self, step: Step) -> int:
        """How far to move the clock for the step's `advance_to`: a minute past the card's
        next statement close, or past its last statement's due date (ValueError: none)."""
        cycle = (await self.ledger.card(self.pans[step.card])).cycle
        if cycle is None or (step.advance_to == "due" and not cycle.statement_ms):
            raise ValueError(f"advance_to: the card has no {step.advance_to} date yet")
        target = cycle.end_ms if step.advance_to == "statement" else cycle.due_ms
        return max(1_000, target + ADVANCE_PAST_MS - self.clock.now_ms())

    async def _repay(self, repay: dict[str, Any]) -> list[str]:
        """The step's repayment; a problem unless it was made (now, or before by its ref)."""
        try:
            done = await self.ledger.repay(self.pans[repay["card"]], repay["amount"],
                                           repay.get("ref"))
        except RepaymentUnconfirmed as error:
            return [f"repay: {error.retry_advice()}"]
        if done.outcome == "mismatch":
            return [f"repay: ref {done.ref} was repaid with {done.amount} fen, not "
                    f"{repay['amount']}"]
        return [] if done.outcome in ("repaid", "repeat") else [f"repay: {done.outcome}"]

    async def _add_fault(self, fault: dict[str, Any]) -> None:
        raw = dict(fault)
        if "card" in raw:
            raw["card"] = self.pans[raw["card"]]
        await add_rules(self.ledger.client, [rule_from(raw, "fault")])
        self.fault_ids.append(raw["id"])

    async def clear_faults(self) -> None:
        """Clear the fault rules this run added (and only those)."""
        while self.fault_ids:
            try:
                await clear_rules(self.ledger.client, self.fault_ids[-1])
            except FaultError:  # cleared by someone else meanwhile
                pass
            self.fault_ids.pop()

    async def _send(self, step: Step) -> dict[str, Any]:
        if step.repeat:
            sent = await self.client.resend(self.sent[step.repeat])
        else:
            original = self.sent[step.original].answer.correlation_id if step.original else ""
            sent = await self.client.send(
                step.channel, self.pans[card_of(step, self.steps)], type=step.type or "sale",
                amount=step.amount, mcc=step.mcc, original=original, partial=step.partial,
                lightning=step.lightning, expiry=step.expiry, merchant=step.merchant,
                atc=step.atc if step.atc >= 0 else None, pin=step.pin,
                terminal=step.terminal)
        self.sent[step.name] = sent
        return json.loads(send.as_json(sent.answer))


def card_fields(view: CardView | None) -> dict[str, Any]:
    """What `card_after` may name (scenario_file.CARD_FIELDS and CYCLE_FIELDS) of a card."""
    if view is None:
        return {}
    got = {name: getattr(view, name) for name in CARD_FIELDS}
    cycle = view.cycle or Cycle(statement_day=0, start_ms=0, end_ms=0)
    return got | {name: getattr(cycle, name) for name in CYCLE_FIELDS}


def differences(expected: dict[str, Any], got: dict[str, Any]) -> list[str]:
    return [f"{key}: expected {want!r}, got {got.get(key)!r}"
            for key, want in expected.items() if got.get(key) != want]


async def fresh_card_number(ledger: Ledger) -> str:
    """A Luhn-valid number in the demo range that no card has yet."""
    for _ in range(FRESH_NUMBER_ATTEMPTS_MAX):
        body = DEMO_BIN + f"{secrets.randbelow(10**9):09d}"
        pan = body + luhn_check_digit(body)
        if not await ledger.client.exists(card_key(pan)):
            return pan
    raise RuntimeError("no free card number found in the demo range")


async def run_scenario(scenario: Scenario, target: Target,
                       send_parser: argparse.ArgumentParser, keep_going: bool = False
                       ) -> ScenarioResult:
    """Every step in order; after a step that does not pass, the rest are skipped unless
    `keep_going`."""
    # The switch's time as its test clock has it (if it follows one), so that the holds
    # `card_after` reads expire as the switch's do.
    clock = TestClock()
    ledger = Ledger(connect(target.redis_url), clock)
    result = ScenarioResult(scenario)
    try:
        await ledger.start()
        clock.offset_ms = await TestClockControl(ledger.client).offset_ms()
        run = Run(scenario, target, send_parser, ledger)
        await run.make_cards()
        result.cards = {alias: mask_pan(pan) for alias, pan in run.pans.items()}
        stopped = False
        try:
            for step in scenario.steps:
                if stopped:
                    result.steps.append(StepResult(step, SKIPPED,
                                                   "an earlier step did not pass"))
                    continue
                step_result = await run.step(step)
                result.steps.append(step_result)
                stopped = step_result.outcome != PASS and not keep_going
        finally:  # a scenario's fault rules never outlive its run
            await run.clear_faults()
    finally:
        await ledger.aclose()
    return result


async def run_scenarios(scenarios: list[Scenario], target: Target,
                        send_parser: argparse.ArgumentParser, *, parallel: int = 1,
                        keep_going: bool = False, on_result=None) -> list[ScenarioResult]:
    """The files' runs, at most `parallel` at a time; `on_result` sees each as it ends."""
    gate = asyncio.Semaphore(parallel)

    async def one(scenario: Scenario) -> ScenarioResult:
        async with gate:
            result = await run_scenario(scenario, target, send_parser, keep_going)
        if on_result:
            on_result(result)
        return result

    return list(await asyncio.gather(*(one(scenario) for scenario in scenarios)))
