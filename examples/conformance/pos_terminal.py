"""A well-behaved UnionPay POS terminal: every flow `switch conform --channel pos` requires,
as docs/channels/pos.md specifies it. Run the kit, then this:

    switch conform --channel pos --listen 127.0.0.1:8583 --cards-out cards.csv &
    python examples/conformance/pos_terminal.py --port 8583 --pan "$(sed -n 1p cards.csv |
        cut -d, -f2)" --expiry 3012

It is the demo terminal (acquirer 00010000, TERM0001, the public X9.19 example key as its
master key): it signs on (0800) and MACs its money under the session MAK of the answer's F62,
numbers its money with its batch (F60.2), and ends by settling the batch (0500) with the
totals of what was approved, uploading it (0320) should the switch answer 95
(--first-totals-off 1 makes it so). It prints each step's answer codes;
pos_terminal_misbehaving.py is the same terminal at fault.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import sys
import time
from typing import Any

import wire
from wire import Wire, report, utc_now

from protocols.batch import AFTER_UPLOAD_CODE, SETTLE_CODE, BatchTotals
from protocols.demo import DEMO_ACQUIRER, DEMO_POS_MAC, DEMO_POS_TERMINAL
from protocols.framing import HEADER_FORMATS
from protocols.iso_client import IsoClient, correlation_id, request_message
from protocols.iso_mac import MacAlgorithm, MacKey
from protocols.iso_session import SessionAction, keys_of_f62, network_f60, network_request
from protocols.messages import AuthRequest, MessageClass

MCC_SUPERMARKET = "5411"
# F60.1, the message type code of UnionPay terminals, before the batch number (F60.2).
MESSAGE_TYPES = {MessageClass.SALE: "22", MessageClass.AUTH: "10", MessageClass.CAPTURE: "20",
                 MessageClass.REFUND: "25", MessageClass.REVERSAL: "22",
                 MessageClass.INQUIRY: "01"}
DEBIT, CREDIT = "00", "20"  # F3's first digits of what a batch counts


class Terminal:
    """One terminal on one connection: STANs of its own, every message signed."""

    def __init__(self, wire: Wire, args: argparse.Namespace) -> None:
        self.wire = wire
        self.args = args
        self.master = MacKey.parse(*DEMO_POS_MAC)
        self.client = IsoClient(args.dialect, self.master)  # until the sign-on
        # STANs a run earlier today has not used: from ten times the second of the day.
        self.stans = itertools.count(int(time.time()) % 86_400 * 10 + 1)
        self.batch = f"{int(time.time()) % 1_000_000:06d}"  # a batch of its own
        self.approved: dict[str, dict[str, Any]] = {}  # STAN -> what the batch counts

    async def sign_on(self) -> str:
        """0800 (MAC'd under the master key), then the session MAK of F62; the answer code."""
        fields = network_request(SessionAction.SIGN_ON, stan=f"{next(self.stans):06d}",
                                 transmitted=utc_now().strftime("%m%d%H%M%S"),
                                 acquirer=DEMO_ACQUIRER, terminal=DEMO_POS_TERMINAL)
        fields["60"] = network_f60(SessionAction.SIGN_ON, self.batch)
        [body] = await self.wire.exchange(self.encode(fields))
        answer = self.client.decode(body)
        if answer.get("39") == "00" and answer.get("62"):
            keys = keys_of_f62(self.master.key, answer["62"])
            self.client = IsoClient(self.args.dialect, MacKey(MacAlgorithm.X9_19, keys.mak))
        return answer.get("39", "?")

    def fields(self, kind: MessageClass, amount_fen: int = 0, original: str = "",
               **changes: Any) -> dict[str, Any]:
        """A request's fields; `original`: the MTI-STAN-F7 id of the one it names (F90)."""
        request = AuthRequest(message_class=kind, channel="pos", card=self.args.pan,
                              amount_fen=amount_fen, mcc=MCC_SUPERMARKET
                              if kind in (MessageClass.SALE, MessageClass.AUTH) else "",
                              expiry=self.args.expiry if kind is MessageClass.INQUIRY else "")
        fields = request_message(request, stan=f"{next(self.stans):06d}",
                                 transmitted=utc_now().strftime("%m%d%H%M%S"),
                                 terminal=DEMO_POS_TERMINAL, acquirer=DEMO_ACQUIRER,
                                 original=original)
        if kind is MessageClass.AUTH:
            fields["25"] = "06"  # a pre-authorization
        fields["60"] = MESSAGE_TYPES[kind] + self.batch
        return fields | changes

    def encode(self, fields: dict[str, Any]) -> bytes:
        return self.client.encode(fields)

    async def send(self, *messages: dict[str, Any]) -> list[str]:
        """The messages in one write; each one's answer code, in the order sent."""
        answers = [self.client.decode(body) for body in await self.wire.exchange(
            *(self.encode(fields) for fields in messages))]
        by_id = {(a.get("11"), a.get("7")): a.get("39", "") for a in answers}
        codes = [by_id.get((m.get("11"), m.get("7")), "?") for m in messages]
        for fields, code in zip(messages, codes, strict=True):
            self.book(fields, code)
        return codes

    def book(self, fields: dict[str, Any], code: str) -> None:
        """The batch as this terminal knows it: approved purchases, completions, refunds,
        less what was reversed."""
        if code != "00" or fields["t"][:2] not in ("02", "04"):
            return
        if fields["t"][:2] == "04":
            self.approved.pop(fields["90"][4:10], None)  # F90: MTI, then the STAN
        elif fields["3"][:2] in (DEBIT, CREDIT):
            self.approved[fields["11"]] = fields

    def totals(self) -> BatchTotals:
        debits = [int(f["4"]) for f in self.approved.values() if f["3"][:2] == DEBIT]
        credits = [int(f["4"]) for f in self.approved.values() if f["3"][:2] == CREDIT]
        return BatchTotals(len(debits), sum(debits), len(credits), sum(credits))

    def settlement(self, totals: BatchTotals, code: str = SETTLE_CODE) -> dict[str, Any]:
        """0500: F48 the totals, a reconciliation digit and 31 zeros (no foreign cards)."""
        return {"t": "0500", "7": utc_now().strftime("%m%d%H%M%S"),
                "11": f"{next(self.stans):06d}", "32": DEMO_ACQUIRER, "41": DEMO_POS_TERMINAL,
                "48": totals.wire() + "0" * 32, "60": f"00{self.batch}{code}"}

    def upload(self, fields: dict[str, Any]) -> dict[str, Any]:
        """0320: one approved transaction of the batch (its F2, F3, F4 and STAN)."""
        return {"t": "0320", "2": fields["2"], "3": fields["3"], "4": fields["4"],
                "11": fields["11"], "32": DEMO_ACQUIRER, "41": DEMO_POS_TERMINAL,
                "60": f"00{self.batch}{SETTLE_CODE}"}

    async def settle(self) -> list[str]:
        """Settle the batch; answered 95, upload it and settle after upload."""
        totals = self.totals()
        off = self.args.first_totals_off  # to try the upload: a debit amount off by this
        codes = await self.send(self.settlement(totals._replace(
            debit_fen=totals.debit_fen + off)))
        if codes != ["95"]:
            return codes
        for fields in list(self.approved.values()):
            codes += await self.send(self.upload(fields))
        return codes + await self.send(self.settlement(self.totals(), AFTER_UPLOAD_CODE))


def ident(fields: dict[str, Any]) -> str:
    """The id later messages name this one by (F90): MTI-STAN-F7."""
    return correlation_id(fields["t"], fields["11"], fields["7"])


async def well_behaved(terminal: Terminal) -> None:
    report("sign-on", [await terminal.sign_on()])
    sale = terminal.fields(MessageClass.SALE, 12_800)
    report("sale", await terminal.send(sale))
    auth = terminal.fields(MessageClass.AUTH, 10_000)
    report("pre-authorization", await terminal.send(auth))
    report("completion", await terminal.send(
        terminal.fields(MessageClass.CAPTURE, 8_000, original=ident(auth))))
    # The timeout: this terminal's timer ran out before the answer came (here: at once, the
    # reversal goes in the same write), so it reverses the purchase it has no answer for.
    late = terminal.fields(MessageClass.SALE, 5_000)
    report("purchase + reversal after a timeout", await terminal.send(
        late, terminal.fields(MessageClass.REVERSAL, 5_000, original=ident(late))))
    repeated = terminal.fields(MessageClass.SALE, 3_000)
    again = terminal.encode(repeated)
    codes = [terminal.client.decode(body).get("39") for body in
             await terminal.wire.exchange(again) + await terminal.wire.exchange(again)]
    terminal.book(repeated, codes[0])
    report("purchase, then an exact repeat", codes)
    report("refund", await terminal.send(
        terminal.fields(MessageClass.REFUND, 2_000, original=ident(sale))))
    report("balance inquiry", await terminal.send(terminal.fields(MessageClass.INQUIRY)))
    report("batch settlement", await terminal.settle())


def arguments(description: str) -> argparse.Namespace:
    parser = wire.arguments(description, port=8583)
    parser.add_argument("--header", default="binary2", choices=sorted(HEADER_FORMATS))
    parser.add_argument("--dialect", default="iso87ascii")
    parser.add_argument("--first-totals-off", type=int, default=0, metavar="FEN",
                        help="settle first with the debit amount off by FEN: the switch "
                        "answers 95 and the terminal uploads its batch")
    return parser.parse_args()


async def play(args: argparse.Namespace, script) -> int:
    return await wire.play(args, HEADER_FORMATS[args.header], Terminal, script)


if __name__ == "__main__":
    sys.exit(asyncio.run(play(arguments(__doc__.splitlines()[0]), well_behaved)))
