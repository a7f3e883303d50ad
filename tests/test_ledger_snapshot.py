"""The snapshot a recording takes of the ledger, and its restore: exactly the keys of its
patterns come back, with their contents and times to live, and no more."""

from __future__ import annotations

import pytest

from switch import ledger_snapshot
from switch.redis_client import connect
from switch.redis_runner import PrivateRedis


@pytest.fixture
async def client(tmp_path):
    """A Redis of this test's own: a restore rewrites every card."""
    server = PrivateRedis(tmp_path / "redis")
    url = server.start()
    redis = connect(url, decode_responses=False)
    yield redis
    await redis.aclose()
    server.stop()


async def test_a_restore_brings_back_exactly_the_snapshot(client, tmp_path):
    await client.hset("{c:6253680000000012}", mapping={"limit": 100, "held": 0})
    await client.set("{i:jd:m:1}", "6253680000000012", ex=3600)
    await client.set("{k:10000}:*", "terminal keys are not the ledger's")
    snapshot = await ledger_snapshot.take(client)
    ledger_snapshot.write(tmp_path, snapshot)
    assert sorted(k.name for k in snapshot.keys) == ["{c:6253680000000012}", "{i:jd:m:1}"]

    await client.hset("{c:6253680000000012}", "held", 50)  # what the recording did
    await client.set("{i:jd:m:2}", "6253680000000012")
    await client.set("{c:6253680000000012}:i:jd:m:2", "an answer")
    await client.set("{k:10000}:*", "changed since")
    deleted, restored = await ledger_snapshot.restore(client, ledger_snapshot.read(tmp_path))

    assert (deleted, restored) == (4, 2)
    assert await client.hgetall("{c:6253680000000012}") == {b"limit": b"100", b"held": b"0"}
    assert await client.exists("{i:jd:m:2}", "{c:6253680000000012}:i:jd:m:2") == 0
    assert 0 < await client.ttl("{i:jd:m:1}") <= 3600
    assert await client.get("{k:10000}:*") == b"changed since"  # not a pattern of its


async def test_past_its_bound_no_snapshot_is_taken(client):
    for number in range(3):
        await client.set(f"{{c:{number}}}", "x")
    assert len((await ledger_snapshot.take(client, keys_max=3)).keys) == 3
    with pytest.raises(ledger_snapshot.SnapshotTooLarge, match="more than 2 keys"):
        await ledger_snapshot.take(client, keys_max=2)


def test_restore_without_a_snapshot_says_so(tmp_path):
    with pytest.raises(FileNotFoundError, match="no snapshot to restore"):
        ledger_snapshot.read(tmp_path)
