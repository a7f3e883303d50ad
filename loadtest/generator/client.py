"""What the open loop (worker.py) and the closed loop (closed_loop.py) share: connections to
the targets, the deadline of every request in flight, and the counting of what became of
each request (answered, timed out, lost with its connection, unreadable answer).

A `LoadClient` owns its connections, one list per channel, and counts into `stats` (channel
-> ChannelStats of the moment: the open loop starts a fresh set every second, the closed
loop one per phase). Its connections are `ClientConnection`s: many requests in flight under
the channel's correlation ids, answers matched in any order, and they tell their client of
each answer, each bad answer and their loss. The two loops differ only in when they send: at
the schedule's intended times, or as each answer comes back.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Protocol

import msgspec

from loadtest.generator.adapters.base import ClientAdapter
from loadtest.generator.schedule import NS_PER_S
from loadtest.generator.stats import ChannelStats
from loadtest.generator.workload import APPROVED, DECLINED, PENDING, UNKNOWN
from protocols.codes import APPROVING
from protocols.framing import Framer, FramingError
from protocols.messages import AuthResponse

if TYPE_CHECKING:
    from loadtest.generator.workload import Txn



class Recorder(Protocol):
    """What keeps a run's history (loadtest/generator/history.py History): every send and
    every answer the client saw."""

    def sent(self, txn: Txn) -> None: ...

    def answered(self, txn: Txn, response: AuthResponse) -> None: ...


CONNECT_TIMEOUT_S = 5.0  # a target that does not accept within this is down
ANSWER_SIZE_MAX_BYTES = 1 << 20  # far above any channel's answer; a bigger header is garbage
EXPIRED_REMEMBERED_MAX = 10_000  # enough to recognise the late answers of a stall


class Target(msgspec.Struct, frozen=True):
    host: str
    port: int


# Where a channel's connections go: one address, or a fleet of switches serving the channel
# alike, whose connections are dealt out in turn (`fleet_of`, `LoadClient.connect`).
Targets = Target | list[Target]


def fleet_of(targets: Targets) -> list[Target]:
    return [targets] if isinstance(targets, Target) else targets


class LoadTestError(RuntimeError):
    """A run cannot go on (target down, bad plan); printed as one line."""


def freeze_startup_heap() -> None:
    """Right before a run: what set-up built stays; full collections then skip it (their
    pauses would be counted as latency)."""
    gc.collect()
    gc.freeze()


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


class ClientConnection(asyncio.Protocol):
    """One connection to a channel. `pending`: correlation id -> (ns its latency and deadline
    count from, txn)."""

    def __init__(self, client: LoadClient, adapter: ClientAdapter) -> None:
        self.client = client
        self.adapter = adapter
        self.channel = adapter.name
        self.decode = adapter.decode
        self.framer = Framer(adapter.header, ANSWER_SIZE_MAX_BYTES)
        self.pending: dict[str, tuple[int, Txn]] = {}
        self.expired: dict[str, Txn] = {}  # requests timed out lately, to tell a late answer
        self.transport: asyncio.Transport | None = None
        self.closed = False

    def read_answers(self, data: bytes) -> list[tuple[tuple[int, Txn], AuthResponse]] | None:
        """(pending entry, answer) of each whole answer in `data`, taken out of `pending`;
        None when the stream is broken (the connection is aborted)."""
        try:
            frames = self.framer.feed(data)
        except FramingError:
            self.client.count(self.channel, "bad_answers")
            self.transport.abort()
            return None
        answers = []
        for body in frames:
            try:
                correlation_id, response = self.decode(body)
            except ValueError:  # msgspec, ISO 8583 and framing errors are all ValueErrors
                self.client.count(self.channel, "bad_answers")
                continue
            entry = self.pending.pop(correlation_id, None)
            if entry is None:
                late = self.expired.pop(correlation_id, None)  # counted as a timeout
                if late is None:
                    self.client.count(self.channel, "bad_answers")
                else:
                    self.client.late(late, response)
                continue
            answers.append((entry, response))
        return answers

    def expire(self, correlation_id: str, since_ns: int) -> Txn | None:
        """Forget a request whose answer is overdue; None when it was answered already."""
        entry = self.pending.get(correlation_id)
        if entry is None or entry[0] != since_ns:  # answered (the id may be reused since)
            return None
        del self.pending[correlation_id]
        if len(self.expired) >= EXPIRED_REMEMBERED_MAX:
            del self.expired[next(iter(self.expired))]
        self.expired[correlation_id] = entry[1]
        return entry[1]

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.client.lost(self)

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.close()


class LoadClient:
    """Connections per channel, deadlines, counts; a subclass decides when to send."""

    def __init__(self, channels, timeout_s: float, first_connection: int = 0) -> None:
        self.conns: dict[str, list[ClientConnection]] = {ch: [] for ch in channels}
        # This client's connections, counted per channel from `first_connection` (its place
        # among the run's connections), pick the channel's fleet member in turn: the run's
        # connections spread evenly over the fleet, whatever client made them.
        self.connection_turn = dict.fromkeys(channels, first_connection)
        self.stats: dict[str, ChannelStats] = {ch: ChannelStats() for ch in channels}
        # (deadline ns, connection, correlation id, ns the deadline counts from), in order
        self.deadlines: deque[tuple[int, ClientConnection, str, int]] = deque()
        self.timeout_ns = int(timeout_s * NS_PER_S)
        self.stopped = False  # the run is over: timers still armed return at once
        self.history: Recorder | None = None  # when set, every send and answer is recorded

    async def connect(self, counts: dict[str, int], targets: dict[str, Targets],
                      factory: Callable[[str], ClientConnection]) -> None:
        """`counts[channel]` connections to each channel's targets, made by `factory`; each
        attempt goes to the fleet's next member (a connection made again after a loss too)."""
        loop = asyncio.get_running_loop()
        for channel, count in counts.items():
            fleet = fleet_of(targets[channel])
            for _ in range(count):
                target = fleet[self.connection_turn[channel] % len(fleet)]
                self.connection_turn[channel] += 1
                try:
                    async with asyncio.timeout(CONNECT_TIMEOUT_S):
                        _, conn = await loop.create_connection(
                            lambda channel=channel: factory(channel), target.host, target.port)
                except (OSError, TimeoutError) as error:
                    raise LoadTestError(f"cannot connect to {channel} at {target.host}:"
                                        f"{target.port}: {error or 'timed out'}") from None
                self.conns[channel].append(conn)

    async def run_bounded(self, work: Awaitable[None], bound_s: float, who: str) -> None:
        """`work` without cyclic garbage collection, within `bound_s`: past it, `who` (a
        worker) is stuck."""
        with collector_paused():
            try:
                async with asyncio.timeout(bound_s):
                    await work
            except TimeoutError:
                raise LoadTestError(f"{who} did not finish within {bound_s:.0f} s "
                                    "(its event loop starved?)") from None

    def close_connections(self) -> None:
        self.stopped = True
        for conns in self.conns.values():
            for conn in conns:
                conn.close()

    def in_flight(self) -> bool:
        return any(conn.pending for conns in self.conns.values() for conn in conns)

    # --- counting (called as requests go out and as the connections report) ----------------

    def sent(self, conn: ClientConnection, correlation_id: str, since_ns: int, txn: Txn
             ) -> ChannelStats:
        """Count a request just put in `conn.pending`, and watch its deadline."""
        self.deadlines.append((since_ns + self.timeout_ns, conn, correlation_id, since_ns))
        txn.state = PENDING
        if self.history is not None:
            self.history.sent(txn)
        stats = self.stats[conn.channel]
        stats.sent += 1
        stats.kinds[txn.kind] = stats.kinds.get(txn.kind, 0) + 1
        return stats

    def answered(self, txn: Txn, response: AuthResponse, latency_ns: int) -> None:
        if self.history is not None:
            self.history.answered(txn, response)
        code = response.response_code
        stats = self.stats[txn.channel]
        stats.answered += 1
        stats.codes[code] = stats.codes.get(code, 0) + 1
        stats.latency_us.append(latency_ns // 1000)
        if code in APPROVING:
            txn.state = APPROVED
            stats.approved[txn.kind] = stats.approved.get(txn.kind, 0) + 1
        else:
            txn.state = DECLINED

    def late(self, txn: Txn, response: AuthResponse) -> None:
        """An answer after its request timed out: counted as late (the request is counted as
        a timeout already), and kept in the history: the client did see it."""
        self.count(txn.channel, "late_answers")
        if self.history is not None:
            self.history.answered(txn, response)

    def count(self, channel: str, counter: str) -> None:
        stats = self.stats[channel]
        setattr(stats, counter, getattr(stats, counter) + 1)

    def lost(self, conn: ClientConnection) -> None:
        """A connection closed: what it had in flight will never be answered."""
        if conn in self.conns[conn.channel]:
            self.conns[conn.channel].remove(conn)
        self.stats[conn.channel].errors += len(conn.pending)
        for _, txn in conn.pending.values():
            txn.state = UNKNOWN
        conn.pending.clear()

    def expire_overdue(self, now_ns: int) -> set[ClientConnection]:
        """Count every request past its deadline as timed out; the connections they left."""
        left = set()
        deadlines = self.deadlines
        while deadlines and deadlines[0][0] <= now_ns:
            _, conn, correlation_id, since_ns = deadlines.popleft()
            txn = conn.expire(correlation_id, since_ns)
            if txn is not None:
                self.stats[txn.channel].timeouts += 1
                txn.state = UNKNOWN
                left.add(conn)
        return left
