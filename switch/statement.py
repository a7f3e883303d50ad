"""The card's month: its statement cycle, in Python, as the ledger's Lua keeps it.

switch/lua/statement.lua closes a card's cycle lazily, on the card's first ledger call (or
read) at or after its close: the statement records the posted balance then, its minimum
payment and its due date. protocols/statement_calendar.py restates its calendar (the same
instants, for a card's first cycle and for tests); this module reads a card's statement
fields into a `Cycle`, with what depends on the reader's now (overdue). docs/testing.md
"The card's month".
"""

from __future__ import annotations

import msgspec

from protocols.statement_calendar import previous_close_ms
from switch import limits

DUE_DAYS = 20  # statement.lua's DUE_DAYS (tests/test_statement.py checks they agree)
MIN_PAYMENT_PERCENT = 10  # statement.lua's MIN_PAYMENT_PERCENT


class Cycle(msgspec.Struct):
    """A card's cycle now and its last statement (all instants in ms, amounts in fen)."""

    statement_day: int
    start_ms: int  # the current cycle began (the previous close)
    end_ms: int  # it closes: the next statement
    statement_ms: int = 0  # the last statement's close; 0: none yet (and the rest is 0)
    statement_balance: int = 0  # posted at that close (below zero: a credit balance)
    minimum_payment: int = 0  # of it, with what was past due
    past_due: int = 0  # minimum left unpaid from statements before it
    due_ms: int = 0
    paid: int = 0  # repaid since the statement closed
    still_due: int = 0  # statement balance - paid, not below zero
    overdue: bool = False


def check_day(day: int) -> int:
    if not limits.statement_day_min <= day <= limits.statement_day_max:
        raise ValueError(f"statement day must be {limits.statement_day_min}.."
                         f"{limits.statement_day_max} (a day every month has)")
    return day


def minimum_payment(balance: int, past_due: int) -> int:
    """statement.lua's statement_minimum: a tenth of the balance, rounded up, plus what is
    past due, never more than the balance; nothing on a balance of zero or a credit."""
    if balance <= 0:
        return 0
    return min(balance, -(-balance * MIN_PAYMENT_PERCENT // 100) + past_due)


def cycle_of(fields: dict[str, str], now_ms: int) -> Cycle | None:
    """The card's cycle from its hash (as read after its call closed what ended by
    `now_ms`); None for a card without a statement day (seeded by the load generator)."""
    if "statement_day" not in fields or "cycle_end" not in fields:
        return None
    day, end = int(fields["statement_day"]), int(fields["cycle_end"])
    number = lambda name: int(fields.get(name, 0))  # noqa: E731
    # A changed statement day: the cycle began at the last statement, not a month before.
    cycle = Cycle(statement_day=day, start_ms=max(previous_close_ms(end, day),
                                                  number("stmt_at")), end_ms=end)
    if "stmt_at" not in fields:
        return cycle
    cycle.statement_ms, cycle.statement_balance = number("stmt_at"), number("stmt_balance")
    cycle.minimum_payment, cycle.past_due = number("stmt_min"), number("stmt_past_due")
    cycle.due_ms, cycle.paid = number("stmt_due"), number("stmt_paid")
    cycle.still_due = max(0, cycle.statement_balance - cycle.paid)
    cycle.overdue = is_overdue(cycle, now_ms)
    return cycle


def is_overdue(cycle: Cycle, now_ms: int) -> bool:
    """Past due: an earlier statement's minimum is still unpaid, or this one's due date has
    passed without its minimum paid."""
    if not cycle.statement_ms:
        return False
    return cycle.paid < cycle.past_due or (now_ms >= cycle.due_ms
                                           and cycle.paid < cycle.minimum_payment)
