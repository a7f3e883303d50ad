"""`switch terminal ...` (terminals' MAC keys) and the MAC key `switch send` signs with.

switch/cli.py registers them; they live here to keep that module small.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import msgspec

from protocols.demo import DEMO_XPAY_TERMINAL
from protocols.iso8583 import DialectError, get_codec, shipped_dialects
from protocols.iso_mac import MacAlgorithm, MacKey
from protocols.iso_presets import PRESETS, preset
from protocols.iso_session import (
    WORKING_KEYS,
    KeysRejected,
    SessionAction,
    check_value,
    keys_of_f62,
)
from protocols.ledger_layout import TerminalKeyRecord
from protocols.pos import DEFAULT_ACQUIRER, DEFAULT_TERMINAL
from switch import limits, send
from switch.channels import configured_keys
from switch.cli_common import (
    REDIS_URL_FILE,
    UserError,
    configured_redis,
    redis_for_command,
)
from switch.config import DEFAULT_PORTS, load
from switch.redis_client import connect
from switch.redis_runner import reachable
from switch.terminal_keys import (
    ACQUIRER_WIDE,
    TerminalKeyStore,
    new_key,
    scope,
    signing_keys,
    usable,
)


async def with_store(url: str, work):
    client = connect(url)
    try:
        return await work(TerminalKeyStore(client))
    finally:
        await client.aclose()


def run_store(args: argparse.Namespace, work):
    try:
        return asyncio.run(with_store(redis_for_command(args), work))
    except ValueError as error:
        raise UserError(str(error)) from None


def given_key(args: argparse.Namespace, algorithm: str = MacAlgorithm.X9_19) -> MacKey:
    """--key HEX with --algorithm (default `algorithm`), else a fresh random key."""
    algorithm = args.algorithm or algorithm
    try:
        return MacKey.parse(algorithm, args.key) if args.key else new_key(algorithm)
    except ValueError as error:
        raise UserError(str(error)) from None


def cmd_terminal_add(args: argparse.Namespace) -> int:
    key = given_key(args)
    record = run_store(args, lambda store: store.add(args.acquirer, args.terminal, key,
                                                     args.sign_on))
    print_record(args, record, new=key)
    return 0


def cmd_terminal_rotate(args: argparse.Namespace) -> int:
    """The new key has the current one's algorithm unless --algorithm says otherwise."""
    current = run_store(args, lambda store: store.show(args.acquirer, args.terminal))
    key = given_key(args, current.algorithm if current else MacAlgorithm.X9_19)
    record = run_store(args, lambda store: store.rotate(args.acquirer, args.terminal, key,
                                                        args.grace))
    print_record(args, record, new=key)
    return 0


def cmd_terminal_show(args: argparse.Namespace) -> int:
    record = run_store(args, lambda store: store.show(args.acquirer, args.terminal))
    if record is None:
        raise UserError(f"terminal {args.terminal} of acquirer {args.acquirer} has no key in "
                        "Redis (`switch terminal add` gives it one)")
    session = run_store(args, lambda store: store.session(args.acquirer, args.terminal))
    print_record(args, record, session=session)
    return 0


def when(ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ms / 1000)) if ms else "-"


def print_record(args: argparse.Namespace, record: TerminalKeyRecord,
                 new: MacKey | None = None, session: dict[str, str] | None = None) -> None:
    """The record with its keys as check values; a key just made is printed once, in hex.
    `session`: the terminal's working keys, shown as check values ({}: not signed on)."""
    current = MacKey.parse(record.algorithm, record.key)
    previous = (MacKey.parse(record.previous_algorithm, record.previous_key)
                if record.previous_key else None)
    view = {"acquirer": scope(args.acquirer, args.terminal)[0], "terminal": args.terminal,
            "algorithm": str(current.algorithm), "kcv": current.kcv(),
            "created": when(record.created_ms), "rotated": when(record.rotated_ms),
            "previous_kcv": previous.kcv() if previous else "",
            "previous_accepted_until": when(record.previous_until_ms) if previous else ""}
    if new is not None:
        view["key"] = new.key.hex().upper()
    view["sign_on_required"] = bool(record.sign_on)
    if session is not None:
        algorithm = session.get("algorithm") or MacAlgorithm.X9_19
        view["session"] = {f"{name}_kcv": check_value(bytes.fromhex(session[name]), algorithm
                                                      ).hex().upper()
                           for name in WORKING_KEYS if session.get(name)}
        if session.get("issued"):
            view["session"]["issued"] = when(int(session["issued"]))
    if getattr(args, "json", False):
        print(msgspec.json.encode(view).decode())
        return
    print(f"terminal {view['terminal']} of acquirer {view['acquirer']}  {view['algorithm']}  "
          f"KCV {view['kcv']}")
    print(f"  created {view['created']}  rotated {view['rotated']}")
    if previous and record.previous_until_ms > record.rotated_ms:
        print(f"  previous key KCV {view['previous_kcv']} accepted until "
              f"{view['previous_accepted_until']}")
    elif previous:
        print(f"  previous key KCV {view['previous_kcv']} no longer accepted (no grace period)")
    if record.sign_on:
        print("  must sign on: money under this key alone is refused (A0 not_signed_on)")
    if session:
        keys = "  ".join(f"{name[:3].upper()} KCV {value}" for name, value in
                         view["session"].items() if name.endswith("_kcv"))
        print(f"  signed on {view['session'].get('issued', '-')}: {keys}")
    elif session is not None:
        print("  not signed on (no session)")
    if new is not None:
        print(f"  key {view['key']}  (shown this once: load it into the terminal)")


