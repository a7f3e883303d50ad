"""`make bench-scale`: the scaling targets' figures, measured side by side in one run here.

1. Closed-loop saturation (generator/closed_loop.py), 16 connections x 32 in flight, POS then JD, on
   (a) the switch as one process, (a2) the switch as two processes (`--workers 2`), (d) the
   straightforward reference server (reference.py) and (b) an echo server (what the client
   itself can drive): in rounds, each round every server once, medians reported; ratios
   (a)/(d) and (a2)/(d), the target being 5x.
2. Redis round trips per authorization at saturation: the switch processes of part 1 serve
   nothing else; they are stopped with SIGTERM after it and their own `counters:` lines
   are read from their logs (switch_counters.py).
3. Open loop at half of the sustainable rate (POS): find-max (p99 <= 5 ms, as `make bench`)
   gives the sustainable rate, then one run at half of it gives p99 and p99.9 (targets:
   2 ms and 10 ms); where this process may, the same run again with the switch, Redis and
   the generator at real-time priority (realtime.py).
4. Throughput and latency as connections grow, 1, 10, 100, 1,000 (closed loop, POS, the
   switch with one and with two processes), min(8, 1000 / connections) in flight per
   connection, so the total stays at most 1,000.
5. Memory per card in Redis at 1k, 100k and 1M cards, idle and after one approval
   (memory.py), each on its own private redis-server.

Results: bench-results/scale-<date>.json, .md and three SVG curves (bench_scale_report.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import msgspec

from loadtest.generator import adapters
from loadtest.generator.cards import seed_cards
from loadtest.generator.client import Target
from loadtest.generator.closed_loop import SaturatePlan
from loadtest.generator.closed_loop_runner import ALL, SaturateResult, run_saturate
from loadtest.generator.event_loop import run_async
from loadtest.generator.runner import Plan, run_load
from loadtest.generator.workload import load_test_pans
from loadtest.harness import memory, realtime
from loadtest.harness.bench import free_port, measure_target, python_module, serving
from loadtest.harness.bench_report import machine
from loadtest.harness.bench_scale_report import write_all
from loadtest.harness.switch_counters import parse_counters
from protocols.framing import HEADER_FORMATS
from switch.redis_runner import PrivateRedis

CARDS = 20_000  # as `make bench`: the policy's per-card velocity limits stay far away
SEED = 1
CHANNELS = ("pos", "jd")
SATURATION_CONNECTIONS = 16  # the saturation target's setting: 16 connections x 32 in flight
SATURATION_INFLIGHT = 32
WARMUP_S = 0.5  # connections filled and the servers' caches warm before the window
SCALE_CONNECTIONS = (1, 10, 100, 1000)
SCALE_INFLIGHT_MAX = 8  # per connection
SCALE_TOTAL_INFLIGHT_MAX = 1000  # in flight over all connections, at most
SCALE_DURATION_S = 3.0
READY_TIMEOUT_S = 30.0  # the switch's banner (every worker listening) within this
OPEN_LOOP_CONNECTIONS = 16
OPEN_LOOP_TARGETS_MS = {"p99": 2.0, "p99.9": 10.0}
FIND_MAX_P99_MS = 5.0
FIND_MAX_STEP_S = 2.0
SATURATION_TARGET_RATIO = 5.0
VISANET_RATE = 65_000  # messages/s, VisaNet's published capacity: the scaling targets' aim
ROUND_TRIPS_TARGET = 0.2
PARTS = ("saturation", "openloop", "scaling", "memory")
SERVERS = {  # name -> what it is, in the order of each round
    "switch-1": "(a) switch, 1 process",
    "switch-2": "(a2) switch, 2 processes (--workers 2)",
    "reference": "(d) reference: streams, plain decoding, one FCALL per request",
    "echo": "(b) echo server: what this client can drive",
}


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def scale_inflight(connections: int) -> int:
    return max(1, min(SCALE_INFLIGHT_MAX, SCALE_TOTAL_INFLIGHT_MAX // connections))


def figures(result: SaturateResult, channel: str = ALL) -> dict:
    summary = result.channel_summary(channel)
    pct = summary["latency_ms"]
    return {"rate": summary["rate"], **{k: pct.get(k) for k in ("p50", "p99", "p99.9", "max")},
            "failures": summary["failures"], "codes": summary["codes"],
            "duplicates_94": summary["duplicates_94"], "inflight_seen": summary["inflight_seen"]}


async def closed_loop(channel: str, port: int, url: str, connections: int, inflight: int,
                      duration_s: float, workers: int) -> dict:
    plan = SaturatePlan(targets={channel: Target("127.0.0.1", port)}, connections=connections,
                        inflight=inflight, duration_s=duration_s, warmup_s=WARMUP_S,
                        cards=CARDS, seed=SEED, workers=workers, redis_url=url)
    return figures(await run_saturate(plan))


@contextlib.asynccontextmanager
async def switch_process(name: str, workers: int, url: str, logs: Path,
                         options: tuple[str, ...] = ()):
    """`switch serve --workers N [options]` on free ports for POS and JD, yielded once every
    worker listens (its banner is out); on exit SIGTERM, and its counters are in `.counters`."""
    ports = {ch: free_port() for ch in CHANNELS}
    listen = [f"--listen={ch}=127.0.0.1:{port}" for ch, port in ports.items()]
    argv = python_module("switch.cli", "serve", "--redis", url, f"--workers={workers}",
                         *options, *listen)
    async with serving(name, argv, ports, logs) as server:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while "is up" not in server.log.read_text():
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not announce itself; see {server.log}")
            await asyncio.sleep(0.1)
        yield server
    server.counters = parse_counters(server.log.read_text())


@contextlib.asynccontextmanager
async def helper_servers(kind: str, url: str, logs: Path, channels=CHANNELS):
    """The reference or echo servers, one process per channel; yields channel -> port."""
    ports = {ch: free_port() for ch in channels}
    async with contextlib.AsyncExitStack() as stack:
        for channel, port in ports.items():
            if kind == "reference":
                argv = python_module("loadtest.harness.reference", "--channel", channel, "--port",
                                     str(port), "--redis", url)
            else:
                header = adapters.build(channel).header
                name = next(n for n, h in HEADER_FORMATS.items() if h == header)
                argv = python_module("loadtest.harness.echo", "--port", str(port), "--header", name)
            await stack.enter_async_context(serving(f"{kind}-{channel}", argv,
                                                    {channel: port}, logs))
        yield ports


async def saturation(url: str, args: argparse.Namespace, logs: Path) -> dict:
    say(f"\n== 1. closed-loop saturation: {SATURATION_CONNECTIONS} connections x "
        f"{SATURATION_INFLIGHT} in flight, {args.duration:g} s each, {args.rounds} round(s)")
    runs: list[dict] = []
    async with contextlib.AsyncExitStack() as stack:
        one = await stack.enter_async_context(switch_process("switch-1", 1, url, logs))
        two = await stack.enter_async_context(switch_process("switch-2", 2, url, logs))
        ports = {"switch-1": one.ports, "switch-2": two.ports,
                 "reference": await stack.enter_async_context(
                     helper_servers("reference", url, logs)),
                 "echo": await stack.enter_async_context(helper_servers("echo", "", logs))}
        for number in range(1, args.rounds + 1):
            for server in SERVERS:
                for channel in CHANNELS:
                    seeded = "" if server == "echo" else url
                    run = await closed_loop(channel, ports[server][channel], seeded,
                                            SATURATION_CONNECTIONS, SATURATION_INFLIGHT,
                                            args.duration, args.workers)
                    runs.append({"server": server, "channel": channel, "round": number, **run})
                    say(f"   round {number}  {server:<9} {channel:<4} {run['rate']:>9,.0f}/s  "
                        f"p99 {run['p99'] or 0:8.3f} ms  failures {run['failures']}  "
                        f"94s {run['duplicates_94']}")
    counters = {"switch-1": one.counters, "switch-2": two.counters}
    for name, found in counters.items():
        per_call = found.get("round_trips_per_call") if found else None
        say(f"   {name} counters at exit: {found and found.get('redis_calls')} Redis calls, "
            f"{found and found.get('redis_round_trips')} round trips: {per_call} per call")
    return {"connections": SATURATION_CONNECTIONS, "inflight": SATURATION_INFLIGHT,
            "duration_s": args.duration, "warmup_s": WARMUP_S, "rounds": args.rounds,
            "servers": SERVERS, "runs": runs, "median": medians(runs), "counters": counters}


def medians(runs: list[dict]) -> dict:
    """server -> channel -> the run with the median rate (upper median), with every rate."""
    out: dict = {}
    for server in SERVERS:
        for channel in CHANNELS:
            mine = [r for r in runs if r["server"] == server and r["channel"] == channel]
            if mine:
                middle = sorted(mine, key=lambda r: r["rate"])[len(mine) // 2]
                out.setdefault(server, {})[channel] = {
                    **middle, "rates": [r["rate"] for r in mine],
                    "median_rate": statistics.median(r["rate"] for r in mine)}
    return out


async def open_loop(url: str, redis_pid: int, args: argparse.Namespace, logs: Path) -> dict:
    say("\n== 3. open loop at half of the sustainable rate (POS)")
    search_args = argparse.Namespace(p99_ms=FIND_MAX_P99_MS, step_duration=FIND_MAX_STEP_S,
                                     workers=1)
    async with switch_process("switch-openloop", 1, url, logs) as server:
        port = server.ports["pos"]
        found = await measure_target("switch (1 process), pos channel", "pos", port, url,
                                     search_args)
        half = found["rate"] / 2
        if not half:
            return {"sustainable": found, "half": None}
        say(f"   open loop at {half:,.0f}/s for {args.half_duration:g} s")
        plan = Plan(rate=half, duration_s=args.half_duration, mix={"pos": 1},
                    targets={"pos": Target("127.0.0.1", port)},
                    connections=OPEN_LOOP_CONNECTIONS, cards=CARDS, seed=SEED, redis_url=url)
        out = open_loop_figures(await run_load(plan))
        say(f"   -> p99 {out['p99']} ms, p99.9 {out['p99.9']} ms, failures {out['failures']}")
        out_realtime = await open_loop_realtime(plan, [server.process.pid, redis_pid])
    say("   the same against the echo server (the generator's and the machine's floor)")
    async with helper_servers("echo", "", logs, ("pos",)) as ports:
        echo_plan = msgspec.structs.replace(plan, targets={"pos": Target("127.0.0.1",
                                                                         ports["pos"])},
                                            redis_url="")
        floor = open_loop_figures(await run_load(echo_plan))
    say(f"   -> p99 {floor['p99']} ms, p99.9 {floor['p99.9']} ms")
    return {"sustainable": {k: found[k] for k in ("rate", "p99_ms", "steps")}, "half": out,
            "half_realtime": out_realtime, "echo_floor": floor,
            "targets_ms": OPEN_LOOP_TARGETS_MS}


async def open_loop_realtime(plan: Plan, server_pids: list[int]) -> dict:
    """The same run with the switch, Redis and the generator at real-time priority: what
    is left of the tail when no process waits for a core (realtime.py)."""
    reason = realtime.unavailable()
    if reason:
        say(f"   the same at real-time priority: skipped ({reason})")
        return {"unavailable": reason}
    say("   the same with the switch, Redis and the generator at real-time priority")
    with realtime.realtime(server_pids):
        out = open_loop_figures(await run_load(plan))
    say(f"   -> p99 {out['p99']} ms, p99.9 {out['p99.9']} ms, failures {out['failures']}")
    return out


def open_loop_figures(result) -> dict:
    totals = result.totals[ALL]
    pct = totals.percentiles_ms()
    return {"rate": result.plan.rate, "achieved": round(result.achieved_rate, 1),
            **{k: pct.get(k) for k in ("p50", "p90", "p99", "p99.9", "p99.99", "max")},
            "failures": totals.failures, "behind": totals.counts["behind"],
            "codes": dict(sorted(totals.codes.items()))}


async def scaling(url: str, args: argparse.Namespace, logs: Path) -> dict:
    say(f"\n== 4. connections 1 .. 1,000 (closed loop, POS, {SCALE_DURATION_S:g} s each)")
    points = []
    async with contextlib.AsyncExitStack() as stack:
        servers = {workers: await stack.enter_async_context(
            switch_process(f"switch-scale-{workers}", workers, url, logs)) for workers in (1, 2)}
        for connections in SCALE_CONNECTIONS:
            inflight = scale_inflight(connections)
            for workers, server in servers.items():
                run = await closed_loop("pos", server.ports["pos"], url, connections, inflight,
                                        SCALE_DURATION_S, args.workers)
                points.append({"switch_processes": workers, "connections": connections,
                               "inflight": inflight, "total_inflight": connections * inflight,
                               **run})
                say(f"   {connections:>5} x {inflight}  switch x{workers}  "
                    f"{run['rate']:>9,.0f}/s  p99 {run['p99'] or 0:8.3f} ms  "
                    f"failures {run['failures']}")
    return {"duration_s": SCALE_DURATION_S, "points": points,
            "inflight_rule": f"min({SCALE_INFLIGHT_MAX}, {SCALE_TOTAL_INFLIGHT_MAX:,} / "
                             "connections) per connection"}


async def run_scale_bench(args: argparse.Namespace, logs: Path) -> dict:
    skip = {part.strip() for part in args.skip.split(",") if part.strip()}
    if skip - set(PARTS):
        raise ValueError(f"--skip: parts are {', '.join(PARTS)}")
    results: dict = {"settings": {"cards": CARDS, "seed": SEED, "generator_workers":
                                  args.workers, "channels": list(CHANNELS)}}
    private = PrivateRedis(logs / "redis")
    url = private.start()
    try:
        say(f"private Redis at {url}; {CARDS:,} cards, seeded afresh before every run")
        await asyncio.to_thread(seed_cards, url, load_test_pans(CARDS, SEED))
        if "saturation" not in skip:
            results["saturation"] = await saturation(url, args, logs)
        if "openloop" not in skip:
            results["openloop"] = await open_loop(url, private.process.pid, args, logs)
        if "scaling" not in skip:
            results["scaling"] = await scaling(url, args, logs)
    finally:
        private.stop()
    if "memory" not in skip:
        counts = [int(n) for n in args.memory_cards.split(",") if n.strip()]
        say(f"\n== 5. memory per card in Redis: {', '.join(f'{n:,}' for n in counts)} cards")
        results["memory"] = await asyncio.to_thread(memory.measure, counts, logs, say)
    return results


def add_command(commands) -> None:
    """`loadtest bench-scale`, among the subcommands of the `loadtest` command."""
    bench = commands.add_parser(
        "bench-scale", help="`make bench-scale`: the scaling figures side by side (closed-loop "
        "saturation vs the reference, open loop at half the sustainable rate, Redis round "
        "trips per call, scaling with connections, memory per card)")
    bench.set_defaults(func=main)
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



def run_in_folder(command: str, bench: Callable[[Path], Awaitable[dict]]) -> dict | None:
    """`bench(folder)` in a throw-away folder; its results with the machine, the start
    (`date`, and `stamp` for file names) and the seconds taken. None, the reason said,
    when a process would not start."""
    began = time.time()
    with tempfile.TemporaryDirectory(prefix=f"{command}-") as folder:
        try:
            results = run_async(bench(Path(folder)))
        except RuntimeError as error:
            say(f"{command}: {error}")
            return None
    return results | {"machine": machine(), "seconds": round(time.time() - began),
                      "date": time.strftime("%Y-%m-%d %H:%M:%S %z", time.localtime(began)),
                      "stamp": time.strftime("%Y%m%d-%H%M%S", time.localtime(began))}


def main(args: argparse.Namespace) -> int:
    say(f"bench-scale: {machine()['summary']}; a few minutes")
    results = run_in_folder("bench-scale", lambda folder: run_scale_bench(args, folder))
    if results is None:
        return 2
    results["targets"] = {"saturation_ratio": SATURATION_TARGET_RATIO,
                          "visanet_rate": VISANET_RATE, "round_trips_per_call":
                          ROUND_TRIPS_TARGET, "open_loop_ms": OPEN_LOOP_TARGETS_MS}
    stamp = results["stamp"]
    files = write_all(results, args.out, f"scale-{stamp}")
    json_path = args.out / f"scale-{stamp}.json"
    json_path.write_bytes(msgspec.json.format(msgspec.json.encode(results), indent=2))
    print(files["terminal"])
    curves = f" and the curves {', '.join(str(p) for p in files['svg'])}" if files["svg"] else ""
    print(f"\nwritten: {json_path}, {files['md']}{curves} ({results['seconds']} s)")
    return 0
