"""`switch conform`: the switch of one channel, answering as usual, with every message an
adapter sends checked against the channel's spec, and a report of the required flows.

The kit watches the listener's codec (`Watched`): each request's bytes on their way in and
each answer's bytes on their way out pass through it unchanged, so the switch is the same
switch; the checks are protocols/conformance/. docs/channels/conformance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from protocols.batch import BatchWork
from protocols.cardnumbers import mask_pan
from protocols.channel import Decoded, KeyNeeded
from protocols.conformance import report as reports
from protocols.conformance.flows import REQUIRED, all_passed
from protocols.conformance.iso_rules import IsoRules
from protocols.conformance.jd_rules import JdRules
from protocols.conformance.session import Exchange, Rules, Session
from protocols.conformance.wechat_rules import WechatRules
from protocols.iso8583 import DialectError, get_codec
from protocols.iso_presets import PRESETS
from protocols.iso_session import SessionChange
from protocols.messages import AuthResponse
from switch import launch, limits
from switch.app import build, run
from switch.channels import CODECS
from switch.cli_common import RUN_DIR, UserError
from switch.config import DEFAULT_PORTS, Config, load, parse_listen
from switch.launch import DemoCardNow
from switch.redis_runner import DEFAULT_APPENDFSYNC
from switch.server import check_channels

EXIT_FAILED = 1  # the run ended with a required flow not passed
ISO_CHANNELS = ("pos", "xpay")


class Kit:
    """The session of one run, and its lines as messages are answered."""

    def __init__(self, channel: str, rules: Rules, say: Callable[[str], None],
                 until_complete: asyncio.Event | None = None) -> None:
        self.channel = channel
        self.session = Session(rules)
        self.say = say
        self.until_complete = until_complete
        self.unchecked = 0  # messages past conform_messages_max

    def request(self, body: bytes) -> Exchange | None:
        if len(self.session.exchanges) >= limits.conform_messages_max:
            if not self.unchecked:
                self.say(f"kit: {limits.conform_messages_max} messages checked; the switch "
                         "answers the rest unchecked")
            self.unchecked += 1
            return None
        return self.session.request(body, datetime.datetime.now(datetime.UTC))

    def answered(self, exchange: Exchange | None, body: bytes) -> None:
        if exchange is None:
            return
        self.session.answered(exchange, body)
        self.say(reports.message_line(exchange))
        # The run can only become complete with a message that completes a flow: only then
        # are all the flows looked at again (a pass over every message so far).
        if self.until_complete is not None and any(
                flow.completes(exchange) for flow in REQUIRED[self.channel]) and all_passed(
                self.channel, self.session.exchanges):
            self.until_complete.set()

    def unanswered(self) -> list[Exchange]:
        return [e for e in self.session.exchanges if e.answer is None]


class Watched:
    """A listener's codec with the kit watching: requests and answers pass unchanged."""

    def __init__(self, codec: Any, kit: Kit) -> None:
        self._codec = codec
        self._kit = kit
        # A settlement, upload or session change the server decides, by its message's id().
        self._deciding: dict[int, Exchange | None] = {}

    def __getattr__(self, name: str) -> Any:  # header, keys, name: the codec's own
        return getattr(self._codec, name)

    def decode_request(self, body: bytes, *keys: Any) -> Decoded | bytes | KeyNeeded:
        result = self._codec.decode_request(body, *keys)
        if isinstance(result, KeyNeeded):  # read again once the keys are fetched
            return result
        exchange = self._kit.request(body)
        if isinstance(result, bytes):  # answered at once (format error, MAC, network)
            self._kit.answered(exchange, result)
            return result
        if isinstance(result, BatchWork | SessionChange):  # answered once the server decides
            self._deciding[id(result.message)] = exchange
            return result
        return Decoded(result.request, (exchange, result.context))

    def answer_batch(self, work: BatchWork, *answer: str) -> bytes:
        return self._decided(work.message, self._codec.answer_batch(work, *answer))

    def session_answer(self, change: SessionChange, *answer: str) -> bytes:
        return self._decided(change.message, self._codec.session_answer(change, *answer))

    def _decided(self, message: dict, body: bytes) -> bytes:
        self._kit.answered(self._deciding.pop(id(message), None), body)
        return body

    def encode_response(self, context: tuple[Exchange | None, Any],
                        response: AuthResponse) -> bytes:
        exchange, inner = context
        body = self._codec.encode_response(inner, response)
        self._kit.answered(exchange, body)
        return body


def rules_for(channel: str, config: Config) -> Rules:
    if channel == "jd":
        return JdRules({merchant: key.encode()
                        for merchant, key in config.jd.merchant_keys.items()})
    if channel == "wechat":
        return WechatRules({mch_id: merchant.key.encode()
                            for mch_id, merchant in config.wechat.merchants.items()})
    settings = getattr(config, channel)
    return IsoRules(channel, settings.dialect, mac_off=settings.mac == "off",
                    envelope=settings.envelope)


async def conform(config: Config, redis_url: str, args: argparse.Namespace,
                  on_ready: Callable[[int], None]) -> reports.Report:
    """Serve the channel with the kit watching until Ctrl-C, --duration or completion."""
    stop = asyncio.Event()
    kit = Kit(args.channel, rules_for(args.channel, config), say,
              stop if args.until_complete else None)
    server, ledger = await build(config, redis_url)
    listener = server.listeners[args.channel]
    listener.codec = Watched(listener.codec, kit)
    try:
        await server.start()
        on_ready(server.ports[args.channel])
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), args.duration)
    finally:
        await server.shutdown()
        await ledger.aclose()
    for exchange in kit.unanswered():
        say(reports.message_line(exchange))
    return reports.build(args.channel, kit.session.exchanges)


