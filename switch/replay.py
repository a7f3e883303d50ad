"""`switch replay`: a recording's requests sent again, byte for byte, to a switch over TCP,
and each new answer's decision compared with the recorded one.

Order: requests go out in the order they arrived. One waits until (1) its time has come
(the recorded offset divided by the speed; none at `max`) and (2) every request whose
recorded answer went out before it arrived has its new answer (what it could have depended
on: the authorization before its capture). A recorded connection's requests all go, in
order, on one replay connection (an x-pay token's ATCs must rise), pipelined as recorded; an
answer is matched to its request by the correlation id the recorded answer carried. Every
wait is bounded by the per-request timeout.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import time
from collections.abc import Callable

import msgspec

from protocols.cardnumbers import mask_pan
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
    """One TCP connection to a listener carrying requests pipelined; each answer goes to the
    oldest request waiting under its correlation id (what the recorded answer carried).
    Opened when first used, and again after a failure."""

    def __init__(self, target: Target, wire: ChannelWire, read: Callable) -> None:
        self.target = target
        self.header = HEADER_FORMATS[wire.header]
        self.read = read
        self.writer: asyncio.StreamWriter | None = None
        self.opening: asyncio.Task | None = None
        self.reading: asyncio.Task | None = None
        self.waiting: dict[str, collections.deque[asyncio.Future]] = {}
        self.unmatched = 0  # answers no request waited for (late after a timeout, unreadable)

    async def exchange(self, body: bytes, correlation_id: str, timeout_s: float) -> Replayed:
        """`correlation_id` "": the request was recorded without an answer; it takes an
        answer that no other request waits for, if one comes within `timeout_s`."""
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                await self._open()
        except (OSError, TimeoutError) as error:
            return Replayed(None, f"cannot connect to {self.target.host}:{self.target.port}: "
                            f"{error or 'timed out'}")
        future = asyncio.get_running_loop().create_future()
        queue = self.waiting.setdefault(correlation_id, collections.deque())
        queue.append(future)
        self.writer.write(self.header.encode(len(body)) + body)
        try:
            async with asyncio.timeout(timeout_s):
                return Replayed(await future)
        except TimeoutError:
            return Replayed(None, f"no answer within {timeout_s:g} s" if correlation_id else "")
        except ConnectionError as error:
            return Replayed(None, str(error))
        finally:
            if future in queue:
                queue.remove(future)
            if not queue:  # one entry per id waited for, not per id ever sent
                self.waiting.pop(correlation_id, None)

    async def _open(self) -> None:
        if self.writer is not None and not self.writer.is_closing():
            return
        if self.opening is None:
            self.opening = asyncio.get_running_loop().create_task(self._connect())
        try:
            await asyncio.shield(self.opening)
        finally:
            if self.opening is not None and self.opening.done():
                self.opening = None

    async def _connect(self) -> None:
        reader, writer = await asyncio.open_connection(self.target.host, self.target.port)
        self.writer = writer
        self.reading = asyncio.get_running_loop().create_task(self._read_answers(reader,
                                                                                 writer))

    async def _read_answers(self, reader: asyncio.StreamReader,
                            writer: asyncio.StreamWriter) -> None:
        framer = Framer(self.header, ANSWER_SIZE_MAX_BYTES)
        try:
            while data := await reader.read(65536):
                for body in framer.feed(data):
                    self._deliver(body)
            problem = ConnectionError("the switch closed the connection")
        except (OSError, ValueError) as error:
            problem = ConnectionError(f"connection failed: {error}")
        writer.close()
        if self.writer is writer:
            self.writer = None
        for queue in self.waiting.values():
            for future in queue:
                if not future.done():
                    future.set_exception(problem)

    def _deliver(self, body: bytes) -> None:
        try:
            correlation_id = self.read(body).correlation_id
        except Exception:  # the peer's bytes: unreadable, nobody's answer
            self.unmatched += 1
            return
        # An answer nobody waits for by its id is taken for a request recorded without one
        # (whose id the recording cannot tell) when such a request waits.
        queue = self.waiting.get(correlation_id) or self.waiting.get("")
        while queue:
            future = queue.popleft()
            if not future.done():
                future.set_result(body)
                return
        self.unmatched += 1

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.writer = None
        if self.reading is not None:
            self.reading.cancel()
            await asyncio.gather(self.reading, return_exceptions=True)
            self.reading = None


class Player:
    def __init__(self, played: list[Played], targets: dict[str, Target],
                 wires: dict[str, ChannelWire], speed: float | None,
                 connections: int = 8, timeout_s: float = 5.0,
                 no_answer_wait_s: float = 1.0) -> None:
        """`speed`: times the recorded pace (None: as fast as the order allows);
        `connections`: per channel; `no_answer_wait_s`: how long a request recorded without
        an answer is given."""
        channels = {p.exchange.channel for p in played}
        missing = channels - set(targets)
        if missing:
            raise ValueError(f"no --target for channel(s) {', '.join(sorted(missing))} of the "
                             "recording")
        self.played = played
        self.speed = speed
        self.timeout_s = timeout_s
        self.no_answer_wait_s = no_answer_wait_s
        self.readers = {channel: answer_reader(channel, wires[channel]) for channel in channels}
        self.results: list[Replayed | None] = [None] * len(played)
        self.done = [False] * len(played)
        answered = sorted(range(len(played)), key=lambda i: played[i].exchange.answered_ns)
        self.answered_order = answered
        self.answered_times = [played[i].exchange.answered_ns for i in answered]
        self.answered_prefix = 0  # answered_order[:prefix] all have their new answers
        self.progress = asyncio.Condition()
        self.pools = {channel: [ReplayConnection(targets[channel], wires[channel],
                                                 self.readers[channel])
                                for _ in range(connections)] for channel in channels}
        self.sticky: dict[tuple[int, int], ReplayConnection] = {}
        self.finished = 0

    def _connection(self, item: Played) -> ReplayConnection:
        """A recorded connection's requests all go on one replay connection, in order."""
        key = (item.process, item.exchange.connection)
        connection = self.sticky.get(key)
        if connection is None:
            pool = self.pools[item.exchange.channel]
            connection = self.sticky[key] = pool[len(self.sticky) % len(pool)]
        return connection

    async def run(self, on_progress: Callable[[int, int], None] | None = None
                  ) -> list[Replayed]:
        loop = asyncio.get_running_loop()
        start = loop.time()
        first_ns = self.played[0].exchange.arrival_ns if self.played else 0
        tasks = []
        for item in self.played:
            x = item.exchange
            if self.speed is not None:
                due = start + (x.arrival_ns - first_ns) / 1e9 / self.speed
                await asyncio.sleep(max(0.0, due - loop.time()))
            # Every request answered before this one arrived has its new answer first.
            needed = bisect.bisect_left(self.answered_times, x.arrival_ns)
            if self.answered_prefix < needed:
                await self._bounded(needed)
            tasks.append(loop.create_task(self._send(item, self._connection(item))))
            if on_progress is not None:
                on_progress(self.finished, len(self.played))
        await asyncio.gather(*tasks)
        for pool in self.pools.values():
            for connection in pool:
                await connection.close()
        return [r if r is not None else Replayed(None, "not sent") for r in self.results]

    async def _bounded(self, needed: int) -> None:
        """Waits at most a timeout and a margin: the requests waited for end by then."""
        try:
            async with asyncio.timeout(self.timeout_s + limits.replay_wait_margin_s):
                async with self.progress:
                    await self.progress.wait_for(lambda: self.answered_prefix >= needed)
        except TimeoutError:
            pass  # sent anyway: the order it needed could not be kept, its diff will show

    async def _send(self, item: Played, connection: ReplayConnection) -> None:
        x = item.exchange
        correlation_id = self.readers[x.channel](x.answer).correlation_id if x.answer else ""
        wait_s = self.timeout_s if x.answer else self.no_answer_wait_s
        try:
            self.results[item.index] = await connection.exchange(x.request, correlation_id,
                                                                 wait_s)
        finally:
            self.done[item.index] = True
            self.finished += 1
            async with self.progress:
                order, done = self.answered_order, self.done
                while self.answered_prefix < len(order) and done[order[self.answered_prefix]]:
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
        differences.append(Difference(item.index, x.channel, mask_pan(x.card) if x.card else "",
                                      x.kind, x.amount_fen,
                                      x.mcc, recorded, replayed,
                                      "; ".join(n for n in (note_before, note_now, result.error)
                                                if n)))
    return Diff(len(played), len(played) - len(differences), differences)


def elapsed_since(started: float) -> float:
    return round(time.monotonic() - started, 3)
