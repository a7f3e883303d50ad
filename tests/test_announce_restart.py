"""A Redis restart under `switch serve --workers 2`: every worker subscribes again to the
fault rules' and the test clock's announcements (bounded backoff) and reads the current state,
so a rule written while they were away, and every change after, is applied by each of them.
Real processes: a redis-server of the test's own (AOF) killed with SIGKILL and started again
on its data and port, the switch's workers (held with SIGSTOP while Redis restarts and the
rule is written, so none can be back before it), the `switch fault` and `switch clock`
commands."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from pathlib import Path

import msgspec
import redis.asyncio as aioredis

from switch.announce import subscribers
from switch.clock import TEST_CLOCK_CHANNEL
from switch.faults import (
    FAULTS_CHANNEL,
    FAULTS_KEY,
    FaultSet,
    add_rules,
    clear_rules,
    rule_from,
)
from tests.support import switch_cli, until_true
from tests.test_cli import serve, stop
from tests.test_fault_rules import send_many

WORKERS = 2
SALES = 16  # each on its own connection: both workers see some (all but surely)
# Backoff at most 1 s a try, a Redis loading its AOF: far below this, above a hang.
RESUBSCRIBED_WAIT_S = 15.0


async def listening(url: str, channel: str) -> int:
    client = aioredis.Redis.from_url(url)
    try:
        return await subscribers(client, channel)
    finally:
        await client.aclose()


def all_listening(url: str):
    async def check() -> bool:
        return all([await listening(url, channel) == WORKERS
                    for channel in (FAULTS_CHANNEL, TEST_CLOCK_CHANNEL)])
    return check


async def write_rules_unannounced(url: str, rules: list[dict]) -> None:
    """The rule set stored as `switch fault add` stores it (the keys of
    switch/faults.py change_rules: the rules and a new version), announced to no one."""
    client = aioredis.Redis.from_url(url)
    try:
        encoded = msgspec.json.encode([rule_from(rule, "test") for rule in rules])
        await client.hset(FAULTS_KEY, "rules", encoded)
        await client.hincrby(FAULTS_KEY, "version", 1)
    finally:
        await client.aclose()


@contextlib.asynccontextmanager
async def two_workers(url: str, tmp_path: Path):
    """`switch serve --workers 2 --test-clock` on `url`, both workers listening: yields
    (the process, its jd port, the environment for `switch` commands on that Redis)."""
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env["SWITCH_RUN_DIR"] = str(tmp_path / "run")
    process, _, port = await asyncio.to_thread(
        serve, env, ["--redis", url, "--workers", str(WORKERS), "--test-clock"])
    try:
        await until_true(all_listening(url), "both workers listening", RESUBSCRIBED_WAIT_S)
        yield process, port, dict(env, REDIS_URL=url)
    finally:
        await asyncio.to_thread(stop, process)


def children(pid: int) -> list[int]:
    """The processes `pid` started (its workers)."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(child) for child in (task / "children").read_text().split()]
    return found


@contextlib.contextmanager
def held(pids: list[int]):
    """The processes stopped (SIGSTOP) until the block ends."""
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)


async def test_after_a_redis_restart_every_worker_follows_the_rules_and_the_clock(
        private_redis, tmp_path):
    url = private_redis.url
    async with two_workers(url, tmp_path) as (process, port, cli_env):
        workers = children(process.pid)
        assert len(workers) >= WORKERS, workers
        with held(workers):  # none can subscribe again before the rule is written
            private_redis.process.kill()
            private_redis.process.wait()
            private_redis.start()  # its data and port: the workers' subscriptions are gone
            await write_rules_unannounced(url, [
                {"id": "after-restart", "channel": "jd", "code": "05"}])
        # Announced to no one: each worker has it only by reading the state on its return.
        await until_true(all_listening(url), "both workers listening again",
                         RESUBSCRIBED_WAIT_S)
        assert await send_many(url, port, SALES) == ["05"] * SALES

        # Changes after the restart: acknowledged by both before the command returns.
        code, out, err = await switch_cli("fault", "clear", env=cli_env)
        assert code == 0 and f"{WORKERS} workers applying them now" in out, (out, err)
        assert await send_many(url, port, SALES) == ["00"] * SALES
        code, out, err = await switch_cli("clock", "advance", "1d", env=cli_env)
        assert code == 0 and f"{WORKERS} workers following" in out, (out, err)


async def test_a_worker_takes_the_state_read_afresh_whatever_its_version(redis_url):
    """A Redis restarted without its data counts versions from 1 again: the rules read as the
    state replace the worker's, though their version is lower."""
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        await clear_rules(client)
        faults = FaultSet()
        await add_rules(client, [rule_from({"id": "old", "code": "05"}, "test")])
        await faults.read(client)
        old_version = faults.version
        await client.hset(FAULTS_KEY, mapping={"version": 1, "rules": "[]"})
        await faults.read(client, f"{old_version - 1}")  # an announcement older: ignored
        assert [rule.id for rule in faults.rules] == ["old"]
        await faults.read(client)  # the state: taken
        assert (faults.rules, faults.version) == ((), 1)
    finally:
        await clear_rules(client)
        await client.aclose()
