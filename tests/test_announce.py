"""The announcement listener (switch/announce.py) never stops following: a message on its
channel that names no version is skipped, and a change that cannot be applied (the rule set
in Redis made unreadable on purpose) is logged, after which the worker subscribes again and
reads the state afresh once it can. Real processes: `switch serve --workers 2` on a
redis-server of the test's own, the `switch fault` and `switch clock` commands."""

from __future__ import annotations

import contextlib

import redis.asyncio as aioredis

from switch.announce import version_of
from switch.clock import TEST_CLOCK_CHANNEL
from switch.faults import FAULTS_CHANNEL, FAULTS_KEY
from tests.support import switch_cli, until_true
from tests.test_announce_restart import (
    RESUBSCRIBED_WAIT_S,
    SALES,
    WORKERS,
    all_listening,
    two_workers,
    write_rules_unannounced,
)
from tests.test_fault_rules import send_many

RETRIES = 3  # tries to read the unreadable set, over all workers, per worker on average


async def subscribes(client: aioredis.Redis) -> int:
    """SUBSCRIBE commands Redis has run (INFO commandstats): a worker's each try."""
    stats = await client.info("commandstats")
    return int(stats.get("cmdstat_subscribe", {}).get("calls", 0))


def test_an_announcement_names_its_version_by_its_first_word():
    assert [version_of(text) for text in ("7", "12 3600000", " 5 x")] == [7, 12, 5]
    assert [version_of(text) for text in ("", " ", "hello", "-1", "7x", "٣")] == [None] * 6


async def test_a_stray_message_and_an_unreadable_rule_set_do_not_stop_any_worker(
        private_redis, tmp_path):
    url = private_redis.url
    client = aioredis.Redis.from_url(url, decode_responses=True)
    async with contextlib.aclosing(client), two_workers(url, tmp_path) as (process, port,
                                                                          cli_env):
        for channel in (FAULTS_CHANNEL, TEST_CLOCK_CHANNEL):
            for stray in ("hello", ""):
                assert await client.publish(channel, stray) == WORKERS
        code, out, err = await switch_cli("fault", "add", "after-stray", "--channel", "jd",
                                          "--code", "05", env=cli_env)
        assert code == 0 and f"{WORKERS} workers applying them now" in out, (out, err)
        assert await send_many(url, port, SALES) == ["05"] * SALES
        code, out, err = await switch_cli("clock", "advance", "1d", env=cli_env)
        assert code == 0 and f"{WORKERS} workers following" in out, (out, err)

        # A rule set no worker can read, announced: each fails to apply it, and keeps failing
        # to read the state as it subscribes again, until the set is readable.
        await client.hset(FAULTS_KEY, "rules", "not json")
        version = await client.hincrby(FAULTS_KEY, "version", 1)
        before = await subscribes(client)
        assert await client.publish(FAULTS_CHANNEL, str(version)) == WORKERS

        async def failing_again_and_again() -> bool:  # a few tries each (backoff 50 ms, 100...)
            return await subscribes(client) >= before + RETRIES * WORKERS
        await until_true(failing_again_and_again, "the workers trying to read it again")
        await write_rules_unannounced(url, [{"id": "readable", "channel": "jd", "code": "51"}])
        await until_true(all_listening(url), "both workers following again",
                         RESUBSCRIBED_WAIT_S)
        assert await send_many(url, port, SALES) == ["51"] * SALES

        code, out, err = await switch_cli("fault", "clear", env=cli_env)
        assert code == 0 and f"{WORKERS} workers applying them now" in out, (out, err)
        assert await send_many(url, port, SALES) == ["00"] * SALES
    logged = process.stderr.read()
    assert "skipped a message on 'faults' that names no version" in logged
    assert "skipped a message on 'test-clock' that names no version" in logged
    assert "following the 'faults' announcements failed; subscribing again" in logged
    assert "DecodeError" in logged  # its traceback
