"""`switch serve --durable-replicas N` on a Redis Cluster of three masters with a replica each
(docs/cluster.md, "Durable replicas"): no approval is answered before its write is on N
replicas; a replica that does not acknowledge in time makes the batch's approvals 91, voided
on the master, the books and the answers agreeing."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import time

import msgspec
import pytest
import redis

from protocols.ledger_layout import card_key
from switch import testing
from switch.app import counters_line
from switch.cli import replica_count
from switch.cluster_pipeline import (
    ClusterScriptPipeline,
    ReplicasBehind,
    Routed,
    WaitFor,
    wait_command,
    wait_timeout_ms,
)
from switch.config import DURABLE_REPLICAS_MAX, Config, Listener, ServerLimits
from switch.ledger import Ledger
from switch.lua_library import ledger_library
from switch.redis_client import connect
from switch.redis_runner import PrivateCluster
from tests.cluster_support import Nodes, cluster_fixtures
from tests.support import switch_cli

WAIT_MS = 300  # the tests' durable_wait_ms: long for loopback, short for a test


cluster, nodes = cluster_fixtures(replicas=1)


def durable_config(replicas: int = 1, wait_ms: int = WAIT_MS) -> Config:
    return Config(listeners={"jd": Listener(port=0)}, test_clock=True,
                  server_limits=ServerLimits(durable_replicas=replicas, durable_wait_ms=wait_ms))


def replica_of(cluster: PrivateCluster, nodes: Nodes, pan: str):
    """The replica node of the master serving the card (as that master reports it)."""
    return nodes.replica(cluster, nodes.owner(card_key(pan)))


def replica_card(replica) -> redis.Redis:
    """A client reading on the replica itself (READONLY: no MOVED to its master)."""
    client = redis.Redis(host="127.0.0.1", port=replica.port, decode_responses=True)
    client.execute_command("READONLY")
    return client


async def sale_with_its_replica_paused(switch, cluster: PrivateCluster, nodes: Nodes
                                       ) -> tuple[str, object, object, float]:
    """A new card sells 500 fen, then its master's replica is frozen (SIGSTOP) while it sells
    1,000 more: (the card, its replica, the second answer, seconds that answer took)."""
    pan = await switch.new_card(limit_fen=100_000)
    assert (await switch.send("jd", pan, amount=500, mcc="5411")).response.response_code == "00"
    replica = replica_of(cluster, nodes, pan)
    os.kill(replica.process.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        answer = await switch.send("jd", pan, amount=1_000, mcc="5411")
        waited_s = time.monotonic() - started
    finally:
        os.kill(replica.process.pid, signal.SIGCONT)
    return pan, replica, answer, waited_s


async def test_every_approval_is_on_the_replica_when_it_is_answered(cluster, nodes):
    async with testing.start(durable_config(), redis_url=cluster.url) as switch:
        pans = [await switch.new_card(limit_fen=100_000) for _ in range(6)]
        masters = {nodes.owner(card_key(pan)) for pan in pans}
        assert len(masters) >= 2  # more than one master's WAIT is seen
        readers = {pan: replica_card(replica_of(cluster, nodes, pan)) for pan in pans}
        try:
            for round_ in range(1, 4):
                answers = await asyncio.gather(*[
                    switch.send("jd", pan, amount=1_000, mcc="5411") for pan in pans])
                assert [a.response.response_code for a in answers] == ["00"] * len(pans)
                for pan in pans:  # read right after the answer: no waiting for the replica
                    assert readers[pan].hget(card_key(pan), "posted") == str(1_000 * round_)
        finally:
            for reader in readers.values():
                reader.close()
        assert switch.ledger.scripts.unreplicated == 0


async def test_a_paused_replica_makes_the_approval_91_and_voids_it(cluster, nodes):
    async with testing.start(durable_config(), redis_url=cluster.url) as switch:
        pan, replica, answer, waited_s = await sale_with_its_replica_paused(switch, cluster,
                                                                            nodes)
        assert answer.response.response_code == "91"
        assert waited_s >= WAIT_MS / 1000  # WAIT ran out its time first
        card = await switch.card(pan)
        assert (card.posted, card.voids) == (500, 1)  # the approval was taken back
        assert switch.ledger.scripts.unreplicated == 1
        assert " redis_unreplicated=1" in counters_line(switch.server, switch.ledger)
        # The replica back: the same card sells again, and its replica has it.
        assert (await switch.send("jd", pan, amount=200, mcc="5411")).response.response_code == "00"
        reader = replica_card(replica)
        try:
            assert reader.hget(card_key(pan), "posted") == "700"
        finally:
            reader.close()


async def test_without_durable_replicas_a_paused_replica_changes_no_answer(cluster, nodes):
    """The guard's other side: the same pause, no WAIT, the sale approved at once."""
    async with testing.start(durable_config(replicas=0), redis_url=cluster.url) as switch:
        pan, _, answer, _ = await sale_with_its_replica_paused(switch, cluster, nodes)
        assert answer.response.response_code == "00"
        assert (await switch.card(pan)).posted == 1_500
        assert "redis_unreplicated" not in counters_line(switch.server, switch.ledger)


