"""Terminals' MAC keys: the store in Redis (`switch terminal`), and the listeners' cache.

A key belongs to an acquirer (F32) and a terminal (F41); terminal "*" is the acquirer's own
key, used for its terminals that have none (an acquirer host signing for them). The layout
is protocols/ledger_layout.py's `{k:ACQ}:TERM`. A listener's config may name terminals too
([[pos.terminals]]: the demo ones by default); a key in Redis takes their place.

The listeners look keys up on every request, so they are cached in the process
(`terminal_keys_cached_max` entries). A cached entry is at most `terminal_key_cache_ttl_s`
old; a MAC that fails under it is checked once more against Redis when the entry is older
than `terminal_key_recheck_min_ms`, so a key rotated a moment ago is taken at once, and a
flood of bad MACs costs Redis at most one read per terminal per that interval. A rotation's
previous key is accepted until its grace period ends, judged at each request.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Mapping

import redis.asyncio as aioredis
from redis.exceptions import RedisError, WatchError

from protocols.iso_channel import institution
from protocols.iso_mac import KEY_SIZES, MacAlgorithm, MacKey
from protocols.iso_session import SessionChange, master_only
from protocols.ledger_layout import TerminalKeyRecord, session_key, terminal_key
from switch import limits
from switch.clock import Clock, SystemClock
from switch.terminal_sessions import SessionOutcome, change_session, session_mac_key

ACQUIRER_WIDE = "*"  # the terminal id of an acquirer's own key


def scope(acquirer: str, terminal: str) -> tuple[str, str]:
    """How F32 and F41 name a terminal: the acquirer without leading zeros, F41 unpadded."""
    if not acquirer.isdigit() or len(acquirer) > 11:
        raise ValueError(f"acquirer {acquirer!r}: F32 is 1-11 digits, e.g. 00010000")
    terminal = terminal.rstrip()
    if terminal != ACQUIRER_WIDE and not (
            0 < len(terminal) <= 8 and terminal.isascii() and terminal.isprintable()):
        raise ValueError(f"terminal {terminal!r}: F41 is 1-8 printable characters, or * for "
                         "the acquirer's own key")
    return institution(acquirer), terminal


def usable(record: TerminalKeyRecord, now_ms: int) -> tuple[MacKey, ...]:
    """The keys a MAC may be made with at `now_ms`: the current one, and the previous one
    while its grace period lasts."""
    current = MacKey.parse(record.algorithm, record.key)
    if record.previous_key and now_ms < record.previous_until_ms:
        return current, MacKey.parse(record.previous_algorithm, record.previous_key)
    return (current,)


def signing_keys(masters: tuple[MacKey, ...], session: Mapping[str, str],
                 must_sign_on: bool = False) -> tuple[MacKey, ...]:
    """The keys a terminal's MACs may be made with, given its master key(s) (from its
    record or the config): with a session, its MAK first and the master key(s) for network
    management only; without, the master key(s), for network management only when the
    terminal must sign on (protocols/iso_session.py)."""
    mak = session_mac_key(session)
    if mak is not None:
        return (mak, *map(master_only, masters))
    return tuple(map(master_only, masters)) if must_sign_on else masters


def in_grace(keys: tuple[MacKey, ...], previous_until_ms: int, now_ms: int
             ) -> tuple[MacKey, ...]:
    """`keys` without the last (the previous master key) once its grace period is over;
    `previous_until_ms` 0: they hold no previous key."""
    return keys if not previous_until_ms or now_ms < previous_until_ms else keys[:-1]


def new_key(algorithm: str) -> MacKey:
    """A fresh random key of the algorithm's usual size."""
    known = MacAlgorithm(algorithm)
    return MacKey(known, secrets.token_bytes(KEY_SIZES[known].start))


