"""The bench's parts: the switch's authorize call, Redis alone, the echo and reference servers,
the side-by-side table. No speed is asserted: only that each part measures what it says."""

from __future__ import annotations

import asyncio
import itertools
import shutil

import pytest
import redis

from loadtest.generator import adapters
from loadtest.generator.adapters.base import Context
from loadtest.generator.aggregate import OVERALL
from loadtest.generator.cards import seed_cards
from loadtest.generator.client import Target
from loadtest.generator.runner import Plan, run_load
from loadtest.generator.workload import Workload, load_test_pans
from loadtest.harness import ledger_calls, redis_rate, reference
from loadtest.harness.bench import median_of
from loadtest.harness.bench_report import markdown, terminal_table
from loadtest.harness.echo import Echo
from protocols import iso_client, jd
from protocols.framing import BINARY_4
from protocols.ledger_layout import card_key
from protocols.messages import MessageClass


async def test_the_authorize_call_is_the_switchs_own():
    function, code, keys, args = await ledger_calls.script_call(
        ledger_calls.sale("6253800000000005", "R1"))
    assert function.startswith("authorize_") and "open_to_buy" in code
    assert keys[0] == "{c:6253800000000005}" and all(k.startswith(keys[0]) for k in keys)
    assert all(isinstance(a, str) for a in args)


async def test_redis_alone_runs_the_authorize_script_pipelined(redis_url):
    pans = load_test_pans(50, seed=31)
    seed_cards(redis_url, pans)
    result = await redis_rate.measure(redis_url, pans, count=3000, depth=16, run_tag="t31")
    assert result["codes"] == {"00": 3000} and result["rate"] > 0
    posted = sum(int(redis.Redis.from_url(redis_url).hget(f"{{c:{p}}}", "posted")) for p in pans)
    assert posted == 3000 * 1000  # every call a fresh 10-yuan sale, all approved


@pytest.mark.skipif(shutil.which("redis-benchmark") is None, reason="no redis-benchmark")
async def test_redis_benchmark_runs_the_same_script(redis_url):
    pan = load_test_pans(1, seed=32)[0]
    seed_cards(redis_url, [pan])
    result = await redis_rate.measure_with_redis_benchmark(redis_url, pan, count=2000)
    assert result["rate"] > 0 and result["client"] == "redis-benchmark"
    # Little's law ties the rate read to the latency read: calls in flight = rate x latency.
    in_flight = result["rate"] * result["avg_latency_ms"] / 1000
    assert 0.2 < in_flight / (result["depth"] * result["connections"]) < 5
    posted = int(redis.Redis.from_url(redis_url).hget(card_key(pan), "posted"))
    assert posted >= 1990  # 1-fen sales with random references: a clash is a repeat


async def test_the_echo_server_sends_every_frame_back():
    server = await asyncio.get_running_loop().create_server(lambda: Echo(BINARY_4),
                                                            "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        result = await run_load(Plan(rate=300, duration_s=1, mix={"jd": 1}, cards=20,
                                     targets={"jd": Target("127.0.0.1", port)}))
    finally:
        server.close()
    totals = result.totals[OVERALL]
    assert totals.counts["answered"] == 300 and totals.codes == {"": 300}


async def test_the_reference_servers_decide_like_the_switch(redis_url):
    pans = load_test_pans(5, seed=33)
    seed_cards(redis_url, pans)
    ledger = await reference.make_ledger(redis_url)
    workload = Workload(pans, {"jd": 1}, 33, ref_prefix="Rj")
    sale = workload.next()
    body = adapters.build("jd").encode(sale)[1]
    answer = jd.decode_response(await reference.JdHandler(ledger).answer(body))
    assert answer.response.response_code in ("00", "57")  # 57: a blocked category

    pos = reference.PosHandler(ledger)
    client = iso_client.IsoClient()
    encode = adapters.build("pos", context=Context(0, pans, "Rpos")).encode
    sale.request.mcc = "5411"
    sale.request.message_class = MessageClass.AUTH
    sale.kind = "auth"
    first = client.answer(await pos.answer(encode(sale)[1]))
    assert first.response.response_code == "00"
    follow_ups = Workload(pans, {"pos": 1}, 1, ref_prefix="Rpos")
    follow_ups.numbers = itertools.count(sale.number + 1)  # its own STAN, as in one workload
    capture = follow_ups._txn("capture", "pos", sale.request.card, sale.request.amount_fen,
                              "5411", sale)
    second = client.answer(await pos.answer(encode(capture)[1]))
    assert second.response.response_code == "00"  # found its original by F90
    await ledger.aclose()


def fake_results(switch_pos: float, echo_pos: float, redis_rate_s: float) -> dict:
    entry = lambda rate: {"label": "x", "rate": rate, "p99_ms": 1.0}  # noqa: E731
    return {"channels": ["pos", "jd"],
            "switch": {"pos": entry(switch_pos), "jd": entry(4000)},
            "ceiling": {"pos": entry(echo_pos), "jd": entry(20000)},
            "reference": {"pos": entry(2000), "jd": entry(1000)},
            "redis": {"rate": redis_rate_s, "depth": 16, "client": "redis-benchmark"},
            "settings": {"p99_target_ms": 5, "step_duration_s": 3, "connections": 16,
                         "generator_workers": 1, "cards": 100, "start_rate": 2000,
                         "growth": 2}}


def test_the_table_puts_the_switch_next_to_each_bound_with_ratios():
    results = median_of([fake_results(9000, 30000, 40000), fake_results(6000, 20000, 30000),
                         fake_results(12000, 24000, 50000)])
    assert results["switch"]["pos"]["rate"] == 9000 and results["redis"]["rate"] == 40000
    assert results["switch"]["pos"]["rates"] == [9000, 6000, 12000]  # in run order
    results |= {"date": "2026-11-29", "machine": {"summary": "2 cores"}, "seconds": 200}
    table = terminal_table(results)
    row = next(line for line in table.splitlines() if line.startswith("pos"))
    assert row.split() == ["pos", "9,000/s", "24,000/s", "2,000/s", "0.38", "0.23", "4.50"]
    assert "Medians of 3 runs" in table and "40,000/s" in table
    assert "| pos | 9,000/s | 24,000/s | 2,000/s | 0.38 | 0.23 | 4.50 |" in markdown(results)
