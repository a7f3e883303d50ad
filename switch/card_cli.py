"""`switch card ...`: set, show, settle, repay, force one card, and upgrade a Baitiao account
to a card.

switch/cli.py registers them; they live here to keep that module small. The commands read
the ledger's time as the switch's test clock has it (0 offset when it was never moved), so
`card show` after `switch clock advance 40d` shows the card as the switch sees it.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
import time
from pathlib import Path

import msgspec
import redis

from protocols.cardnumbers import mask_pan
from protocols.codes import TransactionState
from protocols.iso_pin import PinError, check_pin
from switch import limits
from switch.cli_common import (
    UserError,
    fen,
    redis_error_line,
    redis_for_command,
    resolve_pan,
    using,
)
from switch.clock import DAY_MS, TestClock, TestClockControl
from switch.config import ConfigError, load
from switch.ledger import (
    CARD_STATUSES,
    FORCE_CHANNELS,
    NO_ANSWER,
    STAND_IN,
    CardView,
    Ledger,
    RepaymentUnconfirmed,
    force_spec,
    new_repayment_ref,
)
from switch.redis_client import connect
from switch.statement import DUE_DAYS, Cycle


def with_ledger(url: str, work, args: argparse.Namespace | None = None):
    """`work(ledger)` on a ledger whose clock is the switch's test clock, and whose new cards
    get the config's statement day (`args.config`)."""
    try:
        day = load(getattr(args, "config", None)).cards.statement_day
    except ConfigError as error:
        raise UserError(str(error)) from None
    clock = TestClock()

    async def timed(ledger: Ledger):
        clock.offset_ms = await TestClockControl(ledger.client).offset_ms()
        return await work(ledger)

    return using(Ledger(connect(url), clock, statement_day=day), timed)


def cmd_card_set(args: argparse.Namespace) -> int:
    pan = resolve_pan(args.pan)
    pin = new_pin(args)

    async def work(ledger: Ledger):
        if (args.limit is not None or args.status or args.expiry or args.jd_user is not None
                or args.statement_day is not None or pin is None):
            await ledger.set_card(pan, limit_fen=args.limit, status=args.status,
                                  expiry=args.expiry, jd_user=args.jd_user,
                                  statement_day=args.statement_day)
        if pin is not None:
            await ledger.set_pin(pan, pin)
        return await ledger.card(pan)

    try:
        view = asyncio.run(with_ledger(redis_for_command(args), work, args))
    except ValueError as error:
        raise UserError(str(error)) from None
    print_card(view, json_out=False)
    return 0


def cmd_card_repay(args: argparse.Namespace) -> int:
    pan = resolve_pan(args.pan)
    masked = mask_pan(pan)
    # Made here, not by the ledger, so that every way this command can end names it: the
    # same ref again is how a repayment whose answer was lost is made exactly once.
    ref = args.ref or new_repayment_ref()

    asked = False  # whether the repayment's call was made (a Redis error before it: not made)

    async def work(ledger: Ledger):
        nonlocal asked
        asked = True
        repayment = await ledger.repay(pan, args.amount, ref)
        try:
            return repayment, await ledger.card(pan)
        except Exception as error:  # noqa: BLE001 - the repayment's outcome stands
            return repayment, error

    not_made = f"repayment {ref} of {args.amount} fen on {masked} not made"
    try:
        url = redis_for_command(args)
    except UserError as error:  # no Redis to ask
        raise UserError(f"{error}; {not_made}") from None
    try:
        repayment, view = asyncio.run(with_ledger(url, work, args))
    except RepaymentUnconfirmed as error:
        raise UserError(f"{error.retry_advice()} (card {masked})") from None
    except KeyboardInterrupt:
        raise UserError(f"interrupted: {_repay_again(ref, args.amount, masked)}") from None
    except (redis.exceptions.RedisError, redis.exceptions.RedisClusterException) as error:
        outcome = _repay_again(ref, args.amount, masked) if asked else not_made
        raise UserError(f"{redis_error_line(error)}; {outcome}") from None
    except ValueError as error:
        raise UserError(str(error)) from None
    if repayment.outcome == "no_card":
        raise UserError(f"no card {masked}: {not_made}")
    if repayment.outcome == "mismatch":
        raise UserError(f"repayment {repayment.ref} on {masked} was {repayment.amount} fen, "
                        f"not {args.amount}: nothing changed (a new repayment needs a new --ref)")
    unread = view if isinstance(view, Exception) else None
    if args.json:
        card = None if unread else msgspec.structs.replace(view, pan=masked)
        print(msgspec.json.encode({"outcome": repayment.outcome, "ref": repayment.ref,
                                   "amount": repayment.amount, "card": card}).decode())
    elif repayment.outcome == "repeat":
        print(f"repayment {repayment.ref} of {args.amount} fen on {masked} was already made "
              "(nothing changed)")
    else:
        print(f"repaid {args.amount} fen on {masked} (ref {repayment.ref})")
    if unread:
        print(f"switch: the card could not be read back: {unread}", file=sys.stderr)
    elif not args.json:
        print_card(view, False)
    return 0


