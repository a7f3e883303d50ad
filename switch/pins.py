"""Cards' PINs: kept as a salted hash in the card's hash, checked by the card's Lua call.

A card's hash holds `pin_salt` (random, per card, new with each PIN), `pin_hash`
(PBKDF2-HMAC-SHA256 of the PIN under that salt, `pin_hash_rounds`) and `pin_tries` (wrong
PINs since the last right one). The PIN itself is never stored nor logged. To check an
entered PIN the switch reads the salt, hashes the PIN off the event loop and hands the hash
to the card's Lua call, which compares it and counts the try atomically with the decision
(switch/lua/prelude.lua pin_refusal).
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets

import redis.asyncio as aioredis

from protocols.iso_pin import check_pin
from protocols.ledger_layout import card_key
from switch import limits

NO_PIN = "-"  # what the Lua is given for a card that has no PIN (answered 55 pin_not_set)


def pin_hash(pin: str, salt: bytes) -> str:
    digest = hashlib.pbkdf2_hmac("sha256", pin.encode(), salt, limits.pin_hash_rounds)
    return digest.hex()


def new_pin_fields(pin: str) -> dict[str, str]:
    """The card hash's fields for a new PIN (ValueError for one that is not 4-12 digits)."""
    salt = secrets.token_bytes(limits.pin_salt_bytes)
    return {"pin_salt": salt.hex(), "pin_hash": pin_hash(check_pin(pin), salt),
            "pin_tries": "0"}


async def entered_hash(client: aioredis.Redis, pan: str, pin: str) -> str:
    """The hash of an entered PIN under the card's salt, for its Lua call; NO_PIN when the
    card has none (or does not exist: the call then says so)."""
    salt = await client.hget(card_key(pan), "pin_salt")
    if not salt:
        return NO_PIN
    # hashlib releases the GIL: the rounds run in a thread while the loop answers others.
    return await asyncio.get_running_loop().run_in_executor(
        None, pin_hash, pin, bytes.fromhex(salt))
