"""Terminals' batches in Redis: counted as approvals are decided, settled on 0500.

How the counting works (docs/channels/pos.md, "Batch settlement"):
- An approved sale, completion or refund that names its batch (F60.2) is recorded, after
  its card's ledger call and in a second call, as an entry of the batch: its STAN -> debit
  or credit and amount. An approved reversal sets its original's entry to what remains (or
  removes it). A pre-authorization is not in the totals, nor is a decline, a repeat (its
  first answer was counted) or a stand-in answer.
- The entries are keyed by STAN, so recording one twice changes nothing.
- The second call is not atomic with the card's: if it fails (Redis lost between the two),
  or the answer was 91 (too late), the batch lacks the transaction, its settlement answers
  95, and the terminal's upload settles it. The failure is logged.
"""

from __future__ import annotations

import functools
import logging

import msgspec

from protocols.batch import SETTLEMENT_KIND, BatchWork
from protocols.codes import Code, Reason
from protocols.ledger_layout import batch_keys
from protocols.messages import AuthRequest, AuthResponse, MessageClass
from switch import limits
from switch.clock import Clock
from switch.pipeline import LanePipeline

log = logging.getLogger("switch.batches")

# The side of the totals an approval of each class counts on.
SIDES = {MessageClass.SALE: "D", MessageClass.CAPTURE: "D", MessageClass.REFUND: "C",
         MessageClass.REVERSAL: "R"}
# A settlement's outcome (switch/lua/batch.lua) -> the answer's code and reason.
OUTCOMES = {
    "balanced": (Code.APPROVED, ""),
    "unbalanced": (Code.RECONCILIATION_ERROR, Reason.BATCH_TOTALS_DIFFER),
    "overflow": (Code.RECONCILIATION_ERROR, Reason.BATCH_ENTRIES_OVER_LIMIT),
}


class Batches:
    def __init__(self, scripts: LanePipeline, clock: Clock) -> None:
        self.scripts = scripts
        self.clock = clock

    def note(self, request: AuthRequest, decided) -> None:
        """The card call of a request of a batch has completed (a done future): record its
        approval in the batch."""
        if decided.cancelled() or decided.exception() is not None:
            return
        response: AuthResponse = decided.result()
        side = SIDES.get(request.message_class)
        if side is None or not response.approved or response.repeat or response.stand_in:
            return
        stan = request.txn_ref.rsplit(":", 1)[1]
        original = request.original_ref.rsplit(":", 1)[1] if side == "R" else ""
        call = self.scripts.call("batch_record", batch_keys(request.batch), (
            stan, side, response.approved_fen, original, limits.batch_entries_max,
            limits.batch_ttl_s))
        call.add_done_callback(functools.partial(_recorded, request.batch, stan))

    async def decide(self, work: BatchWork) -> tuple[str, str]:
        """(code, reason) of a settlement or an upload."""
        keys = batch_keys(work.scope)
        if work.kind != SETTLEMENT_KIND:
            debit = work.totals.debit_count > 0
            outcome = await self.scripts.call("batch_upload", keys, (
                work.stan, "D" if debit else "C",
                work.totals.debit_fen if debit else work.totals.credit_fen,
                limits.batch_entries_max, limits.batch_ttl_s))
            return OUTCOMES["overflow"] if outcome == "overflow" else (Code.APPROVED, "")
        outcome, _, _ = await self.scripts.call("batch_settle", keys, (
            *work.totals, int(work.after_upload), self.clock.now_ms(), limits.batch_ttl_s))
        return OUTCOMES[outcome]


def _recorded(batch: str, stan: str, call) -> None:
    if call.cancelled() or call.exception() is not None:
        log.warning("batch %s: approval STAN %s not recorded (%s): its settlement will "
                    "answer 95 until the terminal uploads it", batch, stan,
                    "cancelled" if call.cancelled() else call.exception())


class BatchView(msgspec.Struct):
    """A batch as the operator sees it (`switch batch show`): both sides' totals, the last
    settlement, and the STANs on which the switch and the terminal's upload differ."""

    scope: str
    switch_totals: list[int]  # debit count, debit fen, credit count, credit fen
    uploaded_totals: list[int]
    entries: int
    uploaded: int
    settlement: dict[str, str]  # outcome, after_upload, terminal, switch, settled_ms
    differences: dict[str, list[str]]  # STAN -> [the switch's entry, the upload's] ("" absent)


def totals_of(entries: dict[str, str]) -> list[int]:
    totals = [0, 0, 0, 0]
    for entry in entries.values():
        side, _, fen = entry.partition("|")
        at = 2 if side == "C" else 0
        totals[at] += 1
        totals[at + 1] += int(fen)
    return totals


async def batch_view(client, scope: str) -> BatchView | None:
    """The batch `scope` (ACQUIRER:TERMINAL:BATCH) from Redis; None when nothing is kept."""
    entries_key, uploads_key, state_key = batch_keys(scope)
    async with client.pipeline(transaction=False) as pipe:
        pipe.hgetall(entries_key)
        pipe.hgetall(uploads_key)
        pipe.hgetall(state_key)
        entries, uploads, state = await pipe.execute()
    if not (entries or uploads or state):
        return None
    differences = {stan: [entries.get(stan, ""), uploads.get(stan, "")]
                   for stan in sorted(set(entries) | set(uploads))
                   if uploads and entries.get(stan) != uploads.get(stan)}
    return BatchView(scope, totals_of(entries), totals_of(uploads), len(entries), len(uploads),
                     state, differences)
