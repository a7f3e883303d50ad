"""A change every worker must have before the command that made it returns: the new version
announced on a pub/sub channel, each listening worker applying it and then acknowledging it
(INCR of the version's ack key), and the command waiting, bounded, for as many acks as the
announcement had receivers. The test clock (switch/clock.py) and the fault rules
(switch/faults.py) use it; each Redis command touches one key (no cross-slot command).

A worker whose subscription is lost (Redis restarted or unreachable) subscribes again with
a bounded backoff and then reads the current state, so a change announced while it was away
is not missed: a restart never leaves a worker on stale rules or a stale clock.
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
    """Follow the announcements until cancelled, subscribing again whenever Redis drops us."""
    while True:
        try:
            await _take_announcements(client, pubsub, apply, ack_key)
        except Exception as error:
            if not unavailable_error(error):
                raise
            log.warning("lost the %r announcements (%s: %s); subscribing again", channel,
                        type(error).__name__, error)
        finally:
            with contextlib.suppress(Exception):  # a dead link has nothing more to say
                await pubsub.aclose()
        pubsub = await _resubscribed(client, channel, apply)
        log.warning("following the %r announcements again (the state read afresh)", channel)


async def _take_announcements(client: aioredis.Redis, pubsub, apply: Apply,
                              ack_key: Callable[[int], str]) -> None:
    async for message in pubsub.listen():
        if message["type"] != "message":
            continue
        version = int(message["data"].split()[0])
        await apply(client, message["data"])
        async with client.pipeline(transaction=False) as pipe:
            pipe.incr(ack_key(version))
            pipe.expire(ack_key(version), limits.announce_ack_wait_s * 2)
            await pipe.execute()
    raise ConnectionError("the subscription ended")  # listen() ends only on a lost link


async def _resubscribed(client: aioredis.Redis, channel: str, apply: Apply):
    """`_subscribed`, tried until Redis answers, waiting a bounded backoff in between."""
    wait_s = limits.announce_resubscribe_first_s
    while True:
        await asyncio.sleep(wait_s)
        try:
            return await _subscribed(client, channel, apply)
        except Exception as error:
            if not unavailable_error(error):
                raise
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
