"""The per-channel client adapter table: how the load generator speaks each channel.

An adapter (base.py) knows a channel's length header, its default port and the transaction
kinds it has; it turns one synthetic transaction into request bytes (through the channel's
own sans-IO client functions in protocols/) and reads from an answer the correlation id and
the ISO 8583 response code. Adding a channel to the load test is one factory function
(web.py, iso.py) and one line in `ADAPTERS`.
"""

from __future__ import annotations

from loadtest.generator.adapters.base import ClientAdapter, Context, Factory, Options
from loadtest.generator.adapters.iso import pos_adapter, xpay_adapter
from loadtest.generator.adapters.web import jd_adapter, wechat_adapter

# channel name -> factory: every channel the switch serves.
ADAPTERS: dict[str, Factory] = {
    "jd": jd_adapter,
    "wechat": wechat_adapter,
    "pos": pos_adapter,
    "xpay": xpay_adapter,
}

# The default mix of the channels' traffic; `--mix` overrides it.
DEFAULT_MIX_WEIGHTS = {"pos": 60, "jd": 20, "wechat": 10, "xpay": 10}


def default_mix() -> dict[str, int]:
    return {name: weight for name, weight in DEFAULT_MIX_WEIGHTS.items() if name in ADAPTERS}


def build(name: str, options: Options | None = None, context: Context | None = None
          ) -> ClientAdapter:
    factory = ADAPTERS.get(name)
    if factory is None:
        raise ValueError(f"no load-test adapter for channel {name!r} "
                         f"(channels: {', '.join(sorted(ADAPTERS))})")
    return factory(options or {}, context or Context())
