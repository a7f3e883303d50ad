"""A misbehaving UnionPay POS terminal: the flows of pos_terminal.py, each with a fault that
`switch conform --channel pos` names (the switch itself answers some of them as usual):

- a purchase before its sign-on (under the master key: the switch approves it, as the demo
  terminal is not marked to need a sign-on, but a UnionPay terminal signs on first);
- after the sign-on, a purchase still MAC'd under the master key (A0 not_signed_on);
- the purchase is signed with another key (F64: the switch answers A0 mac_mismatch);
- the pre-authorization leaves out F22, the POS entry mode;
- the reversal names an original it never sent (F90);
- the repeat changes the amount under the same STAN and F7;
- the refund's amount starts with a space (F4 is n12: digits only);
- the batch settles with totals one fen off (95), and is never uploaded.

    python examples/conformance/pos_terminal_misbehaving.py --port 8583 --pan PAN --expiry YYMM
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from pos_terminal import Terminal, arguments, ident, play
from wire import report

from protocols.batch import BatchTotals
from protocols.iso_mac import MacKey
from protocols.messages import MessageClass

ANOTHER_KEY = MacKey.parse("x9.19", "FEDCBA98765432100123456789ABCDEF")
AMOUNT_PLACEHOLDER = "999999999999"  # replaced in the bytes by an amount with a space


async def misbehaving(terminal: Terminal) -> None:
    report("purchase before the sign-on", await terminal.send(
        terminal.fields(MessageClass.SALE, 1_000)))
    master = terminal.client
    report("sign-on", [await terminal.sign_on()])
    report("purchase under the master key", [master.decode(body).get("39") for body in
                                             await terminal.wire.exchange(master.encode(
                                                 terminal.fields(MessageClass.SALE, 1_100)))])
    sale = terminal.fields(MessageClass.SALE, 12_800)
    report("sale, signed with another key", [
        terminal.client.decode(body).get("39")
        for body in await terminal.wire.exchange(signed_with(terminal, sale, ANOTHER_KEY))])
    auth = terminal.fields(MessageClass.AUTH, 10_000)
    del auth["22"]
    report("pre-authorization without F22", await terminal.send(auth))
    report("completion", await terminal.send(
        terminal.fields(MessageClass.CAPTURE, 8_000, original=ident(auth))))
    late = terminal.fields(MessageClass.SALE, 5_000)
    never_sent = f"0200-{(int(late['11']) + 500_000) % 1_000_000:06d}-{late['7']}"
    report("purchase + reversal naming another", await terminal.send(
        late, terminal.fields(MessageClass.REVERSAL, 5_000, original=never_sent)))
    first = terminal.fields(MessageClass.SALE, 3_000)
    report("purchase, then its repeat with another amount", await terminal.send(first) +
           await terminal.send(first | {"4": f"{3_100:012d}"}))
    refund = terminal.fields(MessageClass.REFUND, 2_000, original=ident(late))
    report("refund, amount with a leading space", [
        terminal.client.decode(body).get("39") for body in
        await terminal.wire.exchange(with_amount(terminal, refund, " 00000002000"))])
    report("balance inquiry", await terminal.send(terminal.fields(MessageClass.INQUIRY)))
    debit_count, debit_fen, credit_count, credit_fen = terminal.totals()
    report("batch settlement, one fen off", await terminal.send(terminal.settlement(
        BatchTotals(debit_count, debit_fen + 1, credit_count, credit_fen))))


def signed_with(terminal: Terminal, fields: dict[str, Any], key: MacKey) -> bytes:
    return terminal.client.mac.encode(fields, key)


def with_amount(terminal: Terminal, fields: dict[str, Any], amount: str) -> bytes:
    """The message with F4 as written (the codec would refuse it), MAC'd over those bytes."""
    body = terminal.encode(fields | {"4": AMOUNT_PLACEHOLDER})
    body = body.replace(AMOUNT_PLACEHOLDER.encode(), amount.encode(), 1)
    mac = terminal.client.key.mac(body[:-16]).hex().upper().encode()
    return body[:-16] + mac


if __name__ == "__main__":
    sys.exit(asyncio.run(play(arguments(__doc__.splitlines()[0]), misbehaving)))
