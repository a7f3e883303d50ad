"""`switch audit`: do the books add up? Every card's balances against its own records.

The bookkeeping the Lua functions keep (switch/lua/), which the rules below restate:
  held            += a pre-authorization's hold; -= on capture, reversal (part or whole),
                   expiry. So held == the sum of `hold` over the card's pending records.
  posted          += a sale, a capture; -= a reversal of a sale, a lightning refund, a
                   settlement (which also takes the same from pending_credit), and a
                   repayment (which adds the same to repaid). Below zero it is a credit
                   balance: never more than was repaid, as a purchase's net posting is never
                   negative.
  pending_credit  += an ordinary refund; -= settlement.
  record.posted   what the transaction posted (after reversals); record.refunded what was
                   refunded of it, lightning or ordinary. A repayment's record (kind repay,
                   state repaid) posted minus its amount.
  An advice (a stand-in approval posted later) books like the authorization or sale it was,
  past the limit if need be; a void takes back what one call moved, leaving a record it made
  voided (hold and posted 0) or giving a record it changed its fields back.
  So posted - pending_credit == the sum over the records of posted - refunded.
  The holds index ({c:PAN}:h) lists the pending records; the transaction index
  ({c:PAN}:tx) lists every record.

And the stand-in journals (switch/journal.py) hold nothing waiting to be forwarded: a
record there is an approval the books do not have yet, or an attempt still to be undone.

The reads go in pipelines of many cards at once. A card changed by a switch between two
reads may look broken: such a card is read again under WATCH until a read is not
interrupted by a change, and only a broken stable read is reported.
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import hiredis
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ResponseError, WatchError

from protocols.cardnumbers import mask_pan
from protocols.codes import REPAYMENT_KIND, TransactionState
from protocols.ledger_layout import card_indexes
from switch import limits
from switch.journal import Advice, JournalCorrupt, Record, journal_paths, snapshot
from switch.redis_client import Client, link_settings, primaries
from switch.redis_link import RedisLink, open_link, resp_command

# Each rule: its name (what the output says) and what it holds.
RULES = {
    "balances_readable": "limit, posted, held and pending_credit are whole numbers and limit "
                         ">= 0: every reader computes open-to-buy = max(0, limit - posted - "
                         "held) from them",
    "posted_not_below_repaid": "posted >= -repaid: a credit balance is money repaid, never "
                               "more",
    "repaid_is_repayments": "repaid == the sum of the amounts of the card's repayments",
    "held_not_negative": "held >= 0",
    "pending_credit_not_negative": "pending_credit >= 0",
    "held_is_pending_holds": "held == the sum of the holds of the pending pre-authorizations",
    "posted_is_transactions": "posted - pending_credit == the sum over the transactions of "
                              "posted - refunded",
    "holds_index_is_pending": "the holds index lists exactly the pending pre-authorizations",
    "indexed_transactions_exist": "every transaction an index names exists",
    "transactions_readable": "a transaction's state is known and its hold, posted and "
                             "refunded are whole numbers",
    "journal_drained": "the stand-in journals hold no record waiting to be forwarded "
                       "(`switch saf replay` forwards them)",
    "card_kept_changing": "a card that looked broken was re-read until unchanged (at most "
                          f"{limits.audit_rereads_max} times): it kept changing, so not verified",
}
STATES = frozenset(state.value for state in TransactionState)
RECORD_FIELDS = ("state", "hold", "posted", "refunded")
BALANCES = ("limit", "posted", "held", "pending_credit", "repaid")
CARD_KEY = re.compile(r"\{c:(\d{12,19})\}")  # protocols/ledger_layout.py card_key


class Finding(NamedTuple):
    card: str  # masked
    rule: str
    detail: str


class CardBooks(NamedTuple):
    """What the audit reads of one card: its hash, its two indexes, and the records they name
    (None for a key that does not exist)."""

    key: str
    fields: dict[str, str]
    transactions: list[str]
    holds: list[str]
    records: dict[str, list[str | None] | None]


class Report(NamedTuple):
    cards: int
    transactions: int
    findings: list[Finding]

    @property
    def clean(self) -> bool:
        return not self.findings


def whole(value: str | None) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def check(books: CardBooks) -> list[Finding]:
    """The rules' findings on one card (empty: its books add up)."""
    pan = CARD_KEY.fullmatch(books.key).group(1)
    found: list[tuple[str, str]] = []
    fields = {"repaid": "0"} | {k: v for k, v in books.fields.items() if v is not None}
    limit, posted, held, credit, repaid = (whole(fields.get(name)) for name in BALANCES)
    if None in (limit, posted, held, credit, repaid) or limit < 0:
        found.append(("balances_readable", ", ".join(
            f"{name}={books.fields.get(name)!r}" for name in BALANCES)))
        return [Finding(mask_pan(pan), rule, detail) for rule, detail in found]
    for name, value in (("held", held), ("pending_credit", credit)):
        if value < 0:
            found.append((f"{name}_not_negative", f"{name} {value}"))
    if posted < -repaid:
        found.append(("posted_not_below_repaid", f"posted {posted}, repaid {repaid}"))

    missing = [k for k in dict.fromkeys(books.transactions + books.holds)
               if books.records.get(k) is None]
    if missing:
        found.append(("indexed_transactions_exist", f"{len(missing)} missing, e.g. "
                      + short(missing[0])))
    pending_hold, net_posted, repayments, pending = 0, 0, 0, set()
    for key in books.transactions:
        record = books.records.get(key)
        if record is None:
            continue
        kind, state = record[0], record[1]
        hold, rec_posted, refunded = (whole(v) for v in record[2:])
        if state not in STATES or None in (hold, rec_posted, refunded):
            found.append(("transactions_readable", f"{short(key)}: {record}"))
            continue
        net_posted += rec_posted - refunded
        if kind == REPAYMENT_KIND:
            repayments -= rec_posted
        if state == TransactionState.PENDING:
            pending_hold += hold
            pending.add(key)
    if repaid != repayments:
        found.append(("repaid_is_repayments", f"repaid {repaid}, repayments {repayments}"))
    if held != pending_hold:
        found.append(("held_is_pending_holds", f"held {held}, pending holds {pending_hold}"))
    if posted - credit != net_posted:
        found.append(("posted_is_transactions", f"posted {posted} - pending_credit {credit}"
                      f" = {posted - credit}, transactions {net_posted}"))
    indexed = {k for k in books.holds if books.records.get(k) is not None}
    if indexed != pending:
        found.append(("holds_index_is_pending", f"{len(indexed - pending)} indexed not "
                      f"pending, {len(pending - indexed)} pending not indexed"))
    return [Finding(mask_pan(pan), rule, detail) for rule, detail in found]


