"""A change every worker must have before the command that made it returns: the new version
announced on a pub/sub channel, each listening worker applying it and then acknowledging it
(INCR of the version's ack key), and the command waiting, bounded, for as many acks as the
announcement had receivers. The test clock (switch/clock.py) and the fault rules
(switch/faults.py) use it; each Redis command touches one key (no cross-slot command).

A worker whose subscription is lost (Redis restarted or unreachable, a cluster failing
over) subscribes again with a bounded backoff and then reads the current state, so a change
announced while it was away is not missed: a restart never leaves a worker on stale rules or
a stale clock. Any other failure while following (a state that cannot be read, a change that
cannot be applied) is logged and met the same way; a message that names no version (not
ours) is skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from switch import limits
from switch.redis_client import unavailable_error

log = logging.getLogger("switch.announce")

# Applies the change numbered by the announcement's first word, given the whole message; an
# empty message: read the current state from Redis and take it, whatever its version.
Apply = Callable[[aioredis.Redis, str], Awaitable[None]]


async def listen_for_versions(client: aioredis.Redis, channel: str, apply: Apply,
                              ack_key: Callable[[int], str]) -> asyncio.Task:
    """Subscribe first (no change is missed), apply the current state (`apply` with an
    empty message), then follow the announcements in a task: apply, then acknowledge."""
    pubsub = await _subscribed(client, channel, apply)
    return asyncio.get_running_loop().create_task(
        _follow(client, channel, pubsub, apply, ack_key))


async def _subscribed(client: aioredis.Redis, channel: str, apply: Apply):
    """A subscription to `channel`, and the state as it stands once it is made."""
    pubsub = client.pubsub()
    try:
        await pubsub.subscribe(channel)
        await apply(client, "")
    except BaseException:
        await pubsub.aclose()
        raise
    return pubsub


async def _follow(client: aioredis.Redis, channel: str, pubsub, apply: Apply,
                  ack_key: Callable[[int], str]) -> None:
    """Follow the announcements until cancelled, subscribing again whenever following fails:
    Redis dropped us, or anything else went wrong (nobody awaits this task: were it to end,
    the worker would keep stale state for good)."""
    while True:
        try:
            await _take_announcements(client, channel, pubsub, apply, ack_key)
        except Exception as error:
            _report_lost(channel, error)
        finally:
            with contextlib.suppress(Exception):  # a dead link has nothing more to say
                await pubsub.aclose()
        pubsub = await _resubscribed(client, channel, apply)
        log.warning("following the %r announcements again (the state read afresh)", channel)


def _report_lost(channel: str, error: Exception) -> None:
    """Redis unavailable is expected (a restart, a failover): one line. Anything else is a
    fault of ours or of the data: its traceback."""
    if unavailable_error(error):
        log.warning("lost the %r announcements (%s: %s); subscribing again", channel,
                    type(error).__name__, error)
    else:
        log.error("following the %r announcements failed; subscribing again", channel,
                  exc_info=error)


async def _take_announcements(client: aioredis.Redis, channel: str, pubsub, apply: Apply,
                              ack_key: Callable[[int], str]) -> None:
    async for message in pubsub.listen():
        if message["type"] != "message":
            continue
        version = version_of(message["data"])
        if version is None:  # not ours (a stray PUBLISH): nobody waits for its ack
            log.warning("skipped a message on %r that names no version (%d characters)",
                        channel, len(message["data"]))
            continue
        await apply(client, message["data"])
        async with client.pipeline(transaction=False) as pipe:
            pipe.incr(ack_key(version))
            pipe.expire(ack_key(version), limits.announce_ack_wait_s * 2)
            await pipe.execute()
    raise ConnectionError("the subscription ended")  # listen() ends only on a lost link


def version_of(message: str) -> int | None:
    """The version an announcement names (its first word), None when it names none."""
    first = message.split(maxsplit=1)[:1]
    return int(first[0]) if first and first[0].isascii() and first[0].isdigit() else None


async def _resubscribed(client: aioredis.Redis, channel: str, apply: Apply):
    """`_subscribed`, tried until it succeeds, waiting a bounded backoff in between."""
    wait_s = limits.announce_resubscribe_first_s
    while True:
        await asyncio.sleep(wait_s)
        try:
            return await _subscribed(client, channel, apply)
        except Exception as error:
            if not unavailable_error(error):  # Redis is back, yet the state cannot be read
                _report_lost(channel, error)
        wait_s = min(wait_s * 2, limits.announce_resubscribe_max_s)


async def announce(client: aioredis.Redis, channel: str, message: str, ack: str) -> int:
    """Publish `message` (its first word the version) and wait until every receiver has
    acknowledged it under `ack`; returns how many did. TimeoutError past the bound."""
    receivers = await client.publish(channel, message)
    if isinstance(client, RedisCluster):  # PUBLISH counted one node's receivers; the
        receivers = await subscribers(client, channel)  # message reaches every node's
    await acknowledged(client, ack, receivers)
    return receivers


async def subscribers(client: aioredis.Redis | RedisCluster, channel: str) -> int:
    """Workers listening on `channel`. A cluster node counts its own subscribers: every node
    is asked (redis-py adds them up)."""
    where = {"target_nodes": RedisCluster.ALL_NODES} if isinstance(client, RedisCluster) else {}
    (_, count), = await client.pubsub_numsub(channel, **where)
    return int(count)


async def acknowledged(client: aioredis.Redis, ack: str, receivers: int) -> None:
    """Wait (bounded) until `receivers` workers acknowledged under the key `ack`."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + limits.announce_ack_wait_s
    while True:
        acks = int(await client.get(ack) or 0)
        if acks >= receivers:
            return
        if loop.time() > give_up:
            raise TimeoutError(f"only {acks} of {receivers} listeners took the change "
                               f"within {limits.announce_ack_wait_s} s")
        await asyncio.sleep(limits.announce_ack_poll_s)
