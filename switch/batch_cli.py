"""`switch batch show`: a terminal's batch as the switch keeps it, for the operator who
reconciles a settlement answered 95 (docs/channels/pos.md, "Batch settlement")."""

from __future__ import annotations

import argparse
import asyncio

import msgspec

from protocols.iso_channel import institution
from switch.batches import BatchView, batch_view
from switch.cli_common import UserError, redis_for_command
from switch.redis_client import connect


async def read(url: str, scope: str) -> BatchView | None:
    client = connect(url)
    try:
        return await batch_view(client, scope)
    finally:
        await client.aclose()


def cmd_batch_show(args: argparse.Namespace) -> int:
    if not (len(args.batch) == 6 and args.batch.isdigit()):
        raise UserError(f"batch {args.batch!r}: six digits, as in F60.2 (e.g. 000042)")
    scope = f"{institution(args.acquirer)}:{args.terminal}:{args.batch}"
    view = asyncio.run(read(redis_for_command(args), scope))
    if view is None:
        raise UserError(f"no batch {args.batch} of terminal {args.terminal} (acquirer "
                        f"{args.acquirer}) is kept: none approved, or older than a week")
    print(msgspec.json.encode(view).decode() if args.json else "\n".join(lines(view)))
    return 0


def lines(view: BatchView) -> list[str]:
    def totals(values: list[int]) -> str:
        return (f"debits {values[0]} for {values[1]} fen, credits {values[2]} for "
                f"{values[3]} fen")

    out = [f"batch {view.scope}",
           f"  the switch's  {totals(view.switch_totals)} ({view.entries} entries)"]
    if view.uploaded:
        out.append(f"  uploaded      {totals(view.uploaded_totals)} ({view.uploaded} entries)")
    if view.settlement:
        settled = view.settlement
        after = " after upload" if settled.get("after_upload") == "1" else ""
        out.append(f"  last settlement{after}: {settled.get('outcome', '?')}, the terminal "
                   f"said {settled.get('terminal', '?')} (count|fen|count|fen)")
    for stan, (ours, theirs) in view.differences.items():
        out.append(f"  STAN {stan}: the switch {ours or 'nothing'}, the upload "
                   f"{theirs or 'nothing'}")
    return out


def add_commands(command, redis_option) -> None:
    batch = command("batch", None, "terminals' batches (UnionPay settlement): show")
    actions = batch.add_subparsers(required=True, metavar="ACTION")
    show = actions.add_parser("show", help="a batch's totals, its last settlement, and the "
                              "transactions on which the switch and the terminal's upload "
                              "differ")
    show.set_defaults(func=cmd_batch_show)
    show.add_argument("acquirer", metavar="ACQUIRER", help="F32, e.g. 00010000")
    show.add_argument("terminal", metavar="TERMINAL", help="F41, e.g. TERM0001")
    show.add_argument("batch", metavar="BATCH", help="F60.2, six digits")
    show.add_argument("--json", action="store_true", help="one JSON object")
    redis_option(show)