async def test_more_replicas_than_the_master_has_is_91_for_every_approval(cluster):
    """N above the replicas a master has: WAIT can never be met, nothing is approved (and the
    books keep nothing of it)."""
    async with testing.start(durable_config(replicas=2, wait_ms=20),
                             redis_url=cluster.url) as switch:
        pan = await switch.new_card(limit_fen=100_000)
        answer = await switch.send("jd", pan, amount=1_000, mcc="5411")
        assert answer.response.response_code == "91"
        card = await switch.card(pan)
        assert (card.posted, card.voids) == (0, 1)


def test_the_wait_ends_by_the_batch_s_earliest_fence_and_never_waits_for_ever():
    assert wait_timeout_ms(10.0, [], 100) == 100  # no fence: the configured bound
    assert wait_timeout_ms(10.0, [10.101], 100) == 100  # the fence later: the bound
    assert wait_timeout_ms(10.0, [10.2, 10.0995], 100) == 99  # the earliest fence first
    assert wait_timeout_ms(10.0, [10.05], 100) == 50
    assert wait_timeout_ms(10.0, [10.0], 100) == 1  # fence now: 1 ms, not 0 (for ever)
    assert wait_timeout_ms(10.0, [9.0], 100) == 1
    assert wait_command(1, 99) == b"*3\r\n$4\r\nWAIT\r\n$1\r\n1\r\n$2\r\n99\r\n"


async def test_the_wait_bound_is_the_configured_one_at_its_edge(cluster, nodes):
    """A paused replica: the answer waits the configured bound and not a deadline more."""
    wait_ms = 150
    async with testing.start(durable_config(wait_ms=wait_ms), redis_url=cluster.url) as switch:
        _, _, answer, waited_s = await sale_with_its_replica_paused(switch, cluster, nodes)
        assert answer.response.response_code == "91"
        deadline_s = switch.ledger.deadline_s
        assert wait_ms / 1000 <= waited_s < deadline_s  # its own bound, not the deadline's


def test_durable_replicas_on_a_single_redis_is_refused(redis_url):
    with pytest.raises(ValueError, match="needs a Redis Cluster"):
        Ledger(connect(redis_url), durable_replicas=1)


async def test_serve_with_durable_replicas_on_a_single_redis_says_so_in_one_line(redis_url,
                                                                                 tmp_path):
    code, out, err = await switch_cli("serve", "--redis", redis_url, "--durable-replicas", "1",
                                      "--listen", "jd=127.0.0.1:0",
                                      env={**os.environ, "SWITCH_RUN_DIR": str(tmp_path)})
    assert code != 0 and "Traceback" not in err
    assert err.strip().splitlines()[-1] == (
        "switch: --durable-replicas needs a Redis Cluster (docs/cluster.md); on a single "
        "Redis it is not supported")


async def test_a_short_wait_fails_and_voids_only_the_fenced_calls(cluster):
    """WAIT's reply for a batch, as the link hands it over: below N, the fenced call fails
    with ReplicasBehind and is handed to on_unreplicated (the void); the unfenced one (a
    claim) gets its reply. At N both get theirs."""
    loop = asyncio.get_running_loop()
    pipeline = ClusterScriptPipeline(connect(cluster.url), ledger_library(), 2.0, 1)
    voided = []
    pipeline.on_unreplicated = voided.append
    try:
        for acknowledged in (0, 1):
            fenced = Routed(("authorize", ("{c:1}",), (), loop.create_future(), None, 1.0))
            claim = Routed(("claim", ("{i:1}",), (), loop.create_future(), None, None))
            held = [(fenced, ["00"]), (claim, 1)]
            pipeline._settle(WaitFor(held, 1, 100), acknowledged)
            assert claim.call[3].result() == 1
            if acknowledged:
                assert fenced.call[3].result() == ["00"]
            else:
                with pytest.raises(ReplicasBehind, match="0 of 1 replicas .* 100 ms"):
                    fenced.call[3].result()
        assert [call[0] for call in voided] == ["authorize"]  # once, for the short WAIT
        assert pipeline.unreplicated == 1
    finally:
        await pipeline.client.aclose()


def test_the_replicas_asked_for_are_bounded_in_the_config_and_on_the_command_line():
    assert msgspec.convert({"durable_replicas": DURABLE_REPLICAS_MAX},
                           ServerLimits).durable_replicas == DURABLE_REPLICAS_MAX
    for wrong in (-1, DURABLE_REPLICAS_MAX + 1):
        with pytest.raises(msgspec.ValidationError):
            msgspec.convert({"durable_replicas": wrong}, ServerLimits)
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"durable_wait_ms": 0}, ServerLimits)  # WAIT 0 waits for ever
    assert replica_count(str(DURABLE_REPLICAS_MAX)) == DURABLE_REPLICAS_MAX
    assert replica_count("0") == 0
    for wrong in (str(DURABLE_REPLICAS_MAX + 1), "-1", "one"):
        with pytest.raises(argparse.ArgumentTypeError, match="0..16"):
            replica_count(wrong)


def test_replicas_behind_is_an_unavailable_answer():
    assert issubclass(ReplicasBehind, TimeoutError)  # the server answers it 91
