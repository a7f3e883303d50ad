"""One /metrics for `switch serve --workers N`: every worker writes its counts to a file in
a folder the supervisor made, every `admin_share_interval_s`; the worker that serves the admin
API adds the others' latest files to its own live counts at scrape time. So a scrape sums
all workers, the others' shares at most one interval old, and the workers share no memory
and take no lock (prometheus-client's multiprocess mode would need its own value classes on
the hot path instead of plain integers)."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from pathlib import Path

import msgspec

from switch import limits
from switch.metrics import Snapshot, merged

ENCODER = msgspec.json.Encoder()
DECODER = msgspec.json.Decoder(Snapshot)


def share_path(folder: Path, index: int) -> Path:
    return folder / f"worker-{index}.json"


def write_share(folder: Path, index: int, snapshot: Snapshot) -> None:
    """Atomically: a reader sees the previous file or this one, never half of one."""
    path = share_path(folder, index)
    partial = path.with_suffix(".partial")
    partial.write_bytes(ENCODER.encode(snapshot))
    os.replace(partial, path)


def read_shares(folder: Path, skip: int) -> list[Snapshot]:
    """Every other worker's latest counts (a worker that has not written yet counts none)."""
    found = []
    for path in sorted(folder.glob("worker-*.json")):
        if path != share_path(folder, skip):
            with contextlib.suppress(OSError, msgspec.DecodeError):
                found.append(DECODER.decode(path.read_bytes()))
    return found


async def publish(folder: Path, index: int, snapshot: Callable[[], Snapshot]) -> None:
    """Write this worker's counts every interval, until cancelled."""
    while True:
        with contextlib.suppress(OSError):  # the folder went with the supervisor: stopping
            write_share(folder, index, snapshot())
        await asyncio.sleep(limits.admin_share_interval_s)


def all_workers(folder: Path, index: int, own: Callable[[], Snapshot]) -> Callable[[], Snapshot]:
    """The admin API's source of counts: this worker's, live, plus the others' shares."""
    return lambda: merged([own(), *read_shares(folder, skip=index)])
