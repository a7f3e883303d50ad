"""The card ledger in Redis: balances, holds and remembered answers, changed only by Lua.

Per card, under one hash tag so every script touches one Redis Cluster slot:
  {c:PAN}          hash: limit, posted, held, pending_credit, beans, status, expiry
  {c:PAN}:t:REF    hash: one authorization or sale (kind, state, amount, hold, posted, ...)
  {c:PAN}:tx       sorted set of the card's transaction keys by creation time (ms)
  {c:PAN}:i:KEY    string: the answer given to idempotency key KEY, msgpack (expires)
  {c:PAN}:h        sorted set of the pending holds' transaction keys by expiry deadline (ms)
  {c:PAN}:n        hash: the policy's approval counters, per rule its window's totals and
                   the finished buckets still inside the window
                   (expires when the longest window has passed without an approval)
open-to-buy = limit - posted - held, never below zero. The scripts are in switch/lua/.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import time
from importlib import resources
from typing import Any, NamedTuple, Protocol

import msgspec
import redis.asyncio as aioredis

from protocols.cardnumbers import luhn_check_digit
from protocols.codes import CardStatus
from protocols.messages import AuthRequest, AuthResponse, MessageClass
from switch import limits
from switch.cards import DEMO_BIN
from switch.pipeline import Library, ScriptPipeline, build_library

CARD_STATUSES = tuple(status.value for status in CardStatus)

SCRIPT_OF_CLASS = {
    MessageClass.AUTH: "authorize",
    MessageClass.SALE: "authorize",
    MessageClass.CAPTURE: "capture",
    MessageClass.REVERSAL: "reverse",
    MessageClass.REFUND: "refund",
    MessageClass.INQUIRY: "inquiry",
}
HISTORY_SHOWN_MAX = 50  # transactions listed by `card show`
DAY_MS = 24 * 3600 * 1000
# Without a policy (ledger tests, tools) a pre-authorization hold lapses after UnionPay's 30 days.
HOLD_EXPIRY_DEFAULT_MS = 30 * DAY_MS
# A Baitiao account upgraded to a card gets a number from a hash of the account; when that
# number is taken the next candidate is tried. Eight misses in a row mean the BIN is full.
UPGRADE_ATTEMPTS_MAX = 8
CARD_VALIDITY_YEARS = 5  # expiry of an upgraded card: this many years after the upgrade


class Clock(Protocol):
    def now_ms(self) -> int: ...


class SystemClock:
    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000


def month_of(now_ms: int) -> str:
    """YYMM of a UTC instant, the form of card expiry dates."""
    return _month_of_minute(now_ms // 60_000)


@functools.lru_cache(maxsize=4)  # asked on every request; changes once a month
def _month_of_minute(minute: int) -> str:
    return time.strftime("%y%m", time.gmtime(minute * 60))


LEDGER_FILES = ("holds", "prelude", "authorize", "capture", "reverse", "refund", "inquiry",
                "expire", "settle", "upgrade")


def read_lua(names: tuple[str, ...]) -> list[str]:
    folder = resources.files("switch") / "lua"
    return [(folder / f"{name}.lua").read_text() for name in names]


def ledger_library() -> Library:
    """The ledger's Lua functions (switch/lua/), one Redis function library."""
    return build_library("baitiao_ledger", read_lua(LEDGER_FILES))


def response_of(result: list) -> AuthResponse:
    """A ledger script's reply: {code, approved, otb, auth id, reason, beans, repeat} and,
    for an inquiry naming an original, that transaction's state."""
    code, approved, otb, auth, reason, beans, repeat, *state = result
    return AuthResponse(response_code=code, approved_fen=int(approved), auth_id=auth,
                        open_to_buy_fen=int(otb), reason=reason, beans=int(beans),
                        repeat=bool(repeat), state=state[0] if state else "")


def card_key(pan: str) -> str:
    return f"{{c:{pan}}}"


def card_keys(key: str, idempotency_key: str, referenced: str) -> tuple[str, ...]:
    """KEYS of a ledger script, in prelude.lua's order; all under the card's hash tag."""
    return (key, f"{key}:i:{idempotency_key}", f"{key}:t:{referenced}", f"{key}:tx",
            f"{key}:h", f"{key}:n")


class Counter(NamedTuple):
    """Approvals on the card counted over a window of time buckets, checked before an
    approval.

    The window is the current bucket and the `buckets - 1` before it. authorize.lua keeps
    its totals, declines 65 when one more approval would pass `count_max` and 61 when the
    amount would pass `amount_max_fen`, and counts an approval into the current bucket.
    """

    field: str  # hash field in {c:PAN}:n, unique per rule and bucket size
    bucket_ms: int
    buckets: int
    offset_ms: int  # shifts bucket edges: 8 h makes daily buckets Beijing calendar days
    count_max: int  # 0: no count limit
    amount_max_fen: int  # 0: no amount limit
    count_reason: str
    amount_reason: str


