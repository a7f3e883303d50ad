"""The per-channel client adapter table: how the load generator speaks each channel.

An adapter knows a channel's length header and its default port, turns one synthetic
transaction into request bytes (through the channel's own sans-IO client functions in
protocols/), and reads from an answer the correlation id and the ISO 8583 response code.
Adding a channel to the load test is one factory function and one line in `ADAPTERS`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from loadtest.workload import Txn
from protocols import jd
from protocols.framing import HeaderFormat

# The switch's demo JD merchant and key (switch/config.py). They are copied, not imported:
# the load generator is a client and talks to the switch only over the wire.
JD_DEMO_MERCHANT = "110000001"
JD_DEMO_KEY = "demo-jd-key-change-me"


class ClientAdapter(NamedTuple):
    name: str
    header: HeaderFormat
    default_port: int
    encode: Callable[[Txn], tuple[str, bytes]]  # transaction -> (correlation id, body)
    decode: Callable[[bytes], tuple[str, str]]  # answer body -> (correlation id, ISO code)


Options = dict[str, str]  # per-channel settings from `--option CHANNEL.NAME=VALUE`


def jd_adapter(options: Options) -> ClientAdapter:
    merchant = options.get("merchant", JD_DEMO_MERCHANT)
    key = options.get("key", JD_DEMO_KEY).encode()

    def encode(txn: Txn) -> tuple[str, bytes]:
        request = txn.request
        return request.txn_ref, jd.encode_request(request, key, merchant=merchant)

    def decode(body: bytes) -> tuple[str, str]:
        # No signature check: it would measure our HMAC, not the switch (tests check it).
        answer = jd.decode_response(body)
        return answer.correlation_id, answer.response.response_code

    return ClientAdapter("jd", jd.JdCodec.header, 8601, encode, decode)


# channel name -> factory. Channels appear here as their protocols/ module lands.
ADAPTERS: dict[str, Callable[[Options], ClientAdapter]] = {
    "jd": jd_adapter,
}

# The mix the issue asks for when every channel exists; `--mix` overrides it.
DEFAULT_MIX_WEIGHTS = {"pos": 60, "jd": 20, "wechat": 10, "xpay": 10}


def default_mix() -> dict[str, int]:
    return {name: weight for name, weight in DEFAULT_MIX_WEIGHTS.items() if name in ADAPTERS}


def build(name: str, options: Options | None = None) -> ClientAdapter:
    factory = ADAPTERS.get(name)
    if factory is None:
        raise ValueError(f"no load-test adapter for channel {name!r} "
                         f"(channels: {', '.join(sorted(ADAPTERS))})")
    return factory(options or {})
