"""Presets of an ISO 8583 listener's wire: dialect, length header and envelope together.

`switch serve --dialect pos=unionpay-pos`, `switch send --dialect unionpay-pos` and the
`switch iso` commands take a preset name where they take a dialect; a plain dialect name
(or a dialect file's path) sets the dialect alone. Documented in docs/channels/pos.md
("Dialect presets").
"""

from __future__ import annotations

from typing import NamedTuple


class Preset(NamedTuple):
    dialect: str
    header: str | None  # protocols/framing.py HEADER_FORMATS; None: leave it as it is
    envelope: str | None  # protocols/iso_envelope.py ENVELOPES; None: leave it as it is
    description: str = ""


PRESETS = {
    "unionpay-pos": Preset("unionpay", "binary2", "tpdu+header",
                           "UnionPay POS terminal: 2-byte length, TPDU, 6-byte message "
                           "header, unionpay dialect"),
    "unionpay-tpdu": Preset("unionpay", "binary2", "tpdu",
                            "2-byte length, TPDU, no message header, unionpay dialect"),
    "unionpay-sm4-pos": Preset("unionpay-sm4", "binary2", "tpdu+header",
                               "UnionPay POS terminal with SM4 PIN keys: unionpay-pos with a "
                               "16-byte F52 (unionpay-sm4 dialect)"),
}


def preset(name: str) -> Preset:
    """The preset of that name, or the dialect `name` alone (a shipped one or a path)."""
    return PRESETS.get(name) or Preset(name, None, None)
