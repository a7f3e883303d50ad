"""Bounded buffers over real TCP: a peer that never reads, a peer that trickles bytes.

The switch runs in this event loop (tests/support.py running_switch), so a test can look at
the server side of its own connection: the write buffer, whether reading is paused.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct

import redis.asyncio as aioredis

from protocols import jd
from protocols.demo import DEMO_JD_KEY
from protocols.framing import BINARY_4, Framer
from protocols.messages import MessageClass as C
from switch import limits
from switch.config import ServerLimits
from switch.server import Connection, Listener
from tests.support import (
    ANSWER_WAIT_S,
    JdClient,
    jd_request,
    make_card,
    running_switch,
    switch_config,
)

HIGH_WATER_BYTES = 4096
INFLIGHT_MAX = 8
GARBAGE = BINARY_4.encode(5) + b"\xff{not"  # answered at once with a format error (30)
GARBAGE_PER_SALE = 20  # one read carries hundreds of these, all answerable in one loop tick
UNITS = 300  # of a sale and its garbage: far more answers than any buffer here holds
ANSWERS_PER_UNIT = 1 + GARBAGE_PER_SALE


def bounded_limits(**overrides) -> ServerLimits:
    return ServerLimits(**({
        "inflight_per_connection_max": INFLIGHT_MAX, "write_paused_max_s": 60.0,
        "write_buffer_high_water_bytes": HIGH_WATER_BYTES, "write_buffer_low_water_bytes": 1024,
    } | overrides))


async def until(condition, what: str) -> None:
    async with asyncio.timeout(ANSWER_WAIT_S):
        while not condition():
            await asyncio.sleep(0.005)
    assert condition(), what


class SilentPeer:
    """A plain socket with a small receive buffer that reads nothing until told (a stream
    reader would read ahead into its own buffer); it sends from a task of its own."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.loop = asyncio.get_running_loop()
        self.sending: asyncio.Task | None = None

    @classmethod
    async def connect(cls, port: int) -> SilentPeer:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        return cls(sock)

    def send(self, data: bytes) -> None:
        self.sending = self.loop.create_task(self.loop.sock_sendall(self.sock, data))

    async def read_frames(self, count: int) -> int:
        framer, frames = Framer(BINARY_4, 1 << 20), 0
        async with asyncio.timeout(ANSWER_WAIT_S):
            while frames < count:
                data = await self.loop.sock_recv(self.sock, 65536)
                if not data:
                    break
                frames += len(framer.feed(data))
        return frames

    async def close(self) -> None:
        if self.sending:
            self.sending.cancel()
            with contextlib.suppress(BaseException):
                await self.sending
        self.sock.close()


