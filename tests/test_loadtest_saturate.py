"""The closed-loop client (loadtest saturate): exactly N in flight per connection, answers
counted right, unique ids (no 94). Real TCP, a real switch and Redis; no speed asserted."""

from __future__ import annotations

import asyncio
import time

import msgspec
import pytest

from loadtest.generator.adapters.iso import terminal_tag
from loadtest.generator.cards import seed_cards
from loadtest.generator.client import LoadTestError, Target
from loadtest.generator.closed_loop import ClosedLoop, SaturatePlan, ref_prefix
from loadtest.generator.closed_loop_runner import ALL, merge, prepared, run_saturate, shares, table
from loadtest.generator.workload import load_test_pans
from protocols.framing import BINARY_4, Framer
from switch.config import Listener
from tests.support import running_switch, switch_config

CARDS = 2000  # velocity limits of the default policy stay far away


def both_channels():
    return switch_config(listeners={"pos": Listener(port=0), "jd": Listener(port=0)})


def plan_for(ports: dict[str, int], **settings) -> SaturatePlan:
    defaults = {"connections": 3, "inflight": 5, "duration_s": 0.6, "warmup_s": 0.2,
                "cards": CARDS, "seed": 41}
    return prepared(SaturatePlan(targets={ch: Target("127.0.0.1", port)
                                          for ch, port in ports.items()},
                                 **(defaults | settings)))


async def sample_while_running(loop_: ClosedLoop, switch, every_s: float = 0.01):
    """(client in flight per connection, switch requests - answered) every `every_s`."""
    samples = []
    while not loop_.stopped:
        if loop_.phase == "window" and loop_.sending:
            per_connection = [len(c.pending) for conns in loop_.conns.values() for c in conns]
            on_switch = switch.counters.requests - switch.counters.answered
            samples.append((per_connection, on_switch))
        await asyncio.sleep(every_s)
    return samples


async def test_every_connection_keeps_exactly_n_in_flight_on_a_real_switch(redis_url):
    seed_cards(redis_url, load_test_pans(CARDS, 41))
    async with running_switch(redis_url, both_channels()) as (switch, _):
        plan = plan_for({"pos": switch.ports["pos"], "jd": switch.ports["jd"]})
        closed = ClosedLoop(plan, 0, shares(plan)[0])
        watcher = asyncio.create_task(sample_while_running(closed, switch))
        outcome = await closed.run(lambda: time.time() + 0.05)
        samples = await watcher
        on_switch_requests = switch.counters.requests
        on_switch_answered = switch.counters.answered
    assert samples, "the window was never sampled"
    connections, inflight = 2 * plan.connections, plan.inflight
    for per_connection, on_switch in samples:
        assert per_connection == [inflight] * connections
        assert 0 <= on_switch <= connections * inflight
    assert outcome.inflight_seen == {"pos": [15, 15], "jd": [15, 15]}

    result = merge(plan, "now", [outcome])
    assert result.inflight_of() == [30, 30] and result.inflight_of("jd") == [15, 15]
    sent = result.window[ALL].counts["sent"] + result.outside[ALL].counts["sent"]
    answered = (result.window[ALL].counts["answered"]
                + result.outside[ALL].counts["answered"])
    assert sent == answered == on_switch_requests == on_switch_answered
    assert result.failures() == 0
    assert sum(result.codes().values()) == answered
    assert not {"94", "91", "96"} & set(result.codes())  # no duplicate, every one decided
    assert result.window["pos"].counts["answered"] > 0
    assert result.window["jd"].counts["answered"] > 0
    assert result.rate() > 0 and result.window[ALL].latency.get_total_count() == (
        result.window[ALL].counts["answered"])


