"""Seeding the load-test cards into the switch's Redis, through the ledger's documented layout.

switch/ledger.py documents one card as the hash `{c:PAN}` (limit, posted, held,
pending_credit, beans, status, expiry) with its transactions listed in the sorted set
`{c:PAN}:tx`. Writing that layout directly (pipelined, a thousand cards a round trip) seeds
100,000 cards in seconds, where `switch seed` sets cards one by one. Seeding a card again
starts it afresh: balances zero, its transaction records deleted.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import redis

from loadtest.workload import CARD_EXPIRY, CARD_LIMIT_FEN

SEED_BATCH_CARDS = 1000  # cards per pipeline: big enough to amortise, small enough to not stall
REDIS_TIMEOUT_S = 10.0
# Where `make run` (switch serve) records the URL of the private Redis it started.
SWITCH_REDIS_URL_FILE = Path(os.environ.get("SWITCH_RUN_DIR", ".run")) / "redis.url"


def card_key(pan: str) -> str:
    return f"{{c:{pan}}}"


def find_redis_url(explicit: str = "") -> str:
    """--redis, else $REDIS_URL, else the private Redis of a switch started by `make run`."""
    if explicit:
        return explicit
    if os.environ.get("REDIS_URL"):
        return os.environ["REDIS_URL"]
    if SWITCH_REDIS_URL_FILE.exists():
        return SWITCH_REDIS_URL_FILE.read_text().strip()
    return ""


def seed_cards(url: str, pans: Sequence[str], limit_fen: int = CARD_LIMIT_FEN,
               expiry: str = CARD_EXPIRY) -> None:
    client = redis.Redis.from_url(url, socket_timeout=REDIS_TIMEOUT_S,
                                  socket_connect_timeout=REDIS_TIMEOUT_S, decode_responses=True)
    try:
        for first in range(0, len(pans), SEED_BATCH_CARDS):
            _seed_batch(client, pans[first:first + SEED_BATCH_CARDS], limit_fen, expiry)
    finally:
        client.close()


def _seed_batch(client: redis.Redis, pans: Sequence[str], limit_fen: int, expiry: str) -> None:
    pipe = client.pipeline(transaction=False)
    for pan in pans:
        pipe.zrange(f"{card_key(pan)}:tx", 0, -1)
    transactions = pipe.execute()
    pipe = client.pipeline(transaction=False)
    for pan, txn_keys in zip(pans, transactions, strict=True):
        key = card_key(pan)
        pipe.delete(key, f"{key}:tx", *txn_keys)
        pipe.hset(key, mapping={"limit": limit_fen, "posted": 0, "held": 0,
                                "pending_credit": 0, "beans": 0, "status": "active",
                                "expiry": expiry})
    pipe.execute()
