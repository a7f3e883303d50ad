"""Offline UnionPay POS channel: ISO 8583 (1987) from terminals, card number in F2 or F35.

Everything ISO 8583 lives in protocols/iso_channel.py (server) and protocols/iso_client.py
(client), shared with x-pay; this channel only names itself. The wire format for adapter
authors: docs/channels/pos.md.
"""

from __future__ import annotations

from protocols.demo import DEMO_ACQUIRER, DEMO_POS_TERMINAL
from protocols.iso_channel import IsoChannel

DEFAULT_TERMINAL = DEMO_POS_TERMINAL  # F41 that `switch send` uses unless told otherwise
DEFAULT_ACQUIRER = DEMO_ACQUIRER  # F32: a UnionPay institution code (4 institution + 4 area)


class PosCodec(IsoChannel):
    """Server side of the `pos` listener: the card is the PAN of F2 or track 2 (F35)."""

    name = "pos"
