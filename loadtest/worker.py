"""One load-generating worker: its connections, the open-loop scheduler, timeouts, intervals.

Runs in one event loop (its own process when there are several workers). Every second it
hands the parent a snapshot of what happened (counters and encoded histograms) and starts
afresh, so the parent can show progress and merge the workers without sharing memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections import deque
from collections.abc import Callable

import msgspec

from loadtest import adapters
from loadtest.connection import Connection
from loadtest.schedule import NS_PER_S, Schedule
from loadtest.stats import ChannelStats, Interval
from loadtest.workload import (
    APPROVAL_CODES,
    APPROVED,
    DECLINED,
    PENDING,
    UNKNOWN,
    Txn,
    Workload,
    load_test_pans,
)


def freeze_startup_heap() -> None:
    """Right before a run: what set-up built stays; full collections then skip it (their
    pauses would be counted as latency)."""
    gc.collect()
    gc.freeze()


CONNECT_TIMEOUT_S = 5.0  # a target that does not accept within this is down
RUN_GRACE_S = 10.0  # past duration + timeout, a worker that has not finished is stuck
SWEEP_EVERY_S = 0.01  # timeouts are found to within 10 ms; finer costs CPU for nothing
# The event loop's timers tick in whole milliseconds: a shorter sleep wakes at once, and a
# loop that wakes at once for nothing spins a core the target needs. So sends go out in
# batches at most once a millisecond, and up to 1 ms of a measured latency is this batching.
TICK_MIN_S = 0.001
BACKLOG_RETRY_S = 0.001  # how soon to retry sends waiting for a free connection
# A send more than this after its intended time counts as behind schedule. The event loop's
# timers tick in whole milliseconds, so a lag under 2 ms is the scheduler's resolution.
BEHIND_THRESHOLD_NS = 2_000_000


class Target(msgspec.Struct, frozen=True):
    host: str
    port: int


class WorkerPlan(msgspec.Struct, kw_only=True):
    index: int
    rate: float  # requests per second from this worker
    duration_s: float
    targets: dict[str, Target]
    connections: int  # per channel, this worker's share
    inflight_max: int  # per connection
    mix: dict[str, int]
    cards: int
    seed: int
    timeout_s: float
    ref_prefix: str  # unique per run and worker: transaction ids never repeat across runs
    lag: int  # steps between a transaction and a later message about it
    options: dict[str, dict[str, str]] = {}


class LoadTestError(RuntimeError):
    """A run cannot go on (target down, bad plan); printed as one line."""


@contextlib.contextmanager
def collector_paused():
    """No cyclic garbage collection during a run: a full collection over the many live
    transactions stalls the loop for tens of milliseconds, which the run would then measure
    as the target's latency. What we allocate is freed by reference counting anyway."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class Worker:
    def __init__(self, plan: WorkerPlan, sink: Callable[[Interval], None]) -> None:
        self.plan = plan
        self.sink = sink
        pans = load_test_pans(plan.cards, plan.seed)
        context = adapters.Context(plan.index, pans, plan.ref_prefix)
        self.adapters = {ch: adapters.build(ch, plan.options.get(ch), context)
                         for ch in plan.mix}
        self.workload = Workload(pans, plan.mix, plan.seed * 1_000_003 + plan.index,
                                 ref_prefix=plan.ref_prefix, lag=plan.lag,
                                 channel_kinds={ch: a.kinds for ch, a in self.adapters.items()})
        self.stats = {ch: ChannelStats() for ch in plan.mix}
        self.conns: dict[str, list[Connection]] = {ch: [] for ch in plan.mix}
        self.next_conn = dict.fromkeys(plan.mix, 0)  # the connection this tick sends on
        self.backlog: dict[str, deque[tuple[int, Txn]]] = {ch: deque() for ch in plan.mix}
        self.deadlines: deque[tuple[int, Connection, str, int]] = deque()
        self.dirty: list[Connection] = []  # connections with frames to write this tick
        self.timeout_ns = int(plan.timeout_s * NS_PER_S)
        self.interval_index = 0
        self.schedule: Schedule | None = None
        self.done: asyncio.Event | None = None
        self.stopped = False

    # --- life cycle -----------------------------------------------------------------------

    async def run(self, get_start: Callable[[], float]) -> None:
        """Connect, wait for the common start (a wall-clock time), run, report the rest."""
        self.done = asyncio.Event()
        self.workload.transmitted_at = time.strftime("%Y%m%d%H%M%S")
        try:
            await self._connect()
            start_wall = get_start()
            start_ns = time.monotonic_ns() + int((start_wall - time.time()) * NS_PER_S)
            self.schedule = Schedule(self.plan.rate, self.plan.duration_s, start_ns)
            loop = asyncio.get_running_loop()
            loop.call_later(max(0.0, (start_ns - time.monotonic_ns()) / NS_PER_S), self._tick)
            self._arm_roll()
            loop.call_later(SWEEP_EVERY_S, self._sweep)
            # Bounded: every request is answered, timed out or dropped by then.
            bound_s = self.plan.duration_s + self.plan.timeout_s + RUN_GRACE_S
            with collector_paused():
                try:
                    async with asyncio.timeout(bound_s):
                        await self.done.wait()
                except TimeoutError:
                    raise LoadTestError(f"worker {self.plan.index} did not finish within "
                                        f"{bound_s:.0f} s (its event loop starved?)") from None
            self._emit()
        finally:
            self.stopped = True  # timers still armed return at once
            for conns in self.conns.values():
                for conn in conns:
                    conn.close()

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        for channel, adapter in self.adapters.items():
            target = self.plan.targets[channel]
            for _ in range(self.plan.connections):
                def factory(adapter=adapter) -> Connection:
                    return Connection(adapter, self.plan.inflight_max, self._answered,
                                      self._count, self._lost)
                try:
                    async with asyncio.timeout(CONNECT_TIMEOUT_S):
                        _, conn = await loop.create_connection(factory, target.host,
                                                               target.port)
                except (OSError, TimeoutError) as error:
                    raise LoadTestError(f"cannot connect to {channel} at {target.host}:"
                                        f"{target.port}: {error or 'timed out'}") from None
                self.conns[channel].append(conn)

    # --- sending --------------------------------------------------------------------------

    def _tick(self) -> None:
        if self.stopped:
            return
        now = time.monotonic_ns()
        # One connection per channel takes a whole tick's sends, the next tick the next one:
        # one write per tick instead of one per request (a loopback write costs ~20 us).
        for channel in self.next_conn:
            self.next_conn[channel] += 1
        if any(self.backlog.values()):
            self._drain_backlogs(now)
        schedule = self.schedule
        for index in schedule.due(now):
            intended = schedule.intended_ns(index)
            txn = self.workload.next()
            backlog = self.backlog[txn.channel]
            if not self.conns[txn.channel]:
                self.stats[txn.channel].errors += 1  # every connection to it was lost
                txn.state = UNKNOWN
            elif backlog or not self._send(txn, intended, now):
                backlog.append((intended, txn))  # sent when a connection frees up
        self._flush()
        waiting = any(self.backlog.values())
        if not schedule.finished:
            delay = (schedule.next_due_ns() - time.monotonic_ns()) / NS_PER_S
            if waiting:
                delay = min(delay, BACKLOG_RETRY_S)
            asyncio.get_running_loop().call_later(max(TICK_MIN_S, delay), self._tick)
        elif waiting:
            asyncio.get_running_loop().call_later(BACKLOG_RETRY_S, self._tick)

    def _send(self, txn: Txn, intended: int, now: int) -> bool:
        channel = txn.channel
        conns = self.conns[channel]
        count = len(conns)
        position = self.next_conn[channel]
        for _ in range(count):
            conn = conns[position % count]
            if conn.ready:
                break
            position += 1
        else:
            return False
        self.next_conn[channel] = position
        if txn.wire is None:
            txn.wire = conn.adapter.encode(txn)
        correlation_id, body = txn.wire
        if not conn.add(correlation_id, body, intended, txn):
            # The workload never reuses an id still in flight; a clash is a bug of ours.
            raise AssertionError(f"transaction id {correlation_id} is already in flight")
        if len(conn.outgoing) == 1:
            self.dirty.append(conn)
        self.deadlines.append((intended + self.timeout_ns, conn, correlation_id, intended))
        txn.state = PENDING
        stats = self.stats[channel]
        stats.sent += 1
        stats.kinds[txn.kind] = stats.kinds.get(txn.kind, 0) + 1
        lag_ns = now - intended
        stats.send_lag_us.append(lag_ns // 1000)
        if lag_ns > BEHIND_THRESHOLD_NS:
            stats.behind += 1
        return True

    def _drain_backlogs(self, now: int) -> None:
        for channel, backlog in self.backlog.items():
            while backlog:
                intended, txn = backlog[0]
                if now - intended >= self.timeout_ns:
                    self.stats[channel].dropped += 1  # it waited its whole timeout unsent
                    txn.state = UNKNOWN
                elif not self._send(txn, intended, now):
                    break
                backlog.popleft()

    def _flush(self) -> None:
        for conn in self.dirty:
            conn.flush()
        self.dirty.clear()

    # --- answers, timeouts, lost connections -------------------------------------------

    def _answered(self, txn: Txn, code: str, latency_ns: int) -> None:
        stats = self.stats[txn.channel]
        stats.answered += 1
        stats.codes[code] = stats.codes.get(code, 0) + 1
        stats.latency_us.append(latency_ns // 1000)
        txn.state = APPROVED if code in APPROVAL_CODES else DECLINED

    def _count(self, channel: str, counter: str) -> None:
        stats = self.stats[channel]
        setattr(stats, counter, getattr(stats, counter) + 1)

    def _lost(self, conn: Connection) -> None:
        channel = conn.adapter.name
        if conn in self.conns[channel]:
            self.conns[channel].remove(conn)
        self.stats[channel].errors += len(conn.pending)
        for _, txn in conn.pending.values():
            txn.state = UNKNOWN
        conn.pending.clear()

    def _sweep(self) -> None:
        if self.stopped:
            return
        now = time.monotonic_ns()
        deadlines = self.deadlines
        while deadlines and deadlines[0][0] <= now:
            _, conn, correlation_id, intended = deadlines.popleft()
            txn = conn.expire(correlation_id, intended)
            if txn is not None:
                self.stats[txn.channel].timeouts += 1
                txn.state = UNKNOWN
        if self.schedule.finished and any(self.backlog.values()):
            self._drain_backlogs(now)
            self._flush()
        if self._finished():
            self.done.set()
        else:
            asyncio.get_running_loop().call_later(SWEEP_EVERY_S, self._sweep)

    def _finished(self) -> bool:
        return (self.schedule.finished and not any(self.backlog.values())
                and not any(conn.pending for conns in self.conns.values() for conn in conns))

    # --- one-second intervals -------------------------------------------------------------

    def _arm_roll(self) -> None:
        due_ns = self.schedule.start_ns + (self.interval_index + 1) * NS_PER_S
        delay = max(0.0, (due_ns - time.monotonic_ns()) / NS_PER_S)
        asyncio.get_running_loop().call_later(delay, self._roll)

    def _roll(self) -> None:
        if self.done.is_set() or self.stopped:
            return
        self._emit()
        self.interval_index += 1
        self.workload.transmitted_at = time.strftime("%Y%m%d%H%M%S")
        self._arm_roll()

    def _emit(self) -> None:
        snapshots = {ch: stats.snapshot() for ch, stats in self.stats.items()}
        self.stats = {ch: ChannelStats() for ch in self.plan.mix}
        self.sink(Interval(worker=self.plan.index, index=self.interval_index,
                           channels=snapshots))
