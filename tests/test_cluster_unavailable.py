"""A Redis Cluster refusing for now (CLUSTERDOWN: a slot nobody serves, as while a master
fails over) is Redis unavailable, as a Redis down is: a repayment past its deadline is
unconfirmed and names its ref (the ledger, the admin API), and redis-py's own cluster client
raises what counts as such. A real cluster of three masters, one made to see the cluster
down (tests/cluster_support.py)."""

from __future__ import annotations

import asyncio

import pytest

from protocols.ledger_layout import card_key
from switch.ledger import Ledger, RepaymentUnconfirmed
from switch.redis_client import connect, unavailable_error
from tests.admin_support import admin_switch
from tests.cluster_support import cluster_down_on, cluster_fixtures
from tests.support import ANSWER_WAIT_S, make_card

cluster, nodes = cluster_fixtures()


async def test_a_repayment_refused_by_a_cluster_down_is_unconfirmed_and_names_its_ref(
        cluster, nodes):
    ledger = Ledger(connect(cluster.url), request_deadline_ms=400)
    await ledger.start()
    try:
        pan = await make_card(ledger, limit_fen=100_000)
        async with cluster_down_on(nodes, nodes.owner(card_key(pan))):
            with pytest.raises(RepaymentUnconfirmed) as unconfirmed:
                async with asyncio.timeout(ANSWER_WAIT_S):
                    await ledger.repay(pan, 700, "down-1")
        assert (unconfirmed.value.ref, unconfirmed.value.amount_fen) == ("down-1", 700)
        assert "CLUSTERDOWN" in unconfirmed.value.retry_advice()
        assert (await ledger.card(pan)).repaid == 0  # refused: it never ran
        assert (await ledger.repay(pan, 700, "down-1")).outcome == "repaid"  # the same ref
        assert (await ledger.card(pan)).repaid == 700
    finally:
        await ledger.aclose()


async def test_a_repayment_over_http_during_a_cluster_down_answers_503_with_its_ref(
        cluster, nodes):
    async with admin_switch(cluster.url) as admin:
        pan = await admin.switch.new_card(limit_fen=100_000)
        async with cluster_down_on(nodes, nodes.owner(card_key(pan))):
            status, answer = await admin.call("POST", f"/cards/{pan}/repay",
                                              body={"amount_fen": 900})
        assert status == 503 and answer["ref"], answer  # the ref made for it, to send again
        assert f"Repay again with the same ref ({answer['ref']})" in answer["error"]
        assert pan not in str(answer)
        status, again = await admin.call("POST", f"/cards/{pan}/repay",
                                         body={"amount_fen": 900, "ref": answer["ref"]})
        assert (status, again["outcome"], again["card"]["repaid"]) == (200, "repaid", 900)


async def test_the_cluster_client_refused_by_a_cluster_down_raises_an_unavailable_error(
        cluster, nodes):
    """redis-py's RedisCluster (card administration, the announcements' reads) raises its
    own ClusterDownError, whose text lacks the code."""
    client = connect(cluster.url)
    key = card_key("6253680000000000")
    try:
        async with cluster_down_on(nodes, nodes.owner(key)):
            with pytest.raises(Exception) as refused:
                async with asyncio.timeout(ANSWER_WAIT_S):
                    await client.hget(key, "posted")
        assert unavailable_error(refused.value), repr(refused.value)
    finally:
        await client.aclose()
