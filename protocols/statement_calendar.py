"""The statement calendar of a card (switch/lua/statement.lua keeps it in Redis): a card with
statement day D (1..28) has its statement at the end of day D of every month, UTC. Pure:
instants in, instants out (ms), for the ledger and for the load generator's seeding alike
(protocols/ledger_layout.py card_cycle).
"""

from __future__ import annotations

import datetime

DAY_MS = 24 * 3600 * 1000


def _close_ms(year: int, month: int, day: int) -> int:
    """The end of day `day` of the month (UTC), in ms: the statement closes then."""
    end = datetime.datetime(year, month, day, tzinfo=datetime.UTC) + datetime.timedelta(days=1)
    return int(end.timestamp()) * 1000


def next_close_ms(after_ms: int, day: int) -> int:
    """The first statement close of a card with statement day `day` after `after_ms`."""
    moment = datetime.datetime.fromtimestamp(after_ms // DAY_MS * 86_400, datetime.UTC)
    close = _close_ms(moment.year, moment.month, day)
    if close > after_ms:
        return close
    year, month = (moment.year + 1, 1) if moment.month == 12 else (moment.year, moment.month + 1)
    return _close_ms(year, month, day)


def previous_close_ms(close_ms: int, day: int) -> int:
    """The close a month before the close `close_ms`."""
    moment = datetime.datetime.fromtimestamp((close_ms - DAY_MS) // 1000, datetime.UTC)
    year, month = (moment.year - 1, 12) if moment.month == 1 else (moment.year, moment.month - 1)
    return _close_ms(year, month, day)
