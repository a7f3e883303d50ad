"""The `loadtest` command: run, seed, find-max, saturate (the generator), bench, bench-scale
and chaos (the harness). See docs/loadtest.md."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import msgspec

from loadtest.generator import adapters, report
from loadtest.generator.cards import find_redis_url
from loadtest.generator.client import LoadTestError, Target, Targets
from loadtest.generator.closed_loop import SaturatePlan
from loadtest.generator.closed_loop_runner import run_saturate
from loadtest.generator.closed_loop_runner import table as closed_loop_table
from loadtest.generator.event_loop import run_async
from loadtest.generator.findmax import Criteria, Step, find_max
from loadtest.generator.parts import merge_files, write_part
from loadtest.generator.recorded import channel_mix, read_folder
from loadtest.generator.runner import Plan, check_plan, offered_rate, run_load, seed
from loadtest.generator.stats import Totals
from loadtest.generator.switch_side import metrics_url, summary_line
from loadtest.generator.workload import CARD_LIMIT_FEN
from loadtest.harness import bench, bench_cluster, bench_scale, chaos, slow_reader
from loadtest.harness.chaos_faults import FAULT_KINDS, FaultPlan
from switch.redis_runner import APPENDFSYNC_POLICIES

RESULTS_DIR = Path("loadtest-results")
SATURATE_CHANNEL = "pos"  # what `saturate` drives when no --target names a channel


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except (LoadTestError, ValueError, OSError) as error:
        print(f"loadtest: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("loadtest: interrupted", file=sys.stderr)
        return 130


# --- parsing helpers ------------------------------------------------------------------------


def parse_mix(text: str) -> dict[str, int]:
    mix = {}
    for part in filter(None, text.split(",")):
        name, _, weight = part.partition("=")
        if name not in adapters.ADAPTERS:
            raise ValueError(f"--mix: no channel {name!r} (channels: "
                             f"{', '.join(sorted(adapters.ADAPTERS))})")
        if not weight.isdigit() or int(weight) == 0:
            raise ValueError(f"--mix {part!r}: expected CHANNEL=WEIGHT with a positive weight")
        mix[name] = int(weight)
    if not mix:
        raise ValueError("--mix names no channel")
    return mix


def parse_targets(values: list[str], mix: dict[str, int]) -> dict[str, Targets]:
    """CHANNEL=HOST:PORT or CHANNEL=PORT; a channel named again adds a switch to its fleet
    (its connections are dealt out in turn); a channel not named uses its default port."""
    fleets: dict[str, list[Target]] = {}
    for value in values or []:
        channel, sep, address = value.partition("=")
        host, _, port = address.rpartition(":")
        if not sep or not port.isdigit() or int(port) > 65535:
            raise ValueError(f"--target {value!r}: expected CHANNEL=HOST:PORT, "
                             "e.g. jd=127.0.0.1:8601")
        fleets.setdefault(channel, []).append(Target(host or "127.0.0.1", int(port)))
    for channel in mix:
        if channel not in fleets:
            fleets[channel] = [Target("127.0.0.1", adapters.build(channel).default_port)]
    return {channel: fleets[channel][0] if len(fleets[channel]) == 1 else fleets[channel]
            for channel in mix}


def parse_options(values: list[str]) -> dict[str, dict[str, str]]:
    options: dict[str, dict[str, str]] = {}
    for value in values or []:
        key, sep, setting = value.partition("=")
        channel, dot, name = key.partition(".")
        if not sep or not dot:
            raise ValueError(f"--option {value!r}: expected CHANNEL.NAME=VALUE, e.g. jd.key=...")
        options.setdefault(channel, {})[name] = setting
    return options


def mix_from(args: argparse.Namespace) -> dict[str, int]:
    """--mix; else, with --target given, the default weights of the channels targeted (a run
    pointed at some channels sends to those); else every channel."""
    if args.mix:
        return parse_mix(args.mix)
    targeted = {value.partition("=")[0] for value in args.target or []}
    default = adapters.default_mix()
    unknown = targeted - set(default)
    if unknown:
        raise ValueError(f"--target: no channel {', '.join(sorted(unknown))} "
                         f"(channels: {', '.join(default)})")
    return {channel: weight for channel, weight in default.items()
            if not targeted or channel in targeted}


def plan_from(args: argparse.Namespace, rate: float, duration_s: float) -> Plan:
    mix = mix_from(args)
    return Plan(rate=rate, duration_s=duration_s, targets=parse_targets(args.target, mix),
                mix=mix, connections=args.connections, inflight_max=args.inflight,
                cards=args.cards, seed=args.seed, workers=args.workers, timeout_s=args.timeout,
                options=parse_options(args.option), redis_url=seed_redis(args),
                card_limit_fen=args.limit, admin_url=admin_url(args))


def admin_url(args: argparse.Namespace) -> str:
    """--admin-url, checked now: a typo is said before the run, not as a gap in its report."""
    if args.admin_url:
        metrics_url(args.admin_url)  # ValueError: one line from main()
    return args.admin_url or ""


def seed_redis(args: argparse.Namespace) -> str:
    """Where to seed the cards before each run; empty with --no-seed."""
    if getattr(args, "no_seed", False):
        return ""
    url = find_redis_url(args.redis)
    if not url:
        raise LoadTestError("no Redis to seed the cards into: pass --redis URL, set REDIS_URL, "
                            "start the switch with `make run`, or pass --no-seed")
    return url


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


class Progress:
    """The live line on stderr: rewritten in place on a terminal, one line a second if not."""

    def __init__(self, rate: float, quiet: bool = False) -> None:
        self.rate = rate
        self.quiet = quiet
        self.tty = sys.stderr.isatty()
        self.failures = 0

    def __call__(self, second: int, totals: Totals) -> None:
        self.failures += totals.failures
        c = totals.counts
        if self.quiet or not (c["sent"] or c["answered"] or totals.failures):
            return  # the tail of a run (answers drained) has nothing to show
        p99 = totals.percentiles_ms().get("p99")
        line = (f"[{second + 1:>4} s] offered {self.rate:,.0f}/s  sent {c['sent']:,}/s  "
                f"answered {c['answered']:,}/s  p99 "
                + (f"{p99:.3f} ms" if p99 is not None else "-")
                + f"  failures {self.failures:,}  behind {c['behind']:,}")
        print(("\r" + line.ljust(110)) if self.tty else line, end="" if self.tty else "\n",
              file=sys.stderr, flush=True)

    def end(self) -> None:
        if self.tty and not self.quiet:
            print(file=sys.stderr)


def out_folder(args: argparse.Namespace, kind: str) -> Path:
    return args.out or RESULTS_DIR / f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}"


# --- commands -------------------------------------------------------------------------------


def recording_plan(args: argparse.Namespace, plan: Plan) -> Plan:
    """--from-recording DIR: the recording's channels and framing, its cards (none seeded)."""
    played, wires = read_folder(args.from_recording)
    mix = channel_mix(played)
    if args.target:
        mix = {channel: weight for channel, weight in mix.items()
               if channel in {value.partition("=")[0] for value in args.target}}
    options = parse_options(args.option)
    for channel, wire in wires.items():
        if channel in ("pos", "xpay"):  # answers are read, not checked: no MAC key needed
            defaults = {"header": wire.header, "mac": "off"} | (
                {"dialect": wire.dialect} if wire.dialect else {})
            options[channel] = defaults | options.get(channel, {})
    return msgspec.structs.replace(plan, mix=mix, targets=parse_targets(args.target, mix),
                                   options=options, redis_url="",
                                   recording=str(args.from_recording))


