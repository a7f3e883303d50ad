"""The channel registry: listener name -> how to build its codec from the config.

A new channel adds one line here and one module in protocols/.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from protocols.channel import ChannelCodec
from protocols.framing import HEADER_FORMATS
from protocols.iso_channel import IsoChannel
from protocols.iso_envelope import ENVELOPES
from protocols.iso_mac import KeyRing, MacKey
from protocols.jd import JdCodec
from protocols.pos import PosCodec
from protocols.wechat import Merchant, WechatCodec
from protocols.xpay import XpayCodec
from switch.config import Config, Iso8583
from switch.terminal_keys import scope


def _jd(config: Config) -> ChannelCodec:
    return JdCodec({merchant: key.encode() for merchant, key in config.jd.merchant_keys.items()})


def _wechat(config: Config) -> ChannelCodec:
    merchants = {mch_id: Merchant(m.key.encode(), m.mcc, frozenset(m.sign_types))
                 for mch_id, m in config.wechat.merchants.items()}
    return WechatCodec(merchants, beijing_now_text)


def beijing_now_text() -> str:
    """yyyyMMddHHmmss in Beijing time (UTC+8), as WeChat writes `time_end`."""
    return time.strftime("%Y%m%d%H%M%S", time.gmtime(time.time() + 8 * 3600))


def configured_keys(settings: Iso8583) -> dict[tuple[str, str], MacKey]:
    """The listener's terminal keys held in its config, by (acquirer, terminal)."""
    return {scope(t.acquirer, t.terminal): t.mac_key() for t in settings.terminals}


def _iso(codec: type[IsoChannel], settings: Iso8583) -> ChannelCodec:
    """The config's keys only; app.build puts the Redis key store's cache in their place."""
    keys = None if settings.mac == "off" else KeyRing(configured_keys(settings))
    return codec(settings.dialect, HEADER_FORMATS[settings.header], keys,
                 ENVELOPES[settings.envelope])


CODECS: dict[str, Callable[[Config], ChannelCodec]] = {
    "jd": _jd,
    "wechat": _wechat,
    "pos": lambda config: _iso(PosCodec, config.pos),
    "xpay": lambda config: _iso(XpayCodec, config.xpay),
}
