"""`switch scenario run`: scenario files against a running switch, one line per step, a
summary, and reports CI systems read (JUnit XML) or scripts read (JSON)."""

from __future__ import annotations

import argparse
import asyncio
import json
import xml.etree.ElementTree as ET
from pathlib import Path

from switch.cli_common import UserError, redis_for_command
from switch.config import DEFAULT_PORTS, parse_port
from switch.scenario_file import Scenario, ScenarioError, load_scenario
from switch.scenario_run import (
    ERROR,
    FAIL,
    PASS,
    SKIPPED,
    TIMEOUT,
    ScenarioResult,
    Target,
    run_scenarios,
)

PARALLEL_MAX = 64  # scenario files run at once; each holds a few connections


def scenario_paths(given: list[str]) -> list[Path]:
    """The files named, and the *.toml files of the folders named (sorted)."""
    paths: list[Path] = []
    for name in given:
        path = Path(name)
        if path.is_dir():
            found = sorted(path.rglob("*.toml"))
            if not found:
                raise UserError(f"{path}: no *.toml scenario files in this folder")
            paths += found
        elif path.exists():
            paths.append(path)
        else:
            raise UserError(f"{path}: no such file or folder")
    return paths


def parse_ports(values: list[str]) -> dict[str, int]:
    """Each channel's port: the default, unless a --port CHANNEL=PORT names another."""
    return dict(DEFAULT_PORTS) | dict(parse_port(value) for value in values)


def step_line(result: ScenarioResult, index: int) -> str:
    step_result = result.steps[index]
    step = step_result.step
    answer = step_result.answer or {}
    heard = ""
    if answer:
        heard = (f"  {answer.get('response_code')} approved {answer.get('approved_fen')}"
                 f" open-to-buy {answer.get('open_to_buy_fen')}")
    detail = f"  {step_result.detail}" if step_result.outcome != PASS else ""
    return (f"{step_result.outcome:<7} {result.scenario.path.name} :: {step.index}. "
            f"{step.name}{heard}{detail}")


def summary_line(results: list[ScenarioResult]) -> str:
    counts = {outcome: 0 for outcome in (PASS, FAIL, TIMEOUT, ERROR, SKIPPED)}
    for result in results:
        for step_result in result.steps:
            counts[step_result.outcome] += 1
    files_passed = sum(result.passed for result in results)
    steps = ", ".join(f"{count} {outcome.lower()}" for outcome, count in counts.items()
                      if count or outcome == PASS)
    return f"{files_passed} of {len(results)} scenarios passed; steps: {steps}"


def junit_xml(results: list[ScenarioResult]) -> bytes:
    """One testsuite per file, one testcase per step (FAIL is a failure, TIMEOUT and ERROR
    are errors, SKIPPED is skipped)."""
    root = ET.Element("testsuites", name="switch scenarios")
    for result in results:
        outcomes = [r.outcome for r in result.steps]
        suite = ET.SubElement(root, "testsuite", {
            "name": result.scenario.name, "file": str(result.scenario.path),
            "tests": str(len(outcomes)), "failures": str(outcomes.count(FAIL)),
            "errors": str(outcomes.count(TIMEOUT) + outcomes.count(ERROR)),
            "skipped": str(outcomes.count(SKIPPED)),
            "time": f"{sum(r.seconds for r in result.steps):.3f}"})
        for step_result in result.steps:
            case = ET.SubElement(suite, "testcase", {
                "classname": result.scenario.path.stem,
                "name": f"{step_result.step.index}. {step_result.step.name}",
                "time": f"{step_result.seconds:.3f}"})
            tag = {FAIL: "failure", TIMEOUT: "error", ERROR: "error",
                   SKIPPED: "skipped"}.get(step_result.outcome)
            if tag:
                element = ET.SubElement(case, tag, {"message": step_result.detail,
                                                    "type": step_result.outcome})
                element.text = step_result.detail
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def json_report(results: list[ScenarioResult]) -> str:
    return json.dumps([{
        "file": str(result.scenario.path), "name": result.scenario.name,
        "passed": result.passed, "cards": result.cards,
        "steps": [{"index": r.step.index, "name": r.step.name, "outcome": r.outcome,
                   "detail": r.detail, "seconds": round(r.seconds, 4), "answer": r.answer}
                  for r in result.steps],
    } for result in results], indent=2)


def cmd_scenario_run(args: argparse.Namespace) -> int:
    if not 1 <= args.parallel <= PARALLEL_MAX:
        raise UserError(f"--parallel must be 1..{PARALLEL_MAX}")
    try:
        scenarios: list[Scenario] = [load_scenario(path) for path in scenario_paths(args.files)]
    except ScenarioError as error:
        raise UserError(str(error)) from None
    target = Target(args.host, parse_ports(args.port), redis_for_command(args))

    def show(result: ScenarioResult) -> None:
        for index in range(len(result.steps)):
            print(step_line(result, index), flush=True)

    results = asyncio.run(run_scenarios(scenarios, target, args.send_parser,
                                        parallel=args.parallel, keep_going=args.keep_going,
                                        on_result=show))
    print(summary_line(results))
    if args.junit:
        Path(args.junit).write_bytes(junit_xml(results))
    if args.json:
        Path(args.json).write_text(json_report(results))
    return 0 if all(result.passed for result in results) else 1


def add_commands(command, redis_option, send_parser: argparse.ArgumentParser) -> None:
    scenario = command("scenario", None, "scenario files: requests with expected answers")
    actions = scenario.add_subparsers(required=True, metavar="ACTION")
    run = actions.add_parser(
        "run", help="run scenario files against a running switch",
        description="Run scenario files (TOML, docs/testing.md) against a running switch: "
                    "fresh cards per run, one line per step, exit 0 only when every step "
                    "passed.")
    run.set_defaults(func=cmd_scenario_run, send_parser=send_parser)
    run.add_argument("files", nargs="+", metavar="FILE|DIR", help="scenario files or folders")
    run.add_argument("--host", default="127.0.0.1")
    run.add_argument("--port", action="append", default=[], metavar="CH=PORT",
                     help="a channel's port (default: the channel's default port)")
    run.add_argument("--junit", metavar="FILE", help="write JUnit XML here")
    run.add_argument("--json", metavar="FILE", help="write the results as JSON here")
    run.add_argument("--parallel", type=int, default=1, metavar="N",
                     help="scenario files run at once (default 1)")
    run.add_argument("--keep-going", action="store_true",
                     help="after a step that does not pass, run the file's later steps")
    redis_option(run)
