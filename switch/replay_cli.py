"""`switch serve --record DIR` options and `switch replay DIR`: docs/testing.md, "Record and
replay". switch/cli.py registers them."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

from protocols.recording import (
    FILE_GLOB,
    SNAPSHOT_NAME,
    RecordingError,
    Series,
    channel_wires,
    in_arrival_order,
    read_series,
)
from switch import ledger_snapshot, limits
from switch.cli_common import UserError, redis_for_command
from switch.config import DEFAULT_PORTS, Config, ConfigError, Recording, parse_listen
from switch.recorder import recording_files
from switch.redis_client import connect
from switch.replay import Diff, Player, Target, diff
from switch.replay_report import as_html, as_json, as_text

SPEEDS = {"1": 1.0, "10": 10.0, "max": None}


# --- switch serve --record -----------------------------------------------------------------


def add_serve_options(serve: argparse.ArgumentParser) -> None:
    group = serve.add_argument_group("recording (docs/testing.md, \"Record and replay\")")
    group.add_argument("--record", type=Path, metavar="DIR",
                       help="record every request and answer, byte for byte, into DIR "
                       "(files mode 600: they hold card numbers), with a snapshot of the "
                       "cards for `switch replay --restore`; DIR must hold no recording")
    group.add_argument("--record-max-mb", type=int, metavar="MB",
                       help="the recording's total size; past it the oldest file goes "
                       f"(default {limits.record_total_max_bytes // 2**20})")
    group.add_argument("--record-file-max-mb", type=int, metavar="MB",
                       help="one file's size before the next is begun (default "
                       f"{limits.record_file_max_bytes // 2**20})")


def choose_recording(config: Config, args: argparse.Namespace) -> None:
    """--record over the config's [record]; each of N workers keeps 1/N of the total."""
    record = config.record
    folder = args.record or (Path(record.dir) if record.dir else None)
    if folder is None:
        if args.record_max_mb or args.record_file_max_mb:
            raise UserError("--record-max-mb and --record-file-max-mb go with --record DIR")
        return
    if folder.exists() and (any(folder.glob(FILE_GLOB)) or not folder.is_dir()):
        raise UserError(f"--record {folder}: holds a recording already (or is not a folder); "
                        "choose a new folder")
    total_mb = args.record_max_mb or record.max_mb
    file_mb = args.record_file_max_mb or min(record.file_max_mb, total_mb)
    try:
        config.record = Recording(dir=str(folder), max_mb=max(1, total_mb // args.workers),
                                  file_max_mb=min(file_mb, max(1, total_mb // args.workers)))
    except ValueError as error:
        raise UserError(f"--record: {error}") from None


async def take_snapshot(config: Config, redis_url: str) -> str:
    """The ledger as the recording begins, into its folder; a line for the banner."""
    folder = Path(config.record.dir)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    client = connect(redis_url, decode_responses=False)
    try:
        snapshot = await ledger_snapshot.take(client)
    except ledger_snapshot.SnapshotTooLarge as error:
        (folder / SNAPSHOT_NAME).unlink(missing_ok=True)  # never an older recording's
        return f"no snapshot ({error}): `switch replay --restore` cannot be used"
    finally:
        await client.aclose()
    path = ledger_snapshot.write(folder, snapshot)
    return f"snapshot of {len(snapshot.keys)} ledger keys in {path}"


# --- switch replay -------------------------------------------------------------------------


def add_commands(command, redis_option) -> None:
    replay = command("replay", cmd_replay, "send a recording's requests to a switch again and "
                     "show which decisions differ (exit 1 when any does)")
    replay.add_argument("dir", type=Path, metavar="DIR", help="a `switch serve --record` folder")
    replay.add_argument("--target", action="append", default=[], metavar="CHANNEL=HOST:PORT",
                        help="where to send CHANNEL's requests (repeatable; default: "
                        "127.0.0.1 and the channel's default port)")
    replay.add_argument("--speed", choices=sorted(SPEEDS), default="max",
                        help="1: the recorded pace; 10: ten times faster; max (default): as "
                        "fast as the recorded order allows")
    replay.add_argument("--restore", action="store_true",
                        help="first put the cards, tokens and id claims back as they were "
                        "when the recording began (its snapshot; needs the target's Redis)")
    replay.add_argument("--connections", type=int, default=8,
                        help="connections per channel (default 8)")
    replay.add_argument("--timeout", type=float, default=5.0,
                        help="seconds to wait for each answer (default 5)")
    replay.add_argument("--json", type=Path, metavar="FILE", help="the diff as JSON")
    replay.add_argument("--html", type=Path, metavar="FILE", help="the diff as an HTML page")
    replay.add_argument("--quiet", action="store_true", help="no progress line")
    redis_option(replay)


def parse_targets(values: list[str]) -> dict[str, Target]:
    targets = {}
    for value in values:
        try:
            channel, listener = parse_listen(value)
        except ConfigError as error:
            raise UserError(str(error).replace("--listen", "--target")) from None
        targets[channel] = Target(listener.host, listener.port)
    return targets


def every_channel(targets: dict[str, Target], series: list[Series]) -> dict[str, Target]:
    """`targets`, and 127.0.0.1 on its default port for a recorded channel not in them."""
    targets = dict(targets)
    for channel in {x.channel for one in series for x in one.exchanges} - set(targets):
        if channel not in DEFAULT_PORTS:
            raise UserError(f"the recording has channel {channel}: give --target {channel}=..")
        targets[channel] = Target("127.0.0.1", DEFAULT_PORTS[channel])
    return targets


def read_recording(folder: Path) -> list[Series]:
    if not folder.is_dir():
        raise UserError(f"{folder}: no such folder (a `switch serve --record DIR` folder)")
    files = recording_files(folder)
    if not files:
        raise UserError(f"{folder}: no recording files ({FILE_GLOB}) in it")
    try:
        return read_series([(path.name, path.read_bytes()) for path in files])
    except (RecordingError, ValueError) as error:
        raise UserError(str(error)) from None


class ProgressLine:
    """`done/total` on stderr at most once a `replay_progress_interval_s`, long replays only."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.next_at = time.monotonic() + limits.replay_progress_interval_s
        self.shown = False

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if self.quiet or now < self.next_at:
            return
        self.next_at = now + limits.replay_progress_interval_s
        self.shown = True
        line = f"replayed {done:,} of {total:,}"
        if sys.stderr.isatty():  # rewritten in place; one line a second into a file
            print(f"\r{line}", end="", file=sys.stderr, flush=True)
        else:
            print(line, file=sys.stderr, flush=True)

    def end(self) -> None:
        if self.shown and sys.stderr.isatty():
            print(file=sys.stderr)


async def restore(folder: Path, redis_url: str) -> str:
    try:
        snapshot = ledger_snapshot.read(folder)
    except FileNotFoundError as error:
        raise UserError(str(error)) from None
    client = connect(redis_url, decode_responses=False)
    try:
        deleted, restored = await ledger_snapshot.restore(client, snapshot)
    finally:
        await client.aclose()
    return f"restored {restored} ledger keys as the recording began ({deleted} deleted first)"


async def replay(folder: Path, targets: dict[str, Target], speed: str, connections: int,
                 timeout_s: float, progress=None) -> Diff:
    """`folder`'s recording to `targets` (a channel not in them: its default port)."""
    series = read_recording(folder)
    return await play(series, every_channel(targets, series), speed, connections, timeout_s,
                      progress)


async def play(series: list[Series], targets: dict[str, Target], speed: str,
               connections: int, timeout_s: float, progress=None) -> Diff:
    played = in_arrival_order(series)
    wires = channel_wires(series)
    started = time.monotonic()
    try:
        player = Player(played, targets, wires, SPEEDS[speed], connections, timeout_s)
    except ValueError as error:
        raise UserError(str(error)) from None
    results = await player.run(progress)
    result = diff(played, results, wires)
    result.elapsed_s = round(time.monotonic() - started, 3)
    result.speed = speed
    result.targets = {c: f"{t.host}:{t.port}" for c, t in sorted(targets.items())}
    return result


def cmd_replay(args: argparse.Namespace) -> int:
    if args.connections < 1 or args.timeout <= 0:
        raise UserError("--connections must be 1 or more and --timeout above 0")
    series = read_recording(args.dir)
    targets = every_channel(parse_targets(args.target), series)
    if args.restore:
        print(asyncio.run(restore(args.dir, redis_for_command(args))), file=sys.stderr)
    progress = ProgressLine(args.quiet)
    try:
        result = asyncio.run(play(series, targets, args.speed, args.connections, args.timeout,
                                  progress))
    finally:
        progress.end()
    print(as_text(result))
    if args.json:
        args.json.write_bytes(as_json(result))
    if args.html:
        args.html.write_text(as_html(result))
    return 1 if result.differences else 0
