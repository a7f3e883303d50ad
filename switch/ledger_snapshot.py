"""The ledger as a recording began, and put back for `switch replay --restore`.

Taken once by `switch serve --record DIR` before any listener starts: every key of every
card, token and id claim (protocols/ledger_layout.py: `{c:*`, `{t:*`, `{i:*`), DUMPed with
its remaining time to live, into DIR/snapshot.msgpack (mode 0600: card numbers are in the key
names). Restoring makes those keys exactly what they were: the keys of these patterns made
since (the recording's holds, remembered answers, id claims; cards made later) are deleted,
the snapshot's are RESTOREd. Terminal keys and the test clock are left as they are.
Bounded: past `record_snapshot_keys_max` keys none is taken.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import redis.asyncio as aioredis

from protocols.recording import (
    SNAPSHOT_NAME,
    Snapshot,
    SnapshotKey,
    decode_snapshot,
    encode_snapshot,
)
from switch import limits

PATTERNS = ["{c:*", "{t:*", "{i:*"]
SCAN_BATCH_KEYS = 1000  # keys asked of each SCAN, DUMPed in one pipeline


class SnapshotTooLarge(ValueError):
    pass


async def _names(client: aioredis.Redis, pattern: str, keys_max: int) -> list[bytes]:
    names: list[bytes] = []
    async for name in client.scan_iter(match=pattern, count=SCAN_BATCH_KEYS):
        names.append(name)
        if len(names) > keys_max:
            raise SnapshotTooLarge(f"more than {keys_max} keys match {pattern}")
    return names


async def take(client: aioredis.Redis, keys_max: int = limits.record_snapshot_keys_max
               ) -> Snapshot:
    """`client` must answer in bytes (redis_client.connect(..., decode_responses=False))."""
    names: list[bytes] = []
    for pattern in PATTERNS:
        names += await _names(client, pattern, keys_max - len(names))
    keys: list[SnapshotKey] = []
    for start in range(0, len(names), SCAN_BATCH_KEYS):
        batch = names[start:start + SCAN_BATCH_KEYS]
        async with client.pipeline(transaction=False) as pipe:
            for name in batch:
                pipe.pttl(name)
                pipe.dump(name)
            replies = await pipe.execute()
        for name, ttl, dump in zip(batch, replies[::2], replies[1::2], strict=True):
            if dump is not None:  # gone between SCAN and DUMP: expired, it was not there
                keys.append(SnapshotKey(name.decode(), max(ttl, 0), dump))
    return Snapshot(taken_ns=time.time_ns(), patterns=PATTERNS, keys=keys)


def write(folder: Path, snapshot: Snapshot) -> Path:
    path = folder / SNAPSHOT_NAME
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, encode_snapshot(snapshot))
    finally:
        os.close(fd)
    return path


def read(folder: Path) -> Snapshot:
    path = folder / SNAPSHOT_NAME
    try:
        return decode_snapshot(path.read_bytes())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: the recording has no snapshot to restore") from None


async def restore(client: aioredis.Redis, snapshot: Snapshot) -> tuple[int, int]:
    """Make the snapshot's patterns hold exactly its keys. Returns (deleted, restored)."""
    deleted = 0
    for pattern in snapshot.patterns:
        names = await _names(client, pattern, limits.record_snapshot_keys_max * 4)
        for start in range(0, len(names), SCAN_BATCH_KEYS):
            deleted += await client.delete(*names[start:start + SCAN_BATCH_KEYS])
    for start in range(0, len(snapshot.keys), SCAN_BATCH_KEYS):
        async with client.pipeline(transaction=False) as pipe:
            for key in snapshot.keys[start:start + SCAN_BATCH_KEYS]:
                pipe.restore(key.name, key.ttl_ms, key.dump, replace=True)
            await pipe.execute()
    return deleted, len(snapshot.keys)