class HoldingPeer(asyncio.Protocol):
    """A JD peer that answers every request 3 ms late and records, per connection, the most
    requests it held unanswered at once."""

    held_max: list[int] = []

    def __init__(self) -> None:
        self.framer = Framer(BINARY_4, 1 << 16)
        self.held = 0
        self.index = len(HoldingPeer.held_max)
        HoldingPeer.held_max.append(0)

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        for body in self.framer.feed(data):
            self.held += 1
            HoldingPeer.held_max[self.index] = max(HoldingPeer.held_max[self.index], self.held)
            trade = msgspec.json.decode(body)["tradeNum"]
            reply = self.framer.frame(msgspec.json.encode({"tradeNum": trade, "isoCode": "00"}))
            asyncio.get_running_loop().call_later(0.003, self.answer, reply)

    def answer(self, reply: bytes) -> None:
        self.held -= 1
        if not self.transport.is_closing():
            self.transport.write(reply)


async def test_a_server_sees_exactly_n_outstanding_per_connection():
    HoldingPeer.held_max = []
    server = await asyncio.get_running_loop().create_server(HoldingPeer, "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        result = await run_saturate(plan_for({"jd": port}, connections=4, inflight=7))
    finally:
        server.close()
    assert HoldingPeer.held_max == [7, 7, 7, 7]
    assert result.codes("jd") == {"00": result.window["jd"].counts["answered"]
                                  + result.outside["jd"].counts["answered"]}
    assert result.failures() == 0 and result.summary()["inflight_total"] == 28
    assert "jd" in table(result)


async def test_sales_only_sends_only_sales(redis_url):
    seed_cards(redis_url, load_test_pans(CARDS, 41))
    async with running_switch(redis_url, both_channels()) as (switch, _):
        result = await run_saturate(plan_for({"pos": switch.ports["pos"]}, kinds="sales",
                                             inflight=2))
    assert set(result.window["pos"].kinds) == {"sale"}
    assert "94" not in result.codes()


async def test_a_silent_server_times_out_and_the_places_are_refilled():
    silent = await asyncio.get_running_loop().create_server(asyncio.Protocol, "127.0.0.1", 0)
    try:
        port = silent.sockets[0].getsockname()[1]
        result = await run_saturate(plan_for({"jd": port}, connections=1, inflight=3,
                                             timeout_s=0.2, duration_s=0.5))
    finally:
        silent.close()
    timeouts = result.window[ALL].counts["timeouts"] + result.outside[ALL].counts["timeouts"]
    sent = result.window[ALL].counts["sent"] + result.outside[ALL].counts["sent"]
    assert timeouts == sent > 3  # every request timed out, and each place was sent again
    assert result.failures() == timeouts and result.rate() == 0


def test_ids_are_unique_per_worker_and_channel():
    plan = prepared(SaturatePlan(targets={"pos": Target("h", 1), "jd": Target("h", 2)},
                                 workers=3, connections=4))
    tags = {terminal_tag(ref_prefix(plan.run_id, w, ch)) for w in range(3) for ch in ("pos", "jd")}
    assert len(tags) == 6
    assert shares(plan) == [{"pos": 2, "jd": 2}, {"pos": 1, "jd": 1}, {"pos": 1, "jd": 1}]
    small = SaturatePlan(targets={"pos": Target("h", 1)}, workers=3, connections=2)
    assert shares(small) == [{"pos": 1}, {"pos": 1}]  # no worker without a connection


@pytest.mark.parametrize("bad", [{"inflight": 0}, {"connections": 0}, {"duration_s": 0}])
def test_plans_that_cannot_run_are_refused(bad):
    with pytest.raises(LoadTestError):
        prepared(SaturatePlan(targets={"pos": Target("h", 1)}, **bad))


async def test_two_worker_processes_merge_their_counts():
    HoldingPeer.held_max = []
    server = await asyncio.get_running_loop().create_server(HoldingPeer, "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        result = await run_saturate(plan_for({"jd": port}, connections=2, inflight=4,
                                             workers=2))
    finally:
        server.close()
    assert HoldingPeer.held_max == [4, 4]
    answered = result.window[ALL].counts["answered"] + result.outside[ALL].counts["answered"]
    assert result.codes() == {"00": answered} and result.failures() == 0
    assert result.inflight_seen["jd"] == [8, 8]
