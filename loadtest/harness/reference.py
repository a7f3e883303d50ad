"""The bench's straightforward reference server: what a first Python switch would look like.

asyncio streams, one task per request, the channel decoded by a plain library (msgspec JSON
for JD; pyiso8583 for POS), then one redis-py FCALL per request (a connection pool, no
pipelining), the same Lua function and arguments as the switch (switch/ledger.py builds
them), and the answer encoded back. Only the merchant-category block of the rules is
applied. The switch is measured against this, in the same run, with the same generator.

    python -m loadtest.harness.reference --channel jd --port 9001 --redis redis://...
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import random
import time
from typing import Any

import redis.asyncio as aioredis

try:
    import iso8583
    from iso8583.specs import default_ascii
except ImportError:  # a test-only peer: `make bench` skips the POS reference without it
    iso8583 = None

from loadtest.generator.adapters.iso import LOAD_TEST_MAC
from loadtest.generator.event_loop import run_async, until_stopped
from protocols.channel import FieldError
from protocols.codes import Code, Reason
from protocols.demo import DEMO_JD_KEY, DEMO_JD_MERCHANT
from protocols.framing import BINARY_2, BINARY_4
from protocols.iso_channel import SIGNED_BY, request_basics
from protocols.iso_mac import MacKey, mac_field
from protocols.jd import JdCodec
from protocols.messages import AuthRequest
from protocols.pos import PosCodec
from switch.clock import RedisClock
from switch.ledger import Ledger
from switch.lua_library import ledger_library
from switch.policy_file import PolicySpec, load_policy, mcc_codes

REDIS_CONNECTIONS_MAX = 64  # one FCALL per connection at a time: this bounds concurrency
REDIS_POOL_WAIT_S = 2.0  # a request waits this long for a free connection, then fails
JD_KEYS = {DEMO_JD_MERCHANT: DEMO_JD_KEY.encode()}


def blocked_categories(spec: PolicySpec) -> dict[str, str]:
    """MCC -> decline code of the policy's category blocks (the first block naming it wins)."""
    blocked: dict[str, str] = {}
    for block in spec.mcc_block:
        for group in block.groups:
            for mcc in mcc_codes(spec.mcc_groups[group]):
                blocked.setdefault(mcc, block.code)
    return blocked


BLOCKED = blocked_categories(load_policy(None))  # the switch's default policy


class OneCallScripts:
    """In place of the switch's auto-pipeline: every ledger call is its own round trip."""

    def __init__(self, client: aioredis.Redis, library) -> None:
        self.client = client
        self.library = library
        self.redis_clock = RedisClock()  # the calls' fences are written in it

    async def load(self) -> None:
        await self.client.function_load(self.library.code, replace=True)
        sent_s = time.monotonic()
        reply = await self.client.time()
        self.redis_clock.measure(reply, sent_s, time.monotonic())

    def call(self, name: str, keys: tuple[str, ...], args: tuple[Any, ...], transform=None,
             fence_s: float | None = None):
        if fence_s is not None:
            args = (*args, self.redis_clock.fence_ms(fence_s))
        # A future, as the pipeline's: the ledger chains the card's call to its claim's.
        return asyncio.ensure_future(self._call(name, keys, args, transform))

    async def _call(self, name, keys, args, transform):
        result = await self.client.fcall(self.library.function(name), len(keys), *keys, *args)
        return transform(result) if transform else result

    async def drain(self) -> None:
        """Nothing waits here: each call is awaited by its own request."""

    def close(self) -> None:
        """The connections are the client's: Ledger.aclose closes them."""


async def make_ledger(url: str):
    pool = aioredis.BlockingConnectionPool.from_url(
        url, max_connections=REDIS_CONNECTIONS_MAX, timeout=REDIS_POOL_WAIT_S,
        decode_responses=True)
    client = aioredis.Redis(connection_pool=pool)
    ledger = Ledger(client, scripts=OneCallScripts(client, ledger_library()))
    await ledger.start()
    return ledger


