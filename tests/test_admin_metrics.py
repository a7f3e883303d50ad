"""/metrics: parsed with prometheus-client's text parser, against what was sent; the
hot-path counts (switch/metrics.py) and their sum over workers."""

from __future__ import annotations

import asyncio

from protocols.framing import Framer
from switch import limits
from switch.admin.shared import all_workers, publish, read_shares, write_share
from switch.metrics import DECISION_BOUNDS_NS, ChannelStats, Snapshot, channel_snapshot, merged
from switch.redis_runner import PrivateRedis
from tests.admin_support import admin_switch, metric
from tests.test_standin_end_to_end import stand_in_policy

WAIT_S = 10.0


def test_a_decision_time_on_a_bound_counts_below_it():
    stats = ChannelStats()
    for bound in DECISION_BOUNDS_NS:
        stats.record("sale", "00", bound)
    assert stats.buckets == [1] * len(DECISION_BOUNDS_NS) + [0]
    stats = ChannelStats()
    for bound in DECISION_BOUNDS_NS:
        stats.record("sale", "00", bound + 1)
    assert stats.buckets == [0] + [1] * len(DECISION_BOUNDS_NS)
    assert stats.sum_ns == sum(DECISION_BOUNDS_NS) + len(DECISION_BOUNDS_NS)
    assert stats.answers == {("sale", "00"): len(DECISION_BOUNDS_NS)}


def test_workers_snapshots_add_up():
    one, two = ChannelStats(), ChannelStats()
    one.record("sale", "00", 1)
    one.record("sale", "51", 1)
    two.record("sale", "00", 10**10)
    two.refused = 3

    class Busy:
        inflight = 2

    first = Snapshot(channels={"jd": channel_snapshot(one, [Busy()])},
                     totals={"redis_calls": 5}, stand_in={"stand_in_approved": 1})
    second = Snapshot(channels={"jd": channel_snapshot(two, [Busy(), Busy()]),
                                "pos": channel_snapshot(ChannelStats(), [])},
                      totals={"redis_calls": 7, "timeouts": 1}, saf_pending=4)
    total = merged([first, second])
    assert total.workers == 2 and total.saf_pending == 4
    assert total.totals == {"redis_calls": 12, "timeouts": 1}
    assert total.stand_in == {"stand_in_approved": 1}
    jd = total.channels["jd"]
    assert sorted(jd.answers) == [("sale", "00", 2), ("sale", "51", 1)]
    assert (jd.inflight, jd.connections, jd.refused) == (6, 3, 3)
    assert jd.buckets[0] == 2 and jd.buckets[-1] == 1 and sum(jd.buckets) == 3
    assert sum(total.channels["pos"].buckets) == 0


