"""Helpers for the policy and WeChat tests: a real switch with a chosen policy and clock, and
one client per channel (JD, WeChat) that sends canonical requests over real TCP.

No tests live in this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Callable
from typing import Any

from protocols import jd, wechat
from protocols.channel import ClientAnswer
from protocols.demo import (
    DEMO_JD_KEY,
    DEMO_JD_MERCHANT,
    DEMO_WECHAT_APPID,
    DEMO_WECHAT_KEY,
    DEMO_WECHAT_MCH_ID,
)
from protocols.framing import Framer
from protocols.messages import AuthRequest, MessageClass
from switch.app import build
from switch.config import Config, Listener
from switch.policy import Policy
from switch.policy_file import load_policy, parse_policy
from tests.support import ANSWER_WAIT_S, CARD_EXPIRY

CHANNELS = ("jd", "wechat")
# 2026-11-29 12:00:00 UTC (20:00 in Beijing): a fixed start for clock-driven tests.
T0_MS = 1_795_953_600_000
_ids = itertools.count(1)


def new_ref(prefix: str = "P") -> str:
    """A transaction id no other test uses; WeChat allows at most 32 characters."""
    return f"{prefix}{time.time_ns() % 10**12}x{next(_ids)}"


def policy_config(channels: tuple[str, ...] = CHANNELS) -> Config:
    return Config(listeners={name: Listener(port=0) for name in channels})


@contextlib.asynccontextmanager
async def policy_switch(redis_url: str, policy_text: str | None = None, clock=None,
                        channels: tuple[str, ...] = CHANNELS, config: Config | None = None):
    """A real switch running `policy_text` (None: the shipped default) with `clock`, and
    connected clients: yields (switch, ledger, clients)."""
    spec = load_policy() if policy_text is None else parse_policy(policy_text, "test policy")
    switch, ledger = await build(config or policy_config(channels), redis_url, clock=clock,
                                 policy=Policy(spec))
    await switch.start()
    clients = Clients()
    try:
        for name in channels:
            clients.by_channel[name] = await PipeClient.connect(
                switch.ports[name], CHANNEL_CODECS[name])
        yield switch, ledger, clients
    finally:
        await clients.close()
        await switch.shutdown()
        await ledger.aclose()


class ClientCodec:
    """How a test client speaks one channel: body for a request, answer for a body."""

    def __init__(self, header, encode: Callable[[AuthRequest], bytes],
                 decode: Callable[[bytes], ClientAnswer], correlate: Callable[[AuthRequest], str]
                 ) -> None:
        self.header, self.encode, self.decode, self.correlate = header, encode, decode, correlate


CHANNEL_CODECS = {
    "jd": ClientCodec(jd.JdCodec.header,
                      lambda r: jd.encode_request(r, DEMO_JD_KEY.encode()),
                      lambda body: jd.decode_response(body, DEMO_JD_KEY.encode()),
                      lambda r: r.txn_ref),
    "wechat": ClientCodec(wechat.WechatCodec.header,
                          lambda r: wechat.encode_request(r, DEMO_WECHAT_KEY.encode(),
                                                          DEMO_WECHAT_APPID),
                          lambda body: wechat.decode_response(body, DEMO_WECHAT_KEY.encode()),
                          lambda r: r.txn_ref),
}
MERCHANTS = {"jd": DEMO_JD_MERCHANT, "wechat": DEMO_WECHAT_MCH_ID}


class PipeClient:
    """Many requests in flight on one connection, answers matched by correlation id."""

    def __init__(self, reader, writer, codec: ClientCodec) -> None:
        self.reader, self.writer, self.codec = reader, writer, codec
        self.framer = Framer(codec.header, 1 << 20)
        self.waiting: dict[str, asyncio.Future] = {}
        self.reader_task = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def connect(cls, port: int, codec: ClientCodec) -> PipeClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer, codec)

    async def _read(self) -> None:
        while data := await self.reader.read(65536):
            for body in self.framer.feed(data):
                answer = self.codec.decode(body)
                self.waiting.pop(answer.correlation_id).set_result(answer)
        for future in self.waiting.values():
            if not future.done():
                future.set_exception(ConnectionError("closed"))

    async def send_body(self, correlation_id: str, body: bytes) -> ClientAnswer:
        future = asyncio.get_running_loop().create_future()
        self.waiting[correlation_id] = future
        self.writer.write(self.framer.frame(body))
        async with asyncio.timeout(ANSWER_WAIT_S):
            return await future

    async def send(self, request: AuthRequest) -> ClientAnswer:
        return await self.send_body(self.codec.correlate(request), self.codec.encode(request))

    async def close(self) -> None:
        self.writer.close()
        self.reader_task.cancel()
        with contextlib.suppress(BaseException):
            await self.reader_task


class Clients:
    def __init__(self) -> None:
        self.by_channel: dict[str, PipeClient] = {}

    async def send(self, channel: str, pan: str, kind: MessageClass = MessageClass.SALE,
                   amount_fen: int = 1000, mcc: str = "5411", original: str = "",
                   **fields: Any) -> ClientAnswer:
        return await self.by_channel[channel].send(
            request(channel, pan, kind, amount_fen, mcc, original, **fields))

    async def close(self) -> None:
        for client in self.by_channel.values():
            await client.close()


def request(channel: str, pan: str, kind: MessageClass = MessageClass.SALE,
            amount_fen: int = 1000, mcc: str = "5411", original: str = "", **fields: Any
            ) -> AuthRequest:
    """A client-side request: txn_ref and original_ref are the channel's bare ids. A balance
    inquiry proves the card with a test card's expiry unless `expiry` is given."""
    if kind is MessageClass.INQUIRY and not original:
        fields.setdefault("expiry", CARD_EXPIRY)
    return AuthRequest(
        message_class=kind, channel=channel, card=pan, amount_fen=amount_fen, mcc=mcc,
        merchant_id=MERCHANTS[channel], txn_ref=fields.pop("txn_ref", None) or new_ref(),
        original_ref=original, transmitted_at="20261129120000", **fields)


def code_and_reason(answer: ClientAnswer) -> tuple[str, str]:
    return answer.response.response_code, answer.response.reason
