"""Fault rules: requests that match a rule are answered as the rule says (a code, a delay, no
answer, a closed connection, a stand-in decision) instead of, or besides, being decided.

The rule set lives in Redis (one hash: the rules as JSON and a version), so every worker of
every switch on that Redis applies the same rules: each worker reads it when it starts and
again on each announcement of a new version (pub/sub), which it acknowledges, so `switch
fault add|clear` returns once every worker has the new set (as the test clock does,
switch/clock.py). A rule's uses (`times`) and its seeded `fraction` are counted in Redis
too (switch/lua/fault_uses.lua: one call per matching request, in the rule set's hash tag),
so they hold across workers; a use counts only when the rule answered the request (a repeat
takes none; one the call did not spend, or a void took back, is given back, off the answer's
path). A worker that finds a rule spent stops asking for it for a while (FaultSet._spent).
The first rule that matches (and whose `times` and `fraction` let it) wins.

A switch with no rules pays one attribute test per request (switch/engine.py). The
matched rule's outcome is carried out by the ledger's own forced-outcome code (ARGV[20],
switch/lua/prelude.lua), so a forced answer is remembered for repeats like a decided one;
closing the connection needs no ledger call. docs/testing.md "Fault rules".
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import secrets
from pathlib import Path
from typing import Any

import msgspec
import redis.asyncio as aioredis

from protocols.cardnumbers import mask_pan
from protocols.codes import DECLINING, Reason
from protocols.messages import AuthRequest, AuthResponse, MessageClass
from switch import limits
from switch.announce import announce, listen_for_versions
from switch.config import DEFAULT_PORTS, read_toml
from switch.ledger import NO_ANSWER, STAND_IN, Ledger

log = logging.getLogger("switch.faults")

FAULTS_KEY = "{faults}"  # hash: rules (JSON list), version
COUNTS_KEY = "{faults}:counts"  # hash: ID:matched, ID:used
FAULTS_CHANNEL = "faults"
# A rule's outcome of closing the connection: the engine answers this code and the server
# closes the connection instead (switch/server.py).
CLOSE_CONNECTION = "CL"
ACTIONS = ("code", "no_answer", "close", "stand_in")
RULE_ID = re.compile(r"[A-Za-z0-9_.-]{1,40}")
CHANNELS = tuple(DEFAULT_PORTS)
CLASSES = tuple(str(c) for c in MessageClass)


class FaultError(ValueError):
    """A rule that cannot be applied as written: the message names the rule and the key."""


class FaultRule(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, omit_defaults=True):
    """One rule: what it matches (every key given must match; none given matches every
    request) and what it does."""

    id: str
    # What it matches.
    channel: str = ""
    message_class: str = msgspec.field(default="", name="class")
    card: str = ""  # a whole card number
    card_prefix: str = ""  # the card number's first digits (a BIN, a range)
    amount_min: int | None = None  # fen, inclusive
    amount_max: int | None = None
    mcc: str = ""
    merchant: str = ""
    terminal: str = ""
    # What it does: one action (a delay may go with a code, or stand alone).
    code: str = ""
    delay_ms: int = 0
    no_answer: bool = False
    close: bool = False
    stand_in: bool = False
    # How often: only the first N matches (across workers), a seeded fraction of them.
    times: int | None = None
    fraction: float | None = None
    seed: int = 0

    def matches(self, request: AuthRequest) -> bool:
        return ((not self.channel or self.channel == request.channel)
                and (not self.message_class or self.message_class == request.message_class)
                and (not self.card or self.card == request.card)
                and (not self.card_prefix or request.card.startswith(self.card_prefix))
                and (self.amount_min is None or request.amount_fen >= self.amount_min)
                and (self.amount_max is None or request.amount_fen <= self.amount_max)
                and (not self.mcc or self.mcc == request.mcc)
                and (not self.merchant or self.merchant == request.merchant_id)
                and (not self.terminal or self.terminal == request.terminal_id))

    def outcome(self) -> str:
        """The forced outcome the ledger's call carries out, "code|delay ms|reason"."""
        code = NO_ANSWER if self.no_answer else STAND_IN if self.stand_in else self.code
        return f"{code}|{self.delay_ms or ''}|{reason_of(self)}"

    def closing(self) -> AuthResponse:
        return AuthResponse(response_code=CLOSE_CONNECTION, reason=reason_of(self),
                            forced=f"rule:{self.id}")

    def shown(self) -> dict[str, Any]:
        """The rule's keys as given, its card number masked (what the commands print)."""
        shown = msgspec.to_builtins(self)
        if self.card:
            shown["card"] = mask_pan(self.card)
        return shown

    def text(self) -> str:
        """The rule in one line, its card number masked."""
        return " ".join(f"{key}={value}" for key, value in self.shown().items())


