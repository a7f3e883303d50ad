"""Running the switch: Redis, the ledger, the listeners, the banner, the signals."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import sys

from protocols.cardnumbers import mask_pan
from switch.cards import DemoCard, showcase_cards
from switch.channels import CODECS
from switch.clock import Clock
from switch.config import DEMO_JD_MERCHANT, Config
from switch.engine import Engine
from switch.ledger import Ledger
from switch.policy import load_policy
from switch.redis_client import connect
from switch.rules import Policy
from switch.server import Switch
from switch.tokens import TokenVault

log = logging.getLogger("switch")


async def build(config: Config, redis_url: str, clock: Clock | None = None,
                policy: Policy | None = None) -> tuple[Switch, Ledger]:
    """`policy`: else the config's policy file (else the shipped default); `clock`: tests."""
    policy = policy or Policy(load_policy(config.policy))
    deadline_ms = config.limits.request_deadline_ms
    ledger = Ledger(connect(redis_url, deadline_ms), clock, deadline_ms)
    await ledger.start()
    # x-pay names the card by a wallet token: the vault turns it into the PAN first.
    vault = TokenVault(ledger.client, ledger.clock, deadline_ms)
    await vault.start()
    ledger.pipelines.append(vault.scripts)
    switch = Switch(config, Engine(ledger, policy, resolvers={"xpay": vault.resolve}), CODECS)
    return switch, ledger


async def load_cards(ledger: Ledger, cards: list[DemoCard]) -> None:
    for card in cards:
        await ledger.reset_card(card.pan, limit_fen=card.limit_fen, expiry=card.expiry,
                                status=card.status)


async def serve_one(config: Config, redis_url: str, on_ready, reuse_port: bool = False) -> None:
    """One process's listeners, until SIGINT or SIGTERM; then a graceful shutdown."""
    switch, ledger = await build(config, redis_url)
    await switch.start(reuse_port=reuse_port)
    # What start-up built lives as long as the process: keep it out of the collector's way
    # (a full collection under load paused answers 14 ms; after freeze() 2.5 ms).
    gc.collect()
    gc.freeze()
    on_ready(switch.ports)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await switch.shutdown()
    await ledger.aclose()
    print(counters_line(switch, ledger), flush=True)


def counters_line(switch: Switch, ledger: Ledger) -> str:
    """The process's own counters, printed when it stops (the bench reads them)."""
    calls, trips = ledger.scripts.calls, ledger.scripts.round_trips
    per_call = f"{trips / calls:.3f}" if calls else "-"
    fields = switch.counters.as_dict() | {"redis_calls": calls, "redis_round_trips": trips}
    return "counters: " + " ".join(f"{k}={v}" for k, v in fields.items()) + (
        f" round_trips_per_call={per_call}")


async def prepare(redis_url: str, demo: bool) -> list[DemoCard]:
    """Load the demo cards (once, before any listener starts)."""
    cards = showcase_cards() if demo else []
    if cards:
        ledger = Ledger(connect(redis_url))
        try:
            await load_cards(ledger, cards)
        finally:
            await ledger.aclose()
    return cards


def serve(config: Config, redis_url: str, redis_note: str, demo: bool, workers: int = 1
          ) -> None:
    cards = asyncio.run(prepare(redis_url, demo))

    def announce(ports: dict[str, int]) -> None:
        print(banner(config, ports, redis_note, cards, workers), flush=True)

    if workers == 1:
        run(serve_one(config, redis_url, announce))
    else:
        from switch.workers import supervise

        supervise(config, redis_url, workers, announce)
    print("switch stopped", flush=True)


def banner(config: Config, ports: dict[str, int], redis_note: str, cards: list[DemoCard],
           workers: int = 1) -> str:
    lines = ["", "Baitiao card authorization switch is up"
             + (f" ({workers} worker processes sharing the ports)" if workers > 1 else ""), ""]
    for name, port in ports.items():
        lines.append(f"  {name:<7} listening on {config.listeners[name].host}:{port}")
    lines += ["", f"  Redis   {redis_note}", ""]
    if cards:
        lines.append("  Demo cards (use the alias wherever a PAN is asked for):")
        for index, card in enumerate(cards, start=1):
            lines.append(f"    demo{index}  {mask_pan(card.pan)}  limit {card.limit_fen:>10} fen"
                         f"  expiry {card.expiry}  {card.status}")
        lines.append("")
    if "jd" in ports:
        lines += [
            "  Try, from another terminal (JD demo merchant " + DEMO_JD_MERCHANT + "):",
            f"    .venv/bin/switch send --channel jd --port {ports['jd']} "
            "--pan demo1 --amount 12800 --mcc 5411",
            "",
        ]
    if "wechat" in ports:
        lines += ["  WeChat Pay, with the policy's explanation (docs/channels/wechat.md):",
                  f"    .venv/bin/switch send --channel wechat --port {ports['wechat']} "
                  "--pan demo1 --amount 12800 --mcc 5411 --explain", ""]
    if "pos" in ports:
        lines += ["  A UnionPay terminal (ISO 8583, docs/channels/pos.md):",
                  f"    .venv/bin/switch send --channel pos --port {ports['pos']} "
                  "--pan demo1 --amount 12800 --mcc 5411", ""]
    lines.append("  Ctrl-C stops the switch" + (" and its private Redis." if "private" in
                                                 redis_note else "."))
    return "\n".join(lines)


def run(coro) -> None:
    """asyncio.run on uvloop."""
    import uvloop

    with contextlib.suppress(KeyboardInterrupt):
        if sys.version_info >= (3, 12):
            uvloop.run(coro)
        else:
            uvloop.install()
            asyncio.run(coro)
