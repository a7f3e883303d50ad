"""A well-behaved JD checkout adapter: every flow `switch conform --channel jd` requires, as
docs/channels/jd.md specifies it. Run the kit, then this:

    switch conform --channel jd --listen 127.0.0.1:8601 --cards-out cards.csv &
    python examples/conformance/jd_merchant.py --port 8601 --pan "$(sed -n 1p cards.csv |
        cut -d, -f2)" --expiry 3012

It signs as the demo merchant (110000001, its demo key) and prints each step's answer code;
jd_merchant_misbehaving.py is the same merchant at fault.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import sys
import time

import wire
from wire import Wire, report, utc_now

from protocols import jd
from protocols.demo import DEMO_JD_KEY, DEMO_JD_MERCHANT
from protocols.messages import AuthRequest, MessageClass

MCC_SUPERMARKET = "5411"


class Merchant:
    """One merchant's trades on one connection, each with a tradeNum of its own."""

    def __init__(self, wire: Wire, args: argparse.Namespace) -> None:
        self.wire = wire
        self.args = args
        self.key = DEMO_JD_KEY.encode()
        self.numbers = itertools.count(1)
        self.run = f"C{time.time_ns() // 1_000_000}"  # trade numbers of this run

    def request(self, kind: MessageClass, amount_fen: int = 0, original: str = ""
                ) -> AuthRequest:
        """A trade; `original`: the tradeNum of the one it names."""
        return AuthRequest(
            message_class=kind, channel="jd", card=self.args.pan, amount_fen=amount_fen,
            mcc=MCC_SUPERMARKET if kind in (MessageClass.SALE, MessageClass.AUTH) else "",
            expiry=self.args.expiry if kind is MessageClass.INQUIRY else "",
            merchant_id=DEMO_JD_MERCHANT, txn_ref=f"{self.run}-{next(self.numbers)}",
            original_ref=original, transmitted_at=utc_now().strftime("%Y%m%d%H%M%S"))

    def encode(self, request: AuthRequest, **extra: str) -> bytes:
        return jd.encode_request(request, self.key, **extra)

    async def send(self, *bodies: bytes) -> list[str]:
        """The bodies in one write; each one's answer code, in the order sent."""
        answers = [jd.decode_response(body) for body in await self.wire.exchange(*bodies)]
        by_trade = {answer.correlation_id: answer.response.response_code for answer in answers}
        sent = [jd.decode_response(body).correlation_id for body in bodies]
        return [by_trade.get(trade, "?") for trade in sent]


async def well_behaved(merchant: Merchant) -> None:
    sale = merchant.request(MessageClass.SALE, 12_800)
    report("sale", await merchant.send(merchant.encode(sale)))
    auth = merchant.request(MessageClass.AUTH, 10_000)
    report("pre-authorization", await merchant.send(merchant.encode(auth)))
    report("capture", await merchant.send(merchant.encode(
        merchant.request(MessageClass.CAPTURE, 8_000, original=auth.txn_ref))))
    # The timeout: no answer in time (here: at once, the reversal goes in the same write),
    # so the trade is reversed.
    late = merchant.request(MessageClass.SALE, 5_000)
    report("sale + reversal after a timeout", await merchant.send(
        merchant.encode(late),
        merchant.encode(merchant.request(MessageClass.REVERSAL, original=late.txn_ref))))
    again = merchant.encode(merchant.request(MessageClass.SALE, 3_000))
    report("sale, then an exact repeat", await merchant.send(again) + await merchant.send(again))
    report("refund", await merchant.send(merchant.encode(
        merchant.request(MessageClass.REFUND, 2_000, original=sale.txn_ref))))
    report("balance query", await merchant.send(merchant.encode(
        merchant.request(MessageClass.INQUIRY))))


def arguments(description: str) -> argparse.Namespace:
    return wire.arguments(description, port=8601).parse_args()


async def play(args: argparse.Namespace, script) -> int:
    return await wire.play(args, jd.JdCodec.header, Merchant, script)


if __name__ == "__main__":
    sys.exit(asyncio.run(play(arguments(__doc__.splitlines()[0]), well_behaved)))
