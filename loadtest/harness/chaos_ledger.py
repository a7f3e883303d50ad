"""What the chaos check compares: the history read as the switch reads it, and the books read
straight from Redis.

Each request's wire bytes are decoded by the switch's own codec for its channel (built from
the switch's config), so the ledger record a request makes or changes is named exactly as
the switch names it. The books are every card of the run: its balances and every
transaction record its index lists, plus any record a request names that the index lacks.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import msgspec
import redis

from loadtest.generator.client import LoadTestError
from loadtest.generator.history import Entry
from loadtest.harness.history_check import FOLLOWING, OPENING, Card, Request
from protocols.channel import Decoded
from protocols.ledger_layout import card_indexes, card_key
from switch.channels import CODECS
from switch.config import Config
from switch.ledger import _transaction
from switch.redis_client import is_cluster, plain_url

READ_BATCH_CARDS = 500  # cards read per pipeline: bounded replies, few round trips


def requests_of(entries: Iterable[Entry], config: Config, start_ns: int = 0) -> list[Request]:
    """The history's requests that reach the ledger, as the switch reads them (the times
    they were sent counted from `start_ns`, monotonic).

    The ISO 8583 codecs read without checking MACs: the switch checked them with keys from
    its Redis key store, and what matters here is how a request names its transaction. A
    request the codec refuses never reached the ledger; one whose client saw an approval
    all the same is a request this harness cannot name, and an error."""
    unchecked = msgspec.structs.replace(
        config, pos=msgspec.structs.replace(config.pos, mac="off"),
        xpay=msgspec.structs.replace(config.xpay, mac="off"))
    codecs = {}
    requests = []
    for entry in entries:
        txn = entry.txn
        codec = codecs.get(txn.channel) or codecs.setdefault(txn.channel,
                                                             CODECS[txn.channel](unchecked))
        correlation_id, body = txn.wire
        decoded = codec.decode_request(body)
        if not isinstance(decoded, Decoded):
            if entry.last is not None and entry.last.approved:
                raise LoadTestError(f"{txn.channel} {correlation_id} was approved, but the "
                                    "switch's codec refuses it here: cannot check it")
            continue  # answered by the codec itself (a refusal): the ledger never saw it
        request = decoded.request
        message_class = request.message_class.value
        if message_class not in OPENING and message_class not in FOLLOWING:
            continue  # an inquiry changes nothing
        ref = request.txn_ref if message_class in OPENING else request.original_ref
        # txn.request.card: the PAN, also where the wire carries a wallet token (x-pay)
        requests.append(Request(f"{txn.channel}:{correlation_id}", txn.request.card,
                                message_class, ref, entry.last,
                                (entry.first_sent_ns - start_ns) / 1e9))
    return requests


def read_cards(url: str, pans: Sequence[str], refs: dict[str, set[str]]) -> dict[str, Card]:
    """Every card in `pans` with all its records: those its index lists and those `refs`
    (PAN -> refs the requests name) name. On a Redis Cluster each card is read on its
    master (tests/test_cluster_failover.py checks a cluster's books after a failover)."""
    client = (redis.RedisCluster.from_url(plain_url(url), decode_responses=True)
              if is_cluster(url) else redis.Redis.from_url(url, decode_responses=True))
    cards: dict[str, Card] = {}
    try:
        for start in range(0, len(pans), READ_BATCH_CARDS):
            cards.update(_read_batch(client, pans[start:start + READ_BATCH_CARDS], refs))
    finally:
        client.close()
    return cards


def _read_batch(client: redis.Redis, pans: Sequence[str], refs: dict[str, set[str]]
                ) -> dict[str, Card]:
    with client.pipeline(transaction=False) as pipe:
        for pan in pans:
            key = card_key(pan)
            pipe.hgetall(key)
            pipe.zrange(card_indexes(key)[0], 0, -1)
        replies = pipe.execute()
    balances = replies[0::2]
    record_keys = []
    for pan, indexed in zip(pans, replies[1::2], strict=True):
        named = {f"{card_key(pan)}:t:{ref}" for ref in refs.get(pan, ())}
        record_keys.append(list(dict.fromkeys([*indexed, *sorted(named)])))
    with client.pipeline(transaction=False) as pipe:
        for keys in record_keys:
            for key in keys:
                pipe.hgetall(key)
        records = iter(pipe.execute())
    cards = {}
    for pan, fields, keys in zip(pans, balances, record_keys, strict=True):
        found = {}
        for key in keys:
            record = next(records)
            if record:
                transaction = _transaction(key, record)
                found[transaction.ref] = transaction
        posted, held, credit = (int(fields.get(name, 0))
                                for name in ("posted", "held", "pending_credit"))
        cards[pan] = Card(posted, held, credit, found)
    return cards