def cmd_run(args: argparse.Namespace) -> int:
    part, parts = parse_part(args.part) if args.part else (0, 1)
    if part and args.redis:
        raise ValueError("--part: a part never seeds the cards (it would reset them under the "
                         "other parts' load): seed once with `loadtest seed`, then run every "
                         "part without --redis (docs/loadtest.md, \"Several hosts\")")
    if args.from_recording or part:
        args.no_seed = True
    plan = msgspec.structs.replace(plan_from(args, args.rate, args.duration), part=part,
                                   parts=parts, start_at=args.start_at or 0.0,
                                   run_id=args.run_id or "")
    if args.from_recording:
        plan = recording_plan(args, plan)
    check_plan(plan, time.time())  # before anything is said or done
    if plan.redis_url:
        say(f"seeding {plan.cards:,} cards (seed {plan.seed}) into {plan.redis_url}")
    if plan.start_at:
        say(f"first send at {format_wall(plan.start_at)} (--start-at), in "
            f"{plan.start_at - time.time():,.1f} s")
    progress = Progress(offered_rate(plan), args.quiet)
    try:
        result = run_async(run_load(plan, progress))
    finally:
        progress.end()
    print(report.table(result))
    folder = out_folder(args, f"part{part}-of-{parts}" if part else "run")
    files = report.write_all(result, folder)
    print(f"\nreport: {files['html']}  summary: {files['json']}  "
          f"histograms: {files['json'].parent}/latency-*.hgrm")
    if part:
        print(f"part file (for `loadtest merge`): {write_part(result, folder)}")
    return 0