async def server_side(listener: Listener, peer: SilentPeer | asyncio.StreamWriter,
                      small_send_buffer: bool = True) -> Connection:
    """The switch's end of the peer's connection. Its kernel send buffer is made small
    too, so a few dozen answers fill the kernel's buffers and the rest is the switch's."""
    sock = peer.sock if isinstance(peer, SilentPeer) else peer.get_extra_info("socket")
    host, port = sock.getsockname()[:2]
    found: list[Connection] = []

    def accepted() -> bool:
        found[:] = [c for c in listener.connections if c._peer() == f"{host}:{port}"]
        return bool(found)

    await until(accepted, "the switch accepted the connection")
    if small_send_buffer:
        found[0].transport.get_extra_info("socket").setsockopt(
            socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    return found[0]


def stream(pan: str, units: int) -> bytes:
    key = DEMO_JD_KEY.encode()
    sales = (jd.encode_request(jd_request(pan, C.SALE, 1), key) for _ in range(units))
    return b"".join(BINARY_4.encode(len(body)) + body + GARBAGE * GARBAGE_PER_SALE
                    for body in sales)


async def answer_sizes(port: int, pan: str) -> int:
    """The larger of the two answers the stream asks for, in bytes on the wire."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    framer = Framer(BINARY_4, 1 << 20)
    writer.write(stream(pan, 1))
    sizes: list[int] = []
    async with asyncio.timeout(ANSWER_WAIT_S):
        while len(sizes) < ANSWERS_PER_UNIT:
            sizes += [len(body) + 4 for body in framer.feed(await reader.read(65536))]
    writer.close()
    return max(sizes)


async def test_a_peer_that_does_not_read_stops_being_read_and_others_are_answered(redis_url):
    config = switch_config(server_limits=bounded_limits())
    async with running_switch(redis_url, config) as (switch, ledger):
        listener = switch.listeners["jd"]
        pan = await make_card(ledger, limit_fen=10_000_000)
        answer_max = await answer_sizes(switch.ports["jd"], pan)
        peer = await SilentPeer.connect(switch.ports["jd"])
        connection = await server_side(listener, peer)
        assert connection.transport.get_write_buffer_limits() == (1024, HIGH_WATER_BYTES)
        peaks = [0]

        async def sample() -> None:
            while True:
                peaks[0] = max(peaks[0], connection.transport.get_write_buffer_size())
                await asyncio.sleep(0.002)

        sampler = asyncio.create_task(sample())
        peer.send(stream(pan, UNITS))
        try:
            await until(lambda: connection.reading_paused and connection.writing_paused_since,
                        "reading paused because the peer does not read")
            good = await JdClient.connect(switch.ports["jd"])
            answer = await good.send(jd_request(pan, C.SALE, 100))
            await good.close()
            assert answer.response.response_code == "00"
            await until(lambda: connection.inflight == 0, "the decisions taken are answered")
            await asyncio.sleep(0.05)  # those answers are written: the sampler sees them
        finally:
            sampler.cancel()
        # Above the mark: one flush (at most the mark and one answer) and the answers of the
        # requests then in flight; then nothing more is read.
        assert peaks[0] <= 2 * HIGH_WATER_BYTES + (INFLIGHT_MAX + 1) * answer_max
        assert connection.unread and connection.reading_paused
        assert connection.writing_paused_since is not None
        assert listener.counters.answered < ANSWERS_PER_UNIT * UNITS

        answers = ANSWERS_PER_UNIT * UNITS  # the peer reads at last: every request is answered
        assert await peer.read_frames(answers) == answers
        assert not connection.reading_paused and connection.writing_paused_since is None
        await peer.close()


async def test_a_peer_that_never_reads_is_aborted_once_paused_too_long(redis_url):
    # The frame watch looks only once a minute here: the pause's bound must arm its own look.
    limits = bounded_limits(write_paused_max_s=0.5, frame_deadline_s=60.0)
    config = switch_config(server_limits=limits)
    async with running_switch(redis_url, config) as (switch, ledger):
        listener = switch.listeners["jd"]
        pan = await make_card(ledger, limit_fen=10_000_000)
        peer = await SilentPeer.connect(switch.ports["jd"])
        connection = await server_side(listener, peer)
        loop = asyncio.get_running_loop()
        lost_at: list[float] = []
        connection.closed.add_done_callback(lambda _: lost_at.append(loop.time()))
        peer.send(stream(pan, 100))
        await until(lambda: connection.writing_paused_since, "output paused")
        paused_since = connection.writing_paused_since
        async with asyncio.timeout(ANSWER_WAIT_S):
            await connection.closed
        assert lost_at[0] - paused_since >= 0.5
        assert (listener.counters.write_timeouts, listener.counters.frame_timeouts) == (1, 0)
        await peer.close()


async def test_tricklers_are_cut_at_the_frame_deadline_not_the_idle_timeout(redis_url):
    limits = ServerLimits(frame_deadline_s=0.5, idle_timeout_s=600.0)
    async with running_switch(redis_url, switch_config(server_limits=limits)) as (switch, ledger):
        listener = switch.listeners["jd"]
        pan = await make_card(ledger)
        body = jd.encode_request(jd_request(pan, C.SALE, 100), DEMO_JD_KEY.encode())
        frame = BINARY_4.encode(len(body)) + body
        loop = asyncio.get_running_loop()
        peers = [await asyncio.open_connection("127.0.0.1", switch.ports["jd"])
                 for _ in range(20)]
        began = loop.time()

        async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> float:
            async def send() -> None:
                for byte in frame[:-1]:  # all but the last byte: the frame is never whole
                    writer.write(bytes([byte]))
                    await asyncio.sleep(0.05)

            sending = asyncio.create_task(send())
            try:
                async with asyncio.timeout(ANSWER_WAIT_S):
                    assert await reader.read() == b""  # cut: no answer, end of stream
            except ConnectionResetError:
                pass
            finally:
                sending.cancel()
                writer.close()
            return loop.time()

        cut_at = await asyncio.gather(*(trickle(*peer) for peer in peers))
        assert min(cut_at) - began >= 0.5
        assert listener.counters.frame_timeouts == 20
        assert listener.counters.requests == 0  # nothing was decided
        view = await ledger.card(pan)
        assert (view.posted, view.held, view.open_to_buy) == (0, 0, 10_000)


async def test_a_frame_whole_within_the_deadline_is_answered(redis_url):
    limits = ServerLimits(frame_deadline_s=2.0)
    async with running_switch(redis_url, switch_config(server_limits=limits)) as (switch, ledger):
        pan = await make_card(ledger)
        body = jd.encode_request(jd_request(pan, C.SALE, 100), DEMO_JD_KEY.encode())
        frame = BINARY_4.encode(len(body)) + body
        reader, writer = await asyncio.open_connection("127.0.0.1", switch.ports["jd"])
        for piece in (frame[:3], frame[3:100], frame[100:]):  # in three reads, well in time
            writer.write(piece)
            await asyncio.sleep(0.1)
        async with asyncio.timeout(ANSWER_WAIT_S):
            length = BINARY_4.decode(await reader.readexactly(4))
            answer = jd.decode_response(await reader.readexactly(length), DEMO_JD_KEY.encode())
        writer.close()
        assert answer.response.response_code == "00"
        assert switch.listeners["jd"].counters.frame_timeouts == 0


async def test_a_frame_is_not_timed_while_the_switch_does_not_read(redis_url):
    """A sale and half the next frame, in one write; Redis paused, so reading stays paused
    (in flight at the bound) far longer than the frame deadline: that is our delay, not the
    peer's. Once the sale is answered and reading resumes, the half frame is timed again."""
    limits = ServerLimits(inflight_per_connection_max=1, frame_deadline_s=0.3,
                          idle_timeout_s=600.0)
    async with running_switch(redis_url, switch_config(server_limits=limits)) as (switch, ledger):
        counters = switch.listeners["jd"].counters
        pan = await make_card(ledger)
        sale, half = stream(pan, 2).split(GARBAGE * GARBAGE_PER_SALE)[:2]
        admin = aioredis.Redis.from_url(redis_url)
        reader, writer = await asyncio.open_connection("127.0.0.1", switch.ports["jd"])
        try:
            await admin.execute_command("CLIENT", "PAUSE", 1000, "ALL")
            writer.write(sale + half[:len(half) // 2])
            async with asyncio.timeout(ANSWER_WAIT_S):
                length = BINARY_4.decode(await reader.readexactly(4))
                await reader.readexactly(length)  # answered: not cut while reading was paused
            assert counters.frame_timeouts == 0
            async with asyncio.timeout(ANSWER_WAIT_S):  # the rest never comes: cut
                with contextlib.suppress(ConnectionResetError):
                    assert await reader.read() == b""
            assert counters.frame_timeouts == 1
        finally:
            writer.close()
            await admin.aclose()
        assert counters.requests == 1  # the half frame decided nothing


async def test_one_connection_starts_at_most_frames_per_tick_max_requests_a_tick(jd_switch):
    """Frames of one read beyond the bound wait for the next loop tick (other connections'
    events come in between): counted between two turns of this test's own task."""
    switch, _ = jd_switch
    counters, per_tick = switch.listeners["jd"].counters, limits.frames_per_tick_max
    frames = 3 * per_tick + 5
    reader, writer = await asyncio.open_connection("127.0.0.1", switch.ports["jd"])
    connection = await server_side(switch.listeners["jd"], writer, small_send_buffer=False)
    first = last = counters.requests
    steps, waiting = [], []
    writer.write(GARBAGE * frames)  # small enough to arrive in one read
    async with asyncio.timeout(ANSWER_WAIT_S):
        while counters.requests - first < frames:
            await asyncio.sleep(0)  # one loop tick
            steps.append(counters.requests - last)
            last = counters.requests
            waiting.append((len(connection.unread), connection.reading_paused))
    writer.close()
    assert max(steps) == per_tick
    assert sum(steps) == frames
    assert any(count for count, _ in waiting)  # frames did wait for a later tick ...
    assert all(paused for count, paused in waiting if count)  # ... and nothing was read then


async def test_a_peer_that_resets_during_the_drain_does_not_stop_the_shutdown(redis_url):
    """Reading is paused while decisions drain, so the switch does not see the reset until
    it half-closes: that connection is aborted and the others are finished as usual."""
    async with running_switch(redis_url) as (switch, ledger):
        pan = await make_card(ledger)
        gone = await SilentPeer.connect(switch.ports["jd"])
        connection = await server_side(switch.listeners["jd"], gone)
        other = await JdClient.connect(switch.ports["jd"])
        admin = aioredis.Redis.from_url(redis_url)
        try:
            await admin.execute_command("CLIENT", "PAUSE", 500, "ALL")
            pending = asyncio.create_task(other.send(jd_request(pan, C.SALE, 100)))
            await until(lambda: switch.listeners["jd"].pending, "a decision in flight")
            shutdown = asyncio.create_task(switch.shutdown())
            await until(lambda: connection.draining, "the shutdown drains")
            gone.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            gone.sock.close()  # a reset, unseen while reading is paused
            async with asyncio.timeout(ANSWER_WAIT_S):
                await shutdown
            assert (await pending).response.response_code == "00"
        finally:
            await other.close()
            await admin.aclose()


async def test_the_kernels_send_buffer_is_the_configured_one_or_left_alone(redis_url):
    """Linux keeps twice what is set (the rest for its own bookkeeping); 0 leaves what the
    kernel gives any accepted connection (on loopback, already grown by autotuning)."""
    for configured in (24_576, 0):
        limits = ServerLimits(socket_send_buffer_bytes=configured)
        async with running_switch(redis_url, switch_config(server_limits=limits)) as (switch, _):
            reader, writer = await asyncio.open_connection("127.0.0.1", switch.ports["jd"])
            connection = await server_side(switch.listeners["jd"], writer,
                                           small_send_buffer=False)
            sock = connection.transport.get_extra_info("socket")
            expected = 2 * configured if configured else await kernels_send_buffer()
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) == expected
            writer.close()


async def kernels_send_buffer() -> int:
    """SO_SNDBUF of a connection accepted by a plain listening socket, nothing set."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        reader, writer = await asyncio.open_connection(*server.getsockname())
        accepted, _ = server.accept()
        with accepted:
            size = accepted.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
        writer.close()
    assert size != 2 * 24_576
    return size
