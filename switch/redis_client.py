"""The switch's redis-py client: card administration, loading the Lua, starting pipelines.

A Redis Cluster is found by asking the node of the URL (INFO cluster: cluster_enabled), or
named by the scheme redis+cluster:// (docs/cluster.md): the client is then redis-py's
RedisCluster, which routes each command to the master of its key's slot. The hot path's
calls go their own way (switch/cluster_pipeline.py).
"""

from __future__ import annotations

import redis
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import SSLConnection
from redis.crc import key_slot

from switch import limits

CLUSTER_SCHEME = "redis+cluster://"  # a URL naming a cluster outright: no INFO probe

Client = aioredis.Redis | RedisCluster


def plain_url(url: str) -> str:
    """The URL as redis-py reads it (redis+cluster:// is ours)."""
    return "redis://" + url[len(CLUSTER_SCHEME):] if url.startswith(CLUSTER_SCHEME) else url


def is_cluster(url: str, timeout_s: float = limits.redis_pool_wait_s) -> bool:
    """Whether `url` names a Redis Cluster: its scheme says so, or its node has cluster mode
    on. A Redis that does not answer is not one (connecting fails later, with its reason)."""
    if url.startswith(CLUSTER_SCHEME):
        return True
    try:
        probe = redis.Redis.from_url(url, socket_connect_timeout=timeout_s,
                                     socket_timeout=timeout_s)
        try:
            return bool(probe.info("cluster").get("cluster_enabled"))
        finally:
            probe.close()
    except (redis.RedisError, OSError, ValueError):
        return False


def cluster_masters(url: str, timeout_s: float = limits.redis_pool_wait_s) -> int:
    """How many masters serve the slots of the cluster `url` names (for the banner)."""
    probe = redis.Redis.from_url(plain_url(url), socket_connect_timeout=timeout_s,
                                 socket_timeout=timeout_s)
    try:
        return len({(master[0], master[1]) for _, _, master, *_ in
                    probe.execute_command("CLUSTER", "SLOTS")})
    finally:
        probe.close()


def connect(url: str, request_deadline_ms: int = limits.request_deadline_ms,
            decode_responses: bool = True) -> Client:
    """A client whose pool waits (bounded) for a free connection instead of failing; a
    command outlives no request's deadline (the config's). `decode_responses` False: replies
    as bytes (DUMP and RESTORE of a recording's snapshot)."""
    if is_cluster(url):
        return RedisCluster.from_url(
            plain_url(url), max_connections=limits.redis_connections_max,
            decode_responses=decode_responses, socket_timeout=request_deadline_ms / 1000,
            socket_connect_timeout=limits.redis_pool_wait_s)
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=limits.redis_connections_max,
        timeout=limits.redis_pool_wait_s,
        decode_responses=decode_responses,
        socket_timeout=request_deadline_ms / 1000,
        socket_connect_timeout=limits.redis_pool_wait_s,
    )
    return aioredis.Redis(connection_pool=pool)


def link_settings(client: Client) -> dict:
    """How to open a connection of our own like `client`'s (switch/redis_link.py): host,
    port or Unix socket path, username, password, db. For a cluster: the settings its nodes
    share (each link adds its node's host and port)."""
    if isinstance(client, RedisCluster):
        return {**client.connection_kwargs, "tls": bool(client.connection_kwargs.get("ssl"))}
    pool = client.connection_pool
    return {**pool.connection_kwargs, "tls": issubclass(pool.connection_class, SSLConnection)}


async def primaries(client: Client) -> list[aioredis.Redis]:
    """A plain client on each master of a cluster (the caller closes them); [client] itself
    for a single Redis. For what has to visit every master: SCAN (the audit)."""
    if not isinstance(client, RedisCluster):
        return [client]
    await client.initialize()
    return [node_client(client, node.host, node.port) for node in client.get_primaries()]


def node_client(client: RedisCluster, host: str, port: int) -> aioredis.Redis:
    """A plain client on one node of `client`'s cluster, with its settings."""
    settings = {k: v for k, v in client.connection_kwargs.items()
                if k in ("username", "password", "socket_timeout", "socket_connect_timeout")}
    return aioredis.Redis(host=host, port=port, decode_responses=True, **settings)


async def client_for_key(client: Client, key: str) -> aioredis.Redis:
    """A plain client on the master that serves `key` (for what RedisCluster does not route:
    pub/sub, whose subscribers and PUBSUB NUMSUB are per node); `client` itself for a single
    Redis. A new client is the caller's to close."""
    if not isinstance(client, RedisCluster):
        return client
    await client.initialize()
    node = client.get_node_from_key(key)
    return node_client(client, node.host, node.port)


# Redis down or too slow to hand out a connection: the issuer is unavailable (91), not broken.
UNAVAILABLE = (ConnectionError, OSError, TimeoutError, redis.exceptions.ConnectionError,
               redis.exceptions.TimeoutError)
# Redis' refusals that mean "not now", not "wrong"; their call did not run. A Redis loading
# its AOF after a restart, one busy with a script past its time limit, a replica cut off
# from its master; on a cluster, a slot nobody serves (a master failing, its replica not yet
# promoted), a slot half migrated, a slot map that kept moving past the redirects a call
# follows. CROSSSLOT is not one: a call of ours spanning slots is a bug.
NOT_NOW_CODES = ("LOADING", "BUSY", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN", "MOVED", "ASK")
# The same refusals as redis-py's clients raise them (their text without the code), and
# RedisCluster's own: a key's slot not covered, redirects past its bound ("TTL exhausted").
NOT_NOW_ERRORS = (redis.exceptions.ClusterError, redis.exceptions.TryAgainError,
                  redis.exceptions.AskError, redis.exceptions.SlotNotCoveredError)


def unavailable_error(error: BaseException) -> bool:
    """Whether `error` says Redis is unreachable or not serving now (not that we are wrong).
    The auto-pipelines hand a refusal on as its reply's text ("CLUSTERDOWN ..."), redis-py's
    clients as a class of their own: both count."""
    return isinstance(error, UNAVAILABLE + NOT_NOW_ERRORS) or (
        isinstance(error, redis.exceptions.ResponseError)
        and str(error).partition(" ")[0] in NOT_NOW_CODES)


def slot_of(key: str) -> int:
    """The cluster slot of `key` (its hash tag's, when it has one)."""
    return key_slot(key.encode())
