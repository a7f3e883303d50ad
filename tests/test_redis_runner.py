"""The private Redis: durable (AOF, its folder claimed) or throw-away, each a real
redis-server; what the switch says of a Redis the user points it at; the demo cards kept.

Nothing here touches a Redis these tests did not start.
"""

from __future__ import annotations

import os
import random
import signal
import time

import pytest
import redis

from protocols.messages import AuthRequest, MessageClass
from switch import launch, limits
from switch.app import load_cards
from switch.cards import DemoCard
from switch.cli_common import UserError
from switch.ledger import Ledger
from switch.redis_client import connect
from switch.redis_runner import (
    APPENDFSYNC_POLICIES,
    DataFolderInUse,
    PrivateRedis,
    _try_lock,
    persistence,
    reachable,
)
from tests.support import make_card, new_pan
from tests.test_policy_support import new_ref

SALES = 300  # approvals made before the kill: enough to span more than one AOF write


def config_of(url: str, name: str) -> str:
    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        return client.config_get(name)[name]
    finally:
        client.close()


@pytest.fixture
def private(tmp_path):
    started: list[PrivateRedis] = []

    def start(folder: str = "redis", **options) -> PrivateRedis:
        server = PrivateRedis(tmp_path / folder, **options)
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def sale(pan: str, amount_fen: int) -> AuthRequest:
    return AuthRequest(message_class=MessageClass.SALE, channel="jd", card=pan,
                       amount_fen=amount_fen, mcc="5411", txn_ref=new_ref("D"),
                       idempotency_key=new_ref("K"))


async def approve_many(url: str, pan_limit_fen: int) -> tuple[str, list[tuple[str, int]]]:
    """A card and SALES approved sales of random amounts on it: (pan, [(ref, fen)])."""
    ledger = Ledger(connect(url))
    await ledger.start()
    try:
        pan = await make_card(ledger, limit_fen=pan_limit_fen)
        rng = random.Random(7)
        approved = []
        for _ in range(SALES):
            request = sale(pan, rng.randrange(1, 5_000))
            answer = await ledger.execute(request, auth_id="A00001")
            assert answer.response_code == "00"
            approved.append((request.txn_ref, answer.approved_fen))
        return pan, approved
    finally:
        await ledger.aclose()


async def books_of(url: str, pan: str) -> tuple[int, set[str]]:
    """(posted, refs of the card's transaction records)."""
    client = redis.asyncio.Redis.from_url(url, decode_responses=True)
    try:
        key = f"{{c:{pan}}}"
        posted = int(await client.hget(key, "posted"))
        refs = {k.split(":t:", 1)[1] for k in await client.zrange(f"{key}:tx", 0, -1)
                if await client.hget(k, "state") == "captured"}
        return posted, refs
    finally:
        await client.aclose()


# --- durable and throw-away ------------------------------------------------------------------

def test_the_tests_redis_is_throw_away_by_default(private):
    server = private()
    assert (config_of(server.url, "appendonly"), config_of(server.url, "save")) == ("no", "")
    client = redis.Redis.from_url(server.url)
    client.set("k", "v")
    client.close()
    server.stop()
    server.start()
    assert redis.Redis.from_url(server.url).get("k") is None


@pytest.mark.parametrize("appendfsync", APPENDFSYNC_POLICIES)
def test_a_durable_redis_runs_with_aof_and_its_fsync_policy(private, appendfsync):
    server = private(durable=True, appendfsync=appendfsync)
    assert config_of(server.url, "appendonly") == "yes"
    assert config_of(server.url, "appendfsync") == appendfsync


def test_an_unknown_fsync_policy_is_refused(tmp_path):
    with pytest.raises(ValueError, match="appendfsync must be one of always, everysec"):
        PrivateRedis(tmp_path, durable=True, appendfsync="no")


async def test_kill_9_of_redis_with_appendfsync_always_loses_no_approved_fen(private):
    """Every approval answered before a SIGKILL of Redis is in its books after the restart:
    with `always`, the AOF is written (and fsync'd) before Redis answers, and the page cache
    survives the process anyway."""
    server = private(durable=True, appendfsync="always")
    pan, approved = await approve_many(server.url, 10_000_000)
    server.process.kill()
    server.process.wait()
    assert not reachable(server.url)
    server.start()  # the same folder, a new port
    posted, refs = await books_of(server.url, pan)
    assert posted == sum(fen for _, fen in approved)
    assert refs == {ref for ref, _ in approved}


