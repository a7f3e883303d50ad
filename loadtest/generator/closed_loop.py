"""Closed loop: every connection keeps exactly `inflight` requests outstanding.

`loadtest run` is open loop (requests at a planned rate, docs/loadtest.md). Here nothing is
scheduled: each connection starts with `inflight` requests and sends the next one as each
answer arrives, so the target always holds exactly connections x inflight requests and
answers as fast as it can. Answers per second over the measured window are its saturation
throughput. Latencies are service times (send to answer); at saturation they are mostly
queueing (Little's law: latency ~= requests in flight / throughput), so they say nothing
about a latency target: the open loop measures that.

The transactions are the open-loop generator's (workload.py, adapters/): the same cards,
kinds, amounts and wire ids. Each worker process and channel has its own run-unique id
prefix, so its own POS terminals, and a STAN never repeats on a terminal: a 94 (duplicate)
answer means something is wrong, and the response codes are counted to show it.

This module is one worker (one event loop); closed_loop_runner.py splits a plan over processes
and merges what they measured.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import msgspec

from loadtest.generator import adapters
from loadtest.generator.adapters.base import ClientAdapter
from loadtest.generator.client import ClientConnection, LoadClient, Targets
from loadtest.generator.schedule import NS_PER_S
from loadtest.generator.stats import ChannelSnapshot, ChannelStats
from loadtest.generator.workload import Workload, load_test_pans

SWEEP_EVERY_S = 0.05  # timeouts are found to within 50 ms; they are failures, not figures
RUN_GRACE_S = 10.0  # past warm-up + duration + timeout, a worker that has not finished is stuck
SALES_ONLY = frozenset({"sale"})
# A capture, reversal, refund or repeat names a transaction this many steps back. In a closed
# loop a transaction more steps back than there are requests in flight has been answered,
# so twice the in-flight count suffices; the bounds are the open loop's (runner.py).
REFERENCE_LAG_STEPS = (16, 5000)

WARMUP, WINDOW, DRAIN = "warmup", "window", "drain"


class SaturatePlan(msgspec.Struct, kw_only=True):
    targets: dict[str, Targets]  # channel -> where it listens (an address or a fleet)
    connections: int = 16  # per channel, shared out over the workers
    inflight: int = 32  # per connection, exactly
    duration_s: float = 5.0  # the measured window
    warmup_s: float = 1.0  # sent and answered before the window, not counted in its figures
    cards: int = 10_000
    seed: int = 1
    workers: int = 1
    timeout_s: float = 2.0
    kinds: str = "mix"  # "mix": the open-loop generator's kinds; "sales": sales only
    options: dict[str, dict[str, str]] = {}
    run_id: str = ""  # prefix of every id; unique per run (runner.new_run_id)
    redis_url: str = ""  # when set, the cards are seeded afresh before the run
    card_limit_fen: int = 0  # 0: the load-test default
    admin_url: str = ""  # when set, the switch's /metrics is read during the run


class WorkerOutcome(msgspec.Struct, kw_only=True):
    """What one worker measured: per channel, the window and the rest (warm-up, drain)."""

    index: int
    window: dict[str, ChannelSnapshot]
    outside: dict[str, ChannelSnapshot]
    inflight_seen: dict[str, list[int]]  # per channel: min, max in flight (sampled, window)
    window_s: float  # the window as it really ran (timers fire late on a busy machine)


def ref_prefix(run_id: str, worker: int, channel: str) -> str:
    """Ids (and POS terminals) of one worker and channel: unique within and across runs."""
    return f"{run_id}w{worker}{channel[0]}n"


class ClosedConnection(ClientConnection):
    """One connection that refills to `inflight` requests after every chunk of answers."""

    def __init__(self, client: ClosedLoop, adapter: ClientAdapter, inflight: int) -> None:
        super().__init__(client, adapter)
        self.frame_header = adapter.header.encode
        self.inflight = inflight

    def data_received(self, data: bytes) -> None:
        now = time.monotonic_ns()  # one reading for every answer in this chunk
        answers = self.read_answers(data)
        if answers is None:
            return
        answered = self.client.answered
        for (sent_ns, txn), response in answers:
            answered(txn, response, now - sent_ns)
        self.client.second_answers[self.channel] += len(answers)
        self.top_up(now)

    def top_up(self, now: int) -> None:
        """Send as many requests as answers came: back to exactly `inflight` in flight."""
        missing = self.inflight - len(self.pending)
        client = self.client
        if missing <= 0 or self.closed or not client.sending:
            return
        workload = client.workloads[self.channel]
        frames = []
        for _ in range(missing):
            txn = workload.next()
            if txn.wire is None:
                txn.wire = self.adapter.encode(txn)
            correlation_id, body = txn.wire
            if correlation_id in self.pending:  # the workload never does this: our bug
                raise AssertionError(f"id {correlation_id} is already in flight")
            self.pending[correlation_id] = (now, txn)
            client.sent(self, correlation_id, now, txn)
            frames.append(self.frame_header(len(body)) + body)
        self.transport.write(b"".join(frames))


class ClosedLoop(LoadClient):
    """One worker: its connections per channel, a workload per channel, its counters (one
    set per phase: warm-up, window, drain)."""

    def __init__(self, plan: SaturatePlan, index: int, connections: dict[str, int],
                 on_second: Callable[[int, dict[str, int]], None] | None = None) -> None:
        # Where its connections start among the run's (as `shares` deals them): a fleet's
        # members take the run's connections in turn.
        first_connection = (plan.connections // plan.workers * index
                            + min(index, plan.connections % plan.workers))
        super().__init__(plan.targets, plan.timeout_s, first_connection)
        self.plan, self.index, self.connections = plan, index, connections
        self.on_second = on_second  # (second, answers per channel in it), for progress
        pans = load_test_pans(plan.cards, plan.seed)
        lag = min(max(2 * plan.inflight * max(connections.values()), REFERENCE_LAG_STEPS[0]),
                  REFERENCE_LAG_STEPS[1])
        self.adapters: dict[str, ClientAdapter] = {}
        self.workloads: dict[str, Workload] = {}
        for number, channel in enumerate(plan.targets):
            prefix = ref_prefix(plan.run_id, index, channel)
            adapter = adapters.build(channel, plan.options.get(channel),
                                     adapters.Context(index, pans, prefix))
            kinds = SALES_ONLY if plan.kinds == "sales" else adapter.kinds
            self.adapters[channel] = adapter
            self.workloads[channel] = Workload(
                pans, {channel: 1}, plan.seed * 1_000_003 + index * 101 + number,
                ref_prefix=prefix, lag=lag, channel_kinds={channel: kinds})
        self.phases = {phase: {ch: ChannelStats() for ch in plan.targets}
                       for phase in (WARMUP, WINDOW, DRAIN)}
        self._enter(WARMUP)
        self.sending = False
        self.second_answers = dict.fromkeys(plan.targets, 0)
        self.inflight_seen: dict[str, list[int]] = {}
        self.window_ns = [0, 0]

    def _enter(self, phase: str) -> None:
        self.phase, self.stats = phase, self.phases[phase]

    # --- life cycle ------------------------------------------------------------------------

    async def run(self, get_start: Callable[[], float]) -> WorkerOutcome:
        """Connect, wait for the common start (a wall-clock time), fill every connection,
        measure the window, stop sending, wait for the last answers (or their timeout)."""
        loop = asyncio.get_running_loop()
        self._roll_transmitted()
        try:
            await self.connect(self.connections, self.plan.targets, self._connection)
            start_wall = get_start()
            await asyncio.sleep(max(0.0, start_wall - time.time()))
            bound_s = self.plan.warmup_s + self.plan.duration_s + self.plan.timeout_s
            await self.run_bounded(self._measure(loop), bound_s + RUN_GRACE_S,
                                   f"worker {self.index}")
        finally:
            self.sending = False
            self.close_connections()
        snapshot = {phase: {ch: s.snapshot() for ch, s in per.items()}
                    for phase, per in self.phases.items()}
        outside = snapshot[WARMUP]
        for channel, drained in snapshot[DRAIN].items():
            outside[channel] = _plus(outside[channel], drained)
        return WorkerOutcome(index=self.index, window=snapshot[WINDOW], outside=outside,
                             inflight_seen=self.inflight_seen,
                             window_s=(self.window_ns[1] - self.window_ns[0]) / NS_PER_S)

    def _connection(self, channel: str) -> ClosedConnection:
        return ClosedConnection(self, self.adapters[channel], self.plan.inflight)

    async def _measure(self, loop: asyncio.AbstractEventLoop) -> None:
        self.sending = True
        started = time.monotonic_ns()
        for conns in self.conns.values():
            for conn in conns:
                conn.top_up(started)
        loop.call_later(SWEEP_EVERY_S, self._sweep)
        self._arm_second(started, 1)
        await asyncio.sleep(self.plan.warmup_s)
        self._enter(WINDOW)
        self.window_ns[0] = time.monotonic_ns()
        self.second_answers = dict.fromkeys(self.plan.targets, 0)
        await asyncio.sleep(self.plan.duration_s)
        self.window_ns[1] = time.monotonic_ns()
        self._enter(DRAIN)
        self.sending = False
        while self.in_flight():
            await asyncio.sleep(SWEEP_EVERY_S)

    def _arm_second(self, started_ns: int, second: int) -> None:
        delay = (started_ns + second * NS_PER_S - time.monotonic_ns()) / NS_PER_S
        asyncio.get_running_loop().call_later(max(0.0, delay), self._second, started_ns, second)

    def _second(self, started_ns: int, second: int) -> None:
        if not self.sending or self.stopped:
            return
        if self.on_second is not None:
            self.on_second(second, self.second_answers)
        self.second_answers = dict.fromkeys(self.plan.targets, 0)
        self._roll_transmitted()
        self._arm_second(started_ns, second + 1)

    def _note_inflight(self) -> None:
        """Requests in flight per channel, between two callbacks (as a server sees them)."""
        for channel, conns in self.conns.items():
            now_in_flight = sum(len(conn.pending) for conn in conns)
            seen = self.inflight_seen.setdefault(channel, [now_in_flight, now_in_flight])
            seen[0], seen[1] = min(seen[0], now_in_flight), max(seen[1], now_in_flight)

    def _roll_transmitted(self) -> None:
        """F7 and the like carry the current second, as the open-loop worker's do."""
        now = time.strftime("%Y%m%d%H%M%S")
        for workload in self.workloads.values():
            workload.transmitted_at = now

    def _sweep(self) -> None:
        if self.stopped:
            return
        now = time.monotonic_ns()
        for conn in self.expire_overdue(now):  # a timed-out request's place goes to a new one
            conn.top_up(now)
        if self.phase == WINDOW and self.sending:
            self._note_inflight()
        if not self.stopped and (self.sending or self.deadlines):
            asyncio.get_running_loop().call_later(SWEEP_EVERY_S, self._sweep)

def _plus(a: ChannelSnapshot, b: ChannelSnapshot) -> ChannelSnapshot:
    """Two snapshots of one channel as one (counters and codes added; histograms dropped:
    outside the window only the counts matter)."""
    fields = {name: getattr(a, name) + getattr(b, name)
              for name in ("sent", "answered", "dropped", "behind", "timeouts", "errors",
                           "bad_answers", "late_answers")}
    codes = dict(a.codes)
    for code, n in b.codes.items():
        codes[code] = codes.get(code, 0) + n
    kinds = dict(a.kinds)
    for kind, n in b.kinds.items():
        kinds[kind] = kinds.get(kind, 0) + n
    return ChannelSnapshot(**fields, codes=codes, kinds=kinds)
