"""What the `switch` command's modules share: where a running switch records its Redis,
finding Redis for a command, card aliases, amounts in fen, and the one-line user error."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import redis.exceptions

from switch.cards import DemoCard, pan_of_test_card, showcase_cards
from switch.config import load
from switch.redis_runner import reachable

RUN_DIR = Path(os.environ.get("SWITCH_RUN_DIR", ".run"))
REDIS_URL_FILE = RUN_DIR / "redis.url"  # where a serving switch records its private Redis


CLUSTER_ERRORS = ("MOVED", "ASK", "CLUSTERDOWN", "CROSSSLOT")


def redis_error_line(error: redis.exceptions.RedisError | redis.exceptions.RedisClusterException
                     ) -> str:
    """One line for an error Redis gave (or its connection): what it said, and what to do."""
    text = str(error) or type(error).__name__
    if isinstance(error, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError):
        return f"Redis does not answer: {text}"
    if isinstance(error, redis.exceptions.ClusterError | redis.exceptions.RedisClusterException
                  ) or any(
            word in text for word in CLUSTER_ERRORS):
        return (f"Redis answered {text!r}: it is a node of a Redis Cluster that does not "
                "serve every slot (check it: redis-cli --cluster check HOST:PORT; "
                "docs/cluster.md)")
    return f"Redis answered an error: {text}"


class UserError(Exception):
    """Printed as one line; the command exits with 2."""


async def using(store, work):
    """`work(store)` between the store's start and close (a Ledger or a TokenVault)."""
    try:
        await store.start()
        return await work(store)
    finally:
        await store.aclose()


def fen(value: str) -> int:
    """An argument type: an amount in fen."""
    if not value.isdigit():
        raise argparse.ArgumentTypeError("an amount in fen: whole digits (12800 = 128.00 yuan)")
    return int(value)


def resolve_pan(value: str) -> str:
    """A card number, or a demo alias: demo1.. (the cards `make run` loads), or a test
    card's: test05, test51, testNA... (protocols/demo.py TEST_CARDS)."""
    card = demo_card(value)
    if card is not None:
        return card.pan
    test_card = pan_of_test_card(value) if value.startswith("test") else None
    if test_card is not None:  # test05 .. test91, testNA (switch serve --demo loads them)
        return test_card
    if not (value.isdigit() and 12 <= len(value) <= 19):
        raise UserError(f"{value!r} is not a card number (12-19 digits) or a demo alias")
    return value


def demo_card(value: str) -> DemoCard | None:
    """The demo card an alias (demo1..) names; None when `value` is no alias."""
    if not (value.startswith("demo") and value[4:].isdigit()):
        return None
    cards = showcase_cards()
    index = int(value[4:])
    if not 1 <= index <= len(cards):
        raise UserError(f"{value}: demo aliases are demo1..demo{len(cards)}")
    return cards[index - 1]


def configured_redis(args: argparse.Namespace) -> str:
    config = load(getattr(args, "config", None))
    return args.redis or os.environ.get("REDIS_URL", "") or config.redis_url


def redis_for_command(args: argparse.Namespace) -> str:
    url = configured_redis(args)
    if not url and REDIS_URL_FILE.exists():
        url = REDIS_URL_FILE.read_text().strip()
    if not url:
        raise UserError("no Redis to use: pass --redis URL or set REDIS_URL, or start the "
                        "switch with `make run` (it records its private Redis in "
                        f"{REDIS_URL_FILE})")
    if not reachable(url):
        raise UserError(f"Redis at {url} does not answer")
    return url