async def test_kill_9_of_redis_with_everysec_loses_at_most_a_tail_of_whole_calls(private):
    """With `everysec`, Redis may hold its AOF write back (up to 2 s) while a background fsync
    runs on a slow disk, answering all the same: a kill then loses the last approvals. What it
    keeps is whole: the books add up over the records that survived, and those are a prefix
    of the approvals (AOF is replayed in order)."""
    server = private(durable=True, appendfsync="everysec")
    pan, approved = await approve_many(server.url, 10_000_000)
    server.process.kill()
    server.process.wait()
    server.start()
    posted, refs = await books_of(server.url, pan)
    kept = [(ref, fen) for ref, fen in approved if ref in refs]
    assert refs == {ref for ref, _ in kept}  # nothing the switch did not approve
    assert posted == sum(fen for _, fen in kept)  # every kept call whole
    assert kept == approved[:len(kept)]  # a tail lost, never a hole


async def test_a_clean_stop_and_start_keeps_the_cards(private):
    server = private(durable=True)
    pan, approved = await approve_many(server.url, 10_000_000)
    server.stop()
    server.start()
    assert (await books_of(server.url, pan))[0] == sum(fen for _, fen in approved)


# --- the folder's locks ----------------------------------------------------------------------

def test_a_folder_in_use_by_another_switch_is_refused(private, tmp_path):
    first = private(durable=True)
    second = PrivateRedis(tmp_path / "redis", durable=True)
    with pytest.raises(DataFolderInUse, match="in use by another running switch"):
        second.start()
    assert reachable(first.url), "the refused start must leave the running Redis alone"
    assert second.process is None


def test_an_ephemeral_redis_claims_no_folder(private):
    private(durable=True)
    other = private()  # the same folder, throw-away: no lock taken, starts
    assert reachable(other.url)


def test_a_redis_left_running_by_a_dead_switch_is_stopped_and_its_data_kept(private, tmp_path):
    left = private(durable=True)
    client = redis.Redis.from_url(left.url)
    client.set("kept", "yes")
    client.close()
    orphan = left.process
    left._release()  # what the death of the switch does: its locks go, its Redis stays
    left.process = None
    after = private(durable=True)
    assert orphan.wait(timeout=10) == 0, "stopped with SIGTERM, cleanly"
    assert redis.Redis.from_url(after.url).get("kept") == b"yes"
    assert any(f"stopped redis-server pid {orphan.pid}" in note for note in after.notes)


def test_a_redis_left_running_that_will_not_stop_is_waited_for_a_bounded_time(
        private, tmp_path, monkeypatch):
    monkeypatch.setattr(limits, "redis_stop_timeout_s", 0.5)
    left = private(durable=True)
    orphan = left.process
    left._release()
    left.process = None
    orphan.send_signal(signal.SIGSTOP)  # frozen: SIGTERM waits
    try:
        began = time.monotonic()
        with pytest.raises(DataFolderInUse, match="did not let go of its data"):
            PrivateRedis(tmp_path / "redis", durable=True).start()
        assert 0.5 <= time.monotonic() - began < 5
    finally:
        orphan.send_signal(signal.SIGCONT)  # now the SIGTERM it was sent ends it
    assert orphan.wait(timeout=10) == 0
    again = private(durable=True)  # and the folder is free again
    assert reachable(again.url)


def test_a_stale_pid_file_and_lock_files_left_by_a_crash_are_no_obstacle(private, tmp_path):
    folder = tmp_path / "redis"
    folder.mkdir()
    for name in ("redis.lock", "switch.lock"):
        (folder / name).write_text("")  # their flocks died with their holders
    (folder / "redis.pid").write_text(f"{os.getpid()}\n")  # names a live process, not Redis
    server = private(durable=True)
    assert reachable(server.url) and server.notes == []
    assert int((folder / "redis.pid").read_text()) == server.process.pid


def test_a_held_data_lock_with_no_redis_behind_it_is_an_error(tmp_path):
    folder = tmp_path / "redis"
    folder.mkdir()
    holder = _try_lock(folder / "redis.lock")  # some process that is not our redis-server
    (folder / "redis.pid").write_text(f"{os.getpid()}\n")
    try:
        server = PrivateRedis(folder, durable=True)
        with pytest.raises(DataFolderInUse, match="names no running redis-server"):
            server.start()
        # The refusal lets go of the owner lock: the next start may claim the folder.
        os.close(holder)
        holder = None
        server.start()
        server.stop()
    finally:
        if holder is not None:
            os.close(holder)


