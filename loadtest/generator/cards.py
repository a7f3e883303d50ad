"""Seeding the load-test cards into the switch's Redis, through the ledger's documented layout.

protocols/ledger_layout.py states it for the switch and for us: one card is the hash `{c:PAN}`
(limit, posted, held, pending_credit, beans, status, expiry, its statement cycle from the
moment it is seeded), its transactions listed in the sorted set `{c:PAN}:tx`, its pending
holds in `{c:PAN}:h` and its velocity counters in `{c:PAN}:n`. Writing that layout directly
(pipelined, a thousand cards a round trip) seeds 100,000 cards in seconds, where `switch
seed` sets cards one by one. Seeding a card again starts it afresh: balances zero,
transaction records, holds and counters deleted. So every run (and every find-max step)
starts from the same state, and repeats itself.

The x-pay wallet tokens follow the same module's token layout, `{t:DPAN}` (pan, wallet,
device, expiry, status, key, atc, created_ms): one token per card and generator worker, its
ATC back at zero.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

import redis
from redis.cluster import RedisCluster

from loadtest.generator.adapters.iso import (
    ACQUIRER,
    LOAD_TEST_MAC,
    load_test_token,
    token_secret,
)
from loadtest.generator.workload import CARD_EXPIRY, CARD_LIMIT_FEN, CARD_STATEMENT_DAY
from protocols.ledger_layout import (
    FRESH_CARD_BALANCES,
    TerminalKeyRecord,
    TokenRecord,
    card_cycle,
    card_indexes,
    card_key,
    terminal_key,
    token_key,
)

CLUSTER_SCHEME = "redis+cluster://"  # as the switch reads it (switch/redis_client.py)
SEED_BATCH_CARDS = 1000  # cards per pipeline: big enough to amortise, small enough to not stall
REDIS_TIMEOUT_S = 10.0
# Where `make run` (switch serve) records the URL of the private Redis it started.
SWITCH_REDIS_URL_FILE = Path(os.environ.get("SWITCH_RUN_DIR", ".run")) / "redis.url"


def find_redis_url(explicit: str = "") -> str:
    """--redis, else $REDIS_URL, else the private Redis of a switch started by `make run`."""
    if explicit:
        return explicit
    if os.environ.get("REDIS_URL"):
        return os.environ["REDIS_URL"]
    if SWITCH_REDIS_URL_FILE.exists():
        return SWITCH_REDIS_URL_FILE.read_text().strip()
    return ""


def _client(url: str) -> redis.Redis | RedisCluster:
    """A client of the switch's Redis: redis-py's RedisCluster on a Redis Cluster (named by
    redis+cluster://, or a node with cluster mode on: docs/cluster.md), which sends each
    card's writes to the master of its slot."""
    settings = {"socket_timeout": REDIS_TIMEOUT_S, "socket_connect_timeout": REDIS_TIMEOUT_S,
                "decode_responses": True}
    if url.startswith(CLUSTER_SCHEME):
        return RedisCluster.from_url("redis://" + url[len(CLUSTER_SCHEME):], **settings)
    client = redis.Redis.from_url(url, **settings)
    if client.info("cluster").get("cluster_enabled"):
        client.close()
        return RedisCluster.from_url(url, **settings)
    return client


def seed_cards(url: str, pans: Sequence[str], limit_fen: int = CARD_LIMIT_FEN,
               expiry: str = CARD_EXPIRY) -> None:
    client = _client(url)
    try:
        for first in range(0, len(pans), SEED_BATCH_CARDS):
            _seed_batch(client, pans[first:first + SEED_BATCH_CARDS], limit_fen, expiry)
    finally:
        client.close()
    seed_terminal_key(url)  # every seeding path: the ISO 8583 adapters sign with it


def seed_tokens(url: str, pans: Sequence[str], workers: int) -> None:
    """The x-pay tokens of every card for workers 0..workers-1, active, ATC zero."""
    client = _client(url)
    created_ms = int(time.time() * 1000)
    try:
        pipe = client.pipeline(transaction=False)
        for worker in range(workers):
            for index, pan in enumerate(pans):
                token = load_test_token(index, worker)
                record = TokenRecord(
                    pan=pan, wallet="apple", device=f"loadtest-{worker}", expiry=CARD_EXPIRY,
                    status="active", key=token_secret(token).hex(), atc=0,
                    created_ms=created_ms)
                pipe.hset(token_key(token), mapping=record.fields())
                if len(pipe) >= SEED_BATCH_CARDS:
                    pipe.execute()
        pipe.execute()
    finally:
        client.close()


def seed_terminal_key(url: str) -> None:
    """The load test acquirer's own MAC key (every terminal of it), as `switch terminal add`
    writes one."""
    record = TerminalKeyRecord(algorithm=LOAD_TEST_MAC.algorithm,
                               key=LOAD_TEST_MAC.key.hex().upper(),
                               created_ms=int(time.time() * 1000))
    client = _client(url)
    try:
        client.hset(terminal_key(ACQUIRER.lstrip("0"), "*"), mapping=record.fields())
    finally:
        client.close()


def card_fields(limit_fen: int = CARD_LIMIT_FEN, expiry: str = CARD_EXPIRY) -> dict:
    """A freshly seeded card's hash, its statement cycle starting now."""
    return {"limit": limit_fen, **FRESH_CARD_BALANCES, "status": "active", "expiry": expiry,
            **card_cycle(int(time.time() * 1000), CARD_STATEMENT_DAY)}


def _seed_batch(client: redis.Redis, pans: Sequence[str], limit_fen: int, expiry: str) -> None:
    pipe = client.pipeline(transaction=False)
    for pan in pans:
        pipe.zrange(card_indexes(card_key(pan))[0], 0, -1)
    transactions = pipe.execute()
    pipe = client.pipeline(transaction=False)
    for pan, txn_keys in zip(pans, transactions, strict=True):
        key = card_key(pan)
        # One DEL of the card's keys (one slot); redis-py's cluster pipeline has no
        # multi-key delete(), the command itself is fine there.
        pipe.execute_command("DEL", key, *card_indexes(key), *txn_keys)
        pipe.hset(key, mapping=card_fields(limit_fen, expiry))
    pipe.execute()
