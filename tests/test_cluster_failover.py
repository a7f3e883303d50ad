"""A master of a Redis Cluster lost while `--durable-replicas` runs on it (docs/cluster.md,
"Failover"): SIGKILLed under load, its replica promoted by the cluster itself, the switch
following, no request hanging, no connection dropped, and every approval a client saw in
the surviving cluster's books (tests/failover_support.py has the run); and the window where
it dies after its replica got an approval its client is told 91 of, before the void."""

from __future__ import annotations

import asyncio

import redis

from protocols.ledger_layout import card_key
from switch import testing
from switch.audit import audit_all
from switch.config import Config, Listener, ServerLimits
from switch.redis_client import connect
from tests.cluster_support import Nodes, fast_failover, running_cluster
from tests.failover_support import (
    FAILOVER_WAIT_S,
    is_master,
    role_of,
    run_failover,
)
from tests.support import ANSWER_WAIT_S, until_true

REPLICA_BEHIND_S = 0.5  # the killed master's replica cut off before the kill
PAUSE_MS = 20_000  # longer than the test: the paused master dies paused


async def test_a_master_killed_under_load_loses_no_approval_with_durable_replicas(tmp_path):
    """Its replica cut off for a moment before the kill, so the master had writes the
    replica never got: without --durable-replicas clients saw approvals that are lost
    (scripts/cluster_failover_runs.py counts them); with it, none."""
    outcome = await run_failover(tmp_path, durable_replicas=1,
                                 replica_behind_s=REPLICA_BEHIND_S)
    print(outcome.line())  # the figures of docs/cluster.md come from such lines
    assert outcome.dead_cards
    # The kill was felt and got over: 91s while the card's master was gone, then approvals.
    assert set(outcome.codes) == {"00", "91"}, outcome.codes
    # None there while the promoted master had no replica: WAIT 1 held them back.
    assert outcome.killed_s < outcome.promoted_s < outcome.restarted_s < outcome.resumed_s
    # Never a hang nor a dropped connection: every request had its answer (within its
    # deadline and ANSWER_SLACK_S: else it counts as none), 91 at worst.
    assert all(seen.answered_s is not None for seen in outcome.seen)
    assert outcome.dropped_connections == 0
    # The books of the surviving cluster hold every approval seen, and nothing else.
    found = outcome.findings
    assert (found.lost, found.doubled, found.invented) == (0, 0, 0), found.examples
    assert outcome.journals_drained
    assert (outcome.audit_status, outcome.audit_broken) == (0, [])


def read_posted(port: int, pan: str) -> tuple[int, int]:
    """(posted, voids) of the card, read on the node of `port` itself."""
    client = redis.Redis(port=port, decode_responses=True)
    try:
        client.execute_command("READONLY")
        fields = client.hgetall(card_key(pan))
    finally:
        client.close()
    return int(fields.get("posted", 0)), int(fields.get("voids", 0))


async def test_a_master_lost_after_its_replica_got_an_approval_answered_91_before_its_void(
        tmp_path):
    """Two replicas asked of masters that have one: WAIT always falls short, each sale is
    answered 91 and voided, but its replica has it. The master is paused for writes once
    the replica has both cards' sales (the voids wait in it) and killed so; its replica,
    promoted, holds both sales. A switch with a store-and-forward journal (as `switch
    serve` always has) journaled each void before its 91 and voids the sale on the new
    master; a switch without one leaves the sale its client was told 91 of."""
    config = Config(listeners={"jd": Listener(port=0)}, server_limits=ServerLimits(
        durable_replicas=2, durable_wait_ms=1_000))  # long: the pause comes first
    with running_cluster(tmp_path / "cluster", replicas=1) as cluster:
        fast_failover(cluster)
        victim = cluster.nodes[1]
        nodes = Nodes(cluster)
        replica_port = nodes.replica_port(victim.port)
        async with (testing.start(config, redis_url=cluster.url,
                                  journal_dir=tmp_path / "journal") as journaled,
                    testing.start(config, redis_url=cluster.url) as bare):
            pans = []
            for switch in (journaled, bare):
                pan = await switch.new_card(limit_fen=100_000)
                while nodes.owner(card_key(pan)) != victim.port:
                    pan = await switch.new_card(limit_fen=100_000)
                pans.append(pan)
            sales = [asyncio.ensure_future(switch.send("jd", pan, amount=1_000, mcc="5411"))
                     for switch, pan in zip((journaled, bare), pans, strict=True)]
            await until_true(lambda: _posted_on(replica_port, pans, 1_000),
                             "both sales on the replica", ANSWER_WAIT_S)
            nodes.clients[victim.port].execute_command("CLIENT", "PAUSE", PAUSE_MS, "WRITE")
            nodes.close()
            answers = await asyncio.gather(*sales)
            assert [a.response.response_code for a in answers] == ["91", "91"]
            victim.process.kill()
            await asyncio.wait_for(role_of(replica_port, is_master), FAILOVER_WAIT_S)
            await until_true(lambda: _posted_on(replica_port, pans[:1], 0),
                             "the journal's void on the new master", FAILOVER_WAIT_S)
            assert read_posted(replica_port, pans[0]) == (0, 1)  # voided
            assert read_posted(replica_port, pans[1]) == (1_000, 0)  # told 91, in the books
        # ... where the books' own rules find nothing: only what the client saw shows it.
        client = connect(cluster.url)
        try:
            report = await audit_all(client, [card_key(pan) for pan in pans])
        finally:
            await client.aclose()
        assert (report.cards, report.findings) == (2, [])


async def _posted_on(port: int, pans: list[str], fen: int) -> bool:
    return all(read_posted(port, pan)[0] == fen for pan in pans)
