"""The channel registry: listener name -> how to build its codec from the config.

A new channel adds one line here and one module in protocols/.
"""

from __future__ import annotations

from collections.abc import Callable

from protocols.channel import ChannelCodec
from protocols.jd import JdCodec
from switch.config import Config


def _jd(config: Config) -> ChannelCodec:
    return JdCodec({merchant: key.encode() for merchant, key in config.jd.merchant_keys.items()})


CODECS: dict[str, Callable[[Config], ChannelCodec]] = {
    "jd": _jd,
}