def reason_of(rule: FaultRule) -> str:
    return Reason.FAULT_RULE.format(rule=rule.id)


def selected(seed: int, match: int, fraction: float) -> bool:
    """Whether a rule with `fraction` acts on its `match`-th matching request: the same
    answer for the same seed every run, whichever worker sees the request."""
    digest = hashlib.blake2b(f"{seed}:{match}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") < fraction * 2**64


# --- checking a rule ----------------------------------------------------------------------


def rule_from(raw: Any, where: str) -> FaultRule:
    """A rule from a TOML table or JSON object, checked; FaultError names `where` and the key."""
    if not isinstance(raw, dict):
        raise FaultError(f"{where}: must be a table")
    if "id" in raw and isinstance(raw["id"], str):
        where = f"{where} ({raw['id']})"
    try:
        rule = msgspec.convert(raw, FaultRule, strict=True)
    except msgspec.ValidationError as error:
        text = str(error)
        message, _, path = text.partition(" - at `$.")
        key = path.rstrip("`").split("[")[0] or "?"
        if text.startswith("Object contains unknown field"):
            key = text.split("`")[1]
            message = "not a known key (known: " + ", ".join(
                f.encode_name for f in msgspec.structs.fields(FaultRule)) + ")"
        elif text.startswith("Object missing required field"):
            key, message = "id", "required (letters, digits, . _ -)"
        raise FaultError(f"{where}: {key}: {message}") from None
    for key, problem in rule_problems(rule):
        raise FaultError(f"{where}: {key}: {problem}")
    return rule


def rule_problems(rule: FaultRule):
    """(key, problem) of each thing wrong with a rule, in the order a reader meets them."""
    if not RULE_ID.fullmatch(rule.id):
        yield "id", "1-40 letters, digits, '.', '_' or '-'"
    if rule.channel and rule.channel not in CHANNELS:
        yield "channel", f"{rule.channel!r} is not one of {', '.join(CHANNELS)}"
    if rule.message_class and rule.message_class not in CLASSES:
        yield "class", f"{rule.message_class!r} is not one of {', '.join(CLASSES)}"
    for key, value in (("card", rule.card), ("card_prefix", rule.card_prefix)):
        if value and not (value.isdigit() and value.isascii() and len(value) <= 19):
            yield key, "digits only, at most 19"
    for key, value in (("amount_min", rule.amount_min), ("amount_max", rule.amount_max)):
        if value is not None and not 0 <= value <= limits.amount_max_fen:
            yield key, f"must be 0..{limits.amount_max_fen} fen"
    if (rule.amount_min or 0) > (rule.amount_max if rule.amount_max is not None else
                                 limits.amount_max_fen):
        yield "amount_max", "is below amount_min: the rule could match nothing"
    if rule.mcc and not (len(rule.mcc) == 4 and rule.mcc.isdigit()):
        yield "mcc", "four digits"
    actions = [name for name in ACTIONS if getattr(rule, name)]
    if len(actions) > 1:
        yield actions[1], f"one action per rule, and this one has {actions[0]} already"
    if not actions and not rule.delay_ms:
        yield "code", ("an action is required: code, delay_ms, no_answer, close or "
                       "stand_in")
    if rule.code and rule.code not in DECLINING:
        yield "code", (f"{rule.code!r} is not a declining response code "
                       f"({', '.join(sorted(DECLINING))})")
    if rule.delay_ms and not 1 <= rule.delay_ms <= limits.forced_delay_max_ms:
        yield "delay_ms", f"must be 1..{limits.forced_delay_max_ms}"
    if rule.delay_ms and actions and actions[0] != "code":
        yield "delay_ms", f"goes with a code or alone, not with {actions[0]}"
    if rule.times is not None and not 1 <= rule.times <= limits.forced_times_max:
        yield "times", f"must be 1..{limits.forced_times_max}"
    if rule.fraction is not None and not 0 < rule.fraction <= 1:
        yield "fraction", "must be above 0 and at most 1"


