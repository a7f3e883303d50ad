"""Terminals' MAC keys over real TCP: a real switch, the real Redis key store, requests built
and signed by pyiso8583 and the MAC's definition (tests/test_pos_support.py).

Each test names terminals of its own (the Redis is shared by the session), and time is an
injectable clock: rotation's grace period and the cache's bounds are crossed by advancing
it, never by sleeping.
"""

from __future__ import annotations

import contextlib
import itertools
import secrets

import pytest

from protocols.iso_mac import MacAlgorithm, MacKey
from protocols.ledger_layout import TerminalKeyRecord
from switch import limits
from switch.app import build
from switch.config import Config
from switch.redis_runner import PrivateRedis
from switch.terminal_keys import CachedKeys, TerminalKeyStore, usable
from tests.support import FakeClock, make_card
from tests.test_pos_support import (
    ACQUIRER,
    DEMO_KEY,
    Wire,
    decode,
    encode,
    f90,
    financial,
    iso_config,
    mac_ok,
)

_terminals = itertools.count(1)


def new_terminal() -> str:
    return f"K{secrets.token_hex(2).upper()}{next(_terminals) % 1000:03d}"


def key_of(mac_key: MacKey):
    return (str(mac_key.algorithm), mac_key.key)


@contextlib.asynccontextmanager
async def serving(redis_url: str, config: Config | None = None):
    """A switch with pos and xpay on an injectable clock, its key store, a connection."""
    clock = FakeClock()
    switch, ledger = await build(config or iso_config(), redis_url, clock)
    await switch.start()
    wire = await Wire.connect(switch.ports["pos"])
    try:
        yield switch, ledger, TerminalKeyStore(ledger.client, clock), clock, wire
    finally:
        await wire.close()
        await switch.shutdown()
        await ledger.aclose()


async def keyed_terminal(store: TerminalKeyStore, ledger, key: MacKey) -> tuple[str, str]:
    """A new terminal with `key` in Redis, and a new card: (terminal, card number)."""
    terminal = new_terminal()
    await store.add(ACQUIRER, terminal, key)
    return terminal, await make_card(ledger, limit_fen=100_000)


async def exchange(wire: Wire, doc: dict, key) -> tuple[dict, bytes]:
    body = await wire.exchange(encode(doc, "iso87ascii", key))
    return decode(body), body


async def test_a_terminal_s_own_key_and_no_other(redis_url):
    async with serving(redis_url) as (_, ledger, store, clock, wire):
        mine, theirs = new_terminal(), new_terminal()
        my_key = MacKey(MacAlgorithm.SM4, secrets.token_bytes(16))
        their_key = MacKey(MacAlgorithm.X9_19, secrets.token_bytes(16))
        await store.add(ACQUIRER, mine, my_key)
        await store.add(ACQUIRER, theirs, their_key)
        pan = await make_card(ledger, limit_fen=100_000)

        answer, body = await exchange(wire, financial("0200", pan, "000000", 1_000,
                                                      terminal=mine), key_of(my_key))
        assert answer["39"] == "00" and mac_ok(body, answer, key_of(my_key))
        # Another terminal's key, naming this terminal: refused, and nothing changes.
        answer, body = await exchange(wire, financial("0200", pan, "000000", 2_000,
                                                      terminal=mine), key_of(their_key))
        assert (answer["39"], answer["44"]) == ("A0", "mac_mismatch")
        assert "64" not in answer
        # A terminal no key names: 58, and nothing changes.
        newcomer = new_terminal()
        answer, _ = await exchange(wire, financial("0200", pan, "000000", 3_000,
                                                   terminal=newcomer), key_of(my_key))
        assert (answer["39"], answer["44"]) == ("58", "terminal_unknown")
        view = await ledger.card(pan)
        assert (view.posted, len(view.transactions)) == (1_000, 1)
        # Given a key, it is taken without waiting for the cache to forget the terminal.
        await store.add(ACQUIRER, newcomer, my_key)
        clock.advance(limits.terminal_key_recheck_min_ms / 1000)
        answer, _ = await exchange(wire, financial("0200", pan, "000000", 3_000,
                                                   terminal=newcomer), key_of(my_key))
        assert answer["39"] == "00"