def parse_part(text: str) -> tuple[int, int]:
    """--part K/N: this host runs the K-th of N parts of the run."""
    part, slash, parts = text.partition("/")
    if not (slash and part.isdigit() and parts.isdigit() and 1 <= int(part) <= int(parts)):
        raise ValueError(f"--part {text!r}: expected K/N with 1 <= K <= N, e.g. 2/3")
    return int(part), int(parts)


def format_wall(wall: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(wall)) + f"{wall % 1:.3f}"[1:]


def cmd_merge(args: argparse.Namespace) -> int:
    result, parts = merge_files(args.parts)
    for part in sorted(parts, key=lambda found: found.plan.part):
        answered = sum(record.channels[ch].counts.get("answered", 0)
                       for record in part.seconds for ch in record.channels)
        say(f"part {part.plan.part} of {part.plan.parts}: {part.host}, first send "
            f"{format_wall(part.start_wall)}, {answered:,} answered")
    print(report.table(result))
    files = report.write_all(result, out_folder(args, "merge"))
    print(f"\nreport: {files['html']}  summary: {files['json']}  "
          f"histograms: {files['json'].parent}/latency-*.hgrm")
    return 0


def cmd_seed(args: argparse.Namespace) -> int:
    plan = Plan(rate=1, duration_s=1, targets={}, mix=adapters.default_mix(), cards=args.cards,
                seed=args.seed, workers=args.workers, redis_url=seed_redis(args),
                card_limit_fen=args.limit)
    began = time.monotonic()
    seed(plan)
    tokens = " and their x-pay tokens" if "xpay" in plan.mix else ""
    say(f"seeded {plan.cards:,} cards{tokens} (seed {plan.seed}) into {plan.redis_url} in "
        f"{time.monotonic() - began:.1f} s")
    return 0


def cmd_find_max(args: argparse.Namespace) -> int:
    plan = plan_from(args, args.start_rate, args.step_duration)
    criteria = Criteria(p99_ms=args.p99_ms, start_rate=args.start_rate, growth=args.growth,
                        max_rate=args.max_rate, refine=args.refine, retries=args.retries)
    say(f"find-max: p99 <= {criteria.p99_ms:g} ms and no failures; {args.step_duration:g} s "
        f"per step from {criteria.start_rate:,.0f}/s, x{criteria.growth:g} per step")
    search = run_async(find_max(plan, criteria, print_step))
    folder = out_folder(args, "find-max")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "find-max.json").write_bytes(msgspec.json.format(msgspec.json.encode({
        "p99_target_ms": criteria.p99_ms, "best_rate": search.best_rate,
        "steps": search.steps}), indent=2))
    if search.best is None:
        print(f"no rate passed (p99 <= {criteria.p99_ms:g} ms, no failures); steps in {folder}")
        return 1
    print(f"\nhighest sustainable rate: {search.best_rate:,.0f}/s "
          f"(p99 <= {criteria.p99_ms:g} ms, no failures)\n")
    print(report.table(search.best))
    files = report.write_all(search.best, folder / "best")
    print(f"\nsteps: {folder / 'find-max.json'}  best step's report: {files['html']}")
    return 0


