"""`switch replay`: a recording's requests sent again, byte for byte, to a switch over TCP,
and each new answer's decision compared with the recorded one.

Order: requests go out in the order they arrived. One waits until (1) its time has come
(the recorded offset divided by the speed; none at `max`), (2) every request whose recorded
answer went out before it arrived has its new answer (what it could have depended on: the
authorization before its capture), and (3) the previous request of its recorded connection
has its new answer. Each replay connection carries one request at a time, so an answer is
the answer to the request just sent. Every wait is bounded by the per-request timeout.
"""

from __future__ import annotations

import asyncio
import bisect
import time
from collections.abc import Callable

import msgspec

from protocols.framing import HEADER_FORMATS, Framer
from protocols.recording import ChannelWire, Played, answer_reader
from switch import limits

ANSWER_SIZE_MAX_BYTES = 16 * 1024 * 1024  # the listeners' largest frame by config
CONNECT_TIMEOUT_S = 5.0


class Target(msgspec.Struct, frozen=True):
    host: str
    port: int


class Replayed(msgspec.Struct):
    answer: bytes | None = None  # None: no answer (timed out, connection failed)
    error: str = ""


class ReplayConnection:
    """One TCP connection to a listener, one request at a time; reopened after a failure."""

    def __init__(self, target: Target, wire: ChannelWire, timeout_s: float) -> None:
        self.target = target
        self.header = HEADER_FORMATS[wire.header]
        self.timeout_s = timeout_s
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.framer = Framer(self.header, ANSWER_SIZE_MAX_BYTES)

    async def exchange(self, body: bytes, expect_answer: bool) -> Replayed:
        try:
            if self.writer is None:
                async with asyncio.timeout(CONNECT_TIMEOUT_S):
                    self.reader, self.writer = await asyncio.open_connection(
                        self.target.host, self.target.port)
                self.framer = Framer(self.header, ANSWER_SIZE_MAX_BYTES)
            self.writer.write(self.framer.frame(body))
            async with asyncio.timeout(self.timeout_s):
                return Replayed(await self._answer())
        except TimeoutError:
            self.close()  # an answer that comes late would be taken for the next one's
            return Replayed(None, "" if not expect_answer else
                            f"no answer within {self.timeout_s:g} s")
        except (OSError, ConnectionError, ValueError) as error:
            self.close()
            return Replayed(None, f"{type(error).__name__}: {error}")

    async def _answer(self) -> bytes:
        while True:
            data = await self.reader.read(65536)
            if not data:
                raise ConnectionError("the switch closed the connection")
            frames = self.framer.feed(data)
            if frames:
                return frames[0]

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


