"""One switch process: its ledger and listeners on a Redis, until a signal stops it."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import os
import signal
import sys
from pathlib import Path

import uvloop

from protocols.demo import NO_ANSWER_OUTCOME, TEST_CARD_LIMIT_FEN, TEST_CARDS
from protocols.iso_mac import KeyRing
from protocols.ledger_layout import card_key
from switch.admin.exporter import snapshot_of
from switch.admin.http import AdminServer, make_app
from switch.admin.policy_swap import PolicySource
from switch.admin.shared import all_workers, publish
from switch.cards import DEMO_EXPIRY, DemoCard
from switch.channels import CODECS
from switch.cli_common import RUN_DIR
from switch.clock import Clock, TestClock
from switch.cluster_pipeline import ClusterScriptPipeline
from switch.config import Config, parse_admin
from switch.engine import Engine
from switch.faults import FaultSet
from switch.forwarder import Forwarder
from switch.journal import Journal
from switch.ledger import NO_ANSWER, Ledger
from switch.policy import Policy
from switch.policy_file import PolicyError, load_policy
from switch.recorder import Recorder, RecorderBounds, channel_wires
from switch.redis_client import connect
from switch.server import Switch
from switch.standin import StandIn
from switch.terminal_keys import CachedKeys, TerminalKeyStore
from switch.tokens import TokenVault

log = logging.getLogger("switch.app")


def open_ledger(config: Config, redis_url: str, clock: Clock | None = None) -> Ledger:
    """A ledger whose Redis waits are bounded by the config's request deadline, its calls'
    fences the config's guard before it."""
    server_limits = config.server_limits
    deadline_ms = server_limits.request_deadline_ms
    return Ledger(connect(redis_url, deadline_ms), clock, request_deadline_ms=deadline_ms,
                  ledger_fence_guard_ms=server_limits.ledger_fence_guard_ms,
                  statement_day=config.cards.statement_day,
                  durable_replicas=server_limits.durable_replicas,
                  durable_wait_ms=server_limits.durable_wait_ms)


def journal_folder(config: Config) -> Path:
    """Where the store-and-forward journals live: the config's, else the run directory."""
    return Path(config.journal_dir) if config.journal_dir else RUN_DIR


async def build(config: Config, redis_url: str, clock: Clock | None = None,
                policy: Policy | None = None, journal_dir: Path | None = None
                ) -> tuple[Switch, Ledger]:
    """`policy`: else the config's policy file (else the shipped default); `clock`: tests.
    `journal_dir`: keep a store-and-forward journal there (stand-in answers, voids of
    requests answered 91); None: the config's `journal_dir` if it names one, else no journal
    (a failed ledger call is just answered 91)."""
    policy = policy or Policy(load_policy(config.policy))
    if journal_dir is None and config.journal_dir:
        journal_dir = Path(config.journal_dir)
    journal = None
    if journal_dir is not None:  # first: a journal held by another process stops us early
        journal = Journal.claim(journal_dir)
    test_clock = TestClock() if clock is None and config.test_clock else None
    ledger = open_ledger(config, redis_url, clock or test_clock)
    try:
        await ledger.start()
        if test_clock is not None:  # the ledger's close stops it too
            await test_clock.listen(ledger.client)
            ledger.pipelines.append(test_clock)
    except BaseException:
        if journal is not None:
            journal.close()
        raise
    # x-pay names the card by a wallet token: the vault turns it into the PAN first.
    vault = TokenVault(ledger.client, ledger.clock,
                       request_deadline_ms=config.server_limits.request_deadline_ms)
    await vault.start()
    ledger.pipelines.append(vault.scripts)
    # The fault rules in force, kept current by every worker (switch/faults.py).
    faults = FaultSet()
    await faults.listen(ledger.client)
    ledger.pipelines.append(faults)
    engine = Engine(ledger, policy, resolvers={"xpay": vault.resolve}, faults=faults)
    stand_in = forwarder = None
    if journal is not None:
        stand_in = StandIn(policy, journal, config.server_limits.request_deadline_ms,
                           clock=ledger.clock)
        forwarder = Forwarder(journal, ledger, policy)
    switch = Switch(config, engine, CODECS, stand_in, forwarder)
    # The ISO 8583 listeners find terminals' MAC keys in Redis, else in their config.
    store = TerminalKeyStore(ledger.client, clock)
    for listener in switch.listeners.values():
        ring = getattr(listener.codec, "keys", None)
        if isinstance(ring, KeyRing):
            listener.codec.keys = CachedKeys(store, ring.keys)
    return switch, ledger


async def load_cards(ledger: Ledger, cards: list[DemoCard]) -> list[bool]:
    """Create the cards that are absent; one that exists is left exactly as it is (its
    balances are money spent: loading the cards again must not give it back). Returns, per
    card, whether it was created."""
    async with ledger.client.pipeline(transaction=False) as pipe:
        for card in cards:
            pipe.exists(card_key(card.pan))
        present = await pipe.execute()
    for card, exists in zip(cards, present, strict=True):
        if not exists:
            await ledger.set_card(card.pan, limit_fen=card.limit_fen, expiry=card.expiry,
                                  status=card.status)
    return [not exists for exists in present]


