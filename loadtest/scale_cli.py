"""The `loadtest saturate` and `loadtest bench-scale` commands (registered by cli.py)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import msgspec

DEFAULT_CHANNEL = "pos"


def add_commands(commands) -> None:
    from loadtest.cli import card_options

    sat = commands.add_parser(
        "saturate", help="closed loop: each connection keeps exactly N requests in flight")
    sat.set_defaults(func=cmd_saturate)
    sat.add_argument("--target", action="append", metavar="CHANNEL=HOST:PORT",
                     help=f"a channel to drive and where it listens; repeat per channel "
                     f"(default: {DEFAULT_CHANNEL} on its default port)")
    sat.add_argument("--connections", type=int, default=16, help="per channel (default 16)")
    sat.add_argument("--inflight", type=int, default=32,
                     help="requests in flight per connection, exactly (default 32)")
    sat.add_argument("--duration", type=float, default=5.0, help="measured seconds (5)")
    sat.add_argument("--warmup", type=float, default=1.0, help="seconds before (default 1)")
    sat.add_argument("--kinds", choices=("mix", "sales"), default="mix",
                     help="mix: the open-loop generator's kinds (default); sales: sales only")
    sat.add_argument("--workers", type=int, default=1, help="generator processes (1)")
    sat.add_argument("--timeout", type=float, default=2.0, help="per request, seconds")
    sat.add_argument("--option", action="append", metavar="CHANNEL.NAME=VALUE",
                     help="channel setting, as for `loadtest run`")
    sat.add_argument("--no-seed", action="store_true", help="cards are seeded already")
    sat.add_argument("--out", type=Path, help="output folder (default "
                     "loadtest-results/saturate-<date>)")
    sat.add_argument("--quiet", action="store_true", help="no progress lines")
    card_options(sat)

    bench = commands.add_parser(
        "bench-scale", help="`make bench-scale`: issue 6's figures side by side (closed-loop "
        "saturation vs the reference, open loop at half the sustainable rate, Redis round "
        "trips per call, scaling with connections, memory per card)")
    bench.set_defaults(func=cmd_bench_scale)
    bench.add_argument("--out", type=Path, default=Path("bench-results"))
    bench.add_argument("--rounds", type=int, default=3,
                       help="saturation rounds, alternating the servers; medians reported")
    bench.add_argument("--duration", type=float, default=3.0,
                       help="measured seconds of each closed-loop run (default 3)")
    bench.add_argument("--half-duration", type=float, default=10.0,
                       help="seconds of the open-loop run at half the sustainable rate")
    bench.add_argument("--memory-cards", default="1000,100000,1000000",
                       help="card counts of the memory measurement (comma-separated)")
    bench.add_argument("--workers", type=int, default=1,
                       help="closed-loop generator processes (default 1)")
    bench.add_argument("--skip", default="", help="parts to leave out, comma-separated: "
                       "saturation, openloop, scaling, memory")


def cmd_saturate(args: argparse.Namespace) -> int:
    from loadtest.cli import parse_options, parse_targets, run_async, say, seed_redis
    from loadtest.saturate import SaturatePlan
    from loadtest.saturate_run import run_saturate, table

    channels = [value.partition("=")[0] for value in args.target or []] or [DEFAULT_CHANNEL]
    plan = SaturatePlan(
        targets=parse_targets(args.target, dict.fromkeys(channels, 1)),
        connections=args.connections, inflight=args.inflight, duration_s=args.duration,
        warmup_s=args.warmup, cards=args.cards, seed=args.seed, workers=args.workers,
        timeout_s=args.timeout, kinds=args.kinds, options=parse_options(args.option),
        redis_url=seed_redis(args), card_limit_fen=args.limit)
    if plan.redis_url:
        say(f"seeding {plan.cards:,} cards (seed {plan.seed}) into {plan.redis_url}")

    def progress(second: int, counts: dict[str, int]) -> None:
        if not args.quiet:
            say(f"[{second:>4} s] answers " + "  ".join(
                f"{ch} {n:,}/s" for ch, n in counts.items()))

    result = run_async(run_saturate(plan, progress))
    print(table(result))
    folder = args.out or Path("loadtest-results") / f"saturate-{time.strftime('%Y%m%d-%H%M%S')}"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "summary.json"
    path.write_bytes(msgspec.json.format(msgspec.json.encode(result.summary()), indent=2))
    print(f"\nsummary: {path}")
    return 1 if result.failures() else 0


def cmd_bench_scale(args: argparse.Namespace) -> int:
    from loadtest import scaling

    return scaling.main(args)

