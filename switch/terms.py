"""What the policy hands the ledger: the rules -> ledger contract.

switch/policy.py builds these from the policy file; switch/ledger.py passes them to the Lua
functions. Neither needs the other's types.
"""

from __future__ import annotations

from typing import NamedTuple

import msgspec

from switch.clock import DAY_MS

# Without a policy (ledger tests, tools) a pre-authorization hold lapses after UnionPay's 30 days.
HOLD_EXPIRY_DEFAULT_MS = 30 * DAY_MS


class Counter(NamedTuple):
    """Approvals on the card counted over a window of time buckets, checked before an
    approval.

    The window is the current bucket and the `buckets - 1` before it. authorize.lua keeps
    its totals, declines 65 when one more approval would pass `count_max` and 61 when the
    amount would pass `amount_max_fen`, and counts an approval into the current bucket.
    """

    field: str  # hash field in {c:PAN}:n, unique per rule and bucket size
    bucket_ms: int
    buckets: int
    offset_ms: int  # shifts bucket edges: 8 h makes daily buckets Beijing calendar days
    count_max: int  # 0: no count limit
    amount_max_fen: int  # 0: no amount limit
    count_reason: str
    amount_reason: str


def counters_arg(counters: tuple[Counter, ...]) -> bytes:
    """The counters as one function argument, a JSON array of their values (authorize.lua
    decodes it in C; text, so the call can be replayed by redis-benchmark or redis-cli):
    made once per policy verdict, not per call."""
    return msgspec.json.encode(counters) if counters else b""


PIN_TRIES_DEFAULT = 3  # the policy file's [pin] tries_max unless it says otherwise


class Terms(NamedTuple):
    """What the policy adds to a ledger call (build with `with_counters`)."""

    counters: tuple[Counter, ...] = ()
    counters_arg: bytes = b""  # counters_arg(counters), made once
    counters_ttl_ms: int = DAY_MS  # the counters hash outlives the longest window by this
    hold_expiry_ms: int = HOLD_EXPIRY_DEFAULT_MS
    capture_tolerance_percent: int = 0
    pin_tries_max: int = PIN_TRIES_DEFAULT  # wrong PINs that block the card's PIN (75)

    def with_counters(self, counters: tuple[Counter, ...]) -> Terms:
        return self._replace(counters=counters, counters_arg=counters_arg(counters))


NO_TERMS = Terms()


class Verdict(NamedTuple):
    """The policy's word on one request, before the ledger's checks."""

    decline: tuple[str, str] | None  # (response code, rule id)
    beans_per_yuan: int
    terms: Terms
