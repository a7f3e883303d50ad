"""The card ledger in Redis: balances, holds and remembered answers, changed only by Lua.

Per card, under one hash tag so every script touches one Redis Cluster slot:
  {c:PAN}          hash: limit, posted, held, pending_credit, beans, status, expiry
  {c:PAN}:t:REF    hash: one authorization or sale (kind, state, amount, hold, posted, ...)
  {c:PAN}:tx       sorted set of the card's transaction keys by creation time (ms)
  {c:PAN}:i:KEY    hash: the answer given to idempotency key KEY (expires)
open-to-buy = limit - posted - held, never below zero. The scripts are in switch/lua/.
"""

from __future__ import annotations

import time
from importlib import resources
from typing import Any, Protocol

import msgspec
import redis.asyncio as aioredis

from protocols.messages import AuthRequest, AuthResponse, MessageClass
from switch import limits
from switch.pipeline import ScriptPipeline

CARD_STATUSES = ("active", "inactive", "frozen", "restricted", "lost", "stolen")

SCRIPT_OF_CLASS = {
    MessageClass.AUTH: "authorize",
    MessageClass.SALE: "authorize",
    MessageClass.CAPTURE: "capture",
    MessageClass.REVERSAL: "reverse",
    MessageClass.REFUND: "refund",
    MessageClass.INQUIRY: "inquiry",
}
HISTORY_SHOWN_MAX = 50  # transactions listed by `card show`


class Clock(Protocol):
    def now_ms(self) -> int: ...


class SystemClock:
    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000


def month_of(now_ms: int) -> str:
    """YYMM of a UTC instant, the form of card expiry dates."""
    return time.strftime("%y%m", time.gmtime(now_ms / 1000))


def load_scripts() -> dict[str, str]:
    folder = resources.files("switch") / "lua"
    prelude = (folder / "prelude.lua").read_text()
    sources = {name: prelude + (folder / f"{name}.lua").read_text() for name in set(
        SCRIPT_OF_CLASS.values())}
    sources["settle"] = (folder / "settle.lua").read_text()
    return sources


def card_key(pan: str) -> str:
    return f"{{c:{pan}}}"


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


class Ledger:
    def __init__(self, client: aioredis.Redis, clock: Clock | None = None) -> None:
        self.client = client
        self.clock = clock or SystemClock()
        self.scripts = ScriptPipeline(client, load_scripts())

    async def start(self) -> None:
        await self.scripts.load()

    async def execute(
        self,
        request: AuthRequest,
        auth_id: str,
        rule_decline: tuple[str, str] | None = None,
        beans_per_yuan: int = 0,
    ) -> AuthResponse:
        """Run the request's script: one atomic check-and-write on the card."""
        key = card_key(request.card)
        referenced = request.original_ref or request.txn_ref
        keys = (key, f"{key}:i:{request.idempotency_key}", f"{key}:t:{referenced}", f"{key}:tx")
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
        )
        name = SCRIPT_OF_CLASS[request.message_class]
        result = await self.scripts.call(name, keys, args)
        code, approved, otb, auth, reason, beans, repeat = result
        return AuthResponse(
            response_code=code,
            approved_fen=int(approved),
            auth_id=auth,
            open_to_buy_fen=int(otb),
            reason=reason,
            beans=int(beans),
            repeat=bool(repeat),
        )

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
        await self.client.delete(key, f"{key}:tx", *txn_keys)
        await self.set_card(pan, limit_fen=limit_fen, status=status, expiry=expiry)

    async def card(self, pan: str) -> CardView | None:
        key = card_key(pan)
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
        )

    async def settle(self, pan: str) -> int:
        """Clear ordinary refunds: their pending credit comes back to open-to-buy."""
        return int(await self.scripts.call("settle", (card_key(pan),), ()))


def _transaction(key: str, record: dict[str, str]) -> Transaction:
    return Transaction(
        ref=key.split(":t:", 1)[1], kind=record["kind"], state=record["state"],
        amount=int(record["amount"]), hold=int(record["hold"]), posted=int(record["posted"]),
        refunded=int(record["refunded"]), auth_id=record["auth"],
        created_ms=int(record["created"]), beans=int(record["beans"]),
    )


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
