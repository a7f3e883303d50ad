"""A misbehaving JD checkout adapter: the flows of jd_merchant.py, each with a fault that
`switch conform --channel jd` names (the switch itself answers some of them as usual):

- the sale is signed with another key (`sign`: the switch answers SIGN01);
- the pre-authorization leaves out `industryCategoryCode`, the MCC;
- the reversal names a `tradeNum` it never sent;
- the repeat changes the amount under the same `tradeNum`;
- the refund's amount starts with a space (digits only), signed as sent.

    python examples/conformance/jd_merchant_misbehaving.py --port 8601 --pan PAN --expiry YYMM
"""

from __future__ import annotations

import asyncio
import sys

from jd_merchant import Merchant, arguments, play
from wire import report

from protocols import jd
from protocols.messages import MessageClass

ANOTHER_KEY = b"not-the-merchant-key"


async def misbehaving(merchant: Merchant) -> None:
    sale = merchant.request(MessageClass.SALE, 12_800)
    report("sale, signed with another key", await merchant.send(
        jd.encode_request(sale, ANOTHER_KEY)))
    auth = merchant.request(MessageClass.AUTH, 10_000)
    report("pre-authorization without its MCC", await merchant.send(
        merchant.encode(auth, industryCategoryCode="")))
    report("capture", await merchant.send(merchant.encode(
        merchant.request(MessageClass.CAPTURE, 8_000, original=auth.txn_ref))))
    late = merchant.request(MessageClass.SALE, 5_000)
    report("sale + reversal naming another", await merchant.send(
        merchant.encode(late), merchant.encode(merchant.request(
            MessageClass.REVERSAL, original=f"{late.txn_ref}-never-sent"))))
    first = merchant.request(MessageClass.SALE, 3_000)
    report("sale, then its repeat with another amount", await merchant.send(
        merchant.encode(first)) + await merchant.send(merchant.encode(first, amount="3100")))
    report("refund, amount with a leading space", await merchant.send(merchant.encode(
        merchant.request(MessageClass.REFUND, 2_000, original=late.txn_ref), amount=" 2000")))
    report("balance query", await merchant.send(merchant.encode(
        merchant.request(MessageClass.INQUIRY))))


if __name__ == "__main__":
    sys.exit(asyncio.run(play(arguments(__doc__.splitlines()[0]), misbehaving)))