async def wait_for(check, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_S
    while not await check():
        assert loop.time() < deadline, f"not within {WAIT_S} s: {what}"
        await asyncio.sleep(0.02)


async def test_metrics_count_what_was_sent(redis_url):
    async with admin_switch(redis_url) as admin:
        pan = await admin.switch.new_card(limit_fen=100_000)
        for _ in range(3):
            assert (await admin.switch.send("jd", pan, amount=100, mcc="5411")
                    ).response.response_code == "00"
        assert (await admin.switch.send("jd", pan, amount=10**6, mcc="5411")
                ).response.response_code == "51"
        assert (await admin.switch.send("pos", pan, amount=100, mcc="7995")
                ).response.response_code == "57"
        samples = await admin.metrics()
        assert metric(samples, "switch_requests_total", channel="jd", message_class="sale",
                      response_code="00") == 3
        assert metric(samples, "switch_requests_total", channel="jd",
                      response_code="51") == 1
        assert metric(samples, "switch_requests_total", channel="pos", message_class="sale",
                      response_code="57") == 1
        assert metric(samples, "switch_requests_total") == 5
        assert metric(samples, "switch_decision_seconds_count", channel="jd") == 4
        assert metric(samples, "switch_decision_seconds_bucket", channel="jd", le="+Inf") == 4
        assert 0 < metric(samples, "switch_decision_seconds_sum", channel="jd") < 4 * 10
        jd_buckets = [value for (name, labels), value in samples.items()
                      if name == "switch_decision_seconds_bucket" and ("channel", "jd") in labels]
        assert jd_buckets == sorted(jd_buckets)  # cumulative
        assert metric(samples, "switch_redis_calls_total") >= 5
        assert 1 <= metric(samples, "switch_redis_batches_total") <= metric(
            samples, "switch_redis_calls_total")
        assert metric(samples, "switch_answers_late_total") == 0
        assert metric(samples, "switch_redis_errors_total") == 0
        assert metric(samples, "switch_workers") == 1
        assert metric(samples, "switch_answers_total") == 5


async def test_connections_and_refused_frames(redis_url):
    async with admin_switch(redis_url) as admin:
        listener = admin.switch.server.listeners["jd"]
        reader, writer = await asyncio.open_connection("127.0.0.1", admin.switch.ports["jd"])
        try:
            async def one_connection():
                return metric(await admin.metrics(), "switch_connections", channel="jd") == 1
            await wait_for(one_connection, "the connection counted")
            samples = await admin.metrics()
            assert metric(samples, "switch_connections", channel="pos") == 0
            framer = Framer(listener.codec.header, 64 * 1024)
            writer.write(framer.frame(b"{not json"))
            await writer.drain()
            answer = await asyncio.wait_for(reader.read(4096), WAIT_S)
            assert answer  # the codec's own refusal, in the channel's format
            samples = await admin.metrics()
            assert metric(samples, "switch_frames_refused_total", channel="jd") == 1
            assert metric(samples, "switch_requests_total") == 0  # no decision was made
        finally:
            writer.close()
            await writer.wait_closed()

        async def none_open():
            return metric(await admin.metrics(), "switch_connections", channel="jd") == 0
        await wait_for(none_open, "the closed connection no longer counted")


async def test_inflight_counts_requests_waiting_for_redis(redis_url):
    async with admin_switch(redis_url) as admin:
        pan = await admin.switch.new_card(limit_fen=100_000)
        client = admin.switch.ledger.client
        # Redis busy with a script for half a second: the sale waits in flight meanwhile.
        pause = asyncio.ensure_future(client.execute_command(
            "EVAL", "local t = redis.call('TIME') local e = t[1] * 1e6 + t[2] + 5e5 "
            "repeat local n = redis.call('TIME') until n[1] * 1e6 + n[2] >= e return 1", 0))
        await asyncio.sleep(0.05)
        sale = asyncio.ensure_future(admin.switch.send("jd", pan, amount=100, mcc="5411"))

        async def one_inflight():
            return metric(await admin.metrics(), "switch_inflight", channel="jd") == 1
        await wait_for(one_inflight, "the sale in flight")
        await sale
        await pause
        assert metric(await admin.metrics(), "switch_inflight", channel="jd") == 0


async def test_stand_in_and_store_and_forward_counts(tmp_path):
    """Redis gone: a known card's sale is approved in stand-in and journaled; /metrics
    counts the stand-in approval, the Redis error and the record waiting to be forwarded."""
    policy = tmp_path / "policy.toml"
    policy.write_text(stand_in_policy(per_transaction=1000, per_card=2500))
    redis = PrivateRedis(tmp_path / "redis")
    url = redis.start()
    try:
        async with admin_switch(url, policy=policy, journal_dir=tmp_path / "journal") as admin:
            pan = await admin.switch.new_card(limit_fen=100_000)
            assert (await admin.switch.send("jd", pan, amount=100, mcc="5411")
                    ).response.response_code == "00"  # the card's status is now known
            samples = await admin.metrics()
            assert metric(samples, "switch_stand_in_total", event="stand_in_approved") == 0
            redis.stop()
            answer = await admin.switch.send("jd", pan, amount=500, mcc="5411")
            assert answer.response.response_code == "00"
            samples = await admin.metrics()
            assert metric(samples, "switch_stand_in_total", event="stand_in_approved") == 1
            voids = metric(samples, "switch_stand_in_total", event="voids_journaled")
            assert voids in (0, 1)  # the attempt's void, when its ledger call was sent
            assert metric(samples, "switch_saf_pending") == 1 + voids  # the advice, the void
            assert metric(samples, "switch_redis_errors_total") >= 1
            assert metric(samples, "switch_requests_total", response_code="00") == 2
    finally:
        redis.stop()


def test_a_scrape_adds_the_other_workers_latest_shares(tmp_path):
    def counts(calls: int) -> Snapshot:
        return Snapshot(totals={"redis_calls": calls})

    write_share(tmp_path, 1, counts(10))
    write_share(tmp_path, 2, counts(100))
    write_share(tmp_path, 0, counts(5000))  # its own old share: never read, it counts live
    (tmp_path / "worker-3.json").write_bytes(b'{"totals": ')  # torn: not a share
    scrape = all_workers(tmp_path, 0, lambda: counts(1))
    total = scrape()
    assert total.totals == {"redis_calls": 111} and total.workers == 3
    write_share(tmp_path, 2, counts(200))  # a newer share replaces the older
    assert scrape().totals == {"redis_calls": 211}
    assert not list(tmp_path.glob("*.partial"))


async def test_a_worker_publishes_its_counts_every_interval(tmp_path, monkeypatch):
    monkeypatch.setattr(limits, "admin_share_interval_s", 0.05)
    calls = iter(range(1, 1_000))
    task = asyncio.ensure_future(publish(tmp_path, 1, lambda: Snapshot(
        totals={"redis_calls": next(calls)})))
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        await wait_for(lambda: _share_at_least(tmp_path, 3), "three writes at 50 ms")
    finally:
        task.cancel()
    assert loop.time() - started < 1.5  # at the default 1 s interval three take 2 s
    assert read_shares(tmp_path, skip=0)[0].totals["redis_calls"] >= 3


async def _share_at_least(folder, calls: int) -> bool:
    shares = read_shares(folder, skip=0)
    return bool(shares) and shares[0].totals["redis_calls"] >= calls