def new_pin(args: argparse.Namespace) -> str | None:
    """--pin: asked for at the terminal (twice, not echoed); --pin-stdin: the first line
    of standard input (scripts, tests). Never on the command line, where history and the
    process list would keep it. None: no new PIN."""
    if args.pin_stdin:
        pin = sys.stdin.readline().strip()
    elif args.pin:
        pin = getpass.getpass("new PIN: ")
        if getpass.getpass("again: ") != pin:
            raise UserError("the two PINs differ; nothing changed")
    else:
        return None
    try:
        return check_pin(pin)
    except PinError as error:
        raise UserError(f"PIN: {error}; nothing changed") from None


def cmd_card_show(args: argparse.Namespace) -> int:
    pan = resolve_pan(args.pan)
    view = asyncio.run(with_ledger(redis_for_command(args), lambda ledger: ledger.card(pan),
                                   args))
    if view is None:
        raise UserError(f"no card {mask_pan(pan)}")
    print_card(view, args.json)
    return 0


def _repay_again(ref: str, amount_fen: int, masked: str) -> str:
    """What to do when a repayment's outcome is unknown: the same ref makes it once."""
    return (f"repayment {ref} of {amount_fen} fen on {masked} may have been made; repay "
            f"again with --ref {ref}: it is made once, or answered as already made")


def cmd_card_settle(args: argparse.Namespace) -> int:
    pan = resolve_pan(args.pan)
    settled = asyncio.run(with_ledger(redis_for_command(args), lambda ledger: ledger.settle(pan),
                                      args))
    print(f"settled {settled} fen of refunds on {mask_pan(pan)}")
    return 0


def cmd_card_force(args: argparse.Namespace) -> int:
    pan = resolve_pan(args.pan)
    outcomes = bool(args.code) + args.no_answer + args.stand_in
    if args.clear + bool(outcomes or args.delay_ms) != 1 or outcomes > 1:
        raise UserError("say --code CODE, --no-answer, --stand-in or --delay-ms MS to force "
                        "an outcome (--delay-ms may go with --code), or --clear to stop "
                        "forcing")
    code = None if args.clear else NO_ANSWER if args.no_answer else \
        STAND_IN if args.stand_in else args.code or ""
    try:
        found = asyncio.run(with_ledger(redis_for_command(args), lambda ledger: ledger.force(
            pan, code, args.times, args.channel or "", args.delay_ms or 0)))
    except ValueError as error:
        raise UserError(str(error)) from None
    if not found:
        raise UserError(f"no card {mask_pan(pan)}")
    if code is None:
        print(f"card {mask_pan(pan)}: no forced outcome (requests are decided again)")
    else:
        print(f"card {mask_pan(pan)}: " + forcing_text(force_spec(
            code, args.times, args.channel or "", args.delay_ms or 0)))
    return 0


def forcing_text(force: str) -> str:
    """A card's forced outcome ("code|times|channel[|delay]") in words."""
    code, times, channel, *delay = force.split("|")
    which = f"the next {times} request{'s' if times != '1' else ''}" if times else \
        "every request"
    what = {NO_ANSWER: "never answered", STAND_IN: "decided by stand-in (as if Redis were "
            "down)", "": "decided as usual"}.get(code, f"answered {code} (reason forced)")
    late = f" after {delay[0]} ms" if delay else ""
    return f"{which}{' on ' + channel if channel else ''} {what}{late}" + (
        ", changing nothing else" if code not in ("", STAND_IN) else "")