def print_step(step: Step) -> None:
    p99 = f"{step.p99_ms:.3f} ms" if step.p99_ms is not None else "-"
    say(f"  rate {step.rate:>9,.0f}/s  achieved {step.achieved:>10,.1f}/s  p99 {p99:>11}  "
        f"failures {step.failures:>6}  {'pass' if step.passed else 'FAIL'}")


def cmd_saturate(args: argparse.Namespace) -> int:
    channels = [value.partition("=")[0] for value in args.target or []] or [SATURATE_CHANNEL]
    plan = SaturatePlan(
        targets=parse_targets(args.target, dict.fromkeys(channels, 1)),
        connections=args.connections, inflight=args.inflight, duration_s=args.duration,
        warmup_s=args.warmup, cards=args.cards, seed=args.seed, workers=args.workers,
        timeout_s=args.timeout, kinds=args.kinds, options=parse_options(args.option),
        redis_url=seed_redis(args), card_limit_fen=args.limit, admin_url=admin_url(args))
    if plan.redis_url:
        say(f"seeding {plan.cards:,} cards (seed {plan.seed}) into {plan.redis_url}")

    def progress(second: int, counts: dict[str, int]) -> None:
        if not args.quiet:
            say(f"[{second:>4} s] answers " + "  ".join(
                f"{ch} {n:,}/s" for ch, n in counts.items()))

    result = run_async(run_saturate(plan, progress))
    print(closed_loop_table(result))
    if result.switch is not None:
        print(summary_line(result.switch))
    folder = out_folder(args, "saturate")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "summary.json"
    path.write_bytes(msgspec.json.format(msgspec.json.encode(result.summary()), indent=2))
    print(f"\nsummary: {path}")
    return 1 if result.failures() else 0


def cmd_chaos(args: argparse.Namespace) -> int:
    mix = parse_mix(args.mix) if args.mix else adapters.default_mix()
    if (args.duration is None) == (args.requests is None):
        raise ValueError("give one of --duration and --requests")
    duration = args.duration if args.duration is not None else args.requests / args.rate
    faults = FaultPlan(kinds=tuple(filter(None, args.faults.split(","))), every_s=args.every,
                       freeze_s=args.freeze_for, down_s=args.down_for)
    plan = chaos.ChaosPlan(
        rate=args.rate, duration_s=duration, mix=mix, faults=faults, cards=args.cards,
        seed=args.seed, connections=args.connections, timeout_s=args.timeout,
        appendfsync=args.appendfsync, card_limit_fen=args.limit,
        switch_config=str(args.switch_config or ""), resend_undecided=args.resend_undecided)
    folder = out_folder(args, "chaos")
    say(f"chaos: {plan.rate:,.0f}/s for {duration:g} s, faults {', '.join(faults.kinds)} "
        f"about every {faults.every_s:g} s; files in {folder}")
    progress = Progress(plan.rate, args.quiet)
    try:
        result, outcome = run_async(chaos.run_chaos(plan, folder, progress, say))
    except RuntimeError as error:  # a process the harness runs would not (re)start
        raise LoadTestError(f"chaos: {error}") from None
    finally:
        progress.end()
    print(report.table(result))
    print()
    print("\n".join(chaos.summary_lines(outcome)))
    files = report.write_all(result, folder)
    path = chaos.write_outcome(outcome, plan, folder)
    print(f"\nchaos: {path}  report: {files['html']}  logs: {folder}/switch-*.log, "
          f"{folder}/redis/redis.log")
    return 0 if outcome.passed else 1