def short(key: str) -> str:
    """A transaction's key without the card number: its reference."""
    return key.split(":t:", 1)[-1]


class BulkReads:
    """Many read commands at once on a connection of our own (switch/redis_link.py): packed
    as RESP and parsed by hiredis in C. redis-py's packing and parsing of each command were
    most of an audit's time (docs/performance.md)."""

    def __init__(self, link: RedisLink | None = None) -> None:
        self.link = link
        self._replies: list[Any] = []
        self._left = 0
        self._done: asyncio.Future | None = None

    @classmethod
    async def open(cls, client: aioredis.Redis) -> BulkReads:
        bulk = cls()
        bulk.link = await open_link(link_settings(client), bulk._settle,
                                    limits.audit_reply_timeout_s)
        return bulk

    def _settle(self, index: int, reply: Any) -> None:
        self._replies[index] = reply
        self._left -= 1
        if self._left == 0 and not self._done.done():
            self._done.set_result(None)

    async def run(self, commands: list[tuple[str, ...]]) -> list[Any]:
        """The replies of `commands`, in order; an error reply or a lost link raises."""
        if not commands:
            return []
        self._replies, self._left = [None] * len(commands), len(commands)
        self._done = asyncio.get_running_loop().create_future()
        self.link.send(list(range(len(commands))),
                       b"".join(resp_command(*command) for command in commands))
        await self._done
        for reply in self._replies:
            if isinstance(reply, hiredis.ReplyError):
                raise ResponseError(str(reply))
            if isinstance(reply, Exception):
                raise reply
        return self._replies

    def close(self) -> None:
        self.link.close()


async def read(bulk: BulkReads, keys: list[str]) -> list[CardBooks]:
    """The books of these cards: their balances and indexes in one write of commands, then
    their records in writes of at most limits.audit_pipeline_commands_max. A key that holds
    none of a card's balances (deleted since the SCAN) is left out."""
    commands: list[tuple[str, ...]] = []
    for key in keys:
        commands.append(("HMGET", key, *BALANCES))
        commands += [("ZRANGE", index, "0", "-1") for index in card_indexes(key)[:2]]
    replies = await bulk.run(commands)
    cards = [(key, dict(zip(BALANCES, replies[3 * i], strict=True)), *replies[3 * i + 1:3 * i + 3])
             for i, key in enumerate(keys) if any(v is not None for v in replies[3 * i])]
    wanted = list(dict.fromkeys(k for _, _, tx, holds in cards for k in tx + holds))
    records: dict[str, list | None] = {}
    for start in range(0, len(wanted), limits.audit_pipeline_commands_max):
        chunk = wanted[start:start + limits.audit_pipeline_commands_max]
        values = await bulk.run([("HMGET", key, "kind", *RECORD_FIELDS) for key in chunk])
        records |= {key: None if v[0] is None else v for key, v in zip(chunk, values,
                                                                        strict=True)}
    return [CardBooks(key, fields, tx, holds, records) for key, fields, tx, holds in cards]