def cmd_card_upgrade(args: argparse.Namespace) -> int:
    async def work(ledger: Ledger):
        started = time.perf_counter()
        pan, created = await ledger.upgrade(args.account, args.limit, args.status)
        return pan, created, (time.perf_counter() - started) * 1000, await ledger.card(pan)

    pan, created, elapsed_ms, view = asyncio.run(with_ledger(redis_for_command(args), work))
    if created:
        print(f"account {args.account} upgraded to card {mask_pan(pan)} in {elapsed_ms:.1f} ms")
    else:
        print(f"account {args.account} already has card {mask_pan(pan)} (nothing changed)")
    print(f"  limit {view.limit} fen  expiry {view.expiry}  {view.status}")
    if args.out:
        args.out.touch(mode=0o600)
        args.out.write_text(pan + "\n")
        print(f"  card number written to {args.out} (mode 600)")
    return 0


def print_card(view: CardView, json_out: bool) -> None:
    view.pan = mask_pan(view.pan)
    if json_out:
        print(msgspec.json.encode(view).decode())
        return
    print(f"card {view.pan}  {view.status}  expiry {view.expiry}"
          + (f"  (Baitiao account {view.account})" if view.account else "")
          + (f"  JD user {view.jd_user}" if view.jd_user else ""))
    print(f"  limit {view.limit}  posted {view.posted}  held {view.held}  "
          f"pending credit {view.pending_credit}  (fen)")
    print(f"  open_to_buy {view.open_to_buy} fen   JD beans {view.beans}"
          + (f"   voids {view.voids} (calls answered 91 and taken back)" if view.voids else ""))
    if view.posted < 0:
        print(f"  credit balance {-view.posted} fen (overpaid; spendable)")
    if view.cycle:
        print_cycle(view.cycle)
    if view.pin_set:
        print(f"  PIN set, wrong tries {view.pin_tries}")
    if view.force or view.forced:
        print(f"  forced: {forcing_text(view.force) if view.force else 'nothing now'}"
              f"   ({view.forced} answered so far)")
    for t in view.transactions:
        lapses = (time.strftime("  hold lapses %Y-%m-%d %H:%M UTC", time.gmtime(
            t.expires_ms / 1000)) if t.state == TransactionState.PENDING and t.expires_ms else "")
        print(f"  {t.ref:<40} {t.kind:<5} {t.state:<9} amount {t.amount:>9}  hold {t.hold:>9}"
              f"  posted {t.posted:>9}  refunded {t.refunded:>9}  beans {t.beans:>6}"
              f"  auth {t.auth_id}{lapses}")


def day_text(ms: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(ms / 1000))


def print_cycle(cycle: Cycle) -> None:
    """The card's month: its cycle, its last statement and what is still due. A close at
    00:00 UTC ends the day before: the statement and due dates are the last days in."""
    closes = day_text(cycle.end_ms - DAY_MS)
    print(f"  cycle {day_text(cycle.start_ms)} .. {closes} (statement day "
          f"{cycle.statement_day}; next statement {closes})")
    if not cycle.statement_ms:
        print("  no statement yet")
        return
    print(f"  last statement {day_text(cycle.statement_ms - DAY_MS)}: balance "
          f"{cycle.statement_balance} fen, minimum {cycle.minimum_payment} fen"
          + (f" (with {cycle.past_due} past due)" if cycle.past_due else "")
          + f", due {day_text(cycle.due_ms - DAY_MS)}")
    print(f"  paid {cycle.paid} fen since, still due {cycle.still_due} fen, "
          f"overdue {'yes' if cycle.overdue else 'no'}")