async def test_a_flipped_bit_in_the_amount_is_refused_and_changes_nothing(redis_url):
    async with serving(redis_url) as (_, ledger, _, _, wire):
        pan = await make_card(ledger, limit_fen=100_000)
        body = bytearray(encode(financial("0200", pan, "000000", 1_000)))
        at = body.index(b"000000001000")  # F4, the only 12-digit run of this amount
        body[at + 8] ^= 0x01  # '1' -> '0': 1,000 fen -> 0 fen... a digit still
        assert bytes(body[at:at + 12]) == b"000000000000"
        body[at + 7] ^= 0x01  # '0' -> '1': 10,000 fen
        answer = decode(await wire.exchange(bytes(body)))
        assert (answer["39"], answer["44"], answer["4"]) == ("A0", "mac_mismatch",
                                                              "000000010000")
        view = await ledger.card(pan)
        assert (view.posted, view.held, len(view.transactions)) == (0, 0, 0)


async def test_rotation_keeps_the_previous_key_for_the_grace_period(redis_url):
    async with serving(redis_url) as (_, ledger, store, clock, wire):
        old = MacKey(MacAlgorithm.X9_19, secrets.token_bytes(16))
        new = MacKey(MacAlgorithm.X9_19, secrets.token_bytes(16))
        terminal, pan = await keyed_terminal(store, ledger, old)

        def sale(amount: int) -> dict:
            return financial("0200", pan, "000000", amount, terminal=terminal)

        assert (await exchange(wire, sale(100), key_of(old)))[0]["39"] == "00"  # now cached
        await store.rotate(ACQUIRER, terminal, new, grace_s=60)
        clock.advance(limits.terminal_key_recheck_min_ms / 1000)
        # The new key at once (a MAC failing under the cached key is checked afresh) ...
        answer, body = await exchange(wire, sale(200), key_of(new))
        assert answer["39"] == "00" and mac_ok(body, answer, key_of(new))
        # ... the old one for the grace period, its answers signed with it ...
        clock.advance(59)
        answer, body = await exchange(wire, sale(300), key_of(old))
        assert answer["39"] == "00" and mac_ok(body, answer, key_of(old))
        # ... and not a millisecond after.
        clock.advance(1)
        answer, _ = await exchange(wire, sale(400), key_of(old))
        assert (answer["39"], answer["44"]) == ("A0", "mac_mismatch")
        assert (await exchange(wire, sale(500), key_of(new)))[0]["39"] == "00"
        assert (await ledger.card(pan)).posted == 100 + 200 + 300 + 500
        record = await store.show(ACQUIRER, terminal)
        assert record.previous_until_ms == record.rotated_ms + 60_000


async def test_a_key_changed_in_redis_is_taken_within_the_cache_s_lifetime(redis_url):
    async with serving(redis_url) as (_, ledger, store, clock, wire):
        first = MacKey(MacAlgorithm.HMAC_SHA256, secrets.token_bytes(32))
        second = MacKey(MacAlgorithm.SM4, secrets.token_bytes(16))
        terminal, pan = await keyed_terminal(store, ledger, first)
        sale = financial("0200", pan, "000000", 100, terminal=terminal)
        assert (await exchange(wire, sale, first.key))[0]["39"] == "00"
        await store.rotate(ACQUIRER, terminal, second, grace_s=0)  # no grace: first is out
        # Cached a moment ago, the first key is still taken (the staleness the docs name) ...
        again = financial("0200", pan, "000000", 100, terminal=terminal)
        assert (await exchange(wire, again, first.key))[0]["39"] == "00"
        # ... until the entry's lifetime is over.
        clock.advance(limits.terminal_key_cache_ttl_s)
        late = financial("0200", pan, "000000", 100, terminal=terminal)
        assert (await exchange(wire, late, first.key))[0]["39"] == "A0"