# --- argument parser ------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="loadtest", description="Open-loop load generator for the Baitiao switch: "
        "constant arrival rate, latency from intended send time, HDR histograms.")
    commands = top.add_subparsers(required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="one run at a constant rate")
    run.set_defaults(func=cmd_run)
    run.add_argument("--rate", type=float, required=True, help="requests per second, in all")
    run.add_argument("--duration", type=float, default=10.0, help="seconds (default 10)")
    run.add_argument("--from-recording", type=Path, metavar="DIR",
                     help="send a `switch serve --record` folder's requests, byte for byte, in "
                     "their order and over again, instead of synthetic ones (no cards seeded; "
                     "docs/testing.md, \"Record and replay\")")
    load_options(run)
    part_options(run)

    merge = commands.add_parser(
        "merge", help="merge the part files of a run made on several hosts into one report",
        description="Checks that the files are every part of one run (`loadtest run --part "
        "K/N`), then merges them as one run's workers are merged: counts added, HDR "
        "histograms added bucket for bucket, second by second. Writes the same table, "
        "summary.json, .hgrm files and report.html as a run on one host. An error (parts of "
        "different runs or loads, a part missing or given twice) writes nothing. See "
        "docs/loadtest.md, \"Several hosts\".")
    merge.set_defaults(func=cmd_merge)
    merge.add_argument("parts", nargs="+", type=Path, metavar="PART_FILE",
                       help="the part-K-of-N.json file of every part")
    merge.add_argument("--out", type=Path, help=f"output folder (default {RESULTS_DIR}/"
                       "merge-<date>)")

    seed_command = commands.add_parser("seed", help="load the load-test cards into Redis")
    seed_command.set_defaults(func=cmd_seed)
    card_options(seed_command)
    seed_command.add_argument("--workers", type=int, default=1,
                              help="x-pay tokens for this many generator processes")

    fmax = commands.add_parser("find-max", help="highest rate with p99 under a target")
    fmax.set_defaults(func=cmd_find_max)
    fmax.add_argument("--p99-ms", type=float, default=5.0, help="p99 target (default 5 ms)")
    fmax.add_argument("--start-rate", type=float, default=1000.0, help="first step's rate")
    fmax.add_argument("--growth", type=float, default=1.5, help="rate factor per step")
    fmax.add_argument("--max-rate", type=float, default=1_000_000.0)
    fmax.add_argument("--step-duration", type=float, default=5.0, help="seconds per step")
    fmax.add_argument("--refine", type=int, default=3, help="halvings of the last gap")
    fmax.add_argument("--retries", type=int, default=1, help="re-runs of a failing step")
    load_options(fmax)

    saturate_options(commands.add_parser(
        "saturate", help="closed loop: each connection keeps exactly N requests in flight"))
    bench.add_command(commands)
    bench_scale.add_command(commands)
    bench_cluster.add_command(commands)
    chaos_options(commands.add_parser(
        "chaos", help="load while the switch and Redis are killed and frozen, then check "
        "every answer against the books",
        description="Starts its own durable Redis (AOF) and switch, drives every channel "
        "open-loop while it kills and restarts the switch, freezes Redis and kills and "
        "restarts Redis, sends every unanswered request again, then checks each answer "
        "against the books: lost, doubled, invented (each must be 0). Exit 1 when one is "
        "not 0, a rule of the books is broken or a request stays unanswered. "
        "See docs/loadtest.md."))
    slow_reader.add_command(commands)
    return top


def chaos_options(sub: argparse.ArgumentParser) -> None:
    sub.set_defaults(func=cmd_chaos)
    sub.add_argument("--rate", type=float, default=500.0, help="requests per second (500)")
    length = sub.add_mutually_exclusive_group()
    length.add_argument("--duration", type=float, help="seconds of load")
    length.add_argument("--requests", type=int, help="requests in all (duration = "
                        "requests / rate)")
    sub.add_argument("--faults", default=",".join(FAULT_KINDS),
                     help=f"which faults, comma-separated (default: all: "
                     f"{','.join(FAULT_KINDS)}); empty for none")
    faults = FaultPlan()
    sub.add_argument("--every", type=float, default=faults.every_s,
                     help=f"seconds between two faults' starts, on average ({faults.every_s:g})")
    sub.add_argument("--freeze-for", type=float, default=faults.freeze_s,
                     help=f"seconds Redis stays frozen (SIGSTOP; default {faults.freeze_s:g})")
    sub.add_argument("--down-for", type=float, default=faults.down_s,
                     help="seconds a killed switch or Redis stays down before its restart "
                     f"({faults.down_s:g})")
    sub.add_argument("--appendfsync", choices=APPENDFSYNC_POLICIES, default=chaos.CHAOS_APPENDFSYNC,
                     help=f"the Redis append-only file's fsync (default {chaos.CHAOS_APPENDFSYNC}: "
                     "with everysec a Redis kill on a busy disk may lose answered writes)")
    sub.add_argument("--switch-config", type=Path, metavar="FILE",
                     help="config file for `switch serve` ([limits], stand-in ...)")
    sub.add_argument("--resend-undecided", action="store_true",
                     help="also send again, at the end, the requests answered only 91 or 96 "
                     "(a client retrying after the outage)")
    sub.add_argument("--mix", default="", help="channel weights (default: every channel)")
    sub.add_argument("--connections", type=int, default=4, help="per channel (default 4)")
    sub.add_argument("--timeout", type=float, default=5.0,
                     help="per request, seconds (5: above the switch's deadline)")
    sub.add_argument("--cards", type=int, default=1000, help="cards in use (default 1,000)")
    sub.add_argument("--seed", type=int, default=1, help="same seed, same stream and faults")
    sub.add_argument("--limit", type=int, default=CARD_LIMIT_FEN, help="credit limit, fen")
    sub.add_argument("--out", type=Path, help=f"output folder (default {RESULTS_DIR}/"
                     "chaos-<date>)")
    sub.add_argument("--quiet", action="store_true", help="no progress line")


