"""The Redis layout of the ledger and the token vault: the one statement of it for the switch
(switch/ledger.py, switch/tokens.py) and for the load generator, which seeds cards and tokens
by writing it directly (loadtest/generator/cards.py). No I/O here: names and fields only.

Every key of one card (or token) carries the same hash tag, so every Lua function call
touches one Redis Cluster slot:
  {c:PAN}          hash: limit, posted, held, pending_credit, beans, status, expiry,
                   statement_day, cycle_end (and, once a statement closed, its stmt_* fields
                   and repaid: switch/lua/statement.lua, repay.lua)
  {c:PAN}:t:REF    hash: one authorization or sale (kind, state, amount, hold, posted, ...)
  {c:PAN}:tx       sorted set of the card's transaction keys by creation time (ms)
  {c:PAN}:i:KEY    string: the answer given to idempotency key KEY, msgpack (expires), with
                   the attempt's auth id, whether a repeat was served it, and what the call
                   changed (for Ledger.void: switch/lua/prelude.lua remember)
  {c:PAN}:a:ID     string: stand-in advice ID was seen ('applied' or 'conflict'; expires
                   with the answers)
  {c:PAN}:h        sorted set of the pending holds' transaction keys by expiry deadline (ms)
  {c:PAN}:n        hash: the policy's approval counters, per rule its window's totals and
                   the finished buckets still inside the window
                   (expires when the longest window has passed without an approval)
  {i:KEY}          string: the claim on idempotency key KEY (the channel's id in its scope:
                   protocols/messages.py): the number of the card the first request under
                   KEY named (expires with the answers). Written before the card's call, in
                   a call of its own (its own slot): a request under KEY on another card is
                   94 and goes no further (docs/reliability.md, "Ids in their scope").
  {t:DPAN}         hash: pan, wallet, device, expiry (YYMM), status, key (hex), atc, created
  {t:DPAN}:i:KEY   hash: the verdict given to idempotency key KEY (expires with the answers)
  {k:ACQ}:TERM     hash: the MAC key of terminal TERM of acquirer ACQ (F32 without leading
                   zeros), TerminalKeyRecord; TERM "*" is the acquirer's own key, for every
                   terminal of it without one (an acquirer host). One acquirer, one slot.
  {k:ACQ}:TERM:session  hash: pik, mak, tdk (hex), issued (ms): the terminal's working keys
                   from its last sign-on or key change; expires with the session
"""

from __future__ import annotations

import msgspec

from protocols.statement_calendar import next_close_ms

# The balances of a card that has never been used; its hash adds limit, status and expiry,
# and its statement cycle (card_cycle).
FRESH_CARD_BALANCES = {"posted": 0, "held": 0, "pending_credit": 0, "beans": 0}


def card_cycle(now_ms: int, statement_day: int) -> dict[str, int]:
    """The statement fields of a card made at `now_ms`: its day and its first close
    (switch/lua/statement.lua closes the cycles that follow)."""
    return {"statement_day": statement_day, "cycle_end": next_close_ms(now_ms, statement_day)}


class TokenRecord(msgspec.Struct, kw_only=True):
    """A token's hash (its number is in the key): what provisioning writes, the vault reads
    and the load generator seeds."""

    pan: str
    wallet: str
    device: str
    expiry: str  # YYMM
    status: str
    atc: int  # the last ATC seen; the next payment must carry a larger one
    key: str  # hex HMAC-SHA256 key of the cryptogram
    created_ms: int

    def fields(self) -> dict[str, str | int]:
        return msgspec.structs.asdict(self)

    @classmethod
    def from_fields(cls, fields: dict[str, str]) -> TokenRecord:
        """The record from its hash as Redis returns it (numbers as text)."""
        return msgspec.convert(fields, cls, strict=False)


def card_key(pan: str) -> str:
    return f"{{c:{pan}}}"


def card_indexes(key: str) -> tuple[str, str, str]:
    """The card's transactions (:tx), pending holds (:h) and approval counters (:n)."""
    return f"{key}:tx", f"{key}:h", f"{key}:n"


def advice_key(key: str, advice_id: str) -> str:
    """Where advice `advice_id` on card `key` is recorded as seen."""
    return f"{key}:a:{advice_id}"


def answer_key(key: str, idempotency_key: str) -> str:
    """Where the answer given to `idempotency_key` on card `key` is remembered."""
    return f"{key}:i:{idempotency_key}"


def claim_key(idempotency_key: str) -> str:
    """Where the card that first used `idempotency_key` is named. The key is its own hash
    tag: claims spread over a cluster's slots, none a busy merchant's hot spot."""
    return f"{{i:{idempotency_key}}}"


def card_keys(key: str, idempotency_key: str, referenced: str) -> tuple[str, ...]:
    """KEYS of a ledger function call, in prelude.lua's order; all under the card's hash tag."""
    return (key, f"{key}:i:{idempotency_key}", f"{key}:t:{referenced}", f"{key}:tx",
            f"{key}:h", f"{key}:n")  # card_indexes' three, written out: this is per request


def batch_keys(scope: str) -> tuple[str, str, str]:
    """A terminal's batch (scope ACQUIRER:TERMINAL:BATCH), under one hash tag: the switch's
    entries, the terminal's uploaded ones, the batch's state (switch/lua/batch.lua)."""
    key = f"{{b:{scope}}}"
    return key, f"{key}:up", f"{key}:s"


def token_key(token: str) -> str:
    return f"{{t:{token}}}"


class TerminalKeyRecord(msgspec.Struct, kw_only=True):
    """A terminal's MAC key (switch/terminal_keys.py; `switch terminal`). After a rotation
    the previous key is still accepted until `previous_until_ms` (the grace period)."""

    algorithm: str  # protocols/iso_mac.py MacAlgorithm
    key: str  # hex
    created_ms: int
    rotated_ms: int = 0  # 0: never rotated
    previous_algorithm: str = ""
    previous_key: str = ""  # hex; "" when there is none
    previous_until_ms: int = 0
    # 1: the terminal must sign on (protocols/iso_session.py); money under this key alone is
    # refused (A0 not_signed_on).
    sign_on: int = 0

    def fields(self) -> dict[str, str | int]:
        return msgspec.structs.asdict(self)

    @classmethod
    def from_fields(cls, fields: dict[str, str]) -> TerminalKeyRecord:
        return msgspec.convert(fields, cls, strict=False)


def terminal_key(acquirer: str, terminal: str) -> str:
    """`acquirer` as F32 names it without its leading zeros (iso_channel.institution)."""
    return f"{{k:{acquirer}}}:{terminal}"


def session_key(acquirer: str, terminal: str) -> str:
    """A terminal's session (working keys from its sign-on; switch/terminal_sessions.py)."""
    return f"{terminal_key(acquirer, terminal)}:session"
