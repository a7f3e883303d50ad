"""The switch's redis-py client: card administration, loading the Lua, starting pipelines."""

from __future__ import annotations

import redis.asyncio as aioredis

from switch import limits


def connect(url: str, request_deadline_ms: int = limits.request_deadline_ms,
            decode_responses: bool = True) -> aioredis.Redis:
    """A client whose pool waits (bounded) for a free connection instead of failing; a
    command outlives no request's deadline (the config's). `decode_responses` False: replies
    as bytes (DUMP and RESTORE of a recording's snapshot)."""
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=limits.redis_connections_max,
        timeout=limits.redis_pool_wait_s,
        decode_responses=decode_responses,
        socket_timeout=request_deadline_ms / 1000,
        socket_connect_timeout=limits.redis_pool_wait_s,
    )
    return aioredis.Redis(connection_pool=pool)