def counters_arg(counters: tuple[Counter, ...]) -> bytes:
    """The counters as one script argument, a JSON array of their values (authorize.lua
    decodes it in C; text, so the call can be replayed by redis-benchmark or redis-cli):
    made once per policy verdict, not per call."""
    return msgspec.json.encode(counters) if counters else b""


class Terms(NamedTuple):
    """What the policy adds to a ledger call (build with `with_counters`)."""

    counters: tuple[Counter, ...] = ()
    counters_arg: bytes = b""  # counters_arg(counters), made once
    counters_ttl_ms: int = DAY_MS  # the counters hash outlives the longest window by this
    hold_expiry_ms: int = HOLD_EXPIRY_DEFAULT_MS
    capture_tolerance_percent: int = 0

    def with_counters(self, counters: tuple[Counter, ...]) -> Terms:
        return self._replace(counters=counters, counters_arg=counters_arg(counters))


NO_TERMS = Terms()


class Transaction(msgspec.Struct):
    ref: str
    kind: str
    state: str
    amount: int
    hold: int
    posted: int
    refunded: int
    auth_id: str
    created_ms: int
    beans: int
    expires_ms: int = 0  # a pre-authorization's hold lapses then (0: not a hold)


class CardView(msgspec.Struct):
    pan: str
    status: str
    expiry: str
    limit: int
    posted: int
    held: int
    pending_credit: int
    open_to_buy: int
    beans: int
    transactions: list[Transaction]
    account: str = ""  # the Baitiao account it was upgraded from, if any


