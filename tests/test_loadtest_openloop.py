"""The open-loop scheduler: intended send times, latency from them, behind/dropped/timeouts.

The servers here are deliberately slow or odd JD peers on real TCP. Nothing asserts a
speed: only that the generator counts what happened the way docs/loadtest.md says.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time

import msgspec
import pytest

from loadtest.generator import worker
from loadtest.generator.aggregate import OVERALL
from loadtest.generator.client import Target
from loadtest.generator.runner import Plan, run_load
from loadtest.generator.schedule import NS_PER_S, Schedule
from protocols.framing import BINARY_4, Framer
from tests.support import ANSWER_WAIT_S

# --- the schedule alone ---------------------------------------------------------------------


def test_intended_times_follow_the_rate_not_the_clock():
    schedule = Schedule(rate_per_s=1000, duration_s=1, start_ns=5 * NS_PER_S)
    assert schedule.total == 1000
    assert list(schedule.due(5 * NS_PER_S - 1)) == []
    assert list(schedule.due(5 * NS_PER_S)) == [0]
    # The caller stalled for 100 ms: everything due since comes out at once, in order,
    # each keeping its own intended time.
    late = schedule.due(5 * NS_PER_S + 100_000_000)
    assert list(late) == list(range(1, 101))
    assert [schedule.intended_ns(i) - 5 * NS_PER_S for i in (1, 50, 100)] == [
        1_000_000, 50_000_000, 100_000_000]
    assert schedule.next_due_ns() == 5 * NS_PER_S + 101_000_000
    assert list(schedule.due(99 * NS_PER_S)) == list(range(101, 1000))
    assert schedule.finished and schedule.next_due_ns() is None


# --- JD-speaking test peers -----------------------------------------------------------------

_fields = msgspec.json.Decoder(dict[str, str])


def answer(body: bytes, code: str = "00") -> bytes:
    trade = _fields.decode(body)["tradeNum"]
    return Framer(BINARY_4, 1 << 16).frame(
        msgspec.json.encode({"tradeNum": trade, "isoCode": code}))


class Peer(asyncio.Protocol):
    """Collects frames; `behaviour` decides what to do with each."""

    def __init__(self, behaviour) -> None:
        self.framer = Framer(BINARY_4, 1 << 16)
        self.behaviour = behaviour
        self.transport = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        for body in self.framer.feed(data):
            self.behaviour(self, body)


@contextlib.asynccontextmanager
async def peer(behaviour):
    server = await asyncio.get_running_loop().create_server(lambda: Peer(behaviour),
                                                            "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


def plan(port: int, rate: float, duration_s: float, **fields) -> Plan:
    return Plan(rate=rate, duration_s=duration_s, targets={"jd": Target("127.0.0.1", port)},
                mix={"jd": 1}, cards=50, **fields)


# --- behaviour under slow peers ------------------------------------------------------------


async def test_a_serial_slow_server_makes_sends_fall_behind_and_latency_counts_from_intent():
    """One request at a time, 30 ms each: a closed-loop tool would report 30 ms. We offer
    400/s on one connection that may hold one request; the sends fall behind, wait, and
    their latency counts the wait; those that wait out the timeout are dropped unsent.
    (Sends 2.5 ms apart: when a timeout frees the connection, whatever waited past its
    own timeout meanwhile is dropped; at 100/s that needed the sweep to run 10 ms late.)"""
    service_s = 0.03
    queue: list = []

    def serial(conn: Peer, body: bytes) -> None:
        queue.append((conn, body))
        if len(queue) == 1:
            asyncio.get_running_loop().call_later(service_s, serve_next)

    def serve_next() -> None:
        conn, body = queue.pop(0)
        conn.transport.write(answer(body))
        if queue:
            asyncio.get_running_loop().call_later(service_s, serve_next)

    async with peer(serial) as port:
        result = await run_load(plan(port, rate=400, duration_s=0.5, connections=1,
                                     inflight_max=1, timeout_s=0.5))
    c = result.totals["jd"].counts
    assert c["sent"] + c["dropped"] == 200
    assert c["dropped"] > 0 and c["behind"] > 0
    assert c["answered"] + c["timeouts"] == c["sent"]
    latency = result.totals["jd"].latency
    assert latency.get_value_at_percentile(50) >= 2 * service_s * 1e6 * 0.9
    assert latency.get_max_value() >= 0.3 * 1e6  # the queue, not the 30 ms of service
    assert result.totals["jd"].send_lag.get_max_value() >= 0.2 * 1e6


async def test_open_loop_sends_on_schedule_whatever_the_answers_take():
    """Each answer takes 200 ms, but many may be in flight: nothing waits for answers."""

    def slow(conn: Peer, body: bytes) -> None:
        asyncio.get_running_loop().call_later(0.2, conn.transport.write, answer(body))

    async with peer(slow) as port:
        result = await run_load(plan(port, rate=200, duration_s=1.0, connections=2))
    c = result.totals[OVERALL].counts
    assert (c["sent"], c["answered"], c["dropped"], c["timeouts"]) == (200, 200, 0, 0)
    assert result.totals[OVERALL].latency.get_min_value() >= 200_000
    # Closed loop (one at a time per connection) this would take 20 s.
    assert result.elapsed_s < 5


async def test_answers_out_of_order_are_matched_by_trade_number():
    held: list = []

    def reverse_in_fours(conn: Peer, body: bytes) -> None:
        held.append(body)
        if len(held) == 4:
            conn.transport.write(b"".join(answer(b) for b in reversed(held)))
            held.clear()

    async with peer(reverse_in_fours) as port:
        result = await run_load(plan(port, rate=200, duration_s=1.0, connections=1,
                                     timeout_s=0.5))
    c = result.totals["jd"].counts
    assert (c["sent"], c["answered"], c["bad_answers"], c["timeouts"]) == (200, 200, 0, 0)


async def test_unanswered_requests_time_out_and_the_run_still_ends():
    count = [0]

    def every_fifth_ignored(conn: Peer, body: bytes) -> None:
        count[0] += 1
        if count[0] % 5:
            conn.transport.write(answer(body, "51"))

    async with peer(every_fifth_ignored) as port:
        result = await run_load(plan(port, rate=100, duration_s=1.0, timeout_s=0.3))
    totals = result.totals["jd"]
    assert totals.counts["timeouts"] == 20 and totals.counts["answered"] == 80
    assert totals.codes == {"51": 80}
    assert totals.failures == 20


async def test_a_closed_connection_counts_its_requests_as_errors():
    def hang_up(conn: Peer, body: bytes) -> None:
        conn.transport.close()

    async with peer(hang_up) as port:
        result = await run_load(plan(port, rate=100, duration_s=0.5, connections=2))
    c = result.totals["jd"].counts
    assert c["errors"] == 50 and c["answered"] == 0


# --- how close to the intended time sends leave ---------------------------------------------


def echo_answer(conn: Peer, body: bytes) -> None:
    conn.transport.write(answer(body))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="timerfd is Linux only")
async def test_the_timerfd_wakes_the_sender_at_its_time_never_before():
    """A timerfd wakes the sender at each intended time to the nanosecond (how late is
    measured by the benches, docs/loadtest.md): never before it, and a new arming replaces
    the one before."""
    loop = asyncio.get_running_loop()
    fired: list[int] = []
    woke = asyncio.Event()

    def callback() -> None:
        fired.append(time.monotonic_ns())
        woke.set()

    timer = worker.send_timer(loop, callback)
    assert isinstance(timer, worker.TimerFd)
    try:
        first = time.monotonic_ns() + 50_000_000
        later = first + 20_300_000  # not on a millisecond
        timer.arm(first)
        timer.arm(later)
        async with asyncio.timeout(ANSWER_WAIT_S):
            await woke.wait()
        assert fired[0] >= later
        woke.clear()
        timer.arm(time.monotonic_ns() - 1)  # a time already past: at once
        async with asyncio.timeout(ANSWER_WAIT_S):
            await woke.wait()
        assert len(fired) == 2  # the replaced arming never fired
    finally:
        timer.close()


async def test_with_a_timerfd_every_request_is_sent_and_answered():
    async with peer(echo_answer) as port:
        result = await run_load(plan(port, rate=500, duration_s=1.0, connections=2))
    c = result.totals["jd"].counts
    assert (c["sent"], c["answered"], c["dropped"], c["timeouts"]) == (500, 500, 0, 0)


async def test_without_a_timerfd_the_loop_timers_send_everything_on_schedule(monkeypatch):
    """Elsewhere than Linux the event loop's timers wake the sender: still every request."""
    monkeypatch.setattr(worker, "_libc_timerfd", lambda: None)
    async with peer(echo_answer) as port:
        result = await run_load(plan(port, rate=500, duration_s=1.0, connections=2))
    c = result.totals["jd"].counts
    assert (c["sent"], c["answered"], c["dropped"], c["timeouts"]) == (500, 500, 0, 0)
