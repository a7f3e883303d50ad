"""The x-pay token vault in Redis: wallet token (DPAN) -> card, and the checks of each use.

Every key of a token is under one hash tag (protocols/ledger_layout.py has the layout).
Statuses: active, suspended (declined 62), deleted (declined 14, final). The checks of one wallet
message run in switch/lua/token_use.lua; the cryptogram itself is checked here, in
Python, with the token's key (a key never changes, so it is cached).
"""

from __future__ import annotations

import hmac
import secrets

import msgspec
import redis.asyncio as aioredis

from protocols.cardnumbers import SWITCH_TOKEN_BIN, luhn_check_digit
from protocols.codes import Code, Reason, TokenStatus
from protocols.ledger_layout import TokenRecord, card_key, token_key
from protocols.messages import AuthRequest, AuthResponse
from protocols.xpay import WALLETS, XpayRequest, cryptogram
from switch import limits
from switch.clock import Clock, SystemClock, month_of, months_later
from switch.cluster_pipeline import script_pipeline
from switch.lua_library import token_library

TOKEN_STATUSES = tuple(status.value for status in TokenStatus)
TOKEN_BIN = SWITCH_TOKEN_BIN  # a DPAN never looks like a demo card
TOKEN_KEY_SIZE_BYTES = 16
PROVISION_ATTEMPTS_MAX = 8  # fresh random numbers tried before giving up (a full range)


class TokenView(TokenRecord, kw_only=True):
    token: str


def new_token_number() -> str:
    body = TOKEN_BIN + "".join(secrets.choice("0123456789") for _ in range(9))
    return body + luhn_check_digit(body)


class TokenVault:
    def __init__(self, client: aioredis.Redis, clock: Clock | None = None, *,
                 request_deadline_ms: int = limits.request_deadline_ms) -> None:
        self.client = client
        self.clock = clock or SystemClock()
        self.scripts = script_pipeline(client, token_library(), request_deadline_ms / 1000)
        self._keys: dict[str, bytes] = {}

    async def start(self) -> None:
        await self.scripts.load()

    async def aclose(self) -> None:
        """Close the vault's pipeline and its Redis client (a vault on a ledger's client is
        closed by `Ledger.aclose` instead)."""
        await self.scripts.drain()
        self.scripts.close()
        await self.client.aclose()

    # --- the engine's card resolver for the x-pay channel --------------------------------

    async def resolve(self, request: AuthRequest) -> AuthRequest | AuthResponse:
        """The request on the underlying card, or the answer that ends it (a token decline)."""
        token = request.card
        if not (13 <= len(token) <= 19 and token.isdigit()):
            return AuthResponse(response_code=Code.INVALID_CARD, reason=Reason.TOKEN_MALFORMED)
        atc, right = -1, True
        if isinstance(request, XpayRequest) and request.atc >= 0:
            atc = request.atc
            key = await self._key(token)
            right = key is not None and hmac.compare_digest(
                cryptogram(key, request.cryptogram_data), request.cryptogram)
        fingerprint = (f"{request.message_class}|{request.amount_fen}|{request.original_ref}|"
                       f"{atc}|{getattr(request, 'cryptogram', b'').hex()}")
        keys = (token_key(token), f"{token_key(token)}:i:{request.idempotency_key}")
        args = (month_of(self.clock.now_ms()), fingerprint, atc, int(right),
                limits.idempotency_ttl_s)
        code, reason, pan, repeat = await self.scripts.call("token_use", keys, args)
        if code:
            return AuthResponse(response_code=code, reason=reason, repeat=bool(repeat))
        return msgspec.structs.replace(request, card=pan)

    async def _key(self, token: str) -> bytes | None:
        key = self._keys.get(token)
        if key is None:
            text = await self.scripts.call("token_admin", (token_key(token),), ("key",))
            if text is None:
                return None
            if len(self._keys) >= limits.token_key_cache_max:
                del self._keys[next(iter(self._keys))]  # the oldest entry
            key = self._keys[token] = bytes.fromhex(text)
        return key

    # --- administration (CLI, tests) -------------------------------------------------------

    async def provision(self, pan: str, wallet: str, device: str = "", expiry: str = ""
                        ) -> TokenView:
        """A new active token for an existing card, with a fresh random key."""
        if wallet not in WALLETS:
            raise ValueError(f"wallet must be one of {', '.join(WALLETS)}")
        if expiry and not (len(expiry) == 4 and expiry.isdigit() and 1 <= int(expiry[2:]) <= 12):
            raise ValueError("token expiry must be YYMM")
        if not await self.client.exists(card_key(pan)):
            raise ValueError("no such card: provision a token for a card the ledger knows")
        now_ms = self.clock.now_ms()
        record = TokenRecord(
            pan=pan, wallet=wallet, device=device or f"{wallet}-{secrets.token_hex(4)}",
            expiry=expiry or months_later(now_ms, limits.token_lifetime_months),
            status="active", atc=0, key=secrets.token_hex(TOKEN_KEY_SIZE_BYTES),
            created_ms=now_ms)
        pairs = [str(item) for pair in record.fields().items() for item in pair]
        for _ in range(PROVISION_ATTEMPTS_MAX):
            token = new_token_number()
            if await self.scripts.call("token_admin", (token_key(token),),
                                       ("provision", *pairs)):
                return TokenView(token=token, **record.fields())
        raise RuntimeError("no free token number found; the token range is full")

    async def set_status(self, token: str, status: str) -> str:
        """The new status; ValueError for an unknown token or a deleted one."""
        if status not in TOKEN_STATUSES:
            raise ValueError(f"status must be one of {', '.join(TOKEN_STATUSES)}")
        old = await self.scripts.call("token_admin", (token_key(token),), ("status", status))
        if old is None:
            raise ValueError(f"no such token {token}")
        if old == "deleted" and status != "deleted":
            raise ValueError(f"token {token} is deleted; provision a new one")
        return status

    async def show(self, token: str) -> TokenView | None:
        fields = await self.client.hgetall(token_key(token))
        if not fields:
            return None
        return TokenView(token=token, **TokenRecord.from_fields(fields).fields())