class Ledger:
    def __init__(self, client: aioredis.Redis, clock: Clock | None = None) -> None:
        self.client = client
        self.clock = clock or SystemClock()
        self.scripts = ScriptPipeline(client, ledger_library())
        # Every pipeline on this ledger's Redis client (the token vault's joins it): aclose
        # waits for their calls and closes their connections, then the client's.
        self.pipelines = [self.scripts]

    async def start(self) -> None:
        await self.scripts.load()

    async def aclose(self) -> None:
        for pipeline in self.pipelines:
            await pipeline.drain()
            pipeline.close()
        await self.client.aclose()

    async def execute(self, *args: Any, **kwargs: Any) -> AuthResponse:
        """Run the request's script (one atomic check-and-write on the card); `submit`'s
        arguments."""
        return await self.submit(*args, **kwargs)

    def submit(
        self,
        request: AuthRequest,
        auth_id: str,
        rule_decline: tuple[str, str] | None = None,
        beans_per_yuan: int = 0,
        terms: Terms = NO_TERMS,
    ) -> asyncio.Future[AuthResponse]:
        """The future of the request's answer, from its script: no coroutine (the server's
        hot path); `execute` awaits it."""
        referenced = request.original_ref or request.txn_ref
        keys = card_keys(card_key(request.card), request.idempotency_key, referenced)
        now_ms = self.clock.now_ms()
        code, reason = rule_decline or ("", "")
        args = (
            now_ms,
            month_of(now_ms),
            request.expiry,
            auth_id,
            request.amount_fen,
            f"{request.message_class}|{request.amount_fen}|{request.original_ref}",
            code,
            reason,
            limits.idempotency_ttl_s,
            int(request.partial_ok),
            beans_per_yuan,
            int(request.instant_refund),
            request.message_class.value,
            int(bool(request.original_ref)),
            terms.hold_expiry_ms,
            terms.capture_tolerance_percent,
            terms.counters_ttl_ms,
            terms.counters_arg,
        )
        name = SCRIPT_OF_CLASS[request.message_class]
        return self.scripts.call(name, keys, args, response_of)

    # --- card administration (CLI, seeding, tests) -----------------------------------------

    async def set_card(
        self, pan: str, *, limit_fen: int | None = None, status: str | None = None,
        expiry: str | None = None,
    ) -> None:
        """Create or update a card; balances and holds are kept."""
        if status is not None and status not in CARD_STATUSES:
            raise ValueError(f"status must be one of {', '.join(CARD_STATUSES)}")
        if limit_fen is not None and not 0 <= limit_fen <= limits.amount_max_fen:
            raise ValueError(f"limit must be 0..{limits.amount_max_fen} fen")
        if expiry is not None and not (len(expiry) == 4 and expiry.isdigit()
                                       and 1 <= int(expiry[2:]) <= 12):
            raise ValueError("expiry must be YYMM")
        key = card_key(pan)
        exists = await self.client.exists(key)
        if not exists and None in (limit_fen, expiry):
            raise ValueError("a new card needs a limit and an expiry")
        fields: dict[str, Any] = {"limit": limit_fen, "status": status, "expiry": expiry}
        if not exists:
            fields |= {"status": status or "active", "posted": 0, "held": 0,
                       "pending_credit": 0, "beans": 0}
        await self.client.hset(key, mapping={k: v for k, v in fields.items() if v is not None})

    async def reset_card(self, pan: str, *, limit_fen: int, expiry: str, status: str = "active"
                         ) -> None:
        """Start a card afresh: no balances, no transactions (seeding)."""
        key = card_key(pan)
        txn_keys = await self.client.zrange(f"{key}:tx", 0, -1)
        await self.client.delete(key, f"{key}:tx", f"{key}:h", f"{key}:n", *txn_keys)
        await self.set_card(pan, limit_fen=limit_fen, status=status, expiry=expiry)

    async def card(self, pan: str) -> CardView | None:
        """The card as it stands now: holds past their deadline are expired first."""
        key = card_key(pan)
        await self.scripts.call("expire", (key, f"{key}:h"), (self.clock.now_ms(),))
        fields = await self.client.hgetall(key)
        if not fields:
            return None
        txn_keys = await self.client.zrange(f"{key}:tx", -HISTORY_SHOWN_MAX, -1)
        async with self.client.pipeline(transaction=False) as pipe:
            for txn_key in txn_keys:
                pipe.hgetall(txn_key)
            records = await pipe.execute()
        number = lambda name: int(fields.get(name, 0))  # noqa: E731
        limit, posted, held = number("limit"), number("posted"), number("held")
        return CardView(
            pan=pan, status=fields["status"], expiry=fields["expiry"], limit=limit,
            posted=posted, held=held, pending_credit=number("pending_credit"),
            open_to_buy=max(0, limit - posted - held), beans=number("beans"),
            transactions=[_transaction(k, r) for k, r in zip(txn_keys, records, strict=True)],
            account=fields.get("account", ""),
        )

    async def upgrade(self, account: str, limit_fen: int, status: str = "active"
                      ) -> tuple[str, bool]:
        """Turn a Baitiao account into a card with its limit, in one atomic script.

        Returns (card number, created): the same account always gets the same card (a
        repeat changes nothing and says created=False).
        """
        if not (1 <= len(account) <= 64 and account.isascii()
                and account.replace("_", "").replace("-", "").isalnum()):
            raise ValueError("account must be 1-64 letters, digits, '_' or '-'")
        if not 1 <= limit_fen <= limits.amount_max_fen:
            raise ValueError(f"limit must be 1..{limits.amount_max_fen} fen")
        if status not in CARD_STATUSES:
            raise ValueError(f"status must be one of {', '.join(CARD_STATUSES)}")
        now_ms = self.clock.now_ms()
        year, month = month_of(now_ms)[:2], month_of(now_ms)[2:]
        expiry = f"{(int(year) + CARD_VALIDITY_YEARS) % 100:02d}{month}"
        for attempt in range(UPGRADE_ATTEMPTS_MAX):
            pan = upgrade_pan(account, attempt)
            outcome = await self.scripts.call("upgrade", (card_key(pan),), (
                account, limit_fen, expiry, status, now_ms))
            if outcome != "taken":
                return pan, outcome == "created"
        raise RuntimeError(f"no free card number for account {account!r} after "
                           f"{UPGRADE_ATTEMPTS_MAX} candidates")

    async def settle(self, pan: str) -> int:
        """Clear ordinary refunds: their pending credit comes back to open-to-buy."""
        return int(await self.scripts.call("settle", (card_key(pan),), ()))


def _transaction(key: str, record: dict[str, str]) -> Transaction:
    return Transaction(
        ref=key.split(":t:", 1)[1], kind=record["kind"], state=record["state"],
        amount=int(record["amount"]), hold=int(record["hold"]), posted=int(record["posted"]),
        refunded=int(record["refunded"]), auth_id=record["auth"],
        created_ms=int(record["created"]), beans=int(record["beans"]),
        expires_ms=int(record.get("expires", 0)),
    )


def upgrade_pan(account: str, attempt: int) -> str:
    """The card number candidate `attempt` of a Baitiao account: 16 digits, Luhn-valid, 62."""
    digest = hashlib.sha256(f"baitiao:{account}:{attempt}".encode()).digest()
    body = DEMO_BIN + f"{int.from_bytes(digest[:8], 'big') % 10**9:09d}"
    return body + luhn_check_digit(body)


def connect(url: str) -> aioredis.Redis:
    """A client whose pool waits (bounded) for a free connection instead of failing."""
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=limits.redis_connections_max,
        timeout=limits.redis_pool_wait_s,
        decode_responses=True,
        socket_timeout=limits.request_deadline_ms / 1000,
        socket_connect_timeout=limits.redis_pool_wait_s,
    )
    return aioredis.Redis(connection_pool=pool)
