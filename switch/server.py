"""TCP listeners: one per channel, each with its framer and codec, all sharing one engine.

Transport only: bytes in, frames out to the codec, decisions from the engine, answers back.
Several requests may be in flight on one connection and complete out of order (answers
carry the channel's own ids). A connection stops being read while `inflight_per_connection_max`
requests wait for answers, or while its unsent answers are above the write buffer's
high-water mark (its peer is not reading), until both have drained. Every request gets an
answer: a decision within the deadline, or 91 when Redis is too slow, or 96 when something
of ours broke. A connection is cut when a frame is not whole `frame_deadline_s` after its
first byte, or when its output has stayed paused `write_paused_max_s` (switch/watch.py).
With `--record`, each exchange is noted to the recorder as its answer goes out (one append:
switch/recorder.py writes it off the hot path).
"""

from __future__ import annotations

import asyncio
import collections
import functools
import itertools
import logging
import socket
import time
from collections.abc import Callable

from protocols.batch import BatchWork
from protocols.cardnumbers import mask_pan
from protocols.channel import ChannelCodec, Decoded, KeyNeeded
from protocols.codes import Code, Reason
from protocols.framing import Framer, FramingError
from protocols.iso_channel import KEYS_UNAVAILABLE
from protocols.iso_session import SessionChange
from protocols.messages import AuthRequest, AuthResponse, decline
from switch import limits
from switch.config import Config, ServerLimits
from switch.engine import Attempt, Engine
from switch.faults import CLOSE_CONNECTION
from switch.forwarder import Forwarder
from switch.latency import LatencyHistogram
from switch.ledger import NO_ANSWER, STAND_IN
from switch.metrics import ChannelStats
from switch.recorder import Recorder
from switch.redis_client import unavailable_error
from switch.standin import StandIn
from switch.watch import Overstay, judge

log = logging.getLogger("switch.server")

# A connection's number within its process (what a recording keeps a connection's order by).
CONNECTION_NUMBERS = itertools.count(1)

# The counter a connection cut for overstaying a bound adds one to.
CUT_COUNTERS = {Overstay.FRAME_LATE: "frame_timeouts", Overstay.WRITE_PAUSED: "write_timeouts"}


class Counters:
    COUNTS = ("connections", "requests", "answered", "timeouts", "errors", "redis_errors",
              "framing_errors", "frame_timeouts", "write_timeouts", "forced", "faults")
    __slots__ = (*COUNTS, "decisions")

    def __init__(self) -> None:
        for name in self.COUNTS:
            setattr(self, name, 0)
        # From a request's frame to its answer ready to write, in ns: the switch's own
        # share of a latency a client measures.
        self.decisions = LatencyHistogram()

    def as_dict(self) -> dict[str, int | float]:
        times = {f"decision_{name}_ms": round(self.decisions.percentile(percent) / 1e6, 3)
                 for name, percent in (("p50", 50), ("p99", 99), ("p99.9", 99.9))}
        return {name: getattr(self, name) for name in self.COUNTS} | times | {
            "decision_max_ms": round(self.decisions.largest / 1e6, 3)}


