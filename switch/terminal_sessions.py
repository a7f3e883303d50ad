"""Terminals' sessions in Redis: the working keys a sign-on issues (protocols/iso_session.py).

One hash per acquirer + terminal (protocols/ledger_layout.py session_key) holds the PIK, MAK
and TDK in hex and their algorithm (the master key's: x9.19 or sm4), expiring with the
session (`terminal_session_life_s`), so every worker finds them. A sign-on or a key change
writes fresh keys over the old ones (which stop at once); a sign-off deletes them. The keys
are made here (`secrets`), never by the codec.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import NamedTuple

import redis.asyncio as aioredis

from protocols.codes import Code, Reason
from protocols.iso_mac import MacAlgorithm, MacKey
from protocols.iso_session import (
    WORKING_KEY_SIZE_BYTES,
    SessionAction,
    SessionChange,
    SessionKey,
    WorkingKeys,
    can_exchange_keys,
    f62_of,
)
from protocols.ledger_layout import session_key
from switch import limits
from switch.clock import Clock, SystemClock


class SessionOutcome(NamedTuple):
    """What the 0810 says: its code and reason, and F62 ("" without new keys)."""

    code: str
    reason: str = ""
    f62: str = ""


def new_working_keys() -> WorkingKeys:
    return WorkingKeys(*(secrets.token_bytes(WORKING_KEY_SIZE_BYTES) for _ in range(3)))


def session_mac_key(fields: Mapping[str, str]) -> SessionKey | None:
    """The session's MAK with its PIK, from the session hash (None when there is none); a
    session written before the hash named its algorithm is x9.19's."""
    if not fields.get("mak"):
        return None
    return SessionKey(bytes.fromhex(fields["mak"]), bytes.fromhex(fields["pik"]),
                      MacAlgorithm(fields.get("algorithm") or MacAlgorithm.X9_19))


async def change_session(client: aioredis.Redis, change: SessionChange,
                         master: MacKey | None, clock: Clock | None = None,
                         life_s: int = limits.terminal_session_life_s) -> SessionOutcome:
    """Sign the terminal on (or change its keys: the same, fresh keys) or off. `master`: its
    master key (None: the terminal has none, 58). A master key that cannot carry working
    keys (hmac-sha256: no block cipher) signs on without them: 00, no F62, no session."""
    if master is None:
        return SessionOutcome(Code.NOT_PERMITTED_ON_TERMINAL, Reason.TERMINAL_UNKNOWN)
    name = session_key(change.acquirer, change.terminal)
    if change.action is SessionAction.SIGN_OFF:
        await client.delete(name)
        return SessionOutcome(Code.APPROVED)
    if not can_exchange_keys(master):  # the terminal goes on signing with its own key
        if change.action is SessionAction.KEY_CHANGE:
            return SessionOutcome(Code.INVALID_TRANSACTION, Reason.KEY_EXCHANGE_UNSUPPORTED)
        return SessionOutcome(Code.APPROVED)
    keys = new_working_keys()
    issued_ms = (clock or SystemClock()).now_ms()
    async with client.pipeline(transaction=True) as pipe:
        pipe.delete(name)
        pipe.hset(name, mapping={**{k: v.hex().upper() for k, v in keys._asdict().items()},
                                 "algorithm": str(master.algorithm), "issued": issued_ms})
        pipe.expire(name, life_s)
        await pipe.execute()
    return SessionOutcome(Code.APPROVED, f62=f62_of(master.key, keys, master.algorithm))