class TerminalKeyStore:
    """The keys in Redis: add, show, rotate (the CLI) and read (the listeners' caches)."""

    def __init__(self, client: aioredis.Redis, clock: Clock | None = None) -> None:
        self.client = client
        self.clock = clock or SystemClock()

    async def read(self, acquirer: str, terminal: str) -> TerminalKeyRecord | None:
        """The terminal's own record, else its acquirer's; None when neither has a key."""
        return (await self.read_with_session(acquirer, terminal))[0]

    async def read_with_session(self, acquirer: str, terminal: str
                                ) -> tuple[TerminalKeyRecord | None, dict[str, str]]:
        """`read`, and the terminal's session ({} when it has none), in one round trip."""
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.hgetall(terminal_key(acquirer, terminal))
            pipe.hgetall(terminal_key(acquirer, ACQUIRER_WIDE))
            pipe.hgetall(session_key(acquirer, terminal))
            own, wide, session = await pipe.execute()
        fields = own or wide
        return (TerminalKeyRecord.from_fields(fields) if fields else None), session

    async def session(self, acquirer: str, terminal: str) -> dict[str, str]:
        """The terminal's session ({} when it is not signed on): `switch terminal show`."""
        return await self.client.hgetall(session_key(*scope(acquirer, terminal)))

    async def show(self, acquirer: str, terminal: str) -> TerminalKeyRecord | None:
        fields = await self.client.hgetall(terminal_key(*scope(acquirer, terminal)))
        return TerminalKeyRecord.from_fields(fields) if fields else None

    async def add(self, acquirer: str, terminal: str, key: MacKey, sign_on: bool = False
                  ) -> TerminalKeyRecord:
        """A terminal's first key; ValueError when it has one (rotate it instead).
        `sign_on`: the terminal must sign on before it sends money."""
        name = terminal_key(*scope(acquirer, terminal))
        record = TerminalKeyRecord(algorithm=key.algorithm, key=key.key.hex().upper(),
                                   created_ms=self.clock.now_ms(), sign_on=int(sign_on))
        if not await self.client.hsetnx(name, "key", record.key):
            raise ValueError(f"terminal {terminal} of acquirer {acquirer} has a key: "
                             "`switch terminal rotate` gives it a new one")
        await self.client.hset(name, mapping=record.fields())
        return record

    async def rotate(self, acquirer: str, terminal: str, key: MacKey,
                     grace_s: float = limits.terminal_key_rotation_grace_s
                     ) -> TerminalKeyRecord:
        """A new key; the current one stays accepted for `grace_s`. ValueError for a terminal
        with no key. Two rotations at once: one wins, the other tries again on its result."""
        if not 0 <= grace_s <= limits.terminal_key_rotation_grace_s:
            raise ValueError(f"the grace period is 0-{limits.terminal_key_rotation_grace_s:g} s")
        name = terminal_key(*scope(acquirer, terminal))
        async with self.client.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(name)
                    fields = await pipe.hgetall(name)
                    if not fields:
                        raise ValueError(f"terminal {terminal} of acquirer {acquirer} has no "
                                         "key: `switch terminal add` gives it one")
                    old = TerminalKeyRecord.from_fields(fields)
                    now_ms = self.clock.now_ms()
                    record = TerminalKeyRecord(
                        algorithm=key.algorithm, key=key.key.hex().upper(),
                        created_ms=old.created_ms, rotated_ms=now_ms,
                        previous_algorithm=old.algorithm, previous_key=old.key,
                        previous_until_ms=now_ms + int(grace_s * 1000),
                        sign_on=old.sign_on)
                    pipe.multi()
                    pipe.hset(name, mapping=record.fields())
                    await pipe.execute()
                    return record
                except WatchError:
                    continue