async def test_a_key_in_redis_takes_the_config_s_place(redis_url):
    config = iso_config()
    terminal = new_terminal()
    configured = MacKey(MacAlgorithm.X9_19, secrets.token_bytes(16))
    config.pos.terminals = [*config.pos.terminals, type(config.pos.terminals[0])(
        acquirer=ACQUIRER, terminal=terminal, algorithm="x9.19", key=configured.key.hex())]
    async with serving(redis_url, config) as (_, ledger, store, clock, wire):
        pan = await make_card(ledger, limit_fen=100_000)
        sale = financial("0200", pan, "000000", 100, terminal=terminal)
        assert (await exchange(wire, sale, key_of(configured)))[0]["39"] == "00"
        stored = MacKey(MacAlgorithm.X9_19, secrets.token_bytes(16))
        await store.add(ACQUIRER, terminal, stored)
        clock.advance(limits.terminal_key_recheck_min_ms / 1000)
        sale = financial("0200", pan, "000000", 100, terminal=terminal)
        assert (await exchange(wire, sale, key_of(stored)))[0]["39"] == "00"
        sale = financial("0200", pan, "000000", 100, terminal=terminal)
        assert (await exchange(wire, sale, key_of(configured)))[0]["39"] == "A0"


async def test_mac_off_takes_unsigned_messages_and_answers_unsigned(redis_url):
    async with serving(redis_url, iso_config(mac="off")) as (_, ledger, _, _, wire):
        pan = await make_card(ledger, limit_fen=100_000)
        answer, _ = await exchange(wire, financial("0200", pan, "000000", 700), None)
        assert answer["39"] == "00" and "64" not in answer
        assert (await ledger.card(pan)).posted == 700


async def test_a_reversal_is_signed_too(redis_url):
    async with serving(redis_url) as (_, ledger, _, _, wire):
        pan = await make_card(ledger, limit_fen=100_000)
        sale = financial("0200", pan, "000000", 700)
        assert (await exchange(wire, sale, None))[0]["39"] == "A0"  # unsigned money: no
        assert (await exchange(wire, sale, DEMO_KEY))[0]["39"] == "00"
        reversal = financial("0400", pan, "000000", 700, original=f90(sale))
        answer, _ = await exchange(wire, reversal, (MacAlgorithm.X9_19, bytes(16)))
        assert answer["39"] == "A0" and (await ledger.card(pan)).posted == 700
        answer, body = await exchange(wire, reversal, DEMO_KEY)
        assert answer["39"] == "00" and "128" in answer and mac_ok(body, answer)
        assert (await ledger.card(pan)).posted == 0


@pytest.mark.parametrize("grace_s", [-1, limits.terminal_key_rotation_grace_s + 1])
async def test_rotation_s_grace_is_bounded(redis_url, grace_s):
    async with serving(redis_url) as (_, _, store, _, _):
        terminal = new_terminal()
        await store.add(ACQUIRER, terminal, MacKey(MacAlgorithm.SM4, bytes(16)))
        with pytest.raises(ValueError, match="grace period"):
            await store.rotate(ACQUIRER, terminal, MacKey(MacAlgorithm.SM4, bytes(16)),
                               grace_s=grace_s)
        await store.rotate(ACQUIRER, terminal, MacKey(MacAlgorithm.SM4, bytes(16)),
                           grace_s=min(max(grace_s, 0), limits.terminal_key_rotation_grace_s))


