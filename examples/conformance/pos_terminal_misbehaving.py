"""A misbehaving UnionPay POS terminal: the flows of pos_terminal.py, each with a fault that
`switch conform --channel pos` names (the switch itself answers some of them as usual):

- a purchase before its sign-on (under the master key: the switch approves it, as the demo
  terminal is not marked to need a sign-on, but a UnionPay terminal signs on first);
- after the sign-on, a purchase still MAC'd under the master key (A0 not_signed_on);
- the purchase is signed with another key (F64: the switch answers A0 mac_mismatch);
- the pre-authorization leaves out F22, the POS entry mode;
- the reversal names an original it never sent (F90);
- the repeat changes the amount under the same STAN and F7;
- the refund's amount starts with a space (F4 is n12: digits only; a non-digit nibble on
  the BCD unionpay dialect);
- a purchase without F18 whose merchant id (F42) has letters where the MCC goes (on
  unionpay, where the switch reads the MCC there: 30 format:field_42; elsewhere the F18
  it lacks);
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
AMOUNT_PLACEHOLDER = "999999999999"  # replaced in the bytes by an amount that is not digits
# F4 as sent: 20.00 yuan with a leading space (ASCII), or a nibble A first (BCD).
BAD_AMOUNT = {"ascii": b" 00000002000", "bcd": bytes.fromhex("A00000002000")}
MERCHANT_WITHOUT_MCC = "8983100SHOP0001"  # F42 with letters in characters 8-11


async def misbehaving(terminal: Terminal) -> None:
    report("purchase before the sign-on", await terminal.send(
        terminal.fields(MessageClass.SALE, 1_000)))
    master = terminal.client
    report("sign-on", [await terminal.sign_on()])
    report("purchase under the master key", [master.decode(body).get("39") for body in
                                             await terminal.wire.exchange(terminal.encode(
                                                 terminal.fields(MessageClass.SALE, 1_100),
                                                 master.key))])
    sale = terminal.fields(MessageClass.SALE, 12_800)
    report("sale, signed with another key", [
        terminal.client.decode(body).get("39")
        for body in await terminal.wire.exchange(terminal.encode(sale, ANOTHER_KEY))])
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
    report("refund, amount not digits", [
        terminal.client.decode(body).get("39") for body in
        await terminal.wire.exchange(with_bad_amount(terminal, refund))])
    no_mcc = terminal.fields(MessageClass.SALE, 1_200, **{"42": MERCHANT_WITHOUT_MCC})
    del no_mcc["18"]
    report("purchase, no MCC in F42", await terminal.send(no_mcc))
    report("balance inquiry", await terminal.send(terminal.fields(MessageClass.INQUIRY)))
    debit_count, debit_fen, credit_count, credit_fen = terminal.totals()
    report("batch settlement, one fen off", await terminal.send(terminal.settlement(
        BatchTotals(debit_count, debit_fen + 1, credit_count, credit_fen))))


def with_bad_amount(terminal: Terminal, fields: dict[str, Any]) -> bytes:
    """The message with F4 not digits (the codec would refuse it), MAC'd over its bytes."""
    client = terminal.client
    bcd = client.codec.dialect.field(4).encoding == "bcd"
    placeholder = bytes.fromhex(AMOUNT_PLACEHOLDER) if bcd else AMOUNT_PLACEHOLDER.encode()
    body = terminal.encode(fields | {"4": AMOUNT_PLACEHOLDER})[len(client.front):]
    body = body.replace(placeholder, BAD_AMOUNT["bcd" if bcd else "ascii"], 1)
    width = 8 if client.binary_mac else 16
    mac = client.key.mac(body[:-width])
    return client.front + body[:-width] + (mac if client.binary_mac else
                                           mac.hex().upper().encode())


if __name__ == "__main__":
    sys.exit(asyncio.run(play(arguments(__doc__.splitlines()[0]), misbehaving)))