def card_options(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--cards", type=int, default=10_000, help="cards in use (default 10,000)")
    sub.add_argument("--seed", type=int, default=1, help="same seed, same cards and stream")
    sub.add_argument("--redis", default="", metavar="URL", help="the switch's Redis (default: "
                     "$REDIS_URL, then the private Redis of `make run`)")
    sub.add_argument("--limit", type=int, default=CARD_LIMIT_FEN, help="credit limit, fen")


def saturate_options(sat: argparse.ArgumentParser) -> None:
    sat.set_defaults(func=cmd_saturate)
    sat.add_argument("--target", action="append", metavar="CHANNEL=HOST:PORT",
                     help=f"a channel to drive and where it listens; repeat per channel, "
                     "or a channel again for a fleet (connections dealt out in turn; "
                     f"default: {SATURATE_CHANNEL} on its default port)")
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
    admin_option(sat)
    card_options(sat)


def load_options(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--target", action="append", metavar="CHANNEL=HOST:PORT",
                     help="where a channel listens (default: 127.0.0.1 and its default port); "
                     "a channel named again is a fleet: its connections dealt out in turn")
    default_mix = ",".join(f"{k}={v}" for k, v in adapters.default_mix().items())
    sub.add_argument("--mix", default="", help="channel weights, e.g. jd=20,pos=60 "
                     f"(default: {default_mix})")
    sub.add_argument("--connections", type=int, default=8, help="per channel (default 8)")
    sub.add_argument("--inflight", type=int, default=128, help="per connection (default 128)")
    sub.add_argument("--workers", type=int, default=1, help="generator processes (default 1)")
    sub.add_argument("--timeout", type=float, default=2.0, help="per request, seconds")
    sub.add_argument("--option", action="append", metavar="CHANNEL.NAME=VALUE",
                     help="channel setting, e.g. jd.merchant=110000001 jd.key=...")
    sub.add_argument("--no-seed", action="store_true", help="cards are seeded already")
    sub.add_argument("--out", type=Path, help=f"output folder (default {RESULTS_DIR}/...)")
    sub.add_argument("--quiet", action="store_true", help="no progress line")
    admin_option(sub)
    card_options(sub)


def part_options(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--part", metavar="K/N", help="run the K-th of N parts of the run, one "
                     "per host, each with the same options: a share of the rate, the "
                     "connections and the workers, ids of its own; writes part-K-of-N.json for "
                     "`loadtest merge`; seeds nothing (docs/loadtest.md, \"Several hosts\")")
    sub.add_argument("--start-at", type=float, metavar="EPOCH", help="the first intended send "
                     "at this wall-clock time (seconds since the epoch, `date +%%s`), at most "
                     "an hour ahead: the parts of a run start together")
    sub.add_argument("--run-id", metavar="ID", help="1-12 letters and digits in every id the "
                     "run sends (default: new; for a part, made from --start-at): the same on "
                     "every part")


def admin_option(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--admin-url", metavar="URL", help="the switch's admin API, e.g. "
                     "http://127.0.0.1:8680: its /metrics is read once a second and the "
                     "report shows the switch's side (docs/loadtest.md)")


if __name__ == "__main__":
    sys.exit(main())

