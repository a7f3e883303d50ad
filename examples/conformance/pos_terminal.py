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

With `--dialect unionpay-pos` (on a kit started with the same `--dialect`) it is a real
UnionPay terminal: TPDU and message header, BCD, and no F7 or F18 (the switch reads the
transmission time from F13 + F12 and the MCC from the merchant id in F42). With `--sm4` it
is the demo SM4 terminal (XPAY0001, the GB/T 32907 example key as its SM4 master key): SM4
working keys and the SM4 MAC, e.g. on a kit started with `--dialect unionpay-sm4-pos`.
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
from protocols.demo import (
    DEMO_ACQUIRER,
    DEMO_POS_MAC,
    DEMO_POS_TERMINAL,
    DEMO_XPAY_MAC,
    DEMO_XPAY_TERMINAL,
)
from protocols.framing import HEADER_FORMATS
from protocols.iso_client import IsoClient, correlation_id, request_message
from protocols.iso_envelope import ENVELOPES
from protocols.iso_fallbacks import fill, left_out
from protocols.iso_mac import MacKey
from protocols.iso_presets import preset
from protocols.iso_session import SessionAction, keys_of_f62, network_f60, network_request
from protocols.messages import AuthRequest, MessageClass

MCC_SUPERMARKET = "5411"
# F42, a UnionPay merchant id: acquirer 898, area 3100, MCC 5411 (a supermarket), serial 0001.
MERCHANT = "898310054110001"
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
        # The demo terminal of its cipher, as the switch's demo config knows it.
        self.terminal, mac = ((DEMO_XPAY_TERMINAL, DEMO_XPAY_MAC) if args.sm4
                              else (DEMO_POS_TERMINAL, DEMO_POS_MAC))
        self.master = MacKey.parse(*mac)
        self.client = self.client_with(self.master)  # until the sign-on
        # STANs a run earlier today has not used: from ten times the second of the day.
        self.stans = itertools.count(int(time.time()) % 86_400 * 10 + 1)
        self.batch = f"{int(time.time()) % 1_000_000:06d}"  # a batch of its own
        self.approved: dict[str, dict[str, Any]] = {}  # STAN -> what the batch counts

    def client_with(self, key: MacKey) -> IsoClient:
        return IsoClient(self.args.dialect, key, ENVELOPES[self.args.envelope])

    async def sign_on(self) -> str:
        """0800 (MAC'd under the master key), then the session MAK of F62; the answer code."""
        stamp = now_stamp()
        fields = network_request(SessionAction.SIGN_ON, stan=f"{next(self.stans):06d}",
                                 transmitted=stamp["7"], acquirer=DEMO_ACQUIRER,
                                 terminal=self.terminal) | stamp
        fields["60"] = network_f60(SessionAction.SIGN_ON, self.batch)
        [body] = await self.wire.exchange(self.encode(fields))
        answer = self.client.decode(body)
        if answer.get("39") == "00" and answer.get("62"):
            # F62: hex text, or bytes (unionpay); the keys of the master key's cipher.
            keys = keys_of_f62(self.master.key, answer["62"], self.master.algorithm)
            self.client = self.client_with(MacKey(self.master.algorithm, keys.mak))
        return answer.get("39", "?")

    def fields(self, kind: MessageClass, amount_fen: int = 0, original: str = "",
               **changes: Any) -> dict[str, Any]:
        """A request's fields; `original`: the MTI-STAN-F7 id of the one it names (F90)."""
        request = AuthRequest(message_class=kind, channel="pos", card=self.args.pan,
                              amount_fen=amount_fen, mcc=MCC_SUPERMARKET
                              if kind in (MessageClass.SALE, MessageClass.AUTH) else "",
                              expiry=self.args.expiry if kind is MessageClass.INQUIRY else "",
                              merchant_id=MERCHANT)
        fields = request_message(request, stan=f"{next(self.stans):06d}",
                                 transmitted=now_stamp()["7"],
                                 terminal=self.terminal, acquirer=DEMO_ACQUIRER,
                                 original=original)
        if kind is MessageClass.AUTH:
            fields["25"] = "06"  # a pre-authorization
        fields["60"] = MESSAGE_TYPES[kind] + self.batch
        return fields | changes

    def encode(self, fields: dict[str, Any], key: MacKey | None = None) -> bytes:
        """The request as sent, MAC'd under `key` (default: the current one): without the
        fields the switch reads from others on this dialect (F7, F18 on unionpay)."""
        sent = left_out(self.client.codec.dialect, fields)
        return self.client.front + self.client.mac.encode(sent, key or self.client.key)

    def named(self, message: dict[str, Any]) -> tuple[str, str]:
        """STAN and transmission time (F7, else F13 + F12 where the dialect reads it so)."""
        read, _ = fill(self.client.codec.dialect, message)  # an F42 without an MCC aside
        return read.get("11", ""), read.get("7", "")

    async def send(self, *messages: dict[str, Any]) -> list[str]:
        """The messages in one write; each one's answer code, in the order sent."""
        answers = [self.client.decode(body) for body in await self.wire.exchange(
            *(self.encode(fields) for fields in messages))]
        by_id = {self.named(a): a.get("39", "") for a in answers}
        codes = [by_id.get(self.named(m), "?") for m in messages]
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
        return now_stamp() | {
            "t": "0500", "11": f"{next(self.stans):06d}", "32": DEMO_ACQUIRER,
            "41": self.terminal, "48": totals.wire() + "0" * 32,
            "60": f"00{self.batch}{code}"}

    def upload(self, fields: dict[str, Any]) -> dict[str, Any]:
        """0320: one approved transaction of the batch (its F2, F3, F4 and STAN)."""
        return {"t": "0320", "2": fields["2"], "3": fields["3"], "4": fields["4"],
                "11": fields["11"], "32": DEMO_ACQUIRER, "41": self.terminal,
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


def now_stamp() -> dict[str, str]:
    """F7 (transmission time, MMDDhhmmss) and F13 + F12 (date MMDD, time hhmmss) of now."""
    f7 = utc_now().strftime("%m%d%H%M%S")
    return {"7": f7, "12": f7[4:], "13": f7[:4]}


def ident(fields: dict[str, Any]) -> str:
    """The id later messages name this one by (F90): MTI-STAN-F7."""
    return correlation_id(fields["t"], fields["11"], fields["7"])


async def well_behaved(terminal: Terminal) -> None:
    report(f"sign-on, {terminal.master.algorithm} master key", [await terminal.sign_on()])
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
    parser.add_argument("--header", choices=sorted(HEADER_FORMATS),
                        help="the length header (default: the preset's, else binary2)")
    parser.add_argument("--dialect", default="iso87ascii",
                        help="the listener's dialect, or a preset such as unionpay-pos")
    parser.add_argument("--sm4", action="store_true",
                        help=f"be the demo SM4 terminal ({DEMO_XPAY_TERMINAL}): SM4 working "
                        f"keys and MAC (default: the 3DES one, {DEMO_POS_TERMINAL})")
    parser.add_argument("--first-totals-off", type=int, default=0, metavar="FEN",
                        help="settle first with the debit amount off by FEN: the switch "
                        "answers 95 and the terminal uploads its batch")
    args = parser.parse_args()
    chosen = preset(args.dialect)  # a preset sets the header and envelope too
    args.dialect, args.envelope = chosen.dialect, chosen.envelope or "none"
    args.header = args.header or chosen.header or "binary2"
    return args


async def play(args: argparse.Namespace, script) -> int:
    return await wire.play(args, HEADER_FORMATS[args.header], Terminal, script)


if __name__ == "__main__":
    sys.exit(asyncio.run(play(arguments(__doc__.splitlines()[0]), well_behaved)))