class Connection(asyncio.Protocol):
    def __init__(self, listener: Listener) -> None:
        self.listener = listener
        self.server_limits = listener.server_limits
        self.framer = Framer(listener.codec.header, self.server_limits.frame_size_max_bytes)
        self.transport: asyncio.Transport | None = None
        self.inflight = 0
        self.reading_paused = False
        self.keys_wait: asyncio.Future | None = None  # a sender's MAC keys being fetched
        self.writing_paused_since: float | None = None  # above the high-water mark since
        self.frame_started: float | None = None  # a frame begun, not whole: its first byte,
        # or when reading resumed after a pause (the frame's clock stops while we do not read)
        self.last_activity = 0.0  # the last bytes read or answer written
        self.timer: asyncio.TimerHandle | None = None  # the one timer: switch/watch.py
        self.out: list[bytes] = []  # answers of this loop tick, written together
        self.out_bytes = 0
        self.unread: collections.deque[bytes] = collections.deque()  # frames not yet taken
        self.take_soon = False  # _take is due again in the next loop tick
        self.draining = False  # shutting down: no new requests; reading stays paused
        self.closing = False  # answers all sent: input is read and dropped, nothing decided
        self.closed = asyncio.get_running_loop().create_future()
        self.number = next(CONNECTION_NUMBERS)

    # --- transport events ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.transport = transport
        bounds = self.server_limits
        transport.set_write_buffer_limits(bounds.write_buffer_high_water_bytes,
                                          bounds.write_buffer_low_water_bytes)
        if bounds.socket_send_buffer_bytes:
            transport.get_extra_info("socket").setsockopt(
                socket.SOL_SOCKET, socket.SO_SNDBUF, bounds.socket_send_buffer_bytes)
        self.listener.connections.add(self)
        self.listener.counters.connections += 1
        self._touch()
        self._look()

    def connection_lost(self, exc: Exception | None) -> None:
        self.listener.connections.discard(self)
        if self.timer:
            self.timer.cancel()
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        self._touch()
        try:
            frames = self.framer.feed(data)
        except FramingError as error:
            self.listener.counters.framing_errors += 1
            log.warning("%s: closing %s: %s", self.listener.name, self._peer(), error)
            self.transport.abort()
            return
        # A frame begun is timed from its first byte (idleness is judged between frames only,
        # so bytes that do not make a frame whole never put off the idle timeout).
        if not self.framer.in_frame:
            self.frame_started = None
        elif frames or self.frame_started is None:
            self.frame_started = asyncio.get_running_loop().time()
        self.unread.extend(frames)
        self._take()

    def _take(self) -> None:
        """Start the requests read so far, while nothing holds them back, and at most
        `frames_per_tick_max` in this loop tick: one read may carry hundreds of frames; the
        bounds hold within it, and the rest waits for the next tick, after other connections."""
        unread, budget = self.unread, limits.frames_per_tick_max
        while unread and budget and not self._held():
            self._request(unread.popleft())
            budget -= 1
        if unread and not budget and not self.take_soon and not self.transport.is_closing():
            self.take_soon = True
            asyncio.get_running_loop().call_soon(self._take_next)
        self._steer_reading()

    def _take_next(self) -> None:
        self.take_soon = False
        self._take()

    def _held(self) -> bool:
        """No request is taken while as many as the bound are in flight, while output is
        paused (the peer is not reading), or once a shutdown drains."""
        return (self.draining or self.writing_paused_since is not None
                or self.inflight >= self.server_limits.inflight_per_connection_max
                or self.keys_wait is not None)

    def pause_writing(self) -> None:
        """The write buffer is above the high-water mark: take and read no more requests
        until the peer has read its answers (those already decided still go out)."""
        now = asyncio.get_running_loop().time()
        self.writing_paused_since = now
        self._steer_reading()
        if self.timer and self.timer.when() > now + self.server_limits.write_paused_max_s:
            self.timer.cancel()
            self._look()

    def resume_writing(self) -> None:
        self.writing_paused_since = None
        self._take()

    def _steer_reading(self) -> None:
        """Read only while no request is held back (`_held`) and none read waits to be
        taken. Once closing, input is read and dropped."""
        hold = not self.closing and (self._held() or bool(self.unread))
        if hold == self.reading_paused or self.transport.is_closing():
            return
        self.reading_paused = hold
        if hold:  # a frame's clock runs only while we read: our pause is not the peer's delay
            self.frame_started = None
            self.transport.pause_reading()
            return
        if self.framer.in_frame:
            self.frame_started = asyncio.get_running_loop().time()
        self.transport.resume_reading()

    # --- requests -----------------------------------------------------------------------

    def _request(self, body: bytes, keys=None) -> None:
        """`keys`: the sender's MAC keys, fetched after the codec asked for them."""
        began = time.perf_counter_ns()
        listener = self.listener
        listener.counters.requests += 1
        try:
            if keys is None:
                decoded = listener.codec.decode_request(body)
            else:
                decoded = listener.codec.decode_request(body, keys)
        except Exception:  # a codec must answer bad input itself; this is our bug
            log.exception("%s: codec failed on a %d-byte frame", listener.name, len(body))
            listener.counters.errors += 1
            self.transport.abort()
            return
        if isinstance(decoded, bytes):  # the codec's own refusal: no decision to count
            listener.stats.refused += 1
            self._send(decoded)
            if listener.recorder is not None:
                listener.recorder.note(listener.name, self.number, began,
                                       time.perf_counter_ns() - began, body, decoded)
            return
        if isinstance(decoded, KeyNeeded):
            self._fetch_keys(body, decoded)
            return
        if isinstance(decoded, BatchWork):
            self._batch(decoded)
            return
        if isinstance(decoded, SessionChange):
            self._change_session(decoded)
            return
        stand_in = listener.stand_in
        if stand_in is not None and stand_in.answers:  # stand-in answers not yet forwarded
            earlier = stand_in.repeat(decoded.request)
            if earlier is not None:
                self._answer(decoded, earlier, began, body)
                return
        attempt = Attempt()
        try:
            outcome = listener.engine.start(decoded.request, attempt)
        except Exception:
            outcome = listener.failed()
        if isinstance(outcome, AuthResponse):
            self._answer(decoded, outcome, began, body)
            return
        # No task per request: the answer is a callback on the ledger's future.
        self.inflight += 1
        listener.track(outcome)
        outcome.add_done_callback(functools.partial(self._settled, decoded, began, attempt,
                                                    body))

    def _batch(self, work: BatchWork) -> None:
        """A terminal's settlement or upload (switch/batches.py), answered once decided, or
        91 at the request deadline."""
        listener = self.listener
        try:
            outcome = asyncio.ensure_future(listener.engine.batches.decide(work))
        except Exception:
            self._send(listener.codec.answer_batch(work, Code.SYSTEM_MALFUNCTION,
                                                   Reason.SYSTEM_ERROR))
            return
        self.inflight += 1
        listener.track(outcome)
        outcome.add_done_callback(functools.partial(self._batch_decided, work))

    def _batch_decided(self, work: BatchWork, outcome: asyncio.Future) -> None:
        self.inflight -= 1
        if self.reading_paused:
            self._take()
        if outcome.cancelled():
            self.listener.counters.timeouts += 1
            code, reason = TIMED_OUT
        elif outcome.exception() is not None:
            error = outcome.exception()
            if unavailable_error(error):
                self.listener.counters.redis_errors += 1
                code, reason = UNREACHABLE
            else:
                failure = self.listener.failed(error)
                code, reason = failure.response_code, failure.reason
        else:
            code, reason = outcome.result()
        self._send(self.listener.codec.answer_batch(work, code, reason))

    def _fetch_keys(self, body: bytes, needed: KeyNeeded) -> None:
        """A terminal whose MAC keys are not cached (switch/terminal_keys.py): fetch them,
        then read the request again with them. Meanwhile the connection takes no further
        request, so its requests still start in the order sent (an x-pay ATC must grow)."""
        self.listener.counters.requests -= 1  # counted again when it is read again
        fetching = self.keys_wait = self.listener.codec.keys.fetch(*needed)
        self.listener.pending.add(fetching)
        fetching.add_done_callback(self.listener.pending.discard)
        self._steer_reading()
        fetching.add_done_callback(functools.partial(self._keys_fetched, body))

    def _change_session(self, change: SessionChange) -> None:
        """A sign-on, key change or sign-off (protocols/iso_session.py): made in Redis, then
        answered; meanwhile the connection takes no further request (its next one may be
        signed with the new keys)."""
        changing = self.keys_wait = self.listener.codec.keys.change_session(change)
        self.listener.pending.add(changing)
        changing.add_done_callback(self.listener.pending.discard)
        self._steer_reading()
        changing.add_done_callback(functools.partial(self._session_changed, change))

    def _session_changed(self, change: SessionChange, changing: asyncio.Future) -> None:
        self.keys_wait = None
        codec = self.listener.codec
        if changing.cancelled() or changing.exception() is not None:
            log.warning("%s: cannot change the session of terminal %r: %s", self.listener.name,
                        change.terminal,
                        "cancelled" if changing.cancelled() else changing.exception())
            self.listener.counters.errors += 1
            body = codec.session_answer(change, Code.ISSUER_UNAVAILABLE,
                                        Reason.ISSUER_UNAVAILABLE)
        else:
            body = codec.session_answer(change, *changing.result())
        if not self.transport.is_closing():
            self._send(body)
            asyncio.get_running_loop().call_soon(self._take)

    def _keys_fetched(self, body: bytes, fetching: asyncio.Future) -> None:
        self.keys_wait = None
        if fetching.cancelled() or fetching.exception() is not None:
            log.warning("%s: cannot read terminal keys: %s", self.listener.name,
                        "cancelled" if fetching.cancelled() else fetching.exception())
            self.listener.counters.errors += 1
            keys = KEYS_UNAVAILABLE
        else:
            keys = fetching.result()
        if not self.transport.is_closing():
            self._request(body, keys)
            # On with the requests that waited, after the other connections' first ones
            # (their callbacks on the same read are queued already): requests keep about
            # the order they arrived in across connections too.
            asyncio.get_running_loop().call_soon(self._take)

    def _settled(self, decoded: Decoded, began: int, attempt: Attempt, request: bytes,
                 outcome: asyncio.Future) -> None:
        response = self.listener.settle(outcome, decoded.request, attempt, began)
        self.inflight -= 1
        if self.reading_paused:
            self._take()
        if isinstance(response, AuthResponse):
            self._answer(decoded, response, began, request)
        elif response is None:  # a forced outcome of no answer: the client's timeout path
            recorder = self.listener.recorder
            if recorder is not None:
                recorder.note(self.listener.name, self.number, began,
                              time.perf_counter_ns() - began, request, b"", decoded.request,
                              outcome.result())
        elif response is CLOSING:  # a fault rule's: the peer sees the connection closed
            self.transport.close()
        else:  # a stand-in or delayed answer, out once the journal has it or the wait is over
            response.add_done_callback(
                lambda done: self._answer(decoded, done.result(), began, request))

    def _answer(self, decoded: Decoded, response: AuthResponse, began: int,
                request: bytes) -> None:
        """`request`: the frame the answer is to (what a recording keeps with it)."""
        listener = self.listener
        try:
            body = listener.codec.encode_response(decoded.context, response)
        except Exception:  # our bug: the peer gets no answer, the operator a traceback
            log.exception("%s: cannot encode an answer", listener.name)
            listener.counters.errors += 1
            return
        self._send(body)
        elapsed_ns = time.perf_counter_ns() - began
        listener.counters.decisions.record(elapsed_ns)
        listener.stats.record(decoded.request.message_class, response.response_code,
                              elapsed_ns)
        if listener.recorder is not None:
            listener.recorder.note(listener.name, self.number, began, elapsed_ns, request, body,
                                   decoded.request, response)

    def _send(self, body: bytes) -> None:
        if self.closing or self.transport.is_closing():
            return
        try:
            frame = self.framer.frame(body)
        except FramingError as error:  # longer than the header can say (ascii2: 99 bytes)
            self.listener.counters.errors += 1
            log.error("%s: closing %s: cannot send an answer: %s", self.listener.name,
                      self._peer(), error)
            self.transport.abort()
            return
        self.out.append(frame)
        self.out_bytes += len(frame)
        self.listener.counters.answered += 1
        if len(self.out) == 1:  # one write per connection per loop tick, not per answer
            asyncio.get_running_loop().call_soon(self._flush)
        if self.out_bytes >= self.server_limits.write_buffer_high_water_bytes:
            self._flush()  # now: the transport pauses us at once if the peer is not reading

    def _flush(self) -> None:
        out, self.out, self.out_bytes = self.out, [], 0
        if out and not self.transport.is_closing():
            self.transport.write(b"".join(out))
        self._touch()

    # --- time bounds: idle, frame deadline, output paused (one timer) ---------------------

    def _touch(self) -> None:
        self.last_activity = asyncio.get_running_loop().time()

    def _look(self) -> None:
        if self.transport.is_closing():
            return
        loop = asyncio.get_running_loop()
        overstay, due = judge(loop.time(), self.server_limits, last_activity=self.last_activity,
                              inflight=self.inflight, frame_started=self.frame_started,
                              write_paused_since=self.writing_paused_since)
        if overstay is None:
            self.timer = loop.call_at(due, self._look)
        elif overstay is Overstay.IDLE:
            log.info("%s: closing idle connection %s", self.listener.name, self._peer())
            self.transport.close()
        else:  # what is unsent or half-read goes: a frame cut short decides nothing
            counters, name = self.listener.counters, CUT_COUNTERS[overstay]
            setattr(counters, name, getattr(counters, name) + 1)
            log.warning("%s: aborting %s: %s", self.listener.name, self._peer(), overstay.value)
            self.transport.abort()

    def drain(self) -> None:
        """Take no new requests; the ones in flight still get their answers."""
        self.draining = True
        self._steer_reading()

    def finish(self) -> None:
        """Half-close after the last answer: the peer reads every answer, then EOF.

        Input still arriving is read and dropped: closing a socket with unread input makes
        the kernel send a reset, which can destroy answers the peer has not read yet.
        """
        self._flush()
        self.closing = True
        if self.transport.is_closing():
            return
        if self.transport.can_write_eof():
            try:
                self.transport.write_eof()
            except OSError:  # the peer reset while we were not reading: nothing to finish
                self.transport.abort()
                return
        self._steer_reading()

    def _peer(self) -> str:
        peer = self.transport.get_extra_info("peername") if self.transport else None
        return f"{peer[0]}:{peer[1]}" if peer else "?"


