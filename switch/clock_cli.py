"""`switch clock show|advance|set|reset`: the test clock of a switch served with --test-clock.

Each change returns once every worker following the clock has taken it (switch/clock.py
TestClockControl); without such a switch on the Redis, every command refuses and changes
nothing. switch/cli.py registers them.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from switch.cli_common import UserError, redis_for_command
from switch.clock import (
    TestClockControl,
    TestClockOff,
    duration_ms,
    instant_ms,
    offset_text,
)
from switch.redis_client import connect


def when(now_ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S UTC", time.gmtime(now_ms / 1000))


async def _run(args: argparse.Namespace) -> str:
    client = connect(redis_for_command(args))
    control = TestClockControl(client)
    try:
        if args.action == "advance":
            await control.advance(duration_ms(args.value))
        elif args.action == "set":
            await control.set(instant_ms(args.value))
        elif args.action == "reset":
            await control.reset()
        now_ms, offset_ms, workers = await control.show()
    finally:
        await client.aclose()
    return (f"test clock {when(now_ms)}  ({offset_text(offset_ms)} from real time; "
            f"{workers} worker{'s' if workers != 1 else ''} following)")


def cmd_clock(args: argparse.Namespace) -> int:
    try:
        print(asyncio.run(_run(args)))
    except (TestClockOff, ValueError, TimeoutError) as error:
        raise UserError(str(error)) from None
    return 0


def add_commands(command, redis_option) -> None:
    clock = command("clock", None, "show or move the test clock of a switch served with "
                    "--test-clock")
    actions = clock.add_subparsers(required=True, metavar="ACTION")
    for name, help_text, value_help in (
        ("show", "the test clock's time and how many workers follow it", None),
        ("advance", "move it forward (every worker has it when the command returns)",
         "how far: 36h, 30d, 1d12h, 90m, 45s"),
        ("set", "put it at a UTC date and time (never back)", "e.g. 2026-12-24T10:00 (UTC)"),
        ("reset", "back to real time (holds already expired stay expired)", None),
    ):
        sub = actions.add_parser(name, help=help_text)
        sub.set_defaults(func=cmd_clock, action=name)
        if value_help:
            sub.add_argument("value", metavar="WHEN" if name == "set" else "DURATION",
                             help=value_help)
        redis_option(sub)
