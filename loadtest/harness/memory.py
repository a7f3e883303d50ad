"""Memory per card in Redis: `INFO memory` used_memory before and after N cards, divided by N.

Two figures per N, each on a private redis-server started for it (switch.redis_runner):
- an **idle card**: the card hash as loadtest seeds it (generator/cards.py: `{c:PAN}` with limit,
  posted, held, pending_credit, beans, status, expiry);
- a **card with one approval**: then one POS sale on every card, the very script call the
  switch makes for it (built by the switch's engine with its default policy from the
  request the switch decodes off the load generator's wire message), which adds the
  transaction record `{c:PAN}:t:REF`, its index entry in `{c:PAN}:tx`, the remembered
  answer `{c:PAN}:i:KEY` (with a 24-hour expiry) and the velocity counters `{c:PAN}:n`.

A million cards must not take minutes: commands are written as raw RESP, ten thousand to a
pipeline, from one template per kind in which only the card number changes (all numbers
have 16 digits, so the bytes stay valid), and their replies read with hiredis.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from urllib.parse import urlparse

import hiredis
import redis

from loadtest.generator import adapters
from loadtest.generator.adapters.base import Context
from loadtest.generator.cards import card_fields
from loadtest.generator.workload import Workload, load_test_pans
from loadtest.harness.ledger_calls import script_call
from protocols.ledger_layout import card_key
from protocols.pos import PosCodec
from switch.redis_link import resp_command
from switch.redis_runner import PrivateRedis

BATCH_CARDS = 10_000  # commands per pipeline: a few MB of RESP, replies read before the next
PAN_PLACEHOLDER = "9999999999999995"  # Luhn-valid, 16 digits like every load-test card
SETTLE_WAIT_S = 5.0  # used_memory moves while Redis rehashes its key table: wait it out
SETTLE_POLL_S = 0.2
SETTLE_TOLERANCE = 0.001  # two readings this close (relative) count as settled
SOCKET_TIMEOUT_S = 120.0
SEED = 1


def seed_template() -> bytes:
    """HSET of the card hash as the generator seeds it (generator/cards.py)."""
    pairs = [str(part) for item in card_fields().items() for part in item]
    return resp_command("HSET", card_key(PAN_PLACEHOLDER), *pairs)


async def approval_call() -> tuple[str, bytes]:
    """(library code, RESP of its FCALL) of the switch's decision on a POS sale of
    the placeholder card: the load generator's bytes, decoded by the switch's POS codec,
    judged by its engine with the default policy, the ledger call captured unsent."""
    workload = Workload([PAN_PLACEHOLDER], {"pos": 1}, SEED, ref_prefix="Lmem",
                        channel_kinds={"pos": frozenset({"sale"})})
    workload.transmitted_at = time.strftime("%Y%m%d%H%M%S")
    txn = workload.next()
    txn.request.mcc = "5411"  # a supermarket: no rule declines it
    body = adapters.build("pos", context=Context(0, [PAN_PLACEHOLDER], "Lmem")).encode(txn)[1]
    decoded = PosCodec().decode_request(body)
    if isinstance(decoded, bytes):
        raise RuntimeError("the switch's POS codec refused the load generator's sale")
    function, code, keys, args = await script_call(decoded.request)
    return code, resp_command("FCALL", function, str(len(keys)), *keys, *args)


def pipelined(url: str, template: bytes, pans: Sequence[str]) -> dict[str, int]:
    """`template` once per card (the placeholder replaced by its number), BATCH_CARDS to a
    write; returns the replies by kind: an integer reply as 'int', a script's by its code."""
    parsed = urlparse(url)
    placeholder = PAN_PLACEHOLDER.encode()
    replies: dict[str, int] = {}
    with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 6379),
                                  timeout=SOCKET_TIMEOUT_S) as sock:
        reader = hiredis.Reader()
        for first in range(0, len(pans), BATCH_CARDS):
            batch = pans[first:first + BATCH_CARDS]
            sock.sendall(b"".join(template.replace(placeholder, pan.encode())
                                  for pan in batch))
            wanted = len(batch)
            while wanted:
                reply = reader.gets()
                if reply is False:
                    data = sock.recv(1 << 20)
                    if not data:
                        raise ConnectionError("Redis closed the connection")
                    reader.feed(data)
                    continue
                wanted -= 1
                kind = (reply[0].decode() if isinstance(reply, list) else
                        type(reply).__name__)
                replies[kind] = replies.get(kind, 0) + 1
    return replies