def load_rule_file(path: Path) -> list[FaultRule]:
    """The rules of a fault file (TOML, [[rule]] tables), all checked: FaultError names the
    file, the rule and the key of the first problem."""
    document = read_toml(path, FaultError)
    unknown = set(document) - {"rule"}
    if unknown:
        raise FaultError(f"{path}: {sorted(unknown)[0]}: not a known key (a fault file "
                         "holds [[rule]] tables)")
    raw_rules = document.get("rule", [])
    if not isinstance(raw_rules, list):
        raise FaultError(f"{path}: rule: must be [[rule]] tables")
    rules = [rule_from(raw, f"{path}: rule {index}")
             for index, raw in enumerate(raw_rules, start=1)]
    check_ids(rules, str(path))
    return rules


def check_ids(rules: list[FaultRule], where: str) -> None:
    seen: set[str] = set()
    for index, rule in enumerate(rules, start=1):
        if rule.id in seen:
            raise FaultError(f"{where}: rule {index} ({rule.id}): id: another rule has it")
        seen.add(rule.id)
    if len(rules) > limits.fault_rules_max:
        raise FaultError(f"{where}: {len(rules)} rules: at most {limits.fault_rules_max}")


# --- a worker's copy ----------------------------------------------------------------------


class FaultSet:
    """The rule set as one worker applies it: `rules` is empty (falsy) when there are none,
    the one test a request pays then."""

    def __init__(self) -> None:
        self.rules: tuple[FaultRule, ...] = ()
        self.version = 0
        self._task: asyncio.Task | None = None
        # Rule id -> loop time until which its uses count as spent without asking Redis
        # (limits.fault_spent_recheck_s); emptied with each new rule set.
        self._spent_until: dict[str, float] = {}
        self._giving_back: set[asyncio.Task] = set()  # give-backs Redis failed, tried again

    def matching(self, request: AuthRequest) -> list[FaultRule]:
        return [rule for rule in self.rules if rule.matches(request)]

    async def pick(self, ledger: Ledger, candidates: list[FaultRule], request: AuthRequest,
                   fence_s: float) -> tuple[FaultRule | None, str]:
        """The first of the matching rules that acts on this request, or None; and the use
        it took ("" when none: a rule without `times`, or a repeat of a request that took
        one). Uses are counted in Redis, so N is exact across workers; `fence_s` (event-loop
        time): a take Redis runs later takes nothing."""
        for rule in candidates:
            if self._spent(rule.id):
                continue
            if rule.fraction is not None and not await self._selected(ledger.client, rule):
                continue
            if rule.times is None:
                return rule, ""
            token = secrets.token_hex(6)
            taken = await ledger.scripts.call(
                "fault_take", (COUNTS_KEY, takers_key(rule.id)),
                (rule.id, rule.times, request.idempotency_key, token,
                 limits.idempotency_ttl_s), None, fence_s)
            if taken == "taken":
                return rule, f"{rule.id}|{token}"
            if taken == "again":
                return rule, ""
            if taken == "spent":
                self._spent_until[rule.id] = (asyncio.get_running_loop().time()
                                              + limits.fault_spent_recheck_s)
        return None, ""

    def _spent(self, rule_id: str) -> bool:
        """Whether the rule's uses were found spent lately (no call to Redis for it then).
        A repeat of a request that took a use is then not recognised ("again"): it gets its
        first answer from the ledger all the same, since the answer is remembered there."""
        until = self._spent_until.get(rule_id)
        if until is None:
            return False
        if asyncio.get_running_loop().time() < until:
            return True
        del self._spent_until[rule_id]
        return False

    def give_back(self, ledger: Ledger, use: str, idempotency_key: str) -> None:
        """Give back a use the request's answer did not spend, off the answer's path: the
        call is queued now (ahead of any take a later request makes on the same link), its
        reply not awaited, so a Redis that fails it cannot change the answer already
        decided; a failed one is tried again (limits.fault_give_back_tries)."""
        self._spent_until.pop(use.split("|")[0], None)  # the use is there to take again
        call = give_back(ledger, use, idempotency_key)
        call.add_done_callback(lambda done: self._given_back(done, ledger, use,
                                                             idempotency_key))

    def _given_back(self, call: asyncio.Future, ledger: Ledger, use: str,
                    idempotency_key: str) -> None:
        if call.cancelled() or call.exception() is None:
            return
        log.warning("fault rule %s: giving a use back failed (%s); trying again",
                    use.split("|")[0], call.exception())
        task = asyncio.get_running_loop().create_task(
            self._give_back_again(ledger, use, idempotency_key))
        self._giving_back.add(task)
        task.add_done_callback(self._giving_back.discard)

    async def _give_back_again(self, ledger: Ledger, use: str, idempotency_key: str) -> None:
        error: Exception | None = None
        for _ in range(limits.fault_give_back_tries - 1):  # the first try failed
            await asyncio.sleep(limits.fault_give_back_retry_s)
            try:
                await give_back(ledger, use, idempotency_key)
                return
            except Exception as failed:  # noqa: BLE001 - Redis' to fail; tried again
                error = failed
        log.warning("fault rule %s: a use could not be given back in %d tries (%s): the rule "
                    "answers one time fewer", use.split("|")[0], limits.fault_give_back_tries,
                    error)

    async def _selected(self, client: aioredis.Redis, rule: FaultRule) -> bool:
        match = await client.hincrby(COUNTS_KEY, f"{rule.id}:matched", 1)
        return selected(rule.seed, match, rule.fraction)

    async def read(self, client: aioredis.Redis, message: str = "") -> None:
        """The stored set (an announcement only says that it changed). Read for an
        announcement, it replaces an older one only (announcements may cross); read as the
        state ("": on start and on subscribing again), it is taken whatever its version (a
        Redis restarted without its data starts counting again)."""
        version, rules = await stored_rules(client)
        if not message or version >= self.version:
            self.version, self.rules = version, tuple(rules)
            self._spent_until.clear()  # a rule of a new set starts with its uses

    async def listen(self, client: aioredis.Redis) -> None:
        """Read the rule set, then follow its changes until `close`."""
        self._task = await listen_for_versions(client, FAULTS_CHANNEL, self.read, ack_key)

    async def drain(self) -> None:
        """Closed with the ledger's pipelines, after them: a give-back still being tried
        again has no Redis to go to (its use stays taken, said so)."""
        if self._giving_back:
            log.warning("%d fault rule uses not given back at shutdown: those rules answer "
                        "as many times fewer", len(self._giving_back))
        for task in list(self._giving_back):
            task.cancel()
        await asyncio.gather(*self._giving_back, return_exceptions=True)

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()