class CachedKeys:
    """One listener's view of the keys (protocols/iso_mac.py KeyLookup): the store's,
    cached, else the config's fixed ones."""

    def __init__(self, store: TerminalKeyStore,
                 configured: Mapping[tuple[str, str], MacKey] | None = None) -> None:
        self.store = store
        self.clock = store.clock
        self.configured = dict(configured or {})
        # (acquirer, terminal) -> (fetched at ms, its keys, the previous one's last ms, 0 for
        # none): the keys with the previous one last, dropped once its grace period is over.
        self._cache: dict[tuple[str, str], tuple[int, tuple[MacKey, ...], int]] = {}
        # Reads under way: the connections that need the same terminal's keys share one.
        self._reading: dict[tuple[str, str], asyncio.Future[tuple[MacKey, ...]]] = {}

    def keys_for(self, acquirer: str, terminal: str) -> tuple[MacKey, ...] | None:
        entry = self._cache.get((acquirer, terminal))
        if entry is None:
            return None
        fetched_ms, keys, previous_until_ms = entry
        now_ms = self.clock.now_ms()
        if now_ms - fetched_ms >= limits.terminal_key_cache_ttl_s * 1000:
            return None
        return in_grace(keys, previous_until_ms, now_ms)

    def doubt(self, acquirer: str, terminal: str) -> bool:
        entry = self._cache.get((acquirer, terminal))
        if entry is None or self.clock.now_ms() - entry[0] < limits.terminal_key_recheck_min_ms:
            return False
        del self._cache[(acquirer, terminal)]
        return True

    def change_session(self, change: SessionChange) -> asyncio.Future[SessionOutcome]:
        """A sign-on, key change or sign-off (protocols/iso_session.py) made in Redis; this
        process's cached keys of the terminal are dropped (other workers' lapse within
        `terminal_key_cache_ttl_s`, or at once on a MAC that fails under them)."""
        return asyncio.ensure_future(self._change_session(change))

    async def _change_session(self, change: SessionChange) -> SessionOutcome:
        name = (change.acquirer, change.terminal)
        record = await self.store.read(*name)
        if record is not None:
            master = usable(record, 0)[0]
        else:
            configured = self._configured(*name)
            master = configured[0] if configured else None
        outcome = await change_session(self.store.client, change, master, self.clock)
        self._cache.pop(name, None)
        return outcome

    def fetch(self, acquirer: str, terminal: str) -> asyncio.Future[tuple[MacKey, ...]]:
        """The keys from Redis (cached from now on), or what Redis raised; one read at a time
        per terminal (their number is bounded by the connections waiting for them)."""
        name = (acquirer, terminal)
        reading = self._reading.get(name)
        if reading is None:
            reading = self._reading[name] = asyncio.ensure_future(self._read(acquirer, terminal))
            reading.add_done_callback(lambda _: self._reading.pop(name, None))
        return reading

    async def _read(self, acquirer: str, terminal: str) -> tuple[MacKey, ...]:
        try:
            record, session = await self.store.read_with_session(acquirer, terminal)
        except (RedisError, OSError, TimeoutError):
            # Redis unreachable (stand-in time): the keys last read, else the config's, for
            # the cache's lifetime (not a read per request while Redis is away).
            known = self._last_known(acquirer, terminal)
            if known is None:
                raise
            keys, until_ms = known
        else:
            if record is not None:
                masters = usable(record, self.clock.now_ms())
                keys = signing_keys(masters, session, bool(record.sign_on))
                until_ms = record.previous_until_ms if len(masters) > 1 else 0
            else:
                keys, until_ms = self._configured(acquirer, terminal), 0
                if keys:
                    keys = signing_keys(keys, session)
        now_ms, name = self.clock.now_ms(), (acquirer, terminal)
        if name not in self._cache and len(self._cache) >= limits.terminal_keys_cached_max:
            del self._cache[next(iter(self._cache))]  # the oldest entry
        self._cache[name] = (now_ms, keys, until_ms)
        return in_grace(keys, until_ms, now_ms)

    def _configured(self, acquirer: str, terminal: str) -> tuple[MacKey, ...]:
        key = (self.configured.get((acquirer, terminal))
               or self.configured.get((acquirer, ACQUIRER_WIDE)))
        return () if key is None else (key,)

    def _last_known(self, acquirer: str, terminal: str
                    ) -> tuple[tuple[MacKey, ...], int] | None:
        """(keys, the previous key's last ms): the cached ones however old, else the
        config's; None when neither has one."""
        entry = self._cache.get((acquirer, terminal))
        if entry is not None:
            return entry[1], entry[2]
        configured = self._configured(acquirer, terminal)
        return (configured, 0) if configured else None
