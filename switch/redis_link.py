"""Our own connection to Redis for the pipelined function calls of the hot path.

Replies come back in the order the commands were written, so an asyncio Protocol can feed
every read to a hiredis parser and hand each reply to the oldest waiting call, right in the
callback that received the bytes: no task per batch, no borrowed pool connection, no
awaited read per reply (redis-py's read path was a visible share of the switch's time under
load: docs/performance.md).

The link opens with the settings of the switch's redis-py client: host and port or Unix
socket, password (and user), database. Calls waiting longer than the bound fail together
and the connection is dropped (its replies could no longer be matched); the next call
opens a new one. Every link measures Redis' clock as it opens (switch/clock.py RedisClock):
the ledger's calls carry their deadline in it.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable
from typing import Any

import hiredis

from switch.clock import RedisClock

# settle(payload, reply): reply is the decoded reply, a hiredis.ReplyError, or the
# exception that ended the connection.
Settle = Callable[[Any, Any], None]


LINK_NAME = "baitiao-switch-pipeline"


class LinkError(ConnectionError):
    pass


class RedisLink(asyncio.Protocol):
    def __init__(self, settle: Settle, timeout_s: float) -> None:
        self.settle = settle
        self.timeout_s = timeout_s
        self.reader = hiredis.Reader(encoding="utf-8")
        self.waiting: collections.deque[tuple[Any, float]] = collections.deque()
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._overdue_check: asyncio.TimerHandle | None = None
        self._error: Exception | None = None  # why we dropped the connection ourselves
        self._idle: list[asyncio.Future] = []  # drain() waiters

    # --- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        try:
            while (reply := self.reader.gets()) is not False:
                payload, _ = self.waiting.popleft()
                self.settle(payload, reply)
        except hiredis.ProtocolError as error:  # not Redis speaking: nothing can be matched
            self._drop(LinkError(f"Redis sent what is not RESP: {error}"))
            return
        if not self.waiting:
            self._wake_idle()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._overdue_check is not None:
            self._overdue_check.cancel()
        error = self._error or LinkError(f"lost the connection to Redis: {exc or 'closed'}")
        waiting, self.waiting = self.waiting, collections.deque()
        for payload, _ in waiting:
            self.settle(payload, error)
        self._wake_idle()

    # --- ours ------------------------------------------------------------------------------

    def send(self, payloads: list[Any], data: bytes) -> None:
        """Write `data` (one command per payload, in order); each payload is settled with
        its reply."""
        loop = asyncio.get_running_loop()
        sent_at = loop.time()
        self.waiting.extend([(payload, sent_at) for payload in payloads])
        self.transport.write(data)
        if self._overdue_check is None:
            self._overdue_check = loop.call_at(sent_at + self.timeout_s, self._check_overdue)

    def _check_overdue(self) -> None:
        self._overdue_check = None
        if self.closed or not self.waiting:
            return
        loop = asyncio.get_running_loop()
        due = self.waiting[0][1] + self.timeout_s
        if loop.time() >= due:
            self._drop(TimeoutError(f"Redis did not answer within {self.timeout_s:g} s"))
        else:
            self._overdue_check = loop.call_at(due, self._check_overdue)

    def _drop(self, error: Exception) -> None:
        self._error = error
        self.closed = True
        self.transport.abort()  # connection_lost fails every waiting call with `error`

    async def idle(self) -> None:
        """Return once no call waits for a reply (or the connection is gone)."""
        if self.waiting and not self.closed:
            future = asyncio.get_running_loop().create_future()
            self._idle.append(future)
            await future

    def _wake_idle(self) -> None:
        waiters, self._idle = self._idle, []
        for future in waiters:
            if not future.done():
                future.set_result(None)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.transport.close()


async def open_link(settings: dict[str, Any], settle: Settle, timeout_s: float,
                    redis_clock: RedisClock | None = None) -> RedisLink:
    """A connected, authenticated link to the Redis `settings` name (switch/redis_client.py
    link_settings: a client's host and port or Unix socket, password, db); `redis_clock`, if
    given, is measured on it."""
    if settings.get("tls"):
        raise LinkError("TLS connections to Redis (rediss://) are not supported; use redis:// "
                        "or unix:// on a trusted network")
    loop = asyncio.get_running_loop()

    def settle_handshake(future: asyncio.Future, reply: Any) -> None:
        if not future.done():  # stamped on arrival: the clock's round trip ends here
            future.set_result((reply, time.monotonic()))

    def factory() -> RedisLink:
        return RedisLink(settle_handshake, timeout_s)

    async with asyncio.timeout(timeout_s):
        if settings.get("path"):
            _, link = await loop.create_unix_connection(factory, settings["path"])
        else:
            _, link = await loop.create_connection(
                factory, settings.get("host") or "localhost", settings.get("port") or 6379)
    try:
        async with asyncio.timeout(timeout_s):
            await _handshake(link, settings, redis_clock)
    except BaseException:
        link.close()
        raise
    link.settle = settle
    return link


async def _handshake(link: RedisLink, settings: dict[str, Any],
                     redis_clock: RedisClock | None) -> None:
    """AUTH and SELECT as the client's URL asks, our name (CLIENT LIST shows it), and Redis'
    clock when asked (its round trip is the whole handshake's: a few microseconds of work
    more than the network's)."""
    commands = []
    if settings.get("password"):
        username = settings.get("username")
        commands.append(("AUTH", username, settings["password"]) if username
                        else ("AUTH", settings["password"]))
    if settings.get("db"):
        commands.append(("SELECT", str(settings["db"])))
    if redis_clock is not None:  # after AUTH: Redis answers nothing else before it
        commands.append(("TIME",))
    commands.append(("CLIENT", "SETNAME", LINK_NAME))
    loop = asyncio.get_running_loop()
    replies = [loop.create_future() for _ in commands]
    sent_s = time.monotonic()
    link.send(replies, b"".join(resp_command(*command) for command in commands))
    for command, reply in zip(commands, replies, strict=True):
        answer, received_s = await reply
        if command == ("TIME",) and isinstance(answer, list):
            redis_clock.measure(answer, sent_s, received_s)
        elif answer != "OK":
            raise LinkError(f"Redis refused {command[0]}: {answer}")


def resp_command(*parts: str) -> bytes:
    encoded = [part.encode() for part in parts]
    return b"*%d\r\n" % len(encoded) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in encoded)
