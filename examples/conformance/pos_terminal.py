"""A well-behaved UnionPay POS terminal: every flow `switch conform --channel pos` requires,
as docs/channels/pos.md specifies it. Run the kit, then this:

    switch conform --channel pos --listen 127.0.0.1:8583 --cards-out cards.csv &
    python examples/conformance/pos_terminal.py --port 8583 --pan "$(sed -n 1p cards.csv |
        cut -d, -f2)" --expiry 3012

It signs as the demo terminal (acquirer 00010000, TERM0001, the public X9.19 example key) and
prints each step's answer code; pos_terminal_misbehaving.py is the same terminal at fault.
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

from protocols.demo import DEMO_ACQUIRER, DEMO_POS_MAC, DEMO_POS_TERMINAL
from protocols.framing import HEADER_FORMATS
from protocols.iso_client import IsoClient, correlation_id, request_message
from protocols.iso_mac import MacKey
from protocols.messages import AuthRequest, MessageClass

MCC_SUPERMARKET = "5411"


class Terminal:
    """One terminal on one connection: STANs of its own, every message signed."""

    def __init__(self, wire: Wire, args: argparse.Namespace) -> None:
        self.wire = wire
        self.args = args
        self.client = IsoClient(args.dialect, MacKey.parse(*DEMO_POS_MAC))
        # STANs a run earlier today has not used: from ten times the second of the day.
        self.stans = itertools.count(int(time.time()) % 86_400 * 10 + 1)

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
        return fields | changes

    def encode(self, fields: dict[str, Any]) -> bytes:
        return self.client.encode(fields)

    async def send(self, *messages: dict[str, Any]) -> list[str]:
        """The messages in one write; each one's answer code, in the order sent."""
        answers = [self.client.decode(body) for body in await self.wire.exchange(
            *(self.encode(fields) for fields in messages))]
        by_id = {(a.get("11"), a.get("7")): a.get("39", "") for a in answers}
        return [by_id.get((m.get("11"), m.get("7")), "?") for m in messages]


def ident(fields: dict[str, Any]) -> str:
    """The id later messages name this one by (F90): MTI-STAN-F7."""
    return correlation_id(fields["t"], fields["11"], fields["7"])


async def well_behaved(terminal: Terminal) -> None:
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
    again = terminal.encode(terminal.fields(MessageClass.SALE, 3_000))
    report("purchase, then an exact repeat", [
        terminal.client.decode(body).get("39") for body in
        await terminal.wire.exchange(again) + await terminal.wire.exchange(again)])
    report("refund", await terminal.send(
        terminal.fields(MessageClass.REFUND, 2_000, original=ident(sale))))
    report("balance inquiry", await terminal.send(terminal.fields(MessageClass.INQUIRY)))


def arguments(description: str) -> argparse.Namespace:
    parser = wire.arguments(description, port=8583)
    parser.add_argument("--header", default="binary2", choices=sorted(HEADER_FORMATS))
    parser.add_argument("--dialect", default="iso87ascii")
    return parser.parse_args()


async def play(args: argparse.Namespace, script) -> int:
    return await wire.play(args, HEADER_FORMATS[args.header], Terminal, script)


if __name__ == "__main__":
    sys.exit(asyncio.run(play(arguments(__doc__.splitlines()[0]), well_behaved)))
