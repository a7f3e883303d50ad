"""Batch settlement of UnionPay terminals, sans-IO: reading 0500 and 0320, writing F48.

A terminal numbers its batches (F60.2, six digits) and sends every sale, completion, refund
and reversal of a batch with its number. At the end of the batch it sends a settlement
(0500, 60.3 = 201) whose F48 carries its totals; the switch compares them with its own for
the same acquirer (F32) + terminal (F41) + batch and answers 0510 with 00 when they are
equal, 95 when not. A terminal answered 95 uploads the batch's transactions one by one
(0320, 60.3 = 201: F2, F3, F4, F11 of each), may say the upload is over (0320, 60.3 = 202
or 207), then settles again "after upload" (0500, 60.3 = 202): the uploaded transactions
are then compared with the terminal's totals, and the switch's own totals stay recorded
beside them for the operator. docs/channels/pos.md, "Batch settlement".

F48 of a settlement (n62, UnionPay's layout): debit amount n12, debit count n3, credit
amount n12, credit count n3, reconciliation code n1 (the answer's: 1 balanced, 2 not), then
the same 31 digits for foreign cards (zeros here: the Baitiao card is a domestic one).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from protocols.channel import FieldError
from protocols.codes import Code, Reason
from protocols.iso8583 import Dialect

TOTALS_DIGITS = 30  # debit amount 12, count 3, credit amount 12, count 3
RECONCILED_AT = 30  # the reconciliation code's position in F48 (its 31st digit)
BALANCED, UNBALANCED = "1", "2"
SETTLEMENT_KIND, UPLOAD_KIND = "50", "32"  # MTI digits 2-3: 0500 settlement, 0320 upload
BATCH_KINDS = (SETTLEMENT_KIND, UPLOAD_KIND)
SETTLE_CODE = "201"  # 60.3 of a settlement, and of an uploaded transaction
AFTER_UPLOAD_CODE = "202"  # 60.3 of the settlement after an upload
UPLOAD_END_CODES = ("202", "207")  # 60.3 of the 0320 that ends an upload
BATCH_DIGITS = 6
# F3's first two digits of an uploaded transaction -> its side of the totals.
UPLOAD_SIDES = {"00": "D", "20": "C"}


class BatchTotals(NamedTuple):
    debit_count: int
    debit_fen: int
    credit_count: int
    credit_fen: int

    def wire(self) -> str:
        """F48's first 30 digits."""
        return (f"{self.debit_fen:012d}{self.debit_count:03d}"
                f"{self.credit_fen:012d}{self.credit_count:03d}")


class BatchWork(NamedTuple):
    """What a settlement or upload asks the switch to do with a batch (the server does it:
    switch/batches.py), and the request to answer."""

    kind: str  # SETTLEMENT_KIND or UPLOAD_KIND
    scope: str  # ACQUIRER:TERMINAL:BATCH
    totals: BatchTotals  # a settlement: the terminal's; an upload: its one transaction
    stan: str
    after_upload: bool
    message: dict[str, Any]


def batch_number(dialect: Dialect, message: dict[str, Any]) -> str:
    """F60.2, or "" when F60 does not carry six digits there."""
    number = dialect.subfield_values("60", str(message.get("60", ""))).get("batch_number", "")
    return number if len(number) == BATCH_DIGITS and number.isdigit() else ""


def network_code(dialect: Dialect, message: dict[str, Any]) -> str:
    return dialect.subfield_values("60", str(message.get("60", ""))).get(
        "network_management_code", "")


def parse_totals(f48: str) -> BatchTotals:
    """The terminal's totals from F48; FieldError (30) when they are not 30 digits."""
    head = f48[:TOTALS_DIGITS]
    if len(head) < TOTALS_DIGITS or not head.isdigit():
        raise FieldError(Code.FORMAT_ERROR, Reason.FORMAT.format(detail="field_48"))
    return BatchTotals(debit_fen=int(head[:12]), debit_count=int(head[12:15]),
                       credit_fen=int(head[15:27]), credit_count=int(head[27:30]))


def read_batch(dialect: Dialect, message: dict[str, Any], scope_prefix: str) -> BatchWork | None:
    """The work a 0500 or 0320 asks for; None for the 0320 that only ends an upload
    (answered 00 at once). FieldError for what cannot be read (30) or is not taken (12).
    `scope_prefix`: ACQUIRER:TERMINAL of the sender."""
    kind = message["t"][1:3]
    if message["t"][3] not in "01":
        raise FieldError(Code.INVALID_TRANSACTION, Reason.MTI_NOT_SUPPORTED)
    batch = batch_number(dialect, message)
    if not batch:
        raise FieldError(Code.FORMAT_ERROR, Reason.BATCH_NUMBER_MISSING)
    code = network_code(dialect, message)
    stan = str(message.get("11", ""))
    if not stan:
        raise FieldError(Code.FORMAT_ERROR, Reason.FIELD_MISSING.format(field=11))
    scope = f"{scope_prefix}:{batch}"
    if kind == SETTLEMENT_KIND:
        if code not in (SETTLE_CODE, AFTER_UPLOAD_CODE):
            raise FieldError(Code.INVALID_TRANSACTION, Reason.NETWORK_CODE_UNSUPPORTED)
        totals = parse_totals(str(message.get("48", "")))
        return BatchWork(kind, scope, totals, stan, code == AFTER_UPLOAD_CODE, message)
    if code in UPLOAD_END_CODES:
        return None
    if code != SETTLE_CODE:
        raise FieldError(Code.INVALID_TRANSACTION, Reason.NETWORK_CODE_UNSUPPORTED)
    side = UPLOAD_SIDES.get(str(message.get("3", ""))[:2])
    if side is None:
        raise FieldError(Code.INVALID_TRANSACTION, Reason.PROCESSING_NOT_SUPPORTED)
    amount = str(message.get("4", ""))
    if not amount.isdigit():
        raise FieldError(Code.FORMAT_ERROR, Reason.FIELD_MISSING.format(field=4))
    one = (BatchTotals(1, int(amount), 0, 0) if side == "D"
           else BatchTotals(0, 0, 1, int(amount)))
    return BatchWork(kind, scope, one, stan, False, message)


def answer_f48(work: BatchWork, balanced: bool) -> str:
    """The 0510's F48: the terminal's totals with the reconciliation code set; the foreign
    card part as sent (or zeros)."""
    sent = str(work.message.get("48", ""))
    rest = sent[RECONCILED_AT + 1:] if len(sent) > RECONCILED_AT else ""
    return work.totals.wire() + (BALANCED if balanced else UNBALANCED) + rest