class Player:
    def __init__(self, played: list[Played], targets: dict[str, Target],
                 wires: dict[str, ChannelWire], speed: float | None,
                 connections: int = 8, timeout_s: float = 5.0,
                 no_answer_wait_s: float = 1.0) -> None:
        """`speed`: times the recorded pace (None: as fast as the order allows);
        `no_answer_wait_s`: how long to wait on a request that was recorded without answer."""
        missing = {p.exchange.channel for p in played} - set(targets)
        if missing:
            raise ValueError(f"no --target for channel(s) {', '.join(sorted(missing))} of the "
                             "recording")
        self.played = played
        self.targets = targets
        self.speed = speed
        self.results: list[Replayed | None] = [None] * len(played)
        self.done = [asyncio.Event() for _ in played]
        answered = sorted(range(len(played)), key=lambda i: played[i].exchange.answered_ns)
        self.answered_order = answered
        self.answered_times = [played[i].exchange.answered_ns for i in answered]
        self.answered_prefix = 0  # answered_order[:prefix] all have their new answers
        self.progress = asyncio.Condition()
        self.pools: dict[str, asyncio.Queue[ReplayConnection]] = {}
        for channel in {p.exchange.channel for p in played}:
            pool: asyncio.Queue[ReplayConnection] = asyncio.Queue()
            for _ in range(connections):
                pool.put_nowait(ReplayConnection(targets[channel], wires[channel],
                                                 timeout_s))
            self.pools[channel] = pool
        self.timeout_s = timeout_s
        self.no_answer_wait_s = no_answer_wait_s
        self.finished = 0

    async def run(self, on_progress: Callable[[int, int], None] | None = None
                  ) -> list[Replayed]:
        loop = asyncio.get_running_loop()
        start = loop.time()
        first_ns = self.played[0].exchange.arrival_ns if self.played else 0
        previous: dict[tuple[int, str, int], int] = {}
        tasks = []
        for item in self.played:
            x = item.exchange
            if self.speed is not None:
                due = start + (x.arrival_ns - first_ns) / 1e9 / self.speed
                await asyncio.sleep(max(0.0, due - loop.time()))
            needed = bisect.bisect_left(self.answered_times, x.arrival_ns)  # answered before
            await self._wait(lambda needed=needed: self.answered_prefix >= needed)
            key = (item.process, x.channel, x.connection)
            if key in previous:
                await self._bounded(self.done[previous[key]].wait())
            previous[key] = item.index
            connection = await self.pools[x.channel].get()
            tasks.append(loop.create_task(self._send(item, connection)))
            if on_progress is not None:
                on_progress(self.finished, len(self.played))
        await asyncio.gather(*tasks)
        for connection_pool in self.pools.values():
            while not connection_pool.empty():
                connection_pool.get_nowait().close()
        return [r if r is not None else Replayed(None, "not sent") for r in self.results]

    async def _wait(self, ready: Callable[[], bool]) -> None:
        async with self.progress:
            await self._bounded(self.progress.wait_for(ready))

    async def _bounded(self, waiting) -> None:
        """A request waits for others at most their timeout and a little: theirs end by then."""
        try:
            async with asyncio.timeout(self.timeout_s + limits.replay_wait_margin_s):
                await waiting
        except TimeoutError:
            pass  # sent anyway: the order it needed could not be kept, its diff will show

    async def _send(self, item: Played, connection: ReplayConnection) -> None:
        x = item.exchange
        expect = bool(x.answer)
        if not expect:  # recorded without answer (a forced no-answer): wait less
            connection.timeout_s = self.no_answer_wait_s
        try:
            self.results[item.index] = await connection.exchange(x.request, expect)
        finally:
            connection.timeout_s = self.timeout_s
            self.pools[x.channel].put_nowait(connection)
            self.done[item.index].set()
            self.finished += 1
            async with self.progress:
                order, done = self.answered_order, self.done
                while self.answered_prefix < len(order) and done[order[self.answered_prefix]
                                                                 ].is_set():
                    self.answered_prefix += 1
                self.progress.notify_all()


# --- the decision diff --------------------------------------------------------------------


class Decision(msgspec.Struct, frozen=True):
    response_code: str
    approved_fen: int
    open_to_buy_fen: int
    reason: str


class Difference(msgspec.Struct):
    index: int  # in arrival order
    channel: str
    card: str  # masked
    kind: str
    amount_fen: int
    mcc: str
    recorded: Decision | None  # None: no answer
    replayed: Decision | None
    note: str = ""  # why an answer could not be read, or why none came


class Diff(msgspec.Struct):
    exchanges: int
    matching: int
    differences: list[Difference]
    elapsed_s: float = 0.0
    speed: str = ""
    targets: dict[str, str] = {}


def decision_of(read, answer: bytes | None) -> tuple[Decision | None, str]:
    if not answer:
        return None, ""
    try:
        response = read(answer).response
    except Exception as error:  # a peer's bytes: any reader error is a difference to show
        return None, f"answer unreadable: {error}"
    return Decision(response.response_code, response.approved_fen, response.open_to_buy_fen,
                    response.reason), ""


def diff(played: list[Played], results: list[Replayed], wires: dict[str, ChannelWire]
         ) -> Diff:
    readers = {channel: answer_reader(channel, wire) for channel, wire in wires.items()}
    differences = []
    for item, result in zip(played, results, strict=True):
        x = item.exchange
        read = readers[x.channel]
        recorded, note_before = decision_of(read, x.answer)
        replayed, note_now = decision_of(read, result.answer)
        if recorded == replayed and not note_before and not note_now:
            continue
        differences.append(Difference(item.index, x.channel, x.card, x.kind, x.amount_fen,
                                      x.mcc, recorded, replayed,
                                      "; ".join(n for n in (note_before, note_now, result.error)
                                                if n)))
    return Diff(len(played), len(played) - len(differences), differences)


def elapsed_since(started: float) -> float:
    return round(time.monotonic() - started, 3)