# --- a Redis the user points at --------------------------------------------------------------

def test_persistence_of_a_users_redis_is_read_from_its_config(private):
    durable, plain = private("a", durable=True), private("b")
    assert persistence(durable.url) == ("persists: AOF, appendfsync everysec", True)
    assert persistence(plain.url) == ("nothing kept on disk: a restart loses every card", False)
    redis.Redis.from_url(plain.url).config_set("save", "3600 1")
    phrase, persists = persistence(plain.url)
    assert persists is False and phrase.startswith("RDB snapshots only (save 3600 1)")


def test_a_redis_that_refuses_config_persists_unknown(private):
    server = private()
    admin = redis.Redis.from_url(server.url)
    admin.acl_setuser("app", enabled=True, passwords=["+pw"], keys=["*"],
                      commands=["+@all", "-config"])
    admin.close()
    url = f"redis://app:pw@127.0.0.1:{server.port}/0"
    assert persistence(url) == ("persistence unknown (CONFIG GET refused)", None)
    assert "persistence unknown" in launch.open_redis(url, True, server.folder, False,
                                                      "everysec")[1]


def test_a_users_redis_that_keeps_nothing_is_warned_about(private, capsys, tmp_path):
    server = private()
    url, note, started = launch.open_redis(server.url, True, tmp_path, False, "everysec")
    assert (url, started) == (server.url, None)
    assert "yours; nothing kept on disk" in note
    assert "warning" in capsys.readouterr().err


def test_a_users_durable_redis_is_not_warned_about(private, capsys, tmp_path):
    server = private(durable=True)
    launch.open_redis(server.url, True, tmp_path, False, "everysec")
    assert capsys.readouterr().err == ""


def test_open_redis_refuses_what_cannot_be(tmp_path):
    with pytest.raises(UserError, match="does not go with --redis"):
        launch.open_redis("redis://127.0.0.1:1/0", True, tmp_path, True, "everysec")
    with pytest.raises(UserError, match="does not answer"):
        launch.open_redis("redis://127.0.0.1:1/0", True, tmp_path, False, "everysec")


def test_open_redis_starts_a_durable_private_one_unless_ephemeral(tmp_path):
    for ephemeral, folder, appendonly in ((False, "redis", "yes"),
                                          (True, "redis-ephemeral", "no")):
        url, note, started = launch.open_redis("", False, tmp_path, ephemeral, "always")
        try:
            assert started.folder == (tmp_path / folder).resolve()
            assert config_of(url, "appendonly") == appendonly
            if not ephemeral:
                assert config_of(url, "appendfsync") == "always" and "appendfsync always" in note
            assert ("nothing kept on disk" in note) is ephemeral
        finally:
            started.stop()


# --- the demo cards ----------------------------------------------------------------------------

async def test_loading_cards_creates_the_absent_and_keeps_the_present(ledger):
    spent = await make_card(ledger, limit_fen=10_000)
    await ledger.execute(sale(spent, 2_500), auth_id="A00001")
    fresh = new_pan()
    created = await load_cards(ledger, [DemoCard(spent, 50_000, "3101", "frozen"),
                                         DemoCard(fresh, 70_000, "3102")])
    assert created == [False, True]
    kept = await ledger.card(spent)
    assert (kept.limit, kept.posted, kept.status, kept.expiry) == (10_000, 2_500, "active",
                                                                   "3012")
    assert (await ledger.card(fresh)).limit == 70_000


async def test_the_banner_names_the_created_and_the_kept_demo_cards(ledger):
    pans = [await make_card(ledger), new_pan()]
    await ledger.execute(sale(pans[0], 1_000), auth_id="A00001")
    created = await load_cards(ledger, [DemoCard(pan, 20_000, "3012") for pan in pans])
    lines = launch.demo_lines([launch.DemoCardNow(await ledger.card(pan), new)
                               for pan, new in zip(pans, created, strict=True)])
    assert lines[1].endswith("kept") and "open-to-buy      9000 fen" in lines[1]
    assert lines[2].endswith("created") and "open-to-buy     20000 fen" in lines[2]
    assert lines[3] == "  created: demo2; kept as they were (balances and history): demo1"
