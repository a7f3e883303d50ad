"""`switch fault add|list|clear`: the fault rules every switch on the Redis applies
(switch/faults.py). A change returns once every worker listening has it; with no switch
running it waits for none, and a switch started later reads it. switch/cli.py registers
them; `switch serve --faults FILE` replaces the set as the switch starts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path

from switch import limits
from switch.cli_common import UserError, fen, redis_for_command, resolve_pan
from switch.faults import (
    CHANNELS,
    CLASSES,
    FaultError,
    FaultRule,
    add_rules,
    clear_rules,
    load_rule_file,
    rule_counts,
    rule_from,
    stored_rules,
)
from switch.redis_client import connect

# The options of `fault add` that name a rule's key (the option's dest is the key).
MATCH_OPTIONS = ("channel", "class", "card", "card_prefix", "amount_min", "amount_max", "mcc",
                 "merchant", "terminal")
ACTION_OPTIONS = ("code", "delay_ms", "no_answer", "close", "stand_in", "times", "fraction",
                  "seed")


def rule_of_args(args: argparse.Namespace) -> FaultRule:
    """The rule `fault add` describes with options, checked like a file's."""
    raw = {"id": args.id}
    for key in (*MATCH_OPTIONS, *ACTION_OPTIONS):
        value = getattr(args, key, None)
        if value not in (None, False):
            raw[key] = value
    if "card" in raw:
        raw["card"] = resolve_pan(raw["card"])
    return rule_from(raw, "fault add")


def workers_text(workers: int) -> str:
    if not workers:
        return "no switch listens now: each applies them when it starts"
    return f"{workers} worker{'s' if workers != 1 else ''} applying them now"


async def _add(args: argparse.Namespace) -> str:
    rules = load_rule_file(args.file) if args.file else [rule_of_args(args)]
    client = connect(redis_for_command(args))
    try:
        in_force, workers = await add_rules(client, rules)
    finally:
        await client.aclose()
    added = ", ".join(rule.id for rule in rules)
    return (f"fault rule{'s' if len(rules) != 1 else ''} {added} added; {len(in_force)} in "
            f"force, first match wins; {workers_text(workers)}")


async def _clear(args: argparse.Namespace) -> str:
    client = connect(redis_for_command(args))
    try:
        in_force, workers = await clear_rules(client, args.id)
    finally:
        await client.aclose()
    gone = f"fault rule {args.id} cleared" if args.id else "every fault rule cleared"
    return f"{gone}; {len(in_force)} in force; {workers_text(workers)}"


async def _list(args: argparse.Namespace) -> str:
    client = connect(redis_for_command(args))
    try:
        _, rules = await stored_rules(client)
        counts = await rule_counts(client)
    finally:
        await client.aclose()
    if args.json:
        return json.dumps([rule.shown() | {
            "used": counts.get(f"{rule.id}:used", 0),
            "matched": counts.get(f"{rule.id}:matched", 0)} for rule in rules])
    if not rules:
        return "no fault rules in force"
    lines = [f"{len(rules)} fault rule{'s' if len(rules) != 1 else ''} in force (first match "
             "wins):"]
    for index, rule in enumerate(rules, start=1):
        used = counts.get(f"{rule.id}:used", 0)
        counted = (f"  (used {min(used, rule.times)} of {rule.times})"
                   if rule.times is not None else "")
        lines.append(f"  {index}. {rule.text()}{counted}")
    return "\n".join(lines)


def cmd_fault(args: argparse.Namespace) -> int:
    work = {"add": _add, "clear": _clear, "list": _list}[args.action]
    try:
        print(asyncio.run(work(args)))
    except (FaultError, TimeoutError) as error:
        raise UserError(str(error)) from None
    return 0


def cmd_fault_add(args: argparse.Namespace) -> int:
    if bool(args.file) == bool(args.id):
        raise UserError("fault add: name a rule (ID and its options) or --file FILE, "
                        "not both")
    return cmd_fault(args)


def add_commands(command, redis_option) -> None:
    fault = command("fault", None, "add, list or clear fault rules (tests: answer matching "
                    "requests with a code, a delay, no answer, a closed connection, stand-in)")
    actions = fault.add_subparsers(required=True, metavar="ACTION")
    add = actions.add_parser(
        "add", help="add a rule (or a file's rules) after the ones in force",
        description="Add a fault rule: every request it matches (all the match options "
        "given; none given matches every request) gets its action. The first rule that "
        "matches wins. docs/testing.md, 'Fault rules'.")
    add.set_defaults(func=cmd_fault_add, action="add")
    add.add_argument("id", metavar="ID", nargs="?", help="the rule's name (letters, digits, "
                     ". _ -): answers it forces carry reason fault:ID")
    add.add_argument("--file", type=Path, help="add the [[rule]] tables of this TOML file "
                     "instead (the format of switch serve --faults)")
    match = add.add_argument_group("what it matches")
    match.add_argument("--channel", choices=CHANNELS)
    match.add_argument("--class", dest="class", choices=CLASSES, help="the message class")
    match.add_argument("--card", metavar="PAN", help="one card (number or demo alias)")
    match.add_argument("--card-prefix", metavar="DIGITS", help="cards starting so (a BIN)")
    match.add_argument("--amount-min", type=fen, metavar="FEN", help="amounts from (fen)")
    match.add_argument("--amount-max", type=fen, metavar="FEN", help="amounts up to (fen)")
    match.add_argument("--mcc")
    match.add_argument("--merchant", help="merchant id (JD merchant, WeChat mch_id, F42)")
    match.add_argument("--terminal", help="terminal id (F41)")
    action = add.add_argument_group("what it does (one action; --delay-ms may go with --code)")
    action.add_argument("--code", help="answer this declining code (reason fault:ID)")
    action.add_argument("--delay-ms", type=int, metavar="MS", help="wait before answering "
                        f"(1..{limits.forced_delay_max_ms}); alone, decided as usual; past "
                        "the request's deadline: 91 at the deadline")
    action.add_argument("--no-answer", action="store_true", help="never answer")
    action.add_argument("--close", action="store_true", help="close the connection instead "
                        "of answering")
    action.add_argument("--stand-in", action="store_true", help="decide by stand-in, as if "
                        "Redis were down (journaled, then advised)")
    action.add_argument("--times", type=int, metavar="N", help="only the first N matching "
                        "requests, across every worker")
    action.add_argument("--fraction", type=float, help="only this share of the matching "
                        "requests (0..1], chosen by --seed: the same ones every run")
    action.add_argument("--seed", type=int, help="the --fraction's seed (default 0)")
    redis_option(add)
    listing = actions.add_parser("list", help="the rules in force, in order, with their uses")
    listing.set_defaults(func=cmd_fault, action="list")
    listing.add_argument("--json", action="store_true", help="one JSON array")
    redis_option(listing)
    clear = actions.add_parser("clear", help="remove every rule, or one")
    clear.set_defaults(func=cmd_fault, action="clear")
    clear.add_argument("--id", help="only this rule")
    redis_option(clear)