def give_back(ledger: Ledger, use: str, idempotency_key: str) -> asyncio.Future[bool]:
    """Give back the use `use` ("ID|token", FaultSet.pick's) that the request under
    `idempotency_key` took and the rule did not answer: its first answer came back, or its
    card's call was refused or voided. Once: False when there was none to give back. The
    call is queued at once; the future is its reply."""
    rule_id, token = use.split("|")
    return ledger.scripts.call("fault_give_back", (COUNTS_KEY, takers_key(rule_id)),
                               (rule_id, idempotency_key, token), bool)


# --- the rule set in Redis ----------------------------------------------------------------


def ack_key(version: int) -> str:
    return f"{FAULTS_KEY}:ack:{version}"


def takers_key(rule_id: str) -> str:
    """The requests that took a use of the rule (idempotency key -> the attempt's token)."""
    return f"{FAULTS_KEY}:takers:{rule_id}"


async def stored_rules(client: aioredis.Redis) -> tuple[int, list[FaultRule]]:
    version, text = await client.hmget(FAULTS_KEY, ["version", "rules"])
    rules = msgspec.json.decode(text or "[]", type=list[FaultRule])
    return int(version or 0), rules


async def rule_counts(client: aioredis.Redis) -> dict[str, int]:
    return {name: int(count) for name, count in (await client.hgetall(COUNTS_KEY)).items()}


