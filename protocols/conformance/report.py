"""The conformance kit's words: one line per message, and the report at the end (text, JUnit
XML with one testcase per required flow, JSON). Card numbers are masked where they are read
(the rules); nothing here sees a full one.
"""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree

import msgspec

from protocols.conformance.flows import others, outcomes
from protocols.conformance.session import Exchange

OTHER_MESSAGES = "other_messages"  # the testcase of findings that belong to no flow


def message_line(exchange: Exchange) -> str:
    """`#3 0200 sale STAN 000123 card 625368******0018 -> 00 OK`, or what is wrong."""
    reading = exchange.reading
    card = f" card {reading.card}" if reading.card else ""
    answer = exchange.answer
    code = f" -> {answer.code}" if answer is not None else " -> (no answer)"
    repeat = f" repeat of #{exchange.repeat_of.seq}" if exchange.repeat_of else ""
    head = f"#{exchange.seq} {reading.label}{card}{repeat}{code}"
    if not exchange.findings:
        return f"{head}  OK"
    return f"{head}  FAIL " + "; ".join(str(finding) for finding in exchange.findings)


class Report(msgspec.Struct):
    channel: str
    messages: int
    with_findings: int
    passed: bool
    flows: list[dict]  # name, title, passed, completed_by (message numbers), reasons
    other_findings: list[str]


def build(channel: str, exchanges: list[Exchange]) -> Report:
    results = outcomes(channel, exchanges)
    stray = others(channel, exchanges)
    flows = [{"name": o.flow.name, "title": o.flow.title, "passed": o.passed,
              "completed_by": [e.seq for e in o.completed], "reasons": o.reasons()}
             for o in results]
    return Report(channel, len(exchanges), sum(1 for e in exchanges if e.findings),
                  all(o.passed for o in results) and not stray, flows,
                  [f"#{e.seq} {e.reading.label}: {f}" for e in stray for f in e.findings])


def text(report: Report) -> str:
    passed = sum(1 for flow in report.flows if flow["passed"])
    lines = [f"conformance of {report.channel}: {passed} of {len(report.flows)} required "
             f"flows passed ({report.messages} messages, {report.with_findings} with "
             "findings)"]
    for flow in report.flows:
        mark = "PASS" if flow["passed"] else "FAIL"
        done = " ".join(f"#{seq}" for seq in flow["completed_by"][:5])
        lines.append(f"  {mark}  {flow['title']:<36} {done}".rstrip())
        lines += [f"        {reason}" for reason in flow["reasons"]]
    if report.other_findings:
        lines.append("  FAIL  other messages")
        lines += [f"        {reason}" for reason in report.other_findings]
    lines.append("result: " + ("PASS, every required flow" if report.passed else "FAIL"))
    return "\n".join(lines)


def junit(report: Report) -> bytes:
    """JUnit XML: one testcase per required flow; a failure's message names its reasons."""
    cases = [(flow["name"], flow["passed"], flow["reasons"]) for flow in report.flows]
    if report.other_findings:
        cases.append((OTHER_MESSAGES, False, report.other_findings))
    failures = sum(1 for _, passed, _ in cases if not passed)
    suite = ElementTree.Element("testsuite", name=f"switch conform {report.channel}",
                                tests=str(len(cases)), failures=str(failures), errors="0")
    for name, passed, reasons in cases:
        case = ElementTree.SubElement(suite, "testcase", name=name,
                                      classname=f"conform.{report.channel}")
        if not passed:
            failure = ElementTree.SubElement(case, "failure", message="; ".join(reasons))
            failure.text = "\n".join(reasons)
    return ElementTree.tostring(ElementTree.ElementTree(suite).getroot(), encoding="utf-8",
                                xml_declaration=True) + b"\n"


def as_json(report: Report) -> bytes:
    return msgspec.json.format(msgspec.json.encode(report), indent=2) + b"\n"

