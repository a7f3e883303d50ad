"""`switch audit`: check every card's books (switch/audit.py); exit 0 clean, 1 broken, 2 on a
usage or connection error. switch/cli.py registers it."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

import msgspec
import redis

from switch import limits
from switch.app import journal_folder
from switch.audit import RULES, Report, audit_all, journal_findings
from switch.cli_common import UserError, redis_for_command
from switch.config import load
from switch.redis_client import connect

# A reply of Redis the audit waits for (a pipeline of many cards' reads).
AUDIT_REPLY_WAIT_MS = int(limits.redis_pool_wait_s * 5 * 1000)


def progress(cards: int, broken: int) -> None:
    print(f"audit: {cards} cards checked, {broken} broken so far", file=sys.stderr, flush=True)


async def audit_redis(url: str) -> Report:
    client = connect(url, request_deadline_ms=AUDIT_REPLY_WAIT_MS)
    try:
        return await audit_all(client, progress=progress)
    finally:
        await client.aclose()


def as_text(report: Report) -> str:
    lines = [f"{f.card}  {f.rule}  {f.detail}" for f in report.findings]
    summary = f"audit: {report.cards} cards, {report.transactions} transactions: "
    if report.clean:
        return "\n".join(lines + [summary + "the books add up"])
    lines.append(summary + f"{len({f.card for f in report.findings})} cards broken")
    lines += [f"  {rule}: {RULES[rule]}" for rule in dict.fromkeys(f.rule for f in
                                                                    report.findings)]
    return "\n".join(lines)


def as_json(report: Report) -> str:
    return msgspec.json.encode({
        "clean": report.clean, "cards": report.cards, "transactions": report.transactions,
        "broken": [f._asdict() for f in report.findings],
    }).decode()


def cmd_audit(args: argparse.Namespace) -> int:
    url = redis_for_command(args)
    try:
        report = asyncio.run(audit_redis(url))
    except (redis.RedisError, redis.exceptions.RedisClusterException, OSError) as error:
        raise UserError(f"Redis at {url} failed during the audit: {error}") from None
    journals = args.journal_dir or journal_folder(load(args.config))
    report = report._replace(findings=report.findings + journal_findings(journals))
    print(as_json(report) if args.json else as_text(report))
    return 0 if report.clean else 1


def add_commands(command, redis_option) -> None:
    sub = command("audit", cmd_audit, "check that every card's balances add up to its "
                  "holds and transactions (exit 0 clean, 1 broken, 2 error)")
    sub.add_argument("--json", action="store_true", help="one JSON object: clean, cards, "
                     "transactions, broken (card masked, rule, detail)")
    sub.add_argument("--journal-dir", type=Path, metavar="DIR", help="the stand-in journals "
                     "to check (default: the config's journal_dir, else the run directory "
                     ".run or $SWITCH_RUN_DIR)")
    redis_option(sub)
    sub.formatter_class = argparse.RawDescriptionHelpFormatter
    sub.epilog = "rules (docs/reliability.md):\n" + "\n".join(
        f"  {name}: {text}" for name, text in RULES.items())