# --- sign-on: the terminal's side of a key exchange -----------------------------------------

SIGN_ON_ACTIONS = {"sign-on": SessionAction.SIGN_ON, "key-change": SessionAction.KEY_CHANGE,
                   "sign-off": SessionAction.SIGN_OFF}


def cmd_terminal_sign_on(args: argparse.Namespace) -> int:
    """An 0800 as the terminal sends it; the keys in the 0810 checked (their check values,
    under the master key) and shown as check values. The switch keeps them in its Redis,
    where `switch send` finds them (docs/channels/pos.md, "Sign-on and key exchange")."""
    action = SIGN_ON_ACTIONS[args.action]
    master = run_store(args, lambda store: store.read(*scope(args.acquirer, args.terminal)))
    port = args.port or DEFAULT_PORTS["pos"]
    try:
        get_codec(preset(args.dialect).dialect)
    except DialectError as error:
        raise UserError(f"--dialect: {error}") from None
    try:
        answer = asyncio.run(send.sign_on_exchange(args.host, port, args.acquirer,
                                                   args.terminal, action, args.dialect))
    except (OSError, TimeoutError) as error:
        raise UserError(f"no answer from {args.host}:{port}: {error or 'timed out'} "
                        "(is the switch running? `make run`)") from None
    except ValueError as error:  # the answer's bytes, TPDU or fields
        raise UserError(f"the answer cannot be read as {args.dialect}: {error} (is the "
                        "listener on another dialect? --dialect names it)") from None
    code = answer.get("39", "")
    if code != "00":
        raise UserError(f"{args.action} refused: {code} {answer.get('44', '')}".rstrip())
    if "62" not in answer:
        plain = action is SessionAction.SIGN_OFF
        print(f"{args.action}: done (00)" + ("" if plain else ", no working keys: the "
                                             "terminal signs with its own key"))
        return 0
    if master is None:
        raise UserError("the answer carries keys, but the terminal's master key is not in "
                        "Redis to check them")
    master_key = MacKey.parse(master.algorithm, master.key)
    try:
        keys = keys_of_f62(master_key.key, answer["62"], master_key.algorithm)
    except KeysRejected as error:
        raise UserError(f"the 0810's keys are refused: {error}") from None
    shown = "  ".join(f"{name.upper()} KCV {check_value(key, master_key.algorithm).hex().upper()}"
                      for name, key in zip(WORKING_KEYS, keys, strict=True))
    print(f"{args.action}: terminal {args.terminal} of acquirer {args.acquirer} has new "
          f"{master_key.algorithm} session keys\n  {shown}\n  `switch send --channel pos` now "
          "signs with the session MAK and sends --pin under the session PIK")
    return 0


# --- the key `switch send` signs with --------------------------------------------------------


def key_for_send(args: argparse.Namespace) -> MacKey | None:
    """--mac-key, else the terminal's key in Redis (when a Redis is found), else in the
    config (the demo terminals); None with --mac off. Sets the default --terminal."""
    args.terminal = args.terminal or default_terminal(args.channel)
    if args.mac == "off" or args.mac_key:
        return chosen_key(args, None)
    url = configured_redis(args) or (REDIS_URL_FILE.read_text().strip()
                                     if REDIS_URL_FILE.exists() else "")
    if not (url and reachable(url)):
        return chosen_key(args, None)
    return asyncio.run(with_store(url, lambda store: key_from_store(store, args)))