def add_commands(command, redis_option) -> None:
    card = command("card", None, "show or change one card")
    card_commands = card.add_subparsers(required=True, metavar="ACTION")
    card_set = card_commands.add_parser("set", help="create or update a card (balances kept)")
    card_set.set_defaults(func=cmd_card_set)
    card_set.add_argument("--limit", type=fen, help="credit limit in fen")
    card_set.add_argument("--status", choices=CARD_STATUSES)
    card_set.add_argument("--expiry", metavar="YYMM",
                          help="good through this month (a new card: three years ahead)")
    card_set.add_argument("--jd-user", metavar="ID",
                          help="bind the card to this JD userId: JD requests naming another "
                          "user are declined 57, a JD balance QUERY must name it; '' unbinds")
    card_set.add_argument("--statement-day", type=int, metavar="D",
                          help=f"the day of the month its statement closes, "
                          f"{limits.statement_day_min}..{limits.statement_day_max} (a new card: "
                          f"the config's [cards] statement_day, default "
                          f"{limits.statement_day_default}); payment is due {DUE_DAYS} days later")
    pin = card_set.add_mutually_exclusive_group()
    pin.add_argument("--pin", action="store_true", help="set a new PIN, asked for at the "
                     "terminal (its wrong tries start over)")
    pin.add_argument("--pin-stdin", action="store_true", help="set a new PIN read from the "
                     "first line of standard input")
    card_show = card_commands.add_parser("show", help="limit, balances, holds, open-to-buy, "
                                         "statement")
    card_show.set_defaults(func=cmd_card_show)
    card_show.add_argument("--json", action="store_true", help="one JSON object")
    card_settle = card_commands.add_parser("settle", help="clear ordinary refunds")
    card_settle.set_defaults(func=cmd_card_settle)
    repay = card_commands.add_parser(
        "repay", help="the card holder pays back: posted falls, open-to-buy rises at once",
        description="Record a repayment: the posted balance falls and the open-to-buy rises "
        "at once (one atomic ledger call). More than is owed becomes a credit balance "
        "(posted below zero), which open-to-buy counts. With --ref the repayment is "
        "idempotent: the same ref again changes nothing; with another amount it is refused.")
    repay.set_defaults(func=cmd_card_repay)
    repay.add_argument("pan", metavar="PAN", help="card number or demo alias (demo1..)")
    repay.add_argument("amount", type=fen, metavar="FEN", help="amount repaid in fen")
    repay.add_argument("--ref", metavar="ID", help="the repayment's id (letters, digits, '_', "
                       f"'-', at most {limits.repayment_ref_max_chars}; default: a new one)")
    repay.add_argument("--json", action="store_true", help="one JSON object: outcome, ref, "
                       "amount and the card")
    redis_option(repay)
    force = card_commands.add_parser(
        "force", help="make the card's next requests answer a declining code (tests)",
        description="Force the answer of the card's next requests to a declining response "
        "code, with reason 'forced' (the ledger changes nothing else), to no answer, to a "
        "stand-in decision, or delay it. Applied by every "
        "worker at once (it lives in the card's record in Redis); a repeat of an earlier "
        "request still gets its first answer.")
    force.set_defaults(func=cmd_card_force)
    force.add_argument("--code", metavar="CODE", help="the response code to answer, e.g. 05, "
                       "51, 91 (any declining code of docs/codes.md)")
    force.add_argument("--times", type=int, metavar="N", help="only the next N requests "
                       f"(1..{limits.forced_times_max}; default: every one until --clear)")
    force.add_argument("--channel", choices=FORCE_CHANNELS,
                       help="only requests on this channel (default: every channel)")
    force.add_argument("--no-answer", action="store_true", help="never answer them (the "
                       "client's timeout and reversal path); nothing changes on the card")
    force.add_argument("--stand-in", action="store_true", help="decide them by stand-in, as if "
                       "Redis were down: journaled, then advised to the ledger (the policy's "
                       "[stand_in] limits, even when stand-in is off)")
    force.add_argument("--delay-ms", type=int, metavar="MS", help="wait this long before "
                       f"answering (1..{limits.forced_delay_max_ms}); alone the request is "
                       "decided as usual; an answer that would pass the request's deadline "
                       "is 91 at the deadline instead")
    force.add_argument("--clear", action="store_true", help="stop forcing; decide requests again")
    for sub in (card_set, card_show, card_settle, force):
        sub.add_argument("pan", metavar="PAN", help="card number or demo alias (demo1..)")
        redis_option(sub)

    upgrade = card_commands.add_parser(
        "upgrade", help="turn a Baitiao account into a card with its limit (one atomic step)")
    upgrade.set_defaults(func=cmd_card_upgrade)
    upgrade.add_argument("account", metavar="ACCOUNT", help="the Baitiao account id")
    upgrade.add_argument("--limit", type=fen, required=True, help="credit limit in fen")
    upgrade.add_argument("--status", choices=CARD_STATUSES, default="active",
                         help="status of the new card (default active: usable at once)")
    upgrade.add_argument("--out", type=Path, help="write the full card number to this file "
                         "(mode 600); it is never printed")
    redis_option(upgrade)
