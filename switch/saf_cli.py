"""`switch saf show|replay`: the store-and-forward journals of a run directory.

`show` reads every journal (no lock: a running switch keeps writing) and lists what waits to
be forwarded, card numbers masked. `replay` forwards, now, every journal no running switch
holds (a running switch forwards its own as soon as Redis answers) and reports what each
record did. switch/cli.py registers them.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import fcntl
import os
import time
from pathlib import Path

import msgspec

from protocols.cardnumbers import mask_pan
from switch.app import journal_folder
from switch.cli_common import UserError, redis_for_command
from switch.config import load
from switch.forwarder import Forwarder, Report
from switch.journal import (
    Advice,
    Journal,
    JournalBusy,
    JournalCorrupt,
    Record,
    journal_paths,
    snapshot,
)
from switch.ledger import Ledger
from switch.policy import Policy
from switch.policy_file import load_policy
from switch.redis_client import connect


def folder_of(args: argparse.Namespace) -> Path:
    folder = args.dir or journal_folder(load(args.config))
    if not folder.is_dir():
        raise UserError(f"no journal directory {folder} (is this where the switch ran? "
                        "--dir names another)")
    return folder


def held(path: Path) -> bool:
    """Whether a running switch holds the journal (its flock)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # also releases our shared lock at once
    return False


class ShownRecord(msgspec.Struct):
    kind: str  # advice or void
    id: str
    card: str  # masked
    idempotency_key: str
    auth_id: str
    amount_fen: int  # an advice's approved amount; 0 for a void
    message_class: str
    written: str  # UTC


class ShownJournal(msgspec.Struct):
    path: str
    held_by_a_running_switch: bool
    waiting: list[ShownRecord]
    forwarded_not_truncated: int
    torn_bytes: int


class CardTotal(msgspec.Struct):
    advices: int = 0
    advised_fen: int = 0
    voids: int = 0


def shown(record: Record) -> ShownRecord:
    written = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(record.written_ms / 1000))
    if isinstance(record, Advice):
        request = record.request
        return ShownRecord("advice", record.id, mask_pan(request.card), request.idempotency_key,
                           record.auth_id, record.approved_fen, request.message_class.value,
                           written)
    return ShownRecord("void", record.id, mask_pan(record.pan), record.idempotency_key,
                       record.auth_id, 0, "", written)


def cmd_saf_show(args: argparse.Namespace) -> int:
    folder = folder_of(args)
    journals, cards = [], collections.defaultdict(CardTotal)
    for path in journal_paths(folder):
        try:
            seen = snapshot(path)
        except JournalCorrupt as error:
            raise UserError(str(error)) from None
        waiting = [shown(r) for r in seen.records[seen.forwarded:]]
        journals.append(ShownJournal(str(path), held(path), waiting, seen.forwarded,
                                     seen.torn_bytes))
        for record in waiting:
            total = cards[record.card]
            if record.kind == "advice":
                total.advices += 1
                total.advised_fen += record.amount_fen
            else:
                total.voids += 1
    if args.json:
        print(msgspec.json.encode({"folder": str(folder), "journals": journals,
                                   "cards": dict(cards)}).decode())
        return 0
    print(describe(folder, journals, cards))
    return 0


def describe(folder: Path, journals: list[ShownJournal], cards: dict[str, CardTotal]) -> str:
    if not journals:
        return f"no store-and-forward journals in {folder}: nothing waits"
    lines = []
    for journal in journals:
        owner = ("held by a running switch" if journal.held_by_a_running_switch
                 else "no switch holds it")
        lines.append(f"journal {journal.path} ({owner}): {len(journal.waiting)} records wait"
                     + (f", {journal.torn_bytes} torn bytes at the end (dropped when opened)"
                        if journal.torn_bytes else ""))
        for r in journal.waiting:
            what = (f"{r.message_class} {r.amount_fen:>9} fen" if r.kind == "advice"
                    else "undo the attempt")
            lines.append(f"  {r.written}  {r.kind:<6} {r.card}  {what}  auth {r.auth_id}  "
                         f"{r.idempotency_key}")
    if cards:
        lines.append("per card, waiting:")
        for card, total in sorted(cards.items()):
            lines.append(f"  {card}  {total.advices} advices {total.advised_fen} fen  "
                         f"{total.voids} voids")
    advices = sum(t.advices for t in cards.values())
    lines.append(f"total: {advices} advices {sum(t.advised_fen for t in cards.values())} fen, "
                 f"{sum(t.voids for t in cards.values())} voids waiting")
    return "\n".join(lines)


def cmd_saf_replay(args: argparse.Namespace) -> int:
    folder = folder_of(args)
    paths = journal_paths(folder)
    if not paths:
        print(f"no store-and-forward journals in {folder}: nothing to replay")
        return 0
    url = redis_for_command(args)
    policy = Policy(load_policy(args.policy or load(args.config).policy))
    for path in paths:
        try:
            journal = Journal.open_locked(path)
        except JournalBusy:
            print(f"{path}: held by a running switch, which forwards it itself when Redis "
                  "answers; skipped")
            continue
        except JournalCorrupt as error:
            raise UserError(str(error)) from None
        with contextlib.closing(journal):
            waiting = len(journal.pending)
            report = asyncio.run(replay(journal, url, policy))
        print(f"{path}: {waiting} records replayed: {report.line()}")
    return 0


async def replay(journal: Journal, url: str, policy: Policy) -> Report:
    ledger = Ledger(connect(url))
    try:
        await ledger.start()
        return await Forwarder(journal, ledger, policy).replay()
    finally:
        await ledger.aclose()


def add_commands(command, redis_option) -> None:
    saf = command("saf", None, "the store-and-forward journals: what stand-in decided and what "
                  "must be undone, waiting for Redis")
    actions = saf.add_subparsers(required=True, metavar="ACTION")
    show = actions.add_parser("show", help="list the records waiting to be forwarded (card "
                              "numbers masked), per journal and per card")
    show.set_defaults(func=cmd_saf_show)
    show.add_argument("--json", action="store_true", help="one JSON object")
    replay_cmd = actions.add_parser("replay", help="forward now every journal no running "
                                    "switch holds, and report what each record did")
    replay_cmd.set_defaults(func=cmd_saf_replay)
    replay_cmd.add_argument("--policy", type=Path, metavar="FILE",
                            help="policy whose terms the advices post with (default: the "
                            "config's, else the shipped default)")
    redis_option(replay_cmd)
    for sub in (show, replay_cmd):
        sub.add_argument("--dir", type=Path, help="journal directory (default: the config's "
                         "journal_dir, else the run directory .run or $SWITCH_RUN_DIR)")
    show.add_argument("--config", type=Path, help="switch config file (TOML)")