async def test_a_connection_s_requests_start_in_order_while_keys_are_fetched(redis_url):
    """The first request waits for its terminal's keys; the next one, from a terminal whose
    keys are cached, must not overtake it: here only one of the two fits the card's limit."""
    async with serving(redis_url) as (_, ledger, store, _, wire):
        terminal = new_terminal()
        key = MacKey(MacAlgorithm.SM4, secrets.token_bytes(16))
        await store.add(ACQUIRER, terminal, key)
        pan = await make_card(ledger, limit_fen=100)
        # An inquiry (of the card, which it proves): the demo key is cached.
        warm = financial("0200", pan, "310000", None, track2=True)
        assert (await exchange(wire, warm, DEMO_KEY))[0]["39"] == "00"
        first = encode(financial("0200", pan, "000000", 100, terminal=terminal), "iso87ascii",
                       key_of(key))
        second = encode(financial("0200", pan, "000000", 100), "iso87ascii", DEMO_KEY)
        wire.writer.write(wire.framer.frame(first) + wire.framer.frame(second))
        answers = {a["41"]: a["39"] for a in [decode(await wire.next_answer()),
                                               decode(await wire.next_answer())]}
        assert answers == {terminal: "00", "TERM0001": "51"}


async def test_with_redis_away_the_keys_last_read_or_the_config_s_still_check_macs(
        tmp_path, caplog):
    redis = PrivateRedis(tmp_path)
    url = redis.start()
    stopped = False
    try:
        async with serving(url) as (_, ledger, store, clock, wire):
            terminal = new_terminal()
            key = MacKey(MacAlgorithm.SM4, secrets.token_bytes(16))
            await store.add(ACQUIRER, terminal, key)
            pan = await make_card(ledger, limit_fen=100_000)
            sale = financial("0200", pan, "000000", 100, terminal=terminal)
            assert (await exchange(wire, sale, key_of(key)))[0]["39"] == "00"  # cached
            clock.advance(limits.terminal_key_cache_ttl_s)  # and stale
            redis.stop()
            stopped = True
            for on, right in ((terminal, key_of(key)), ("TERM0001", DEMO_KEY)):
                # The MAC is still checked, with the keys last read or the config's: a wrong
                # one is A0; a right one reaches the ledger, which is away too (91).
                doc = financial("0200", pan, "000000", 100, terminal=on)
                wrong, _ = await exchange(wire, doc, (MacAlgorithm.SM4, bytes(16)))
                assert (wrong["39"], wrong["44"]) == ("A0", "mac_mismatch"), on
                doc = financial("0200", pan, "000000", 100, terminal=on)
                answer, _ = await exchange(wire, doc, right)
                assert answer["39"] == "91", on
            assert "cannot read terminal keys" not in caplog.text
            # A terminal neither read before nor configured: its keys are unknown, 91.
            doc = financial("0200", pan, "000000", 100, terminal=new_terminal())
            answer, _ = await exchange(wire, doc, key_of(key))
            assert (answer["39"], answer["44"]) == ("91", "issuer_unavailable")
            assert "cannot read terminal keys" in caplog.text
    finally:
        if not stopped:
            redis.stop()


# ---- the cache's bounds, by themselves ---------------------------------------------------


async def test_the_cache_rechecks_a_failing_key_at_most_once_per_interval(redis_url, ledger):
    clock = FakeClock()
    cache = CachedKeys(TerminalKeyStore(ledger.client, clock))
    terminal = new_terminal()
    assert cache.keys_for("10000", terminal) is None and not cache.doubt("10000", terminal)
    assert await cache.fetch("10000", terminal) == ()
    assert cache.keys_for("10000", terminal) == ()
    clock.advance(limits.terminal_key_recheck_min_ms / 1000 - 0.001)
    assert not cache.doubt("10000", terminal)  # fetched a moment ago: A0 without a read
    clock.advance(0.001)
    assert cache.doubt("10000", terminal) and cache.keys_for("10000", terminal) is None
    await cache.fetch("10000", terminal)
    clock.advance(limits.terminal_key_cache_ttl_s - 0.001)
    assert cache.keys_for("10000", terminal) == ()
    clock.advance(0.001)
    assert cache.keys_for("10000", terminal) is None


