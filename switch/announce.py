"""A change every worker must have before the command that made it returns: the new version
announced on a pub/sub channel, each listening worker applying it and then acknowledging it
(INCR of the version's ack key), and the command waiting, bounded, for as many acks as the
announcement had receivers. The test clock (switch/clock.py) and the fault rules
(switch/faults.py) use it; each Redis command touches one key (no cross-slot command).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from switch import limits

# Applies the change numbered by the announcement's first word, given the whole message.
Apply = Callable[[aioredis.Redis, str], Awaitable[None]]


async def listen_for_versions(client: aioredis.Redis, channel: str, apply: Apply,
                              ack_key: Callable[[int], str]) -> asyncio.Task:
    """Subscribe first (no change is missed), apply the current state (`apply` with an
    empty message), then follow the announcements in a task: apply, then acknowledge."""
    pubsub = client.pubsub()
    await pubsub.subscribe(channel)
    await apply(client, "")
    return asyncio.get_running_loop().create_task(_follow(client, pubsub, apply, ack_key))


async def _follow(client: aioredis.Redis, pubsub, apply: Apply,
                  ack_key: Callable[[int], str]) -> None:
    try:
        async for message in pubsub.listen():
            if message["type"] != "message":
                continue
            version = int(message["data"].split()[0])
            await apply(client, message["data"])
            async with client.pipeline(transaction=False) as pipe:
                pipe.incr(ack_key(version))
                pipe.expire(ack_key(version), limits.announce_ack_wait_s * 2)
                await pipe.execute()
    finally:
        await pubsub.aclose()


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
