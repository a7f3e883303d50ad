"""Memory per card (loadtest/harness/memory.py): the cards and the approval are the real ones,
and a small measurement gives positive per-card figures. No figure is asserted beyond that."""

from __future__ import annotations

import asyncio

import redis

from loadtest.generator import adapters
from loadtest.generator.adapters.base import Context
from loadtest.generator.cards import seed_cards
from loadtest.generator.workload import CARD_LIMIT_FEN, Workload, load_test_pans
from loadtest.harness import memory
from protocols.ledger_layout import card_key
from protocols.pos import PosCodec
from switch.engine import Engine
from switch.policy import Policy
from switch.policy_file import load_policy
from switch.redis_runner import PrivateRedis


def test_the_template_writes_the_card_loadtest_seeds(redis_url):
    seeded, templated = load_test_pans(2, seed=51)
    seed_cards(redis_url, [seeded])
    assert memory.pipelined(redis_url, memory.seed_template(), [templated]) == {"int": 1}
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        card = client.hgetall(card_key(seeded))
        assert card["limit"] == str(CARD_LIMIT_FEN) and card["status"] == "active"
        assert client.hgetall(card_key(templated)) == card
    finally:
        client.close()


async def test_the_approval_writes_what_the_switch_writes(redis_url, ledger):
    """The template's keys on one card are the keys the switch's own decision writes on
    another, for the same POS sale."""
    pans = load_test_pans(2, seed=52)
    seed_cards(redis_url, pans)
    source, call = await memory.approval_call()
    assert memory.pipelined(redis_url, call, pans[:1]) == {"00": 1}

    workload = Workload([pans[1]], {"pos": 1}, 1, ref_prefix="Tmem52",
                        channel_kinds={"pos": frozenset({"sale"})})
    txn = workload.next()
    txn.request.mcc = "5411"
    body = adapters.build("pos", context=Context(0, [pans[1]], "Tmem52")).encode(txn)[1]
    request = PosCodec().decode_request(body).request
    answer = await Engine(ledger, Policy(load_policy(None))).decide(request)
    assert answer.response_code == "00"

    client = redis.Redis.from_url(redis_url)
    try:
        by_template = memory.key_sizes(client, pans[0])
        by_switch = memory.key_sizes(client, pans[1])
    finally:
        client.close()
    assert set(by_template) == set(by_switch) == {"card", ":t:", ":tx", ":i:", ":n"}


def test_a_small_measurement_gives_positive_figures_per_card(tmp_path):
    private = PrivateRedis(tmp_path / "redis")
    url = private.start()
    try:
        call = asyncio.run(memory.approval_call())
        lines = []
        result = memory.measure_cards(url, 200, call, lines.append)
    finally:
        private.stop()
    assert result["cards"] == 200 and result["keys_per_card"] == 5
    assert 0 < result["idle_per_card"] < result["approved_per_card"]
    assert result["sample_card_key_bytes"]["card"] > 0
    assert "200 cards" in lines[0] and "B/card" in lines[0]
