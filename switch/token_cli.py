"""`switch token ...` (the x-pay token vault) and the token side of `switch send`.

switch/cli.py registers them; they live here to keep that module small.
"""

from __future__ import annotations

import argparse
import asyncio

import msgspec

from protocols.cardnumbers import mask_pan
from protocols.xpay import WALLETS
from switch import limits
from switch.cli_common import UserError, redis_for_command, resolve_pan, using
from switch.redis_client import connect
from switch.tokens import TOKEN_STATUSES, TokenVault, TokenView


def with_vault(url: str, work):
    return using(TokenVault(connect(url)), work)


def token_for_send(args: argparse.Namespace) -> str:
    """The token to send; fills in its key and next ATC from the vault when not given."""
    if not args.token:
        raise UserError("--token is required on the xpay channel")
    if args.token_key is None or args.atc is None:
        view = asyncio.run(with_vault(redis_for_command(args),
                                      lambda vault: vault.show(args.token)))
        if view is None:
            raise UserError(f"no token {args.token} in the vault (pass --token-key and --atc "
                            "to send for a token the vault does not know)")
        args.token_key = args.token_key or view.key
        args.atc = view.atc + 1 if args.atc is None else args.atc
    if not 0 <= args.atc <= limits.atc_max:
        raise UserError("--atc must be 0..65535 (two bytes)")
    return args.token


def cmd_token_provision(args: argparse.Namespace) -> int:
    pan = resolve_pan(args.pan)
    view = asyncio.run(with_vault(redis_for_command(args), lambda vault: vault.provision(
        pan, args.wallet, device=args.device or "", expiry=args.expiry or "")))
    print_token(view, args.json)
    return 0


def cmd_token_set_status(args: argparse.Namespace) -> int:
    asyncio.run(with_vault(redis_for_command(args),
                           lambda vault: vault.set_status(args.token, args.status)))
    return cmd_token_show(args)


def cmd_token_show(args: argparse.Namespace) -> int:
    view = asyncio.run(with_vault(redis_for_command(args), lambda vault: vault.show(args.token)))
    if view is None:
        raise UserError(f"no token {args.token}")
    print_token(view, getattr(args, "json", False))
    return 0


def print_token(view: TokenView, json_out: bool) -> None:
    view.pan = mask_pan(view.pan)
    if json_out:
        print(msgspec.json.encode(view).decode())
        return
    print(f"token {view.token}  {view.status}  wallet {view.wallet}  device {view.device}")
    print(f"  card {view.pan}  token expiry {view.expiry}  last ATC {view.atc}")
    print(f"  key {view.key}  (HMAC-SHA256 key of the cryptogram, docs/channels/xpay.md)")


def add_commands(command, redis_option) -> None:
    token = command("token", None, "x-pay wallet tokens: provision, set-status, show")
    token_commands = token.add_subparsers(required=True, metavar="ACTION")
    provision = token_commands.add_parser("provision", help="a new token for a card")
    provision.set_defaults(func=cmd_token_provision)
    provision.add_argument("pan", metavar="PAN", help="card number or demo alias (demo1..)")
    provision.add_argument("--wallet", choices=WALLETS, required=True)
    provision.add_argument("--device", help="device id (default: a new one)")
    provision.add_argument("--expiry", metavar="YYMM", help="token expiry (default: 3 years)")
    provision.add_argument("--json", action="store_true", help="one JSON object")
    set_status = token_commands.add_parser("set-status", help="active, suspended, deleted")
    set_status.set_defaults(func=cmd_token_set_status)
    set_status.add_argument("token", metavar="TOKEN")
    set_status.add_argument("status", choices=TOKEN_STATUSES)
    token_show = token_commands.add_parser("show", help="card (masked), status, last ATC, key")
    token_show.set_defaults(func=cmd_token_show)
    token_show.add_argument("token", metavar="TOKEN")
    token_show.add_argument("--json", action="store_true", help="one JSON object")
    for sub in (provision, set_status, token_show):
        redis_option(sub)
