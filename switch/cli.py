"""The `switch` command: serve, seed, send; card, policy and token commands are registered
from their own modules."""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
from pathlib import Path

import redis.exceptions

from protocols.cardnumbers import mask_card_numbers_in, mask_pan
from protocols.demo import DEMO_XPAY_TERMINAL
from protocols.framing import HEADER_FORMATS
from protocols.iso8583 import shipped_dialects
from protocols.iso_mac import MacAlgorithm
from protocols.iso_presets import PRESETS
from protocols.pos import DEFAULT_ACQUIRER, DEFAULT_TERMINAL
from switch import (
    app,
    audit_cli,
    batch_cli,
    card_cli,
    clock_cli,
    conform_cli,
    fault_cli,
    iso_cli,
    launch,
    policy_cli,
    replay_cli,
    saf_cli,
    scenario_cli,
    send,
    terminal_cli,
    token_cli,
)
from switch.admin.http import AdminListenError
from switch.cards import demo_cards
from switch.channels import CODECS
from switch.cli_common import (
    REDIS_URL_FILE,
    RUN_DIR,
    UserError,
    configured_redis,
    demo_card,
    fen,
    redis_error_line,
    redis_for_command,
    resolve_pan,
)
from switch.config import (
    DEFAULT_PORTS,
    DURABLE_REPLICAS_MAX,
    ConfigError,
    load,
    parse_admin,
    parse_dialect,
    parse_header,
    parse_listen,
    parse_port,
)
from switch.faults import load_rule_file
from switch.logs import LOG_FORMATS, LoggingSetup, configure_logging
from switch.policy_file import load_policy
from switch.redis_runner import APPENDFSYNC_POLICIES, DEFAULT_APPENDFSYNC, RedisUnavailable
from switch.server import ListenError, check_channels


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    configure_logging(args.verbose, getattr(args, "log_format", "text"))
    try:
        return args.func(args) or 0
    except (UserError, ConfigError, RedisUnavailable, ValueError, ListenError,
            AdminListenError) as error:
        print(f"switch: {mask_card_numbers_in(str(error))}", file=sys.stderr)
        return 2
    except (redis.exceptions.RedisError, redis.exceptions.RedisClusterException) as error:
        print(f"switch: {mask_card_numbers_in(redis_error_line(error))}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `switch ... | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


# --- commands ---------------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> int:
    config = load(args.config)
    if args.listen:
        config.listeners = dict(parse_listen(value) for value in args.listen)
    for value in args.port:
        channel, listener = parse_port(value)
        if channel not in config.listeners:
            raise UserError(f"--port {value!r}: {channel} is not served (serving "
                            f"{', '.join(config.listeners)})")
        config.listeners[channel].port = listener
    for value in args.dialect:
        channel, dialect = parse_dialect(value)
        getattr(config, channel).use_dialect(dialect)
    for value in args.header:  # after --dialect: a preset's header may be overridden
        channel, header = parse_header(value)
        getattr(config, channel).header = header
    check_channels(config, CODECS)  # before a private Redis is started for nothing
    if args.policy:
        config.policy = str(args.policy)
    load_policy(config.policy)  # a bad policy is one clear error, before anything starts
    faults = load_rule_file(args.faults) if args.faults else None  # the same for fault rules
    choose_admin(config, args.admin)
    config.test_clock = config.test_clock or args.test_clock
    if args.durable_replicas is not None:
        config.server_limits.durable_replicas = args.durable_replicas
    replay_cli.choose_recording(config, args)
    url, note, private = launch.open_redis(
        configured_redis(args), bool(args.redis), RUN_DIR, args.ephemeral, args.appendfsync)
    if private:
        REDIS_URL_FILE.write_text(url + "\n")
    try:
        launch.serve(config, url, note, demo=args.demo, workers=args.workers,
                     logging_setup=LoggingSetup(args.verbose, args.log_format), faults=faults)
    finally:
        if private:
            REDIS_URL_FILE.unlink(missing_ok=True)
            private.stop()
    return 0


def choose_admin(config, value: str | None) -> None:
    """--admin HOST:PORT or off over the config's [admin]; a token is made when none is
    configured (here, before any worker starts, so that every worker knows the same one)."""
    if value is not None:
        config.admin.listen = "" if value == "off" else value
    if config.admin.listen:
        parse_admin(config.admin.listen)
        config.admin.token = config.admin.token or secrets.token_urlsafe(24)


def cmd_seed(args: argparse.Namespace) -> int:
    cards = demo_cards(args.cards, args.seed)
    if args.limit is not None:
        for card in cards:
            card.limit_fen = args.limit
    url = redis_for_command(args)
    created = asyncio.run(card_cli.with_ledger(url, lambda ledger: app.load_cards(ledger,
                                                                                   cards)))
    for card in cards[: args.show]:
        print(f"{mask_pan(card.pan)}  limit {card.limit_fen} fen  expiry {card.expiry}")
    if len(cards) > args.show:
        print(f"... {len(cards) - args.show} more")
    if args.out:
        args.out.touch(mode=0o600)
        args.out.write_text("".join(f"{c.pan},{c.limit_fen},{c.expiry}\n" for c in cards))
        print(f"card numbers written to {args.out} (mode 600)")
    kept = len(cards) - sum(created)
    print(f"seeded {len(cards)} cards (seed {args.seed}) into {url}"
          + (f": {kept} existed and were kept as they are (`switch card set` changes one)"
             if kept else ""))
    return 0


def _prove_inquiry(args: argparse.Namespace) -> None:
    """A balance inquiry on a card number proves the card with its expiry: a demo card's is
    known; any other card's the user gives (--expiry)."""
    if args.type != "inquiry" or args.original or args.expiry:
        return
    demo = demo_card(args.pan)
    if demo is None:
        raise UserError("a balance inquiry proves the card: give its expiry with --expiry YYMM "
                        "(without it the switch answers 30 card_proof_missing)")
    args.expiry = demo.expiry


def cmd_send(args: argparse.Namespace) -> int:
    again = send.wire_options(args, vars(parser().parse_args(["send"])))  # before presets
    if args.channel == "xpay":
        card = token_cli.token_for_send(args)
    elif args.pan:
        card = resolve_pan(args.pan)
        _prove_inquiry(args)
    else:
        raise UserError(f"--pan is required on the {args.channel} channel")
    if args.pin and args.channel != "pos":
        raise UserError("--pin is for the pos channel (a wallet verifies its holder itself)")
    if args.channel in ("pos", "xpay"):
        args.signing_key = terminal_cli.key_for_send(args)
    sender = send.SENDERS[args.channel]
    try:
        request = send.build_request(args, card)
    except ValueError as error:
        raise UserError(str(error)) from None
    port = args.port or DEFAULT_PORTS[args.channel]
    header = send.choose_wire(args) or sender.header
    if args.explain:
        print(policy_cli.explanation(request, args.policy))
    message = sender.encode(request, args)
    try:
        body = asyncio.run(send.exchange(args.host, port, header, message))
    except (OSError, TimeoutError) as error:
        raise UserError(f"no answer from {args.host}:{port}: {error or 'timed out'} "
                        "(is the switch running? `make run`)") from None
    try:
        answer = sender.decode(body, args)
        warning = ""
    except ValueError as error:  # not signed with --key: show the decision all the same
        answer = sender.decode(body, argparse.Namespace(**vars(args), unchecked=True))
        warning = (f"warning: {error} (--key or --mac-key is not the one the switch knows; "
                   "a refusal of a bad signature is signed with the switch's key, a refused "
                   "MAC is answered unsigned)")
    if args.channel == "xpay":
        label = card  # a token may be shown: it is not the card number
    elif args.pan.startswith("demo"):
        label = args.pan
    else:  # a card number is never printed in full: the user types theirs in again
        label = "<card number>"
    print(send.as_json(answer) if args.json else send.describe(request, answer, label, again))
    if warning:
        print(warning, file=sys.stderr)
    return 0


# --- argument parsing -------------------------------------------------------------------


def positive(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError("a whole number, 1 or more")
    return int(value)


def replica_count(value: str) -> int:
    """--durable-replicas: 0 (none) up to the config's bound."""
    if not value.isdigit() or int(value) > DURABLE_REPLICAS_MAX:
        raise argparse.ArgumentTypeError(f"a whole number, 0..{DURABLE_REPLICAS_MAX}")
    return int(value)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="switch", description="Issuer authorization switch simulator for the Ping An "
        "Baitiao UnionPay card. Amounts are in fen (1 yuan = 100 fen).")
    top.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = top.add_subparsers(required=True, metavar="COMMAND")

    def command(name: str, func, help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help)
        sub.set_defaults(func=func)
        return sub

    def redis_option(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--redis", metavar="URL", default="",
                         help="Redis to use (default: $REDIS_URL, then the config, then the "
                         "private Redis of a running `make run`); any node of a Redis "
                         "Cluster, or redis+cluster://HOST:PORT (docs/cluster.md)")
        sub.add_argument("--config", type=Path, help="switch config file (TOML)")

    serve = command("serve", cmd_serve, "run the switch in the foreground")
    redis_option(serve)
    serve.add_argument("--listen", action="append", metavar="CHANNEL=HOST:PORT",
                       help="listen for CHANNEL here (repeatable; replaces the config's list)")
    serve.add_argument("--port", action="append", default=[], metavar="CHANNEL=PORT",
                       help="serve CHANNEL on this port instead (repeatable; the other "
                       "channels keep theirs; make run PORTS=\"jd=8701 pos=8683\")")
    serve.add_argument("--dialect", action="append", default=[], metavar="CHANNEL=DIALECT",
                       help="dialect of an ISO 8583 listener (pos, xpay): "
                       f"{', '.join(shipped_dialects())} or a dialect file; or a preset that "
                       f"sets dialect, header and TPDU together: {', '.join(PRESETS)} "
                       "(repeatable; docs/channels/pos.md)")
    serve.add_argument("--header", action="append", default=[], metavar="CHANNEL=HEADER",
                       help="length header of an ISO 8583 listener (pos, xpay): "
                       f"{', '.join(HEADER_FORMATS)} (repeatable; default: the config's, "
                       "binary2)")
    serve.add_argument("--log-format", choices=LOG_FORMATS, default="text",
                       help="json: one object a line (time, level, logger, pid, message), "
                       "for log shippers; card numbers masked either way")
    serve.add_argument("--demo", action="store_true",
                       help="create the demo cards that are absent (existing ones are kept)")
    serve.add_argument("--ephemeral", action="store_true",
                       help="a private Redis that keeps nothing on disk (default: a durable "
                       f"one, its data in {RUN_DIR / 'redis'}, AOF on)")
    serve.add_argument("--appendfsync", choices=APPENDFSYNC_POLICIES,
                       default=DEFAULT_APPENDFSYNC,
                       help="the durable private Redis' AOF fsync: everysec (default: a power "
                       "loss may lose about the last second) or always (loses nothing "
                       "acknowledged; slower, docs/reliability.md)")
    serve.add_argument("--policy", type=Path, metavar="FILE",
                       help="policy file (default: the config's, else the shipped default)")
    serve.add_argument("--admin", metavar="HOST:PORT|off",
                       help="serve the admin API, /metrics and the dashboard here (default: "
                       "the config's [admin] listen, else none; make run uses 127.0.0.1:8680; "
                       "docs/admin.md)")
    serve.add_argument("--workers", type=positive, default=1,
                       help="processes sharing the ports (SO_REUSEPORT), one event loop each")
    serve.add_argument("--faults", type=Path, metavar="FILE",
                       help="fault rules (TOML, [[rule]] tables) to apply: they replace the "
                       "rules in force on the Redis (`switch fault` changes them while it "
                       "runs; docs/testing.md)")
    serve.add_argument("--durable-replicas", type=replica_count, metavar="N",
                       help="Redis Cluster only: answer no approval before N replicas of its "
                       "master have its write (WAIT, at most [limits] durable_wait_ms); "
                       "fewer in time: voided and answered 91 (docs/cluster.md)")
    serve.add_argument("--test-clock", action="store_true",
                       help="follow the test clock that `switch clock` moves (tests only; "
                       "docs/testing.md)")
    replay_cli.add_serve_options(serve)

    seed = command("seed", cmd_seed, "create deterministic demo cards (Luhn-valid, UnionPay "
                   "62); a card that exists is kept as it is")
    redis_option(seed)
    seed.add_argument("--cards", type=int, default=10, help="how many (default 10)")
    seed.add_argument("--seed", type=int, default=0, help="same seed, same cards")
    seed.add_argument("--limit", type=fen, help="credit limit of every card, in fen")
    seed.add_argument("--show", type=int, default=10, help="list this many (masked)")
    seed.add_argument("--out", type=Path, help="write the full card numbers to this file")

    card_cli.add_commands(command, redis_option)
    audit_cli.add_commands(command, redis_option)
    policy_cli.add_commands(command)
    clock_cli.add_commands(command, redis_option)
    fault_cli.add_commands(command, redis_option)

    snd = command("send", cmd_send, "send one message to a running switch, print the answer")
    snd.add_argument("--channel", choices=sorted(send.SENDERS), default="jd")
    snd.add_argument("--pan", help="card number or demo alias (demo1..); not on xpay")
    snd.add_argument("--amount", type=fen, default=0, help="amount in fen")
    snd.add_argument("--mcc", default="", help="merchant category code, e.g. 5411")
    snd.add_argument("--type", choices=sorted(send.CLASS_OF_TYPE), default="sale")
    snd.add_argument("--original", help="id of the original (capture, reverse, refund)")
    snd.add_argument("--id", help="this transaction's id (default: a new one; reuse to repeat)")
    snd.add_argument("--expiry", metavar="YYMM", help="card expiry to send; a balance inquiry "
                     "proves the card with it (a demo card's is filled in)")
    snd.add_argument("--partial", action="store_true", help="accept a partial approval")
    snd.add_argument("--lightning", action="store_true", help="JD lightning refund")
    snd.add_argument("--merchant", help="merchant id (default: the channel's demo merchant)")
    snd.add_argument("--key", help="merchant signing key (default: the demo merchant's)")
    snd.add_argument("--appid", help="WeChat appid (default: the demo one)")
    snd.add_argument("--sign-type", choices=("MD5", "HMAC-SHA256"),
                     help="WeChat: how the request is signed, and so its answer (default "
                     "HMAC-SHA256)")
    snd.add_argument("--refund", metavar="OUT_REFUND_NO",
                     help="WeChat --type refundquery: the one refund to ask about (default: "
                     "every refund of --original)")
    snd.add_argument("--user", help="JD userId")
    snd.add_argument("--host", default="127.0.0.1")
    snd.add_argument("--port", type=int, help="default: the channel's default port")
    snd.add_argument("--json", action="store_true", help="one JSON object with response_code")
    policy_cli.add_send_options(snd)
    iso = snd.add_argument_group("pos and xpay (ISO 8583)")
    iso.add_argument("--terminal", help=f"F41 terminal id (default: the demo terminal, "
                     f"{DEFAULT_TERMINAL} on pos, {DEMO_XPAY_TERMINAL} on xpay)")
    iso.add_argument("--acquirer", default=DEFAULT_ACQUIRER, help="F32 acquirer institution")
    iso.add_argument("--dialect", default="iso87ascii",
                     help=f"{', '.join(shipped_dialects())}, a dialect file, or a preset: "
                     f"{', '.join(PRESETS)} (dialect, header and TPDU together)")
    iso.add_argument("--header", choices=sorted(HEADER_FORMATS),
                     help="the listener's length header (default: the preset's, else "
                     "binary2; docs/channels/pos.md)")
    iso.add_argument("--tpdu", metavar="HEX", help="the TPDU to send (10 hex digits, default "
                     "6000030000) when the dialect preset has one")
    iso.add_argument("--mac-key", metavar="HEX", help="the terminal's MAC key (default: its "
                     "key in Redis, else in the config: the demo terminals')")
    iso.add_argument("--mac-algorithm", choices=list(MacAlgorithm),
                     help="the --mac-key's algorithm (default x9.19)")
    iso.add_argument("--mac", choices=("on", "off"), default="on",
                     help="off: send unsigned (to a listener with mac = \"off\")")
    iso.add_argument("--remaining", type=fen, metavar="FEN", help="a partial reversal "
                     "(--type reverse): what is to remain of the original (F95); --amount "
                     "is the original's amount as it stands (F4)")
    iso.add_argument("--entry-mode", help="F22 (default: pos 052 chip, 051 with --pin; xpay "
                     "072 contactless)")
    iso.add_argument("--pin", metavar="DIGITS", help="pos: the cardholder's PIN, sent in F52 "
                     "under the terminal's session PIN key (`switch terminal sign-on` first); "
                     "a test PIN: it is on the command line")
    iso.add_argument("--token", help="xpay: the wallet token (DPAN) to pay with")
    iso.add_argument("--token-key", help="xpay: the token's hex key (default: from the vault)")
    iso.add_argument("--atc", type=int, help="xpay: ATC to send (default: the last seen + 1)")
    redis_option(snd)
    token_cli.add_commands(command, redis_option)
    saf_cli.add_commands(command, redis_option)
    replay_cli.add_commands(command, redis_option)
    scenario_cli.add_commands(command, redis_option, snd)
    iso_cli.add_commands(command)
    conform_cli.add_commands(command)
    terminal_cli.add_commands(command, redis_option)
    batch_cli.add_commands(command, redis_option)
    return top


if __name__ == "__main__":
    sys.exit(main())