def say(line: str) -> None:
    print(line, flush=True)


def cmd_conform(args: argparse.Namespace) -> int:
    config = configure(args)
    url, note, private = launch.open_redis(args.redis, bool(args.redis), RUN_DIR,
                                           not args.redis, DEFAULT_APPENDFSYNC)
    try:
        cards, _ = run(launch.prepare(config, url, demo=True))
        if args.cards_out:
            write_cards(args.cards_out, cards)

        def ready(port: int) -> None:
            say(banner(args, config, config.listeners[args.channel].host, port, note, cards))

        report = run(conform(config, url, args, ready))
    finally:
        if private:
            private.stop()
    if cards is None or report is None:  # Ctrl-C before the kit was up
        raise UserError("stopped before the kit was serving: no report")
    say(reports.text(report))
    if args.junit:
        args.junit.write_bytes(reports.junit(report))
    if args.json:
        args.json.write_bytes(reports.as_json(report))
    return 0 if report.passed else EXIT_FAILED


def configure(args: argparse.Namespace) -> Config:
    """The config with only the channel listening (where --listen says), no admin plane."""
    config = load(args.config)
    address = args.listen or f"127.0.0.1:{DEFAULT_PORTS[args.channel]}"
    config.listeners = dict([parse_listen(f"{args.channel}={address}")])
    config.admin.listen = ""
    if args.dialect:
        if args.channel not in ISO_CHANNELS:
            raise UserError(f"--dialect is for an ISO 8583 channel ({', '.join(ISO_CHANNELS)})")
        try:
            getattr(config, args.channel).use_dialect(args.dialect)
            get_codec(getattr(config, args.channel).dialect)
        except DialectError as error:
            raise UserError(f"--dialect: {error}") from None
    check_channels(config, CODECS)
    if args.duration is not None and args.duration <= 0:
        raise UserError("--duration: a number of seconds above 0")
    return config


def write_cards(path: Path, cards: list[DemoCardNow]) -> None:
    """The test cards' full numbers, for the adapter to pay with: a file only its user reads."""
    path.touch(mode=0o600)
    path.write_text("".join(f"demo{i},{c.card.pan},{c.card.expiry},{c.card.status}\n"
                            for i, c in enumerate(cards, start=1)))


def banner(args: argparse.Namespace, config: Config, host: str, port: int, redis_note: str,
           cards: list[DemoCardNow]) -> str:
    flows = ", ".join(flow.title for flow in REQUIRED[args.channel])
    ending = ("when every required flow has passed" if args.until_complete else
              f"after {args.duration:g} s" if args.duration else "on Ctrl-C")
    settings = getattr(config, args.channel, None) if args.channel in ISO_CHANNELS else None
    wire = (f" ({settings.dialect}, header {settings.header}, envelope {settings.envelope})"
            if settings else "")
    lines = [f"conformance kit: {args.channel} listening on {host}:{port}{wire}",
             f"  Redis   {redis_note}",
             f"  required flows: {flows}",
             f"  the report comes {ending}"
             + (" (or on Ctrl-C)" if args.until_complete or args.duration else ""),
             "  test cards (full numbers: --cards-out FILE):"]
    lines += [f"    demo{i}  {mask_pan(c.card.pan)}  expiry {c.card.expiry}  {c.card.status}"
              for i, c in enumerate(cards, start=1)]
    return "\n".join(lines)


def add_commands(command) -> None:
    conform_cmd = command("conform", cmd_conform, "serve one channel with every message an "
                          "adapter sends checked against its spec; report the required "
                          "flows (docs/channels/conformance.md)")
    conform_cmd.add_argument("--channel", required=True, choices=sorted(REQUIRED))
    conform_cmd.add_argument("--listen", metavar="HOST:PORT",
                             help="where the adapter connects (default: the channel's own "
                             "port on 127.0.0.1; port 0 picks a free one)")
    conform_cmd.add_argument("--junit", type=Path, metavar="FILE",
                             help="write the report as JUnit XML (one testcase per flow)")
    conform_cmd.add_argument("--json", type=Path, metavar="FILE",
                             help="write the report as JSON")
    conform_cmd.add_argument("--until-complete", action="store_true",
                             help="end as soon as every required flow has passed")
    conform_cmd.add_argument("--duration", type=float, metavar="S",
                             help="end after S seconds")
    conform_cmd.add_argument("--cards-out", type=Path, metavar="FILE",
                             help="write the test cards' full numbers to FILE (mode 600)")
    conform_cmd.add_argument("--redis", metavar="URL", default="",
                             help="Redis to use (default: a private one that keeps nothing, "
                             "stopped with the kit)")
    conform_cmd.add_argument("--config", type=Path, help="switch config file (TOML): the "
                             "channel's keys, dialect, header, limits")
    conform_cmd.add_argument("--dialect", metavar="NAME|FILE",
                             help="pos, xpay: the listener's dialect, or a preset "
                             f"({', '.join(PRESETS)}: dialect, length header, TPDU and message "
                             "header), over the config's")
    conform_cmd.epilog = "Exit code: 0 when every required flow passed, 1 when not, 2 on an error."