async def test_the_cache_holds_at_most_its_bound(redis_url, ledger, monkeypatch):
    monkeypatch.setattr(limits, "terminal_keys_cached_max", 2)
    cache = CachedKeys(TerminalKeyStore(ledger.client, FakeClock()))
    terminals = [new_terminal() for _ in range(3)]
    for terminal in terminals:
        await cache.fetch("10000", terminal)
    assert cache.keys_for("10000", terminals[0]) is None  # the oldest went
    assert all(cache.keys_for("10000", t) == () for t in terminals[1:])
    await cache.fetch("10000", terminals[2])  # read again: it replaces its own entry
    assert all(cache.keys_for("10000", t) == () for t in terminals[1:])


def test_the_previous_key_is_usable_until_its_last_millisecond():
    record = TerminalKeyRecord(algorithm="sm4", key="00" * 16, created_ms=1, rotated_ms=5,
                               previous_algorithm="x9.19", previous_key="11" * 16,
                               previous_until_ms=1_000)
    assert [k.algorithm for k in usable(record, 999)] == ["sm4", "x9.19"]
    assert [k.algorithm for k in usable(record, 1_000)] == ["sm4"]


async def test_only_the_original_s_acquirer_and_terminal_reverse_complete_or_refund(redis_url):
    async with serving(redis_url) as (_, ledger, store, _, wire):
        pan = await make_card(ledger, limit_fen=100_000)
        sale = financial("0200", pan, "000000", 5_000)  # the demo terminal's
        assert (await exchange(wire, sale, DEMO_KEY))[0]["39"] == "00"
        other_acquirer = f"{secrets.randbelow(10**7) + 20_000_000:08d}"
        host_key = MacKey(MacAlgorithm.X9_19, secrets.token_bytes(16))
        await store.add(other_acquirer, "*", host_key)  # signs for any terminal of its own
        other_terminal = MacKey(MacAlgorithm.SM4, secrets.token_bytes(16))
        terminal = new_terminal()
        await store.add(ACQUIRER, terminal, other_terminal)

        def undo(mti: str, processing: str, amount: int, acquirer: str = ACQUIRER,
                 on: str = "TERM0001", named_acquirer: str = ACQUIRER) -> dict:
            doc = financial(mti, pan, processing, amount, terminal=on,
                            original=f90(sale)[:20] + f"{named_acquirer:0>11}" + "0" * 11)
            return doc | {"32": acquirer}

        for mti, processing in (("0400", "000000"), ("0220", "000000"), ("0200", "200000")):
            # Another acquirer naming the sale in F90 (its MAC right, for its own F32): 25.
            answer, _ = await exchange(wire, undo(mti, processing, 5_000, other_acquirer),
                                       key_of(host_key))
            assert (answer["39"], answer["44"]) == ("25", "original_acquirer_differs")
            # ... or naming itself: it has no such transaction.
            answer, _ = await exchange(wire, undo(mti, processing, 5_000, other_acquirer,
                                                  named_acquirer=other_acquirer),
                                       key_of(host_key))
            assert (answer["39"], answer["44"]) == ("25", "original_not_found")
            # The sale's acquirer, from another of its terminals: not that terminal's sale.
            answer, _ = await exchange(wire, undo(mti, processing, 5_000, on=terminal),
                                       key_of(other_terminal))
            assert (answer["39"], answer["44"]) == ("25", "original_not_found")
        view = await ledger.card(pan)
        assert (view.posted, view.pending_credit, len(view.transactions)) == (5_000, 0, 1)
        answer, _ = await exchange(wire, undo("0400", "000000", 5_000), DEMO_KEY)
        assert answer["39"] == "00" and (await ledger.card(pan)).posted == 0