async def force_test_cards(ledger: Ledger, pans: list[str] | None = None) -> None:
    """Create the test cards (protocols/demo.py; `pans`, else all) that are absent, and
    force each one's outcome on every request again, whatever a tester did to it since:
    the one mechanism every forced outcome uses (Ledger.force), no case of their own."""
    for pan, outcome, _ in TEST_CARDS:
        if pans is not None and pan not in pans:
            continue
        if not await ledger.client.exists(card_key(pan)):
            await ledger.set_card(pan, limit_fen=TEST_CARD_LIMIT_FEN, expiry=DEMO_EXPIRY)
        await ledger.force(pan, NO_ANSWER if outcome == NO_ANSWER_OUTCOME else outcome)


async def serve_one(config: Config, redis_url: str, on_ready, reuse_port: bool = False,
                    share: tuple[Path, int] | None = None) -> None:
    """One process's listeners, until SIGINT or SIGTERM; then a graceful shutdown.
    `share`: (folder, worker index) of a worker of `--workers N` (switch/admin/shared.py);
    the worker given an admin address serves the API with every worker's counts."""
    switch, ledger = await build(config, redis_url, journal_dir=journal_folder(config))
    if config.record.dir:
        switch.record_to(recorder_for(switch, config))
    await switch.start(reuse_port=reuse_port)
    # What start-up built lives as long as the process: keep it out of the collector's way
    # (a full collection under load pauses the answers; docs/performance.md).
    gc.collect()
    gc.freeze()
    policy = PolicySource(switch, config.policy)
    counts = functools.partial(snapshot_of, switch)
    admin = sharing = None
    if config.admin.listen:
        if share is not None:  # a reload over HTTP: the supervisor passes it to the others
            counts = all_workers(*share, counts)
            policy.announce = functools.partial(os.kill, os.getppid(), signal.SIGHUP)
        admin = await start_admin(config, switch, policy, counts)
    elif share is not None:
        sharing = asyncio.get_running_loop().create_task(publish(*share, counts))
    # Handlers before the banner: a SIGTERM right after it must stop the switch (and its
    # private Redis) gracefully, not end the process where it stands.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, reload_policy, policy)
    on_ready(switch.ports | ({"admin": admin.port} if admin else {}))
    await stop.wait()
    if admin is not None:
        await admin.stop()
    if sharing is not None:
        sharing.cancel()
    await switch.shutdown()
    await ledger.aclose()
    print(counters_line(switch, ledger), flush=True)


def recorder_for(switch: Switch, config: Config) -> Recorder:
    """This process's recording series, in the config's [record] folder and bounds."""
    record = config.record
    bounds = RecorderBounds(file_max_bytes=record.file_max_mb * 2**20,
                            total_max_bytes=record.max_mb * 2**20)
    dialects = {"pos": config.pos.dialect, "xpay": config.xpay.dialect}
    return Recorder(Path(record.dir), channel_wires(switch.listeners, dialects), bounds)


async def start_admin(config: Config, switch: Switch, policy: PolicySource, counts=None
                      ) -> AdminServer:
    """The admin API and dashboard (switch/admin/), beside the listeners; `counts()`: what
    /metrics shows (default: this process's)."""
    counts = counts or functools.partial(snapshot_of, switch)
    admin = AdminServer(make_app(switch.engine.ledger, policy, config.admin.token, counts))
    await admin.start(*parse_admin(config.admin.listen))
    return admin


def reload_policy(policy: PolicySource) -> None:
    """SIGHUP: the policy file again; a bad one is refused and the old one stays."""
    try:
        policy.reload()
    except PolicyError as error:
        log.error("policy reload refused, the policy in force stays: %s", error)
        return
    log.warning("policy reloaded from %s (SIGHUP)", policy.origin)


def counters_line(switch: Switch, ledger: Ledger) -> str:
    """The process's own counters, printed when it stops (the bench reads them)."""
    calls, trips = ledger.scripts.calls, ledger.scripts.round_trips
    per_call = f"{trips / calls:.3f}" if calls else "-"
    fields = switch.counters.as_dict() | {"redis_calls": calls, "redis_round_trips": trips}
    if switch.recorder is not None:
        fields |= switch.recorder.counters()
    if isinstance(ledger.scripts, ClusterScriptPipeline):  # docs/cluster.md
        fields["redis_redirects"] = ledger.scripts.redirects
        if ledger.scripts.durable_replicas:  # calls voided and answered 91: replicas behind
            fields["redis_unreplicated"] = ledger.scripts.unreplicated
    if switch.stand_in is not None:
        journal = switch.stand_in.journal
        fields |= switch.stand_in.counters | {
            "journal_fsyncs": journal.fsyncs,
            "journal_fsync_mean_ms": round(journal.fsync_ns / max(journal.fsyncs, 1) / 1e6, 3)}
    return "counters: " + " ".join(f"{k}={v}" for k, v in fields.items()) + (
        f" round_trips_per_call={per_call}")


def run(coro):
    """asyncio.run on uvloop: the coroutine's result, None when Ctrl-C stopped it."""
    with contextlib.suppress(KeyboardInterrupt):
        if sys.version_info >= (3, 12):
            return uvloop.run(coro)
        uvloop.install()
        return asyncio.run(coro)
    return None