class Listener:
    """One channel's TCP server."""

    def __init__(self, name: str, codec: ChannelCodec, engine: Engine, server_limits: ServerLimits,
                 counters: Counters, stand_in: StandIn | None = None) -> None:
        self.name = name
        self.codec = codec
        self.engine = engine
        self.stand_in = stand_in  # None: no journal, a failed ledger call is answered 91
        self.recorder: Recorder | None = None  # `switch serve --record DIR`
        self.standing_in = stand_in is not None and stand_in.enabled
        self.unavailable_unlogged = 0
        self.unavailable_quiet_until = 0.0
        self.server_limits = server_limits
        self.counters = counters
        self.stats = ChannelStats()  # this channel's answers by class and code (admin plane)
        self.connections: set[Connection] = set()
        self.pending: set[asyncio.Future] = set()  # decisions not yet answered
        self.deadlines: collections.deque[tuple[float, asyncio.Future]] = collections.deque()
        self.deadline_timer: asyncio.TimerHandle | None = None
        self.server: asyncio.Server | None = None
        self.deadline_s = server_limits.request_deadline_ms / 1000

    async def start(self, host: str, port: int, reuse_port: bool = False) -> int:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(lambda: Connection(self), host, port,
                                               reuse_port=reuse_port or None)
        return self.server.sockets[0].getsockname()[1]

    # --- deadlines: every decision settles within deadline_s --------------------------------

    def track(self, outcome: asyncio.Future) -> None:
        """Every request has the same deadline, so the queue is in deadline order and one
        timer, armed for its head, serves them all (no timer per request)."""
        self.pending.add(outcome)
        outcome.add_done_callback(self.pending.discard)
        loop = asyncio.get_running_loop()
        due = loop.time() + self.deadline_s
        self.deadlines.append((due, outcome))
        if self.deadline_timer is None:
            self.deadline_timer = loop.call_at(due, self._expire)

    def _expire(self) -> None:
        loop = asyncio.get_running_loop()
        now, queue = loop.time(), self.deadlines
        while queue and (queue[0][1].done() or queue[0][0] <= now):
            _, outcome = queue.popleft()
            if not outcome.done():
                outcome.cancel()  # settle() answers it 91; a late ledger reply is dropped
        self.deadline_timer = loop.call_at(queue[0][0], self._expire) if queue else None

    def settle(self, outcome: asyncio.Future, request: AuthRequest, attempt: Attempt,
               began_ns: int = 0) -> AuthResponse | asyncio.Future[AuthResponse] | None | object:
        """The answer for a settled decision, whatever became of it: its future when it
        must wait for the store-and-forward journal or a forced delay; None: none (a forced
        no-answer); CLOSING: close the connection (a fault rule's). `began_ns`: when the
        request's frame was taken (perf_counter_ns), its deadline's start."""
        if outcome.cancelled():
            self.counters.timeouts += 1
            return self.unavailable(request, attempt, TIMED_OUT)
        error = outcome.exception()
        if error is None:
            response = outcome.result()
            # Two string tests per answer: a repeat of a no-answer is not forced again.
            if response.forced or response.response_code == NO_ANSWER:
                return self.forced(response, request, attempt, began_ns)
            if self.standing_in:  # one attribute test per answer when stand-in is off
                if response.reason == Reason.ISSUER_TIMEOUT:  # past its fence: wrote nothing
                    return self.unavailable(request, attempt.unmade(), TIMED_OUT)
                self.stand_in.cards.note(attempt.pan or request.card, response)
            return response
        if unavailable_error(error):
            self.counters.errors += 1
            self.counters.redis_errors += 1
            self._log_unavailable(error)
            return self.unavailable(request, attempt, UNREACHABLE)
        return self.failed(error)

    def forced(self, response: AuthResponse, request: AuthRequest, attempt: Attempt,
               began_ns: int) -> AuthResponse | asyncio.Future[AuthResponse] | None | object:
        """A tester's forced outcome (`switch card force`, a fault rule): counted, logged
        (card masked), then carried out."""
        code = response.response_code
        if not response.forced:  # the remembered answer of a no-answer, sent again
            return None
        self.counters.forced += 1
        by = "the card's forced outcome"
        if response.forced != "card":
            self.counters.faults += 1
            by = f"fault {response.forced}"
        log.info("%s: %s answered %s by %s%s", self.name, mask_pan(attempt.pan or request.card),
                 code, by, f" after {response.delay_ms} ms" if response.delay_ms else "")
        if code == NO_ANSWER:
            return None
        if code == CLOSE_CONNECTION:
            return CLOSING
        if code == STAND_IN:  # the ledger wrote nothing: no void to journal
            if self.stand_in is None:  # no journal: it cannot stand in
                return decline(*UNREACHABLE)
            return self.unavailable(request, attempt.unmade(), UNREACHABLE,
                                    forced_status=response.state)
        if response.delay_ms:
            return self.delayed(response, request, attempt, began_ns)
        return response

    def delayed(self, response: AuthResponse, request: AuthRequest, attempt: Attempt,
                began_ns: int) -> asyncio.Future[AuthResponse]:
        """The answer after its forced delay, or 91 at the request's deadline when the delay
        reaches it: as for a slow ledger, its call is then journaled to be voided (a forced
        answer's use is not given back: switch/lua/prelude.lua forced_code)."""
        loop = asyncio.get_running_loop()
        later = loop.create_future()
        left_s = self.deadline_s - (time.perf_counter_ns() - began_ns) / 1e9
        delay_s = response.delay_ms / 1000
        if delay_s < left_s:
            timer = loop.call_later(delay_s, _resolve, later, response)
        else:  # the 91 is the outcome asked for: a fault rule's use is not given back
            attempt.fault_use = ""
            timer = loop.call_later(max(0.0, left_s), self._too_late, later, request, attempt)
        later.add_done_callback(lambda _: timer.cancel())  # shutdown may cancel it
        self.pending.add(later)
        later.add_done_callback(self.pending.discard)
        return later

    def _too_late(self, later: asyncio.Future, request: AuthRequest, attempt: Attempt) -> None:
        self.counters.timeouts += 1
        answer = self.unavailable(request, attempt, TIMED_OUT)
        if isinstance(answer, AuthResponse):
            _resolve(later, answer)
        else:
            answer.add_done_callback(lambda done: _resolve(later, done.result()))

    def _log_unavailable(self, error: BaseException) -> None:
        """With Redis down every request fails alike: one warning per interval, not one per
        request (a flood of them would cost more than the answers)."""
        self.unavailable_unlogged += 1
        now = asyncio.get_running_loop().time()
        if now >= self.unavailable_quiet_until:
            log.warning("%s: Redis unavailable (%d requests since the last such warning): %s",
                        self.name, self.unavailable_unlogged, error)
            self.unavailable_unlogged = 0
            self.unavailable_quiet_until = now + limits.unavailable_log_interval_s

    def unavailable(self, request: AuthRequest, attempt: Attempt, no_answer: tuple[str, str],
                    forced_status: str | None = None
                    ) -> AuthResponse | asyncio.Future[AuthResponse]:
        """No answer from the ledger: `no_answer` (91), or stand-in's (switch/standin.py);
        `forced_status`: a forced stand-in's, with the card's status the ledger read."""
        if self.stand_in is None:
            return decline(*no_answer)
        answer = self.stand_in.answer(request, attempt, no_answer, forced_status)
        if not isinstance(answer, AuthResponse):  # shutdown waits for it too
            self.pending.add(answer)
            answer.add_done_callback(self.pending.discard)
        return answer

    def failed(self, error: BaseException | None = None) -> AuthResponse:
        self.counters.errors += 1
        log.error("%s: decision failed", self.name, exc_info=error or True)
        return decline(Code.SYSTEM_MALFUNCTION, Reason.SYSTEM_ERROR)