def mcc_decline(request: AuthRequest) -> tuple[str, str] | None:
    """The reference's one rule: the blocked categories of the default policy decline."""
    code = BLOCKED.get(request.mcc)
    if code is not None and request.message_class in ("auth", "sale"):
        return code, Reason.MCC_BLOCKED.format(mcc=request.mcc)
    return None


class JdHandler:
    header = BINARY_4

    def __init__(self, ledger) -> None:
        self.ledger = ledger
        self.codec = JdCodec(JD_KEYS)

    async def answer(self, body: bytes) -> bytes:
        decoded = self.codec.decode_request(body)
        if isinstance(decoded, bytes):
            return decoded
        request = decoded.request
        response = await self.ledger.execute(
            request, auth_id=f"{random.randrange(1_000_000):06d}",
            rule_decline=mcc_decline(request))
        return self.codec.encode_response(decoded.context, response)


class PyIsoAnswers(PosCodec):
    """The switch's POS answers (the request's fields echoed, the decision's added), encoded
    by pyiso8583 instead of the switch's codec, signed as the switch signs them."""

    def encode(self, fields: dict[str, Any], key: MacKey | None = None) -> bytes:
        if key is None:
            return bytes(iso8583.encode(dict(fields), default_ascii)[0])
        body = bytes(iso8583.encode({**fields, mac_field(fields): "0" * 16}, default_ascii)[0])
        return body[:-16] + key.mac(body[:-16]).hex().upper().encode()


class PosHandler:
    """pyiso8583 decodes and encodes; the switch's own field mapping (protocols/iso_channel)
    turns the message into the canonical request and the decision into the answer."""

    header = BINARY_2

    def __init__(self, ledger) -> None:
        if iso8583 is None:
            raise RuntimeError("the POS reference server needs pyiso8583 (make test installs it)")
        self.ledger = ledger
        self.answers = PyIsoAnswers()

    async def answer(self, body: bytes) -> bytes:
        """As the switch: the load test acquirer's MAC checked, the answer signed with it."""
        message, _ = iso8583.decode(body, default_ascii)
        given = message.get(mac_field(message))
        if given is None or not hmac.compare_digest(bytes.fromhex(given),
                                                    LOAD_TEST_MAC.mac(body[:-16])):
            return self.answers.answer(message, Code.MAC_FAILURE, Reason.MAC_MISMATCH)
        message[SIGNED_BY] = LOAD_TEST_MAC
        try:
            request = AuthRequest(**request_basics("pos", message))
        except FieldError as error:
            return self.answers.answer(message, error.code, error.reason)
        response = await self.ledger.execute(
            request, auth_id=f"{random.randrange(1_000_000):06d}",
            rule_decline=mcc_decline(request))
        return self.answers.answer(message, response.response_code, response.reason, response)


HANDLERS = {"jd": JdHandler, "pos": PosHandler}


async def serve_connection(handler, reader: asyncio.StreamReader,
                           writer: asyncio.StreamWriter) -> None:
    header = handler.header
    tasks: set[asyncio.Task] = set()

    async def one(body: bytes) -> None:
        reply = await handler.answer(body)
        writer.write(header.encode(len(reply)) + reply)

    try:
        while True:
            length = header.decode(await reader.readexactly(header.size_bytes))
            task = asyncio.create_task(one(await reader.readexactly(length)))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def serve(channel: str, host: str, port: int, redis_url: str) -> None:
    handler = HANDLERS[channel](await make_ledger(redis_url))
    server = await asyncio.start_server(lambda r, w: serve_connection(handler, r, w), host,
                                        port)
    print(f"reference {channel} listening on {host}:{port}", flush=True)
    await until_stopped()
    server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channel", choices=sorted(HANDLERS), default="jd")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis", required=True)
    args = parser.parse_args()
    run_async(serve(args.channel, args.host, args.port, args.redis))


if __name__ == "__main__":
    main()
