"""The card ledger in Redis: balances, holds and remembered answers, changed only by Lua.

Every key of a card is under one hash tag (protocols/ledger_layout.py has the layout). open-to-buy =
limit - posted - held, never below zero. The functions are in switch/lua/.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import re
import secrets
from typing import Any

import msgspec
import redis.asyncio as aioredis

from protocols.cardnumbers import luhn_check_digit
from protocols.codes import DECLINING, REPAYMENT_KIND, CardStatus, Code, Reason
from protocols.ledger_layout import (
    FRESH_CARD_BALANCES,
    advice_key,
    answer_key,
    card_cycle,
    card_indexes,
    card_key,
    card_keys,
    claim_key,
)
from protocols.messages import AuthRequest, AuthResponse, MessageClass, RefundRecord, decline
from switch import limits
from switch.cards import DEMO_BIN
from switch.clock import Clock, SystemClock, month_of, months_later
from switch.cluster_pipeline import script_pipeline
from switch.config import DEFAULT_PORTS
from switch.lua_library import ledger_library
from switch.pins import new_pin_fields
from switch.pipeline import LanePipeline
from switch.redis_client import unavailable_error
from switch.statement import Cycle, check_day, cycle_of
from switch.terms import NO_TERMS, Terms

log = logging.getLogger("switch.ledger")
CARD_STATUSES = tuple(status.value for status in CardStatus)
# The words Ledger.void and Ledger.advise answer with (their docstrings say what each means).
VOID_OUTCOMES = ("voided", "absent", "served", "other", "changed")
ADVICE_OUTCOMES = ("applied", "repeat", "conflict", "no_card")
# What Ledger.repay answers (its docstring says what each means).
REPAY_OUTCOMES = ("repaid", "repeat", "mismatch", "no_card")
REPAYMENT_REF = re.compile(rf"[A-Za-z0-9_\-]{{1,{limits.repayment_ref_max_chars}}}")

FUNCTION_OF_CLASS = {
    MessageClass.AUTH: "authorize",
    MessageClass.SALE: "authorize",
    MessageClass.CAPTURE: "capture",
    MessageClass.REVERSAL: "reverse",
    MessageClass.REFUND: "refund",
    MessageClass.INQUIRY: "inquiry",
}
# A forced outcome of no answer at all: the ledger's reply carries it in place of a code,
# and the server answers nothing (switch/server.py).
NO_ANSWER = "NA"
# A forced outcome of a stand-in decision: the ledger changes nothing and remembers nothing,
# and the switch decides as if Redis were down (switch/standin.py), journaling and advising.
STAND_IN = "SI"
FORCE_ACTIONS = (NO_ANSWER, STAND_IN)
FORCE_CHANNELS = tuple(DEFAULT_PORTS)  # where a forced outcome may be limited to
HISTORY_SHOWN_MAX = 50  # transactions listed by `card show`
# A Baitiao account upgraded to a card gets a number from a hash of the account; when that
# number is taken the next candidate is tried. Eight misses in a row mean the BIN is full.
UPGRADE_ATTEMPTS_MAX = 8
CARD_VALIDITY_YEARS = 5  # expiry of an upgraded card: this many years after the upgrade
# A card made by `card set` without an expiry: good through the end of the month three years
# on, a common validity of a newly issued credit card.
NEW_CARD_VALIDITY_MONTHS = 36
JD_USER = re.compile(r"[A-Za-z0-9_\-.@]{1,64}")  # a JD userId a card may be bound to


def fence_guard_ms(request_deadline_ms: int,
                   guard_ms: int = limits.ledger_fence_guard_ms) -> int:
    """How long before a request's deadline its ledger call's fence falls: the guard, or half
    a deadline too short for it (the other half is for deciding)."""
    return min(guard_ms, request_deadline_ms // 2)


def claims(request: AuthRequest) -> bool:
    """Whether the request claims its id before its card's call (switch/lua/claim.lua):
    every request but an inquiry naming an original (WeChat orderquery: answered afresh each
    time, its id not remembered)."""
    return not (request.message_class is MessageClass.INQUIRY and request.original_ref)


def _pass_on(answer: asyncio.Future, call: asyncio.Future) -> None:
    """The card call's outcome as the request's answer (unless that is no longer awaited)."""
    error = call.exception()  # read even when dropped: else asyncio logs it as never retrieved
    if answer.done():
        return
    if error is not None:
        answer.set_exception(error)
    else:
        answer.set_result(call.result())


CARD_FUNCTIONS = frozenset(FUNCTION_OF_CLASS.values())


def _log_void(void: asyncio.Future) -> None:
    """A void of an unreplicated call: its outcome, or why it failed (the master lost)."""
    error = void.exception()
    if error is not None:
        log.error("durable replicas: the void of an attempt answered 91 failed (%s: %s); "
                  "the audit and the replica's books may show it", type(error).__name__, error)
    elif void.result() not in ("voided", "absent"):
        log.warning("durable replicas: an attempt answered 91 was not voided: %s",
                    void.result())


REFUNDS = msgspec.json.Decoder(tuple[RefundRecord, ...])


def response_of(result: list) -> AuthResponse:
    """A ledger function's reply: {code, approved, otb, auth id, reason, beans, repeat} and,
    for an inquiry naming an original, that transaction's state and its refunds (JSON); a
    forced reply also the delay (ms or "") and who forced it ("card" or "rule"), and a forced
    stand-in (STAND_IN) the card's status, carried in `state` (switch/lua/prelude.lua
    with_forced)."""
    code, approved, otb, auth, reason, beans, repeat, *rest = result
    response = AuthResponse(response_code=code, approved_fen=int(approved), auth_id=auth,
                            open_to_buy_fen=int(otb), reason=reason, beans=int(beans),
                            repeat=bool(repeat), state=rest[0] if rest else "")
    if len(rest) > 2:  # forced
        response.delay_ms, response.forced = int(rest[1] or 0), rest[2]
        if code == STAND_IN:
            response.state = rest[3]
    elif len(rest) > 1 and rest[1]:  # rare: an order query's refunds
        response.refunds = REFUNDS.decode(rest[1])
    return response


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
    voids: int = 0  # calls on it taken back by Ledger.void


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
    repaid: int = 0  # repaid in all (Ledger.repay); posted below zero is a credit balance
    cycle: Cycle | None = None  # its statement cycle (None: a card seeded without one)
    voids: int = 0  # calls taken back by Ledger.void (answered 91, yet they had run)
    force: str = ""  # its forced outcome: "code|times|channel[|delay]" (Ledger.force), "" none
    forced: int = 0  # requests answered by a forced outcome
    jd_user: str = ""  # the JD userId the card is bound to ("" : none)
    pin_set: bool = False  # the card has a PIN (switch/pins.py; never shown)
    pin_tries: int = 0  # wrong PINs since the last right one


class Repayment(msgspec.Struct):
    """What Ledger.repay did: `outcome` one of REPAY_OUTCOMES; `ref` the repayment's id;
    `amount` what was asked, or for "mismatch" what the id was repaid with."""

    outcome: str
    ref: str
    amount: int


class RepaymentUnconfirmed(Exception):
    """Ledger.repay could not confirm its repayment: `applied` None when Redis did not
    answer in time (made before the call's fence, or never: it cannot be made after it),
    False when Redis ran the call past its fence (nothing changed). The same `ref` again
    repays exactly once, or says the repayment was made (`repeat`)."""

    def __init__(self, ref: str, amount_fen: int, applied: bool | None, cause: str) -> None:
        super().__init__(f"repayment {ref} of {amount_fen} fen not confirmed: {cause}")
        self.ref, self.amount_fen, self.applied, self.cause = ref, amount_fen, applied, cause

    def retry_advice(self) -> str:
        """What the user should do, in a sentence (the CLI's and the admin API's)."""
        made = ("it was not made" if self.applied is False else
                "it may have been made before then; it cannot be made later")
        return (f"repayment {self.ref} of {self.amount_fen} fen not confirmed: {self.cause}; "
                f"{made}. Repay again with the same ref ({self.ref}): it is made once, or "
                "answered as already made")


def no_answer(error: BaseException) -> str:
    """Why Redis gave no answer, for a person."""
    return f"Redis did not answer ({type(error).__name__}: {error})".replace(": )", ")")


class Ledger:
    def __init__(self, client: aioredis.Redis, clock: Clock | None = None,
                 scripts: LanePipeline | None = None, *,
                 request_deadline_ms: int = limits.request_deadline_ms,
                 ledger_fence_guard_ms: int = limits.ledger_fence_guard_ms,
                 statement_day: int = limits.statement_day_default,
                 durable_replicas: int = limits.durable_replicas,
                 durable_wait_ms: int = limits.durable_wait_ms) -> None:
        """`scripts` stands in for the auto-pipeline of the Lua functions' calls (the bench's
        reference server and its call capture); by default the ledger makes its own.
        `statement_day`: a new card's (the config's [cards] statement_day).
        `durable_replicas`, `durable_wait_ms`: a cluster's WAIT (switch/cluster_pipeline.py);
        ValueError on a single Redis."""
        self.client = client
        self.clock = clock or SystemClock()
        self.statement_day = check_day(statement_day)
        # Every call that changes money or remembers an answer carries its fence: the instant
        # of Redis' clock after which it refuses to act (91, nothing written). The guard keeps
        # the fence that far ahead of the request's deadline, for the reply's way back.
        self.deadline_s = request_deadline_ms / 1000
        self.fence_guard_s = fence_guard_ms(request_deadline_ms, ledger_fence_guard_ms) / 1000
        self.scripts = scripts or script_pipeline(client, ledger_library(), self.deadline_s,
                                                  durable_replicas, durable_wait_ms)
        if hasattr(self.scripts, "on_unreplicated"):
            self.scripts.on_unreplicated = self._void_unreplicated
        # Every pipeline on this ledger's Redis client (the token vault's joins it): aclose
        # waits for their calls and closes their connections, then the client's.
        self.pipelines = [self.scripts]

    async def start(self) -> None:
        await self.scripts.load()

    def deadline(self) -> float:
        """The local deadline (event-loop time, s) of a request that starts now."""
        return asyncio.get_running_loop().time() + self.deadline_s

    async def aclose(self) -> None:
        for pipeline in self.pipelines:
            await pipeline.drain()
            pipeline.close()
        await self.client.aclose()

    async def execute(self, *args: Any, **kwargs: Any) -> AuthResponse:
        """Run the request's Lua function (one atomic check-and-write on the card); `submit`'s
        arguments."""
        return await self.submit(*args, **kwargs)

    def submit(
        self,
        request: AuthRequest,
        auth_id: str,
        rule_decline: tuple[str, str] | None = None,
        beans_per_yuan: int = 0,
        terms: Terms = NO_TERMS,
        deadline_s: float | None = None,
        claimed: bool = False,
        pin_hash: str = "",
        fault: str = "",
    ) -> asyncio.Future[AuthResponse]:
        """The future of the request's answer, from its function call: no coroutine (the server's
        hot path); `execute` awaits it. `deadline_s`: the request's local deadline (event-loop
        time), by default `deadline()` now; the call cannot act in Redis after its fence.
        The request's id is claimed first (`claims`); `claimed`: it is already (the card's
        call alone is made: tests of how one call is written). `pin_hash`: the entered PIN's
        hash under the card's salt (switch/pins.py), "" when none was entered. `fault`: a fault
        rule's forced outcome for it, "code|delay ms|reason" (switch/faults.py)."""
        if deadline_s is None:
            deadline_s = asyncio.get_running_loop().time() + self.deadline_s
        keys, args = self._call(request, auth_id, request.amount_fen, rule_decline,
                                beans_per_yuan, terms, pin_hash, fault)
        name = FUNCTION_OF_CLASS[request.message_class]
        fence_s = deadline_s - self.fence_guard_s
        if claimed or not claims(request):
            return self.scripts.call(name, keys, args, response_of, fence_s)
        answer = asyncio.get_running_loop().create_future()
        self._claim(request).add_done_callback(
            functools.partial(self._claimed, answer, name, keys, args, fence_s))
        return answer

    def _claim(self, request: AuthRequest) -> asyncio.Future:
        """The claim call on the request's id (switch/lua/claim.lua): resolves to 1 when the id
        is the request's card's, 0 when another card's."""
        return self.scripts.call("claim", (claim_key(request.idempotency_key),),
                                 (request.card, limits.idempotency_ttl_s))

    def _claimed(self, answer: asyncio.Future, name: str, keys: tuple[str, ...], args: tuple,
                 fence_s: float, claimed: asyncio.Future) -> None:
        """The card's call once its claim is in: not made when the id is another card's
        (94, nothing changes, no balance shown) or the answer is no longer awaited."""
        error = claimed.exception()  # read even when dropped: else logged as never retrieved
        if answer.done():  # cancelled: the request was answered (91) meanwhile
            return
        if error is not None:
            answer.set_exception(error)
        elif not claimed.result():
            answer.set_result(decline(Code.DUPLICATE, Reason.DUPLICATE_ID_OTHER_CARD))
        else:
            self.scripts.call(name, keys, args, response_of, fence_s).add_done_callback(
                functools.partial(_pass_on, answer))

    def _call(self, request: AuthRequest, auth_id: str, amount_fen: int,
              rule_decline: tuple[str, str] | None, beans_per_yuan: int, terms: Terms,
              pin_hash: str = "", fault: str = "") -> tuple[tuple[str, ...], tuple]:
        """KEYS and ARGV of a call on the request's card, in switch/lua/prelude.lua's order."""
        referenced = request.original_ref or request.txn_ref
        keys = card_keys(card_key(request.card), request.idempotency_key, referenced)
        now_ms = self.clock.now_ms()
        code, reason = rule_decline or ("", "")
        return keys, (
            now_ms,
            month_of(now_ms),
            request.expiry,
            auth_id,
            amount_fen,
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
            request.channel,
            request.user_id,
            pin_hash,
            terms.pin_tries_max,
            fault,
        )

    # --- outcomes the switch did not answer: void an attempt, post a stand-in advice --------

    async def void(self, pan: str, idempotency_key: str, auth_id: str) -> str:
        """Undo the attempt `auth_id` under `idempotency_key` on card `pan`: "it did not happen".

        For a request the switch answered 91 (issuer_timeout) although its ledger call was
        sent: the call may still have run before its fence in Redis' clock. Call this only
        once the request's local deadline has passed (its fence has passed too, so nothing
        can apply after). Idempotent. Returns one word (VOID_OUTCOMES):
          "voided"  the attempt's remembered answer was this attempt's and no repeat had been
                    served it: every effect of the call is undone (balances, beans, its
                    transaction record and the card's indexes) and the answer forgotten, so a
                    repeat is decided afresh; the card's `voids` counter counts it
          "absent"  no remembered answer under the key: the call never applied, and its
                    fence has passed, so it never will (also a second void of one attempt)
          "served"  a repeat was handed this answer (the client saw it): nothing changes
          "other"   the remembered answer belongs to another attempt: nothing changes
          "changed" a later call changed the transaction this attempt made or touched (a
                    capture of its hold, a reversal...): that answer stands, nothing changes
        `auth_id` is what the engine passed to `submit` for the attempt ("" for a refusal).
        """
        key = card_key(pan)
        return await self.scripts.call("void", (key, answer_key(key, idempotency_key),
                                                card_indexes(key)[1]), (auth_id,))

    def _void_unreplicated(self, call: tuple) -> None:
        """A card's call that ran on its master but reached too few replicas in time
        (--durable-replicas): its request is answered 91, so the attempt is voided now, on
        the master (it has run: nothing of it can apply later). Its keys and ARGV are
        `_call`'s: the card, its answer key; the auth id is ARGV 4."""
        name, keys, args = call[0], call[1], call[2]
        if name not in CARD_FUNCTIONS:  # an advice: the forwarder sends it again ("repeat")
            return
        self.scripts.call("void", (keys[0], keys[1], card_indexes(keys[0])[1]),
                          (args[3],)).add_done_callback(_log_void)

    async def advise(self, request: AuthRequest, auth_id: str, approved_fen: int,
                     advice_id: str, beans_per_yuan: int = 0, terms: Terms = NO_TERMS) -> str:
        """Post a stand-in approval of `request` (AUTH: a hold; SALE: posted), like a 0120/0220
        advice: it records what was already answered, so it applies whatever the card's status,
        expiry and open-to-buy (open-to-buy shows 0 when over). The request's idempotency key
        then remembers the stand-in's answer (00, `auth_id`, `approved_fen`), so a repeat gets
        it, and its txn_ref names the transaction for a later capture, reversal or refund.
        Idempotent by `advice_id`. Returns one word (ADVICE_OUTCOMES):
          "applied"  posted now
          "repeat"   this advice_id was seen before (applied or in conflict): nothing changes
          "conflict" the idempotency key already remembers another attempt's answer (the
                     books hold a decision for it), or its id is claimed by another card
                     (switch/lua/claim.lua): nothing changes
          "no_card"  the ledger has no such card: nothing changes
        Only AUTH and SALE are advised (ValueError otherwise). Velocity counters do not count
        an advice (they bound what the ledger approves; this was approved elsewhere).
        TimeoutError when Redis took so long the call passed its own fence (nothing written:
        replay it).
        """
        if request.message_class not in (MessageClass.AUTH, MessageClass.SALE):
            raise ValueError(f"only auths and sales are advised, not {request.message_class}")
        if not 1 <= approved_fen <= limits.amount_max_fen:
            raise ValueError(f"approved amount must be 1..{limits.amount_max_fen} fen")
        if not await self._claim(request):  # the id is another card's in its scope
            return "conflict"
        keys, args = self._call(request, auth_id, approved_fen, None, beans_per_yuan, terms)
        keys = (*keys, advice_key(keys[0], advice_id))
        outcome = await self.scripts.call("advise", keys, args, None,
                                          self.deadline() - self.fence_guard_s)
        if not isinstance(outcome, str):  # the fence's 91 reply
            raise TimeoutError("Redis ran the advice past its deadline; nothing was written")
        return outcome

    # --- card administration (CLI, seeding, tests) -----------------------------------------

    async def set_card(
        self, pan: str, *, limit_fen: int | None = None, status: str | None = None,
        expiry: str | None = None, statement_day: int | None = None,
        jd_user: str | None = None,
    ) -> None:
        """Create or update a card; balances and holds are kept. A new card's statement cycle
        starts now (its statement day `statement_day`, else the ledger's); a changed day
        closes what ended under the old one first, then the cycle ends at the new day's next
        close (switch/lua/statement.lua). `jd_user`: bind the card to that JD userId (""
        unbinds it)."""
        if statement_day is not None:
            check_day(statement_day)
        if status is not None and status not in CARD_STATUSES:
            raise ValueError(f"status must be one of {', '.join(CARD_STATUSES)}")
        if limit_fen is not None and not 0 <= limit_fen <= limits.amount_max_fen:
            raise ValueError(f"limit must be 0..{limits.amount_max_fen} fen")
        if expiry is not None and not (len(expiry) == 4 and expiry.isdigit()
                                       and 1 <= int(expiry[2:]) <= 12):
            raise ValueError("expiry must be YYMM")
        if jd_user and not JD_USER.fullmatch(jd_user):
            raise ValueError("a JD user id is 1-64 letters, digits or '_-.@'")
        key = card_key(pan)
        exists = await self.client.exists(key)
        if not exists and limit_fen is None:
            raise ValueError("a new card needs a limit")
        if not exists and expiry is None:
            expiry = months_later(self.clock.now_ms(), NEW_CARD_VALIDITY_MONTHS)
        fields: dict[str, Any] = {"limit": limit_fen, "status": status, "expiry": expiry}
        now_ms = self.clock.now_ms()
        if not exists:
            day = statement_day or self.statement_day
            fields |= {"status": status or "active", **FRESH_CARD_BALANCES,
                       **card_cycle(now_ms, day)}
        changed = {k: v for k, v in fields.items() if v is not None}
        if changed:
            await self.client.hset(key, mapping=changed)
        if jd_user is not None:
            await (self.client.hset(key, "jd_user", jd_user) if jd_user
                   else self.client.hdel(key, "jd_user"))
        if exists and statement_day is not None:
            await self.scripts.call("statement_day", (key,), (statement_day, now_ms))

    async def set_pin(self, pan: str, pin: str) -> None:
        """A new PIN for the card (its tries start over); ValueError for a PIN that is not
        4-12 digits or a card that does not exist."""
        fields = new_pin_fields(pin)
        key = card_key(pan)
        if not await self.client.exists(key):
            raise ValueError("no such card: `switch card set PAN --limit FEN` makes one")
        await self.client.hset(key, mapping=fields)

    async def reset_card(self, pan: str, *, limit_fen: int, expiry: str, status: str = "active"
                         ) -> None:
        """Start a card afresh: no balances, no transactions (seeding)."""
        key = card_key(pan)
        txn_keys = await self.client.zrange(f"{key}:tx", 0, -1)
        await self.client.delete(key, *card_indexes(key), *txn_keys)
        await self.set_card(pan, limit_fen=limit_fen, status=status, expiry=expiry)

    async def card(self, pan: str) -> CardView | None:
        """The card as it stands now: holds past their deadline are expired first, and a
        statement cycle that ended is closed (switch/lua/expire.lua)."""
        key = card_key(pan)
        now_ms = self.clock.now_ms()
        await self.scripts.call("expire", (key, f"{key}:h"), (now_ms,))
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
            account=fields.get("account", ""), voids=number("voids"),
            force=fields.get("force", ""), forced=number("forced"),
            jd_user=fields.get("jd_user", ""),
            repaid=number("repaid"), cycle=cycle_of(fields, now_ms),
            pin_set=bool(fields.get("pin_hash")), pin_tries=number("pin_tries"),
        )

    async def force(self, pan: str, code: str | None, times: int | None = None,
                    channel: str = "", delay_ms: int = 0) -> bool:
        """Force the answer of the card's next `times` requests (every one while `times` is
        None) on `channel` ("" for every channel) to the declining `code`, changing nothing
        else; NO_ANSWER: they are never answered (nor changed); STAND_IN: the switch's
        stand-in decides them (as if Redis were down); "" with `delay_ms`: decided as usual.
        `delay_ms`: the answer waits that long first (switch/server.py bounds it by the
        request's deadline). `code` None clears it. The ledger's functions apply it
        atomically, taking one off `times` each (switch/lua/prelude.lua forced_code), and
        a void of a forced answer gives its use back. False when there is no card."""
        check_force(code, times, channel, delay_ms)
        key = card_key(pan)
        if not await self.client.exists(key):
            return False
        if code is None:
            await self.client.hdel(key, "force")
        else:
            await self.client.hset(key, "force", force_spec(code, times, channel, delay_ms))
        return True

    async def upgrade(self, account: str, limit_fen: int, status: str = "active"
                      ) -> tuple[str, bool]:
        """Turn a Baitiao account into a card with its limit, in one atomic function call.

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
        expiry = months_later(now_ms, CARD_VALIDITY_YEARS * 12)
        for attempt in range(UPGRADE_ATTEMPTS_MAX):
            pan = upgrade_pan(account, attempt)
            outcome = await self.scripts.call("upgrade", (card_key(pan),), (
                account, limit_fen, expiry, status, now_ms,
                *card_cycle(now_ms, self.statement_day).values()))
            if outcome != "taken":
                return pan, outcome == "created"
        raise RuntimeError(f"no free card number for account {account!r} after "
                           f"{UPGRADE_ATTEMPTS_MAX} candidates")

    async def settle(self, pan: str) -> int:
        """Clear ordinary refunds: their pending credit comes back to open-to-buy."""
        return int(await self.scripts.call("settle", (card_key(pan),),
                                           (self.clock.now_ms(),)))

    async def repay(self, pan: str, amount_fen: int, ref: str | None = None) -> Repayment:
        """The card holder pays `amount_fen` back: posted falls and open-to-buy rises at once,
        in one function call on the card (switch/lua/repay.lua); more than is owed leaves a
        credit balance (posted below zero), spendable. The repayment is a record of the card,
        `repay:REF`; `ref` (letters, digits, '_', '-') makes it idempotent, else one is made.
        Outcomes (REPAY_OUTCOMES):
          "repaid"   done now
          "repeat"   `ref` was repaid with this amount before: nothing changes
          "mismatch" `ref` was repaid with another amount (Repayment.amount): nothing changes
          "no_card"  the ledger has no such card: nothing changes
        RepaymentUnconfirmed when Redis did not answer by the request deadline (the call may
        have run before its fence, never after it) or ran it past the fence (nothing
        changed): either way the same `ref` again repays once. ValueError for an amount out
        of 1..amount_max_fen or a malformed ref."""
        if not 1 <= amount_fen <= limits.amount_max_fen:
            raise ValueError(f"a repayment must be 1..{limits.amount_max_fen} fen")
        if ref is None:
            ref = new_repayment_ref()
        elif not REPAYMENT_REF.fullmatch(ref):
            raise ValueError(f"a repayment's ref is 1..{limits.repayment_ref_max_chars} "
                             "letters, digits, '_' or '-'")
        key = card_key(pan)
        try:
            outcome, fen = await self.scripts.call(
                "repay", (key, repayment_key(key, ref), card_indexes(key)[0]),
                (amount_fen, self.clock.now_ms(), ref), None,
                self.deadline() - self.fence_guard_s)
        except Exception as error:
            if not unavailable_error(error):
                raise
            raise RepaymentUnconfirmed(ref, amount_fen, None, no_answer(error)) from error
        if outcome == "too_late":
            raise RepaymentUnconfirmed(ref, amount_fen, False, "Redis ran it past its "
                                       "deadline, so it changed nothing")
        return Repayment(outcome, ref, int(fen))


def check_force(code: str | None, times: int | None, channel: str, delay_ms: int) -> None:
    """ValueError naming what cannot be forced (Ledger.force's arguments)."""
    if code is None and delay_ms:
        raise ValueError("a delay needs no clearing: clear the forced outcome alone")
    if code == "" and not delay_ms:
        raise ValueError("say a code, no answer, stand-in or a delay to force")
    if code and code not in DECLINING and code not in FORCE_ACTIONS:
        raise ValueError(f"code {code!r} is not a declining response code "
                         f"({', '.join(sorted(DECLINING))})")
    if code in FORCE_ACTIONS and delay_ms:
        raise ValueError("only a code or a decision can be delayed, not no answer or stand-in")
    if times is not None and not 1 <= times <= limits.forced_times_max:
        raise ValueError(f"times must be 1..{limits.forced_times_max}")
    if channel and channel not in FORCE_CHANNELS:
        raise ValueError(f"channel must be one of {', '.join(FORCE_CHANNELS)}")
    if delay_ms and not 1 <= delay_ms <= limits.forced_delay_max_ms:
        raise ValueError(f"delay must be 1..{limits.forced_delay_max_ms} ms")


def force_spec(code: str, times: int | None, channel: str, delay_ms: int = 0) -> str:
    """A card's forced outcome as its record keeps it: "code|times|channel[|delay]"."""
    return f"{code}|{times or ''}|{channel}" + (f"|{delay_ms}" if delay_ms else "")


def _transaction(key: str, record: dict[str, str]) -> Transaction:
    return Transaction(
        ref=key.split(":t:", 1)[1], kind=record["kind"], state=record["state"],
        amount=int(record["amount"]), hold=int(record["hold"]), posted=int(record["posted"]),
        refunded=int(record["refunded"]), auth_id=record["auth"],
        created_ms=int(record["created"]), beans=int(record["beans"]),
        expires_ms=int(record.get("expires", 0)), voids=int(record.get("voids", 0)),
    )


def new_repayment_ref() -> str:
    """A repayment's id when its maker gives none: unique, and short enough to type again."""
    return f"R{secrets.token_hex(8)}"


def repayment_key(key: str, ref: str) -> str:
    """The record of repayment `ref` on card `key`: a transaction whose reference no channel's
    can be (theirs start with the channel's name)."""
    return f"{key}:t:{REPAYMENT_KIND}:{ref}"


def upgrade_pan(account: str, attempt: int) -> str:
    """The card number candidate `attempt` of a Baitiao account: 16 digits, Luhn-valid, 62."""
    digest = hashlib.sha256(f"baitiao:{account}:{attempt}".encode()).digest()
    body = DEMO_BIN + f"{int.from_bytes(digest[:8], 'big') % 10**9:09d}"
    return body + luhn_check_digit(body)

