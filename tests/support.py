"""Test helpers: fresh cards, an injectable clock, a real switch on free ports, a JD client,
the project's commands run as processes (their output checked for full card numbers).

Nothing here flushes a Redis it did not start; tests keep apart by using fresh card numbers.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import subprocess
import sys
import time

from protocols import jd
from protocols.cardnumbers import full_card_numbers_in, luhn_check_digit
from protocols.channel import ClientAnswer
from protocols.demo import DEMO_JD_KEY, DEMO_JD_MERCHANT
from protocols.framing import Framer
from protocols.messages import AuthRequest, MessageClass
from switch import testing
from switch.config import Config, Listener
from switch.ledger import Ledger

ANSWER_WAIT_S = 10.0  # bound on every wait for an answer in the tests
CLI_WAIT_S = 20.0  # bound on one `switch` command run as a process
SWITCH = (sys.executable, "-m", "switch.cli")
LOADTEST = (sys.executable, "-m", "loadtest.cli")

_pan_counter = itertools.count(1)


def new_pan() -> str:
    """A Luhn-valid UnionPay number no other test uses."""
    body = f"625399{time.time_ns() % 10**5:05d}{next(_pan_counter):04d}"
    return body + luhn_check_digit(body)


class FakeClock:
    def __init__(self, now_ms: int | None = None) -> None:
        self.now = now_ms if now_ms is not None else time.time_ns() // 1_000_000

    def now_ms(self) -> int:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += int(seconds * 1000)


CARD_EXPIRY = "3012"  # a test card's, unless it is made with another


async def make_card(ledger: Ledger, limit_fen: int = 10_000, **fields) -> str:
    pan = new_pan()
    await ledger.set_card(pan, limit_fen=limit_fen, expiry=fields.pop("expiry", CARD_EXPIRY),
                          **fields)
    return pan


def switch_config(**overrides) -> Config:
    config = Config(listeners={"jd": Listener(port=0)})
    for name, value in overrides.items():
        setattr(config, name, value)
    return config


@contextlib.asynccontextmanager
async def running_switch(redis_url: str, config: Config | None = None):
    """A real switch on free ports, in this event loop (switch/testing.py, the embeddable
    switch testers use); yields its server and ledger; shut down on exit."""
    async with testing.start(config or switch_config(), redis_url=redis_url) as embedded:
        yield embedded.server, embedded.ledger


class JdClient:
    """A test client that may keep many requests in flight on one connection."""

    def __init__(self, reader, writer, key: bytes = DEMO_JD_KEY.encode()) -> None:
        self.reader, self.writer, self.key = reader, writer, key
        self.framer = Framer(jd.JdCodec.header, 1 << 20)
        self.waiting: dict[str, asyncio.Future] = {}
        self.reader_task = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def connect(cls, port: int) -> JdClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def _read(self) -> None:
        try:
            while data := await self.reader.read(65536):
                for body in self.framer.feed(data):
                    answer = jd.decode_response(body, self.key)
                    self.waiting.pop(answer.correlation_id).set_result(answer)
        finally:  # end of stream or a reset: whatever is still waiting will not be answered
            self.writer.close()
            for future in self.waiting.values():
                if not future.done():
                    future.set_exception(ConnectionError("closed before an answer"))

    def send_body(self, trade_num: str, body: bytes) -> asyncio.Future:
        future = asyncio.get_running_loop().create_future()
        self.waiting[trade_num] = future
        self.writer.write(self.framer.frame(body))
        return future

    async def send(self, request: AuthRequest, **extra: str) -> ClientAnswer:
        body = jd.encode_request(request, self.key, **extra)
        future = self.send_body(extra.get("tradeNum", request.txn_ref), body)
        async with asyncio.timeout(ANSWER_WAIT_S):
            return await future

    async def close(self) -> None:
        self.writer.close()
        self.reader_task.cancel()
        with contextlib.suppress(BaseException):
            await self.reader_task


_trade_counter = itertools.count(1)


def jd_request(pan: str, kind: MessageClass = MessageClass.SALE, amount_fen: int = 1000,
               mcc: str = "5411", original: str = "", **fields) -> AuthRequest:
    """A client-side JD request (txn_ref and original_ref are bare trade numbers)."""
    return AuthRequest(
        message_class=kind, channel="jd", card=pan, amount_fen=amount_fen, mcc=mcc,
        merchant_id=DEMO_JD_MERCHANT, txn_ref=fields.pop("txn_ref", f"T{next(_trade_counter)}"
                                                     f"x{time.time_ns() % 10**9}"),
        original_ref=original, transmitted_at="20261129120000", **fields)


def shows_no_card_number(text: str, where: str) -> str:
    """`text`, after checking that it shows no full card number (the suite-wide guard: every
    command's output and every log line of the tests goes through here)."""
    found = full_card_numbers_in(text)
    assert not found, f"{where} shows a full card number: {found[0][:6]}... in {text[:300]!r}"
    return text


def checked_output(command: tuple[str, ...], args: tuple[str, ...], code: int, out: bytes | str,
                   err: bytes | str) -> tuple[int, str, str]:
    out, err = (part.decode() if isinstance(part, bytes) else part for part in (out, err))
    where = " ".join(("switch" if command == SWITCH else "loadtest", *args[:2]))
    return code, shows_no_card_number(out, where), shows_no_card_number(err, where)


async def run_command(command: tuple[str, ...], *args: str, env: dict | None = None,
                      cwd: str | None = None, timeout_s: float = CLI_WAIT_S
                      ) -> tuple[int, str, str]:
    """One of the project's commands (SWITCH, LOADTEST) as a process: (exit code, out, err)."""
    process = await asyncio.create_subprocess_exec(
        *command, *args, env=env or dict(os.environ), cwd=cwd,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        async with asyncio.timeout(timeout_s):
            out, err = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    return checked_output(command, args, process.returncode, out, err)


def run_command_sync(command: tuple[str, ...], *args: str, env: dict | None = None,
                     timeout_s: float = CLI_WAIT_S, stdin: str = "") -> tuple[int, str, str]:
    """`run_command` for tests that are not coroutines; `stdin` is the command's input."""
    done = subprocess.run([*command, *args], env=env, capture_output=True, text=True,
                          timeout=timeout_s, input=stdin)
    return checked_output(command, args, done.returncode, done.stdout, done.stderr)


async def switch_cli(*args: str, env: dict | None = None) -> tuple[int, str, str]:
    return await run_command(SWITCH, *args, env=env)


async def until_true(condition, what: str, wait_s: float = 20.0) -> None:
    """Wait, bounded, until the async `condition()` is true; AssertionError naming `what`."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + wait_s
    while not await condition():
        if loop.time() > give_up:
            raise AssertionError(f"not within {wait_s} s: {what}")
        await asyncio.sleep(0.05)


async def posted_is(switch, pan: str, fen: int) -> bool:
    """Whether the embedded switch's card `pan` has `fen` posted (for until_true)."""
    return (await switch.card(pan)).posted == fen