async def reread(client: aioredis.Redis, bulk: BulkReads, key: str) -> CardBooks | None:
    """The card's books from a read no change interrupted (WATCH on its hash and indexes;
    every ledger function that changes a record changes the card's hash too), or None when
    every one of limits.audit_rereads_max reads was."""
    for _ in range(limits.audit_rereads_max):
        async with client.pipeline(transaction=True) as pipe:
            await pipe.watch(key, *card_indexes(key)[:2])
            books = await read(bulk, [key])
            pipe.multi()
            pipe.exists(key)
            try:
                await pipe.execute()
                return books[0] if books else None
            except WatchError:
                continue
    return None


async def audit(client: aioredis.Redis, keys: list[str] | None = None,
                progress: Callable[[int, int], None] | None = None) -> Report:
    """Check every card (SCAN, in batches) or the cards `keys`; `progress(cards, broken)`
    every limits.audit_progress_every_cards cards."""
    cards = transactions = 0
    findings: list[Finding] = []
    bulk = await BulkReads.open(client)
    try:
        async for batch in batches(client, keys):
            for books in await read(bulk, batch):
                findings += await findings_of(client, bulk, books)
                transactions += len(books.transactions)
                cards += 1
                if progress and cards % limits.audit_progress_every_cards == 0:
                    progress(cards, len({f.card for f in findings}))
    finally:
        bulk.close()
    return Report(cards, transactions, findings)


async def audit_all(client: Client, keys: list[str] | None = None,
                    progress: Callable[[int, int], None] | None = None) -> Report:
    """`audit` of a single Redis, or of every master of a cluster (each its own SCAN and its
    own cards: every key of a card is on one master) with the reports added up. A card whose
    slot moves during the audit may be read on neither master or on both."""
    if not isinstance(client, RedisCluster):
        return await audit(client, keys, progress)
    def master_of(key: str) -> tuple[str, int]:
        node = client.get_node_from_key(key)
        return node.host, node.port

    nodes = await primaries(client)
    total = Report(0, 0, [])
    try:
        for node in nodes:
            settings = node.connection_pool.connection_kwargs
            here = (settings["host"], settings["port"])
            mine = None if keys is None else [key for key in keys if master_of(key) == here]
            before = (total.cards, len({f.card for f in total.findings}))

            def counted(cards: int, broken: int, before: tuple[int, int] = before) -> None:
                progress(before[0] + cards, before[1] + broken)

            report = await audit(node, mine, counted if progress else None)
            total = Report(total.cards + report.cards, total.transactions + report.transactions,
                           total.findings + report.findings)
    finally:
        for node in nodes:
            await node.aclose()
    return total


async def findings_of(client: aioredis.Redis, bulk: BulkReads, books: CardBooks
                      ) -> list[Finding]:
    """The card's findings, from a stable read when the first read looks broken."""
    found = check(books)
    if not found:
        return found
    stable = await reread(client, bulk, books.key)
    if stable is not None:
        return check(stable)
    return [Finding(mask_pan(CARD_KEY.fullmatch(books.key).group(1)), "card_kept_changing",
                    f"{limits.audit_rereads_max} reads, each interrupted by a change")]


async def batches(client: aioredis.Redis, keys: list[str] | None):
    """Card keys in batches of about limits.audit_scan_batch_cards."""
    if keys is not None:
        for start in range(0, len(keys), limits.audit_scan_batch_cards):
            yield keys[start:start + limits.audit_scan_batch_cards]
        return
    cursor = None
    while cursor != 0:
        cursor, found = await client.scan(cursor or 0, match="{c:*}",
                                          count=limits.audit_scan_batch_cards, _type="hash")
        batch = [key for key in found if CARD_KEY.fullmatch(key)]
        if batch:
            yield batch


def journal_findings(folder: Path) -> list[Finding]:
    """Records of the stand-in journals in `folder` still waiting to be forwarded, per card
    and journal; a journal damaged past its last record is one finding of its own."""
    if not folder.is_dir():
        return []
    findings = []
    for path in journal_paths(folder):
        try:
            shot = snapshot(path)
        except JournalCorrupt as error:
            findings.append(Finding("-", "journal_drained", f"{path.name} unreadable: {error}"))
            continue
        waiting = Counter(record_pan(r) for r in shot.records[shot.forwarded:])
        findings += [Finding(mask_pan(pan), "journal_drained",
                             f"{count} record(s) waiting in {path.name}")
                     for pan, count in waiting.items()]
    return findings


def record_pan(record: Record) -> str:
    return record.request.card if isinstance(record, Advice) else record.pan
