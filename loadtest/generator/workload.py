"""Synthetic transactions, reproducible from a seed.

Each step draws the same six random numbers whatever it turns out to be, so the stream of
draws depends on the seed alone. A step is a fresh purchase (sale, authorization, inquiry)
or, by its draw, a message about an earlier transaction, at least `lag` steps old (its
answer is in by then): a capture or a reversal of an approved authorization, a reversal or
a refund of an approved sale, a repeat of any answered message. The earlier transactions
wait in queues in the order they were made, each used once; when the oldest is not
answered yet, the step is a fresh sale instead. Which transactions are approved depends on
the cards and the stream, so with freshly seeded cards a run repeats itself exactly as long
as every answer comes within the lag (and no time-window rule of the policy is reached).
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
from collections import deque
from collections.abc import Sequence

from protocols.cardnumbers import luhn_check_digit
from protocols.messages import AuthRequest, MessageClass

LOAD_TEST_BIN = "625380"  # a UnionPay 62 BIN kept for load-test cards (demo cards use 625368)
CARD_EXPIRY = "3012"
CARD_LIMIT_FEN = 10_000_000  # 100,000 yuan, the product's highest limit: cards last long runs
# The switch's default statement day (switch/limits.py statement_day_default): a seeded card
# is the card `switch card set` makes (tests/test_ledger_layout.py).
CARD_STATEMENT_DAY = 5

# (MCC, weight, median amount in fen, log-normal sigma). Everyday categories dominate; the
# medians follow what a basket costs there. A few purchases go to gambling (7995) and ATM
# cash (6011), categories an issuer's policy usually blocks, so a run exercises declines too;
# the generator is a client and predicts no answer from them (tests/test_loadtest_workload.py
# checks that the shipped policy does block them, so the mix keeps its declines).
MCC_MIX: tuple[tuple[str, int, int, float], ...] = (
    ("5411", 44, 12_000, 0.9),  # supermarkets
    ("5812", 28, 15_000, 0.8),  # restaurants
    ("5814", 24, 3_500, 0.6),  # fast food
    ("5541", 16, 30_000, 0.5),  # fuel
    ("5311", 14, 40_000, 1.0),  # department stores
    ("5732", 8, 250_000, 1.0),  # electronics
    ("5999", 16, 8_000, 1.1),  # miscellaneous retail
    ("4121", 12, 3_000, 0.6),  # taxis
    ("4111", 6, 500, 0.5),  # transit
    ("5399", 16, 20_000, 1.2),  # e-commerce: general merchandise (JD orders)
    ("5818", 8, 3_000, 1.0),  # e-commerce: digital goods
    ("5964", 6, 15_000, 1.0),  # e-commerce: direct marketing
    ("7995", 1, 20_000, 1.0),  # gambling: blocked
    ("6011", 1, 100_000, 0.5),  # ATM cash: blocked
)
AMOUNT_MAX_FEN = 5_000_000  # one purchase above 50,000 yuan is not an everyday card payment

# Step kinds (per 100 steps). Referencing kinds fall back to a sale when the transaction
# `lag` steps back does not qualify, so the sent mix leans a little more to sales.
KIND_MIX: tuple[tuple[str, int], ...] = (
    ("sale", 60), ("auth", 15), ("capture", 6), ("reversal", 7), ("refund", 5),
    ("inquiry", 3), ("repeat", 4),
)
PURCHASE_KINDS = frozenset({"sale", "auth", "inquiry"})
QUEUE_LENGTH_LAGS = 2  # each queue keeps at most this many lags of transactions
CLASS_OF_KIND = {
    "sale": MessageClass.SALE, "auth": MessageClass.AUTH, "capture": MessageClass.CAPTURE,
    "reversal": MessageClass.REVERSAL, "refund": MessageClass.REFUND,
    "inquiry": MessageClass.INQUIRY,
}

# Txn.state: set by the worker as answers (or their absence) come in.
PENDING, APPROVED, DECLINED, UNKNOWN = 0, 1, 2, 3


class Txn:
    """One message to send. A repeat shares `number` and `request` with its original, so an
    adapter that derives its wire ids from them sends the very same message again."""

    __slots__ = ("number", "kind", "channel", "request", "original", "state", "wire")

    def __init__(self, number: int, kind: str, channel: str, request: AuthRequest,
                 original: Txn | None, wire: tuple[str, bytes] | None = None) -> None:
        self.number = number  # unique per original message within one worker
        self.kind = kind
        self.channel = channel
        self.request = request
        self.original = original  # the earlier transaction a capture/reversal/refund names
        self.state = PENDING
        self.wire = wire  # (correlation id, body) once encoded: a repeat resends these bytes


def load_test_pans(count: int, seed: int) -> list[str]:
    """`count` distinct Luhn-valid 16-digit UnionPay numbers; the same for the same seed."""
    rng = random.Random(f"cards:{seed}")
    pans: dict[str, None] = {}
    while len(pans) < count:
        body = f"{LOAD_TEST_BIN}{rng.randrange(10**9):09d}"
        pans[body + luhn_check_digit(body)] = None
    return list(pans)


def _cumulative(weights: Sequence[float]) -> list[float]:
    return list(itertools.accumulate(weights))


def _pick(cumulative: list[float], u: float) -> int:
    """Index chosen by uniform `u` in [0, 1) against cumulative weights."""
    return bisect.bisect_right(cumulative, u * cumulative[-1])


class Workload:
    def __init__(self, pans: Sequence[str], mix: dict[str, int], seed: int, *,
                 ref_prefix: str, lag: int = 1000,
                 channel_kinds: dict[str, frozenset[str]] | None = None) -> None:
        if not pans or not mix or lag < 1:
            raise ValueError("a workload needs cards, a channel mix and a lag of at least 1")
        self.pans = pans
        self.rng = random.Random(seed)
        self.channels = list(mix)
        self.channel_cum = _cumulative(list(mix.values()))
        self.kinds = [kind for kind, _ in KIND_MIX]
        self.kind_cum = _cumulative([w for _, w in KIND_MIX])
        self.mcc_cum = _cumulative([w for _, w, _, _ in MCC_MIX])
        self.ref_prefix = ref_prefix  # makes ids unique across runs and workers
        self.channel_kinds = channel_kinds or {}  # channel -> kinds it has (default: all)
        self.lag = lag
        # (step, txn) in the order made: approved-to-be auths, sales, and every message.
        self.queues: dict[str, deque[tuple[int, Txn]]] = {
            name: deque(maxlen=QUEUE_LENGTH_LAGS * lag) for name in ("auth", "sale", "any")}
        self.steps = 0
        self.numbers = itertools.count()
        self.transmitted_at = "20260101000000"  # the worker keeps this at the current second

    def next(self) -> Txn:
        rand = self.rng.random
        u_kind, u_card, u_mcc, u_channel, u_fraction = rand(), rand(), rand(), rand(), rand()
        z = self.rng.gauss(0.0, 1.0)
        kind = self.kinds[_pick(self.kind_cum, u_kind)]
        txn = None
        if kind not in PURCHASE_KINDS:
            txn = self._about(kind, u_fraction)
        if txn is None:
            channel = self.channels[_pick(self.channel_cum, u_channel)]
            if kind not in PURCHASE_KINDS or not self._has(channel, kind):
                kind = "sale"  # every channel has sales
            txn = self._purchase(kind, channel, self.pans[int(u_card * len(self.pans))],
                                 u_mcc, z)
        if txn.kind in ("auth", "sale"):
            self.queues[txn.kind].append((self.steps, txn))
        self.queues["any"].append((self.steps, txn))
        self.steps += 1
        return txn

    def _has(self, channel: str, kind: str) -> bool:
        kinds = self.channel_kinds.get(channel)
        return kinds is None or kind in kinds

    def _purchase(self, kind: str, channel: str, pan: str, u_mcc: float, z: float) -> Txn:
        mcc, _, median_fen, sigma = MCC_MIX[_pick(self.mcc_cum, u_mcc)]
        amount = 0
        if kind != "inquiry":
            amount = min(AMOUNT_MAX_FEN, max(1, int(median_fen * math.exp(sigma * z))))
        return self._txn(kind, channel, pan, amount, mcc, None)

    def _earlier(self, queue: str, wanted: tuple[int, ...]) -> Txn | None:
        """The oldest transaction of `queue` old enough and in a `wanted` state, used up; the
        older ones in no wanted state are dropped on the way. None when the oldest has no
        answer yet (or the queue holds nothing old enough)."""
        waiting = self.queues[queue]
        while waiting and self.steps - waiting[0][0] >= self.lag:
            state = waiting[0][1].state
            if state == PENDING:
                return None
            txn = waiting.popleft()[1]
            if state in wanted:
                return txn
        return None

    def _about(self, kind: str, u: float) -> Txn | None:
        """A message about an earlier transaction, or None when none qualifies now."""
        if kind == "repeat":
            earlier = self._earlier("any", (APPROVED, DECLINED))
            if earlier is None or not self._has(earlier.channel, kind):
                return None
            return Txn(earlier.number, "repeat", earlier.channel, earlier.request,
                       earlier.original, earlier.wire)
        queue = {"capture": "auth", "refund": "sale"}.get(kind) or ("auth" if u < 0.5
                                                                    else "sale")
        earlier = self._earlier(queue, (APPROVED,))
        if earlier is None or not self._has(earlier.channel, kind):
            return None
        original = earlier.request
        amount = 0  # a reversal: the whole original
        if kind == "capture":
            amount = original.amount_fen if u < 0.8 else max(1, int(original.amount_fen * u))
        elif kind == "refund":
            amount = original.amount_fen if u < 0.5 else max(1, int(original.amount_fen * u))
        return self._txn(kind, earlier.channel, original.card, amount, original.mcc, earlier)

    def _txn(self, kind: str, channel: str, pan: str, amount: int, mcc: str,
             original: Txn | None) -> Txn:
        number = next(self.numbers)
        request = AuthRequest(
            message_class=CLASS_OF_KIND[kind], channel=channel, card=pan, amount_fen=amount,
            mcc=mcc, expiry=CARD_EXPIRY, txn_ref=f"{self.ref_prefix}{number}",
            original_ref=original.request.txn_ref if original else "",
            transmitted_at=self.transmitted_at,
        )
        return Txn(number, kind, channel, request, original)
