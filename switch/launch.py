"""`switch serve`: its Redis, the demo cards, the banner, and the switch in one process or
in N.

The one-process switch is switch/app.py; N processes sharing the ports are switch/workers.py.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import NamedTuple

from protocols.cardnumbers import mask_pan
from protocols.demo import DEMO_JD_MERCHANT, NO_ANSWER_OUTCOME, TEST_CARDS
from switch.app import force_test_cards, load_cards, open_ledger, run, serve_one
from switch.cards import showcase_cards
from switch.cli_common import UserError
from switch.config import Config
from switch.faults import FaultRule, replace_rules, stored_rules
from switch.ledger import CardView
from switch.logs import DEFAULT_LOGGING, LoggingSetup
from switch.redis_client import cluster_masters, is_cluster
from switch.redis_runner import PrivateRedis, persistence, reachable
from switch.replay_cli import take_snapshot
from switch.workers import supervise


class DemoCardNow(NamedTuple):
    """A demo card as it stands in Redis once loaded, and whether this start created it."""

    card: CardView
    created: bool


def open_redis(url: str, given: bool, run_dir: Path, ephemeral: bool, appendfsync: str
               ) -> tuple[str, str, PrivateRedis | None]:
    """The Redis to serve on: (url, the banner's note, the private Redis we started or None).

    `url` (from --redis, $REDIS_URL or the config) is the user's when it answers; `given`
    (--redis) makes one that does not answer an error, else a private Redis is started:
    durable, its data in run_dir/redis, unless `ephemeral`."""
    if ephemeral and given:
        raise UserError("--ephemeral starts a private Redis; it does not go with --redis")
    if url and not ephemeral:
        if reachable(url):
            phrase, persists = persistence(url)
            if persists is False:
                print(f"switch: warning: the Redis at {url} does not keep every write "
                      f"({phrase}); approvals may vanish from the books", file=sys.stderr)
            if is_cluster(url):  # the node's own persistence stands for its peers'
                phrase = f"Redis Cluster of {cluster_masters(url)} masters; {phrase}"
            return url, f"{url} (yours; {phrase})", None
        if given:
            raise UserError(f"Redis at {url} does not answer")
        print(f"switch: Redis at {url} does not answer; starting a private one",
              file=sys.stderr)
    if ephemeral:
        private = PrivateRedis(run_dir / "redis-ephemeral")
        url = private.start()
        return url, f"{url} (private, ephemeral: nothing kept on disk)", private
    private = PrivateRedis(run_dir / "redis", durable=True, appendfsync=appendfsync)
    url = private.start()
    note = (f"{url} (private, started by the switch; data kept in {private.folder}, "
            f"AOF appendfsync {appendfsync})")
    note += "".join(f"\n          {line}" for line in private.notes)
    return url, note, private


async def prepare(config: Config, redis_url: str, demo: bool,
                  faults: list[FaultRule] | None = None) -> tuple[list[DemoCardNow], int]:
    """Before any listener starts: create the demo cards that are absent and force the test
    cards' outcomes (read them all back as they stand); `faults`: the rule set to put in
    force. Returns the demo cards and how many fault rules are in force."""
    cards = showcase_cards() if demo else []
    ledger = open_ledger(config, redis_url)
    try:
        await ledger.start()
        if faults is not None:
            await replace_rules(ledger.client, faults)
        rules = len((await stored_rules(ledger.client))[1])
        if not cards:
            return [], rules
        created = await load_cards(ledger, cards)
        await force_test_cards(ledger)
        return [DemoCardNow(await ledger.card(card.pan), new)
                for card, new in zip(cards, created, strict=True)], rules
    finally:
        await ledger.aclose()


def serve(config: Config, redis_url: str, redis_note: str, demo: bool, workers: int = 1,
          logging_setup: LoggingSetup = DEFAULT_LOGGING,
          faults: list[FaultRule] | None = None) -> None:
    """`logging_setup`: the command's, given again to each worker process (they are spawned).
    `faults`: a fault rule set to put in force (None: the one in Redis stays)."""
    cards, rules = asyncio.run(prepare(config, redis_url, demo, faults))
    recording = ""
    if config.record.dir:  # the ledger as the recording begins: after the demo cards
        recording = asyncio.run(take_snapshot(config, redis_url))

    def announce(ports: dict[str, int]) -> None:
        print(banner(config, ports, redis_note, cards, workers, rules, recording), flush=True)

    if workers == 1:
        run(serve_one(config, redis_url, announce))
    else:
        supervise(config, redis_url, workers, announce, logging_setup)
    print("switch stopped", flush=True)


def banner(config: Config, ports: dict[str, int], redis_note: str, cards: list[DemoCardNow],
           workers: int = 1, fault_rules: int = 0, recording: str = "") -> str:
    """`recording`: what `--record` took as it began (its snapshot), "" when not recording."""
    lines = ["", "Baitiao card authorization switch is up"
             + (f" ({workers} worker processes sharing the ports)" if workers > 1 else ""), ""]
    for name, port in ports.items():
        if name in config.listeners:
            lines.append(f"  {name:<7} listening on {config.listeners[name].host}:{port}")
    lines += ["", f"  Redis   {redis_note}", ""]
    if "admin" in ports:
        lines += admin_lines(config, ports["admin"])
    if fault_rules:
        lines += [f"  Faults  {fault_rules} fault rule{'s' if fault_rules != 1 else ''} in "
                  "force: matching requests are not decided as usual (switch fault list)", ""]
    if cards:
        lines += demo_lines(cards)
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
    if recording:
        lines += [f"  Recording into {config.record.dir} (files mode 600: they hold card "
                  "numbers)", f"          {recording}", ""]
    lines.append("  Ctrl-C stops the switch" + (" and its private Redis." if "private" in
                                                 redis_note else "."))
    return "\n".join(lines)


def admin_lines(config: Config, port: int) -> list[str]:
    """Where the dashboard is, and the admin token: shown once, here (docs/admin.md)."""
    host = config.admin.listen.rpartition(":")[0]
    url = f"http://{host}:{port}"
    return [f"  Admin   dashboard {url}/   metrics {url}/metrics   (docs/admin.md)",
            f"          token for card and policy endpoints: {config.admin.token}",
            f"          curl -H 'Authorization: Bearer {config.admin.token}' {url}/cards/demo1",
            ""]


def demo_lines(cards: list[DemoCardNow]) -> list[str]:
    """The demo cards as they stand, and which this start created and which it kept."""
    lines = ["  Demo cards (use the alias wherever a PAN is asked for):"]
    for index, (card, created) in enumerate(cards, start=1):
        lines.append(f"    demo{index}  {mask_pan(card.pan)}  limit {card.limit:>9}  open-to-buy "
                     f"{card.open_to_buy:>9} fen  expiry {card.expiry}  {card.status:<7} "
                     + ("created" if created else "kept"))
    kept = [f"demo{i}" for i, (_, created) in enumerate(cards, start=1) if not created]
    made = [f"demo{i}" for i, (_, created) in enumerate(cards, start=1) if created]
    lines.append(f"  created: {', '.join(made) or 'none'}; kept as they were (balances and "
                 f"history): {', '.join(kept) or 'none'}")
    aliases = " ".join("testNA" if outcome == NO_ANSWER_OUTCOME else f"test{outcome}"
                       for _, outcome, _ in TEST_CARDS)
    lines.append(f"  Test cards, each always declining with its code: {aliases} "
                 "(docs/testing.md)")
    return lines + [""]