# What settle() returns for a connection to be closed instead of answered.
CLOSING = object()


def _resolve(future: asyncio.Future, response: AuthResponse) -> None:
    if not future.done():
        future.set_result(response)


# The answers without a decision: the ledger call missed its deadline, or Redis is unreachable.
TIMED_OUT = (Code.ISSUER_UNAVAILABLE, Reason.ISSUER_TIMEOUT)
UNREACHABLE = (Code.ISSUER_UNAVAILABLE, Reason.ISSUER_UNAVAILABLE)

class ListenError(OSError):
    """A listener's address cannot be bound (taken, or not this machine's): one line to the
    user, naming the channel and how to choose another port."""


def check_channels(config: Config, codecs: dict) -> None:
    unknown = set(config.listeners) - set(codecs)
    if unknown:
        raise ValueError(f"no such channel: {', '.join(sorted(unknown))} "
                         f"(channels: {', '.join(sorted(codecs))})")


class Switch:
    """All listeners of one process, started and stopped together."""

    def __init__(self, config: Config, engine: Engine,
                 codecs: dict[str, Callable[[Config], ChannelCodec]],
                 stand_in: StandIn | None = None, forwarder: Forwarder | None = None) -> None:
        self.config = config
        self.engine = engine
        self.counters = Counters()
        check_channels(config, codecs)
        self.listeners = {
            name: Listener(name, codecs[name](config), engine, config.server_limits, self.counters,
                           stand_in)
            for name in config.listeners
        }
        self.ports: dict[str, int] = {}
        self.stand_in = stand_in
        self.forwarder = forwarder
        self._forwarding: asyncio.Task | None = None
        self.recorder: Recorder | None = None

    def record_to(self, recorder: Recorder) -> None:
        """Every listener notes its exchanges to `recorder`; shutdown closes it last."""
        self.recorder = recorder
        for listener in self.listeners.values():
            listener.recorder = recorder

    async def start(self, reuse_port: bool = False) -> None:
        """Listen on every configured address; with `reuse_port`, worker processes share
        each port and the kernel spreads connections over them (SO_REUSEPORT)."""
        for name, listener in self.listeners.items():
            address = self.config.listeners[name]
            try:
                self.ports[name] = await listener.start(address.host, address.port, reuse_port)
            except OSError as error:
                for started in self.ports:
                    self.listeners[started].server.close()
                raise ListenError(f"{name} cannot listen on {address.host}:{address.port}: "
                                  f"{error.strerror or error}; choose another port with "
                                  f"--port {name}=PORT (make run PORTS=\"{name}=PORT ...\")"
                                  ) from None
        if self.forwarder is not None:
            self._forwarding = asyncio.get_running_loop().create_task(self.forwarder.run())

    async def shutdown(self) -> None:
        """Stop accepting, stop reading, let decisions in flight answer, then close.

        The peer sees every answer to a request the switch took, then end of stream.
        """
        for listener in self.listeners.values():
            listener.server.close()
        connections = [c for lst in self.listeners.values() for c in lst.connections]
        for connection in connections:
            connection.drain()
        server_limits = self.config.server_limits
        loop = asyncio.get_running_loop()
        grace_end = loop.time() + server_limits.shutdown_grace_s
        # Again while more appear: a decision may settle into a journaled stand-in answer.
        while pending := [f for lst in self.listeners.values() for f in lst.pending]:
            _, late = await asyncio.wait(pending, timeout=max(0.0, grace_end - loop.time()))
            if late:
                log.warning("shutdown: %d decisions still running after the grace period",
                            len(late))
                break
        for connection in connections:
            connection.finish()
        if connections:
            await asyncio.wait([c.closed for c in connections],
                               timeout=server_limits.shutdown_linger_s)
        for connection in connections:
            connection.transport.abort()
        for listener in self.listeners.values():
            await listener.server.wait_closed()
        if self._forwarding is not None:
            self._forwarding.cancel()
            await asyncio.gather(self._forwarding, return_exceptions=True)
        if self.stand_in is not None:
            self.stand_in.journal.close()
        if self.recorder is not None:  # after the last answer: the recording has them all
            self.recorder.close()