def used_memory(client: redis.Redis) -> int:
    """used_memory once two readings agree (Redis may be rehashing its key table)."""
    deadline = time.monotonic() + SETTLE_WAIT_S
    last = int(client.info("memory")["used_memory"])
    while time.monotonic() < deadline:
        time.sleep(SETTLE_POLL_S)
        now = int(client.info("memory")["used_memory"])
        if abs(now - last) <= SETTLE_TOLERANCE * max(last, 1):
            return now
        last = now
    return last


def key_sizes(client: redis.Redis, pan: str) -> dict[str, int]:
    """MEMORY USAGE of every key of one card, by its kind (`card`, `:tx`, `:t:`, ...)."""
    sizes = {}
    for key in client.scan_iter(match=f"{card_key(pan)}*", count=1000):
        suffix = key.decode()[len(card_key(pan)):]
        kind = "card" if not suffix else suffix if suffix.count(":") == 1 else suffix[:3]
        sizes[kind] = int(client.memory_usage(key, samples=0) or 0)
    return dict(sorted(sizes.items()))


def measure_cards(url: str, count: int, call: tuple[str, bytes],
                  say: Callable[[str], None] = print) -> dict:
    """Both figures for `count` cards, on an empty Redis at `url` that we own; `call` is
    `approval_call()`'s answer."""
    pans = load_test_pans(count, SEED)
    code, approval = call
    client = redis.Redis.from_url(url, socket_timeout=SOCKET_TIMEOUT_S)
    try:
        client.function_load(code, replace=True)  # the library is no card's cost
        if client.dbsize():
            raise RuntimeError("memory is measured on an empty Redis only")
        base = used_memory(client)
        began = time.monotonic()
        seeded = pipelined(url, seed_template(), pans)
        seed_s = time.monotonic() - began
        idle = used_memory(client)
        began = time.monotonic()
        answers = pipelined(url, approval, pans)
        approve_s = time.monotonic() - began
        approved = used_memory(client)
        keys = client.dbsize()
        sizes = key_sizes(client, pans[0])
    finally:
        client.close()
    if seeded != {"int": count} or answers.get("00") != count:
        raise RuntimeError(f"seeding or approving went wrong: {seeded} {answers}")
    say(f"   {count:>9,} cards: idle {(idle - base) / count:,.0f} B/card (seeded in "
        f"{seed_s:.1f} s), with one approval {(approved - base) / count:,.0f} B/card "
        f"({approve_s:.1f} s)")
    return {"cards": count, "used_memory_base": base, "used_memory_idle": idle,
            "used_memory_approved": approved, "idle_per_card": round((idle - base) / count, 1),
            "approved_per_card": round((approved - base) / count, 1), "keys": keys,
            "keys_per_card": round(keys / count, 2), "sample_card_key_bytes": sizes,
            "seed_s": round(seed_s, 2), "approve_s": round(approve_s, 2)}


def measure(counts: Sequence[int], folder: Path, say: Callable[[str], None] = print
            ) -> list[dict]:
    """Each count on its own private redis-server (started here, stopped after). Blocking,
    with its own event loop for a moment: from async code, run it in a thread."""
    call = asyncio.run(approval_call())
    results = []
    for count in counts:
        private = PrivateRedis(folder / f"redis-memory-{count}")
        url = private.start()
        try:
            results.append(measure_cards(url, count, call, say))
        finally:
            private.stop()
    return results