async def key_from_store(store: TerminalKeyStore, args: argparse.Namespace) -> MacKey | None:
    """`key_for_send` with the store at hand (`switch scenario run`)."""
    args.terminal = args.terminal or default_terminal(args.channel)
    if args.mac == "off" or args.mac_key:
        return chosen_key(args, None)
    return chosen_key(args, *await store.read_with_session(*scope(args.acquirer,
                                                                  args.terminal)))


def chosen_key(args: argparse.Namespace, record: TerminalKeyRecord | None,
               session: dict[str, str] | None = None) -> MacKey | None:
    """--mac off: None; --mac-key; the session's MAK (with its PIN key) when the terminal is
    signed on, else the record's current key; the config's key."""
    if args.mac == "off":
        return None
    if args.mac_key:
        try:
            return MacKey.parse(args.mac_algorithm or MacAlgorithm.X9_19, args.mac_key)
        except ValueError as error:
            raise UserError(f"--mac-key: {error}") from None
    if record is not None:
        return signing_keys(usable(record, 0), session or {})[0]
    acquirer, terminal = scope(args.acquirer, args.terminal)
    keys = configured_keys(getattr(load(args.config), args.channel))
    key = keys.get((acquirer, terminal)) or keys.get((acquirer, ACQUIRER_WIDE))
    if key is None:
        raise UserError(f"no MAC key for terminal {terminal} of acquirer {args.acquirer}: "
                        "pass --mac-key HEX (and --mac-algorithm), add one with `switch "
                        "terminal add`, or send unsigned with --mac off")
    return signing_keys((key,), session or {})[0]


def default_terminal(channel: str) -> str:
    return DEMO_XPAY_TERMINAL if channel == "xpay" else DEFAULT_TERMINAL


def add_commands(command, redis_option) -> None:
    terminal = command("terminal", None, "ISO 8583 terminals' MAC keys (pos, xpay): add, "
                       "show, rotate")
    actions = terminal.add_subparsers(required=True, metavar="ACTION")
    add = actions.add_parser("add", help="a terminal's first key (printed once, in hex)")
    add.set_defaults(func=cmd_terminal_add)
    rotate = actions.add_parser(
        "rotate", help="a new key; the previous one is still accepted for the grace period")
    rotate.set_defaults(func=cmd_terminal_rotate)
    rotate.add_argument("--grace", type=float, default=limits.terminal_key_rotation_grace_s,
                        metavar="SECONDS", help="how long the previous key is still accepted "
                        f"(default and most {limits.terminal_key_rotation_grace_s:g})")
    show = actions.add_parser("show", help="algorithm, key check value (KCV), dates")
    show.set_defaults(func=cmd_terminal_show)
    add.add_argument("--sign-on", action="store_true", help="the terminal must sign on "
                     "(`switch terminal sign-on`) before it sends money")
    sign_on = actions.add_parser(
        "sign-on", help="sign the terminal on over the pos listener (0800): the switch issues "
        "session MAC and PIN keys under its key (its master key)")
    sign_on.set_defaults(func=cmd_terminal_sign_on)
    sign_on.add_argument("--action", choices=list(SIGN_ON_ACTIONS), default="sign-on",
                         help="sign-on (default), key-change (fresh keys, the old ones stop) "
                         "or sign-off (the session ends)")
    sign_on.add_argument("--host", default="127.0.0.1")
    sign_on.add_argument("--port", type=int, help="the pos listener's (default "
                         f"{DEFAULT_PORTS['pos']})")
    sign_on.add_argument("--dialect", default="iso87ascii", metavar="NAME|FILE",
                         help="the pos listener's dialect (default iso87ascii): "
                         f"{', '.join(shipped_dialects())}, a dialect file, or a preset: "
                         f"{', '.join(PRESETS)} (dialect, header and TPDU together)")
    for sub in (add, rotate, show, sign_on):
        sub.add_argument("acquirer", metavar="ACQUIRER", help="F32, e.g. "
                         f"{DEFAULT_ACQUIRER}")
        sub.add_argument("terminal", metavar="TERMINAL", help="F41, e.g. "
                         f"{DEFAULT_TERMINAL}; * for the acquirer's own key (every terminal "
                         "of it without one)")
        if sub is not sign_on:
            sub.add_argument("--json", action="store_true", help="one JSON object")
        redis_option(sub)
    for sub in (add, rotate):
        sub.add_argument("--algorithm", choices=list(MacAlgorithm),
                         help="MAC algorithm (default: add x9.19, rotate the current key's; "
                         "docs/channels/pos.md)")
        sub.add_argument("--key", metavar="HEX", help="the key to use (default: a new random "
                         "one)")