async def change_rules(client: aioredis.Redis, change) -> tuple[list[FaultRule], int]:
    """Apply `change(rules) -> rules` to the stored set atomically (optimistic: retried when
    another command changed it meanwhile), announce the new version and wait (bounded)
    until every listening worker has it. Returns (the new rules, workers that took it)."""
    async with client.pipeline(transaction=True) as pipe:
        while True:
            try:
                await pipe.watch(FAULTS_KEY)
                text = await pipe.hget(FAULTS_KEY, "rules")
                rules = change(msgspec.json.decode(text or "[]", type=list[FaultRule]))
                pipe.multi()
                pipe.hset(FAULTS_KEY, "rules", msgspec.json.encode(rules))
                pipe.hincrby(FAULTS_KEY, "version", 1)
                version = (await pipe.execute())[1]
                break
            except aioredis.WatchError:
                continue
    workers = await announce(client, FAULTS_CHANNEL, str(version), ack_key(version))
    return rules, workers


async def add_rules(client: aioredis.Redis, new: list[FaultRule]) -> tuple[list[FaultRule], int]:
    """Append rules (after the ones in force); FaultError when an id is taken."""
    def change(rules: list[FaultRule]) -> list[FaultRule]:
        taken = {rule.id for rule in rules}
        for rule in new:
            if rule.id in taken:
                raise FaultError(f"rule {rule.id}: id: a rule with that id is in force "
                                 "(`switch fault clear --id` it first)")
        combined = rules + new
        check_ids(combined, "the rule set")
        return combined

    await _reset_counts(client, [rule.id for rule in new])
    return await change_rules(client, change)


async def replace_rules(client: aioredis.Redis, rules: list[FaultRule]) -> int:
    """The rule set becomes `rules` (`switch serve --faults`), every count reset."""
    await _reset_all(client, rules)
    return (await change_rules(client, lambda _: list(rules)))[1]


async def clear_rules(client: aioredis.Redis, rule_id: str | None = None
                      ) -> tuple[list[FaultRule], int]:
    """Remove one rule (FaultError when there is none such) or all; their counts too."""
    def change(rules: list[FaultRule]) -> list[FaultRule]:
        if rule_id is None:
            return []
        kept = [rule for rule in rules if rule.id != rule_id]
        if len(kept) == len(rules):
            raise FaultError(f"no rule {rule_id} (`switch fault list` shows them)")
        return kept

    # The counts go once every worker has the change: a rule still applied while they went
    # could take a use after them, which its id's next rule would find spent.
    cleared = ([rule.id for rule in (await stored_rules(client))[1]] if rule_id is None
               else [rule_id])
    result = await change_rules(client, change)
    await _reset_counts(client, cleared, every_count=rule_id is None)
    return result


async def _reset_all(client: aioredis.Redis, rules: list[FaultRule] = ()) -> None:
    """Every count gone: the stored rules' and `rules`' (ids a new set reuses)."""
    _, stored = await stored_rules(client)
    await _reset_counts(client, [rule.id for rule in (*stored, *rules)], every_count=True)


async def _reset_counts(client: aioredis.Redis, ids: list[str], every_count: bool = False
                        ) -> None:
    """The rules' counts and takers (`every_count`: every rule's counts), in one transaction
    (the keys share the rule set's slot), takers first: a give-back finds no taker rather
    than a count gone (switch/lua/fault_uses.lua)."""
    async with client.pipeline(transaction=True) as pipe:
        for rule_id in ids:
            pipe.delete(takers_key(rule_id))
        fields = [f"{rule_id}:{what}" for rule_id in ids for what in ("matched", "used")]
        if every_count:
            pipe.delete(COUNTS_KEY)
        elif fields:
            pipe.hdel(COUNTS_KEY, *fields)
        await pipe.execute()
