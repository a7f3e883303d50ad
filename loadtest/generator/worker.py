"""One load-generating worker: its connections, the open-loop scheduler, timeouts, intervals.

Runs in the event loop of its own process. Every second it hands the parent a snapshot of
what happened (counters and counted latencies) and starts afresh, so the parent can show
progress and merge the workers without sharing memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import sys
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

import msgspec

from loadtest.generator import adapters
from loadtest.generator.client import LoadClient, LoadTestError, Targets
from loadtest.generator.connection import Connection
from loadtest.generator.recorded import RecordedWorkload, read_folder
from loadtest.generator.schedule import NS_PER_S, Schedule
from loadtest.generator.stats import ChannelStats, Interval
from loadtest.generator.workload import (
    UNKNOWN,
    Txn,
    Workload,
    load_test_pans,
)

RUN_GRACE_S = 10.0  # past duration + timeout, a worker that has not finished is stuck
SWEEP_EVERY_S = 0.01  # timeouts are found to within 10 ms; finer costs CPU for nothing
# What wakes the sender. The event loop's own timers tick in whole milliseconds (libuv: a
# shorter sleep wakes at once, and a loop that wakes at once for nothing spins a core the
# target needs), which would put up to 1 ms of batching into every latency. On Linux a
# timerfd armed at the next intended send time, watched by the loop like a socket, wakes it
# to within the kernel's timer slack (~50 us) instead, and the loop still sleeps in epoll
# between sends. Elsewhere the loop's timers are used: batches at most once a millisecond.
TICK_MIN_S = 0.001  # the loop's timers: their resolution
# timerfd: wake-ups at least this far apart. A wake-up costs ~30-40 us of CPU here (a 2-core
# VM), so at high rates sends still go in batches (at most 5,000 a second: at 30,000/s, 50 us
# apart, the generator spent its core on wake-ups and fell behind); below 5,000/s every send
# gets its own wake-up. A send waits at most this long for its batch.
TICK_MIN_NS = 200_000
BACKLOG_RETRY_NS = 1_000_000  # how soon to retry sends waiting for a free connection
# A send more than this after its intended time counts as behind schedule: with a timerfd,
# 1 ms is five times the batching above plus the wake-up's slack, so what is over it is the
# generator's loop busy or the machine stalling it; with the loop's timers, which tick in
# whole milliseconds, it is 2 ms (`LoopTimer.behind_ns`).
BEHIND_THRESHOLD_NS = 1_000_000
# With `reconnect` (a chaos run restarts its target): how soon a lost connection is tried
# again. A restarted switch listens within a second or so; trying more often only spends
# the generator's CPU on refused connects.
RECONNECT_EVERY_S = 0.05


class LoopTimer:
    """Wakes the sender with the event loop's own timers: whole milliseconds at best."""

    min_gap_ns = 0  # TICK_MIN_S already keeps the wake-ups apart
    behind_ns = 2_000_000  # a lag under 2 ms is this timer's resolution

    def __init__(self, loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
        self.loop = loop
        self.callback = callback
        self.handle: asyncio.TimerHandle | None = None

    def arm(self, when_ns: int) -> None:
        """Call back at `when_ns` (time.monotonic_ns), replacing any earlier arming."""
        if self.handle is not None:
            self.handle.cancel()
        delay = (when_ns - time.monotonic_ns()) / NS_PER_S
        self.handle = self.loop.call_later(max(TICK_MIN_S, delay), self.callback)

    def close(self) -> None:
        if self.handle is not None:
            self.handle.cancel()


class _Timespecs(ctypes.Structure):  # struct itimerspec: interval, then value
    _fields_ = [("interval_s", ctypes.c_long), ("interval_ns", ctypes.c_long),
                ("value_s", ctypes.c_long), ("value_ns", ctypes.c_long)]


CLOCK_MONOTONIC = 1  # the clock of time.monotonic_ns on Linux
TFD_TIMER_ABSTIME = 1


def _libc_timerfd():
    """libc's timerfd_create and timerfd_settime, or None (not Linux, no such functions)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        create, settime = libc.timerfd_create, libc.timerfd_settime
    except (OSError, AttributeError):
        return None
    create.argtypes = [ctypes.c_int, ctypes.c_int]
    create.restype = ctypes.c_int
    settime.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.POINTER(_Timespecs), ctypes.c_void_p]
    settime.restype = ctypes.c_int
    return create, settime


class TimerFd:
    """Wakes the sender at a nanosecond time: a Linux timerfd (through ctypes: Python 3.11 has
    no os.timerfd_create) that the event loop watches like a socket."""

    min_gap_ns = TICK_MIN_NS
    behind_ns = BEHIND_THRESHOLD_NS

    def __init__(self, loop: asyncio.AbstractEventLoop, callback: Callable[[], None],
                 functions) -> None:
        create, self.settime = functions
        fd = create(CLOCK_MONOTONIC, os.O_NONBLOCK | os.O_CLOEXEC)  # = TFD_NONBLOCK, _CLOEXEC
        if fd < 0:
            error = ctypes.get_errno()
            raise OSError(error, f"timerfd_create: {os.strerror(error)}")
        self.fd = fd
        self.loop = loop
        self.callback = callback
        self.spec = _Timespecs()
        self.spec_ref = ctypes.byref(self.spec)
        loop.add_reader(fd, self._fired)

    def arm(self, when_ns: int) -> None:
        """Call back at `when_ns` (time.monotonic_ns; a past time: at once), replacing any
        earlier arming."""
        self.spec.value_s, self.spec.value_ns = divmod(max(1, when_ns), NS_PER_S)
        if self.settime(self.fd, TFD_TIMER_ABSTIME, self.spec_ref, None):
            error = ctypes.get_errno()
            raise OSError(error, f"timerfd_settime: {os.strerror(error)}")

    def _fired(self) -> None:
        try:
            os.read(self.fd, 8)  # the count of expirations; reading it clears the readiness
        except BlockingIOError:
            return  # re-armed to a later time after it had fired
        self.callback()

    def close(self) -> None:
        self.loop.remove_reader(self.fd)
        os.close(self.fd)


def send_timer(loop: asyncio.AbstractEventLoop, callback: Callable[[], None]):
    """A TimerFd where there is one, else the loop's own timers."""
    functions = _libc_timerfd()
    if functions is not None:
        with contextlib.suppress(OSError):
            return TimerFd(loop, callback, functions)
    return LoopTimer(loop, callback)


class WorkerPlan(msgspec.Struct, kw_only=True):
    index: int
    rate: float  # requests per second from this worker
    duration_s: float
    targets: dict[str, Targets]
    connections: int  # per channel, this worker's share
    inflight_max: int  # per connection
    mix: dict[str, int]
    cards: int
    seed: int
    timeout_s: float
    ref_prefix: str  # unique per run and worker: transaction ids never repeat across runs
    lag: int  # steps between a transaction and a later message about it
    options: dict[str, dict[str, str]] = {}
    # A lost connection is made again (every RECONNECT_EVERY_S until it is); meanwhile the
    # requests wait unsent, and are dropped after their timeout. Off: the run goes on
    # with the connections left, and fails what it cannot send (the target is down).
    reconnect: bool = False
    recording: str = ""  # a `switch serve --record` folder: its requests are the workload
    workers: int = 1  # of the run: a recording's requests are shared out over them
    # Where this worker's connections start among the run's connections to a channel (every
    # part's): a fleet's members take them in turn (client.py `LoadClient.connect`).
    first_connection: int = 0


class Worker(LoadClient):
    """The open loop: sends at the schedule's intended times, whatever the answers do."""

    def __init__(self, plan: WorkerPlan, sink: Callable[[Interval], None]) -> None:
        super().__init__(plan.mix, plan.timeout_s, plan.first_connection)
        self.plan = plan
        self.sink = sink
        pans = load_test_pans(plan.cards, plan.seed)
        context = adapters.Context(plan.index, pans, plan.ref_prefix)
        self.adapters = {ch: adapters.build(ch, plan.options.get(ch), context)
                         for ch in plan.mix}
        self.workload = self._workload(pans) if not plan.recording else self._recorded()
        self.next_conn = dict.fromkeys(plan.mix, 0)  # the connection this tick sends on
        self.backlog: dict[str, deque[tuple[int, Txn]]] = {ch: deque() for ch in plan.mix}
        self.dirty: list[Connection] = []  # connections with frames to write this tick
        self.interval_index = 0
        self.schedule: Schedule | None = None
        self.timer: TimerFd | LoopTimer | None = None  # wakes `_tick`
        self.done: asyncio.Event | None = None
        self.missing = dict.fromkeys(plan.mix, 0)  # connections lost, to make again
        self.reconnecting: dict[str, asyncio.Task] = {}

    def _workload(self, pans) -> Workload:
        plan = self.plan
        return Workload(pans, plan.mix, plan.seed * 1_000_003 + plan.index,
                        ref_prefix=plan.ref_prefix, lag=plan.lag,
                        channel_kinds={ch: a.kinds for ch, a in self.adapters.items()})

    def _recorded(self) -> RecordedWorkload:
        """The recording's requests, this worker's share. Each channel needs more distinct
        requests than it can have in flight, or an id would be sent while still in flight."""
        plan = self.plan
        played, _ = read_folder(Path(plan.recording))
        workload = RecordedWorkload(played, {ch: a.decode for ch, a in self.adapters.items()},
                                    plan.index, plan.workers)
        in_flight_max = plan.connections * plan.inflight_max
        for channel in plan.mix:
            if workload.distinct(channel) <= in_flight_max:
                raise LoadTestError(
                    f"the recording has {workload.distinct(channel)} distinct {channel} "
                    f"requests for worker {plan.index}, not more than the {in_flight_max} it "
                    "may have in flight: lower --connections or --inflight")
        return workload

    # --- life cycle -----------------------------------------------------------------------

    async def run(self, get_start: Callable[[], float]) -> None:
        """Connect, wait for the common start (a wall-clock time), run, report the rest."""
        self.done = asyncio.Event()
        self.workload.transmitted_at = time.strftime("%Y%m%d%H%M%S")
        try:
            await self.connect(dict.fromkeys(self.adapters, self.plan.connections),
                               self.plan.targets, self._connection)
            start_wall = get_start()
            start_ns = time.monotonic_ns() + int((start_wall - time.time()) * NS_PER_S)
            self.schedule = Schedule(self.plan.rate, self.plan.duration_s, start_ns)
            loop = asyncio.get_running_loop()
            self.timer = send_timer(loop, self._tick)
            self.timer.arm(start_ns)
            self._arm_roll()
            loop.call_later(SWEEP_EVERY_S, self._sweep)
            # Bounded: every request is answered, timed out or dropped by then.
            bound_s = self.plan.duration_s + self.plan.timeout_s + RUN_GRACE_S
            await self.run_bounded(self.done.wait(), bound_s, f"worker {self.plan.index}")
            self._emit()
        finally:
            if self.timer is not None:
                self.timer.close()
            self.close_connections()
            for task in list(self.reconnecting.values()):
                task.cancel()

    def _connection(self, channel: str) -> Connection:
        return Connection(self, self.adapters[channel], self.plan.inflight_max)

    def lost(self, conn) -> None:
        super().lost(conn)
        if self.plan.reconnect and not self.stopped:
            self.missing[conn.channel] += 1
            if conn.channel not in self.reconnecting:
                self.reconnecting[conn.channel] = asyncio.get_running_loop().create_task(
                    self._reconnect(conn.channel))

    async def _reconnect(self, channel: str) -> None:
        try:
            while self.missing[channel] and not self.stopped:
                try:
                    await self.connect({channel: 1}, self.plan.targets, self._connection)
                    self.missing[channel] -= 1
                except LoadTestError:  # still down: try again shortly
                    await asyncio.sleep(RECONNECT_EVERY_S)
        finally:
            del self.reconnecting[channel]

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
            if not self.conns[txn.channel] and not self.plan.reconnect:
                self.stats[txn.channel].errors += 1  # every connection to it was lost
                txn.state = UNKNOWN
            elif backlog or not self._send(txn, intended, now):
                backlog.append((intended, txn))  # sent when a connection frees up
        self._flush()
        waiting = any(self.backlog.values())
        if not schedule.finished:
            when = schedule.next_due_ns()
            if waiting:
                when = min(when, now + BACKLOG_RETRY_NS)
            self.timer.arm(max(when, now + self.timer.min_gap_ns))
        elif waiting:
            self.timer.arm(now + BACKLOG_RETRY_NS)

    def _send(self, txn: Txn, intended: int, now: int) -> bool:
        conn = self._connection_for(txn)
        if conn is None:
            return False
        if txn.wire is None:
            txn.wire = conn.adapter.encode(txn)
        correlation_id, body = txn.wire
        if not conn.add(correlation_id, body, intended, txn):
            # The workload never reuses an id still in flight; a clash is a bug of ours.
            raise AssertionError(f"transaction id {correlation_id} is already in flight")
        if len(conn.outgoing) == 1:
            self.dirty.append(conn)
        stats = self.sent(conn, correlation_id, intended, txn)
        lag_ns = now - intended
        stats.send_lag_us.append(lag_ns // 1000)
        if lag_ns > self.timer.behind_ns:
            stats.behind += 1
        return True

    def _connection_for(self, txn: Txn) -> Connection | None:
        """The ready connection to send `txn` on, or None: the tick's connection (or the next
        ready one), or for a card-ordered channel always the card's own."""
        conns = self.conns[txn.channel]
        count = len(conns)
        if not count:
            return None
        if conns[0].adapter.card_ordered:
            conn = conns[hash(txn.request.card) % count]
            return conn if conn.ready else None
        position = self.next_conn[txn.channel]
        for _ in range(count):
            conn = conns[position % count]
            if conn.ready:
                self.next_conn[txn.channel] = position
                return conn
            position += 1
        return None

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

    # --- timeouts ---------------------------------------------------------------------------

    def _sweep(self) -> None:
        if self.stopped:
            return
        now = time.monotonic_ns()
        self.expire_overdue(now)
        if self.schedule.finished and any(self.backlog.values()):
            self._drain_backlogs(now)
            self._flush()
        if self._finished():
            self.done.set()
        else:
            asyncio.get_running_loop().call_later(SWEEP_EVERY_S, self._sweep)

    def _finished(self) -> bool:
        return (self.schedule.finished and not any(self.backlog.values())
                and not self.in_flight())

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
