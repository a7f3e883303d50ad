"""`switch serve`: the demo cards, the banner, and the switch in one process or in N.

The one-process switch is switch/app.py; N processes sharing the ports are switch/workers.py.
"""

from __future__ import annotations

import asyncio

from protocols.cardnumbers import mask_pan
from protocols.demo import DEMO_JD_MERCHANT
from switch.app import load_cards, open_ledger, run, serve_one
from switch.cards import DemoCard, showcase_cards
from switch.config import Config
from switch.workers import supervise


async def prepare(config: Config, redis_url: str, demo: bool) -> list[DemoCard]:
    """Load the demo cards (once, before any listener starts)."""
    cards = showcase_cards() if demo else []
    if cards:
        ledger = open_ledger(config, redis_url)
        try:
            await load_cards(ledger, cards)
        finally:
            await ledger.aclose()
    return cards


def serve(config: Config, redis_url: str, redis_note: str, demo: bool, workers: int = 1
          ) -> None:
    cards = asyncio.run(prepare(config, redis_url, demo))

    def announce(ports: dict[str, int]) -> None:
        print(banner(config, ports, redis_note, cards, workers), flush=True)

    if workers == 1:
        run(serve_one(config, redis_url, announce))
    else:
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
