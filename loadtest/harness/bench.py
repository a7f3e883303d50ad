"""`make bench`: the switch's highest sustainable rate next to what bounds it, in one run.

(a) the switch (its own process, private Redis) per ISO 8583/JD channel: find-max at p99 <= 5 ms;
(b) the ceiling: an echo server (uvloop + asyncio.Protocol) driven by the same generator;
(c) Redis alone running the switch's authorize function, pipelined;
(d) a straightforward reference server (streams, plain decoding, one FCALL per request).
Then the ratios of (a) to each. Results go to bench-results/bench-<date>.json and .md.

The bench is a harness: it starts a private redis-server (switch.redis_runner) and builds
the authorize call with switch.ledger (see ledger_calls.py); the load generator it drives
is the ordinary one, speaking to every server over TCP.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import msgspec

from loadtest.generator import adapters
from loadtest.generator.cards import seed_cards
from loadtest.generator.client import Target
from loadtest.generator.event_loop import run_async
from loadtest.generator.findmax import Criteria, Step, find_max
from loadtest.generator.runner import Plan, new_run_id
from loadtest.generator.workload import load_test_pans
from loadtest.harness import redis_rate
from loadtest.harness.bench_report import machine, markdown, terminal_table
from protocols.framing import HEADER_FORMATS
from switch.channels import CODECS
from switch.redis_runner import PrivateRedis

CARDS = 20_000  # enough that the policy's per-card velocity limits stay far away
SEED = 1
SWITCH_CHANNELS = ("pos", "jd")  # measured when the switch has them, in this order
CONNECTIONS = 16  # per channel, as the saturation figure of make bench-scale
START_RATE = 2000.0
GROWTH = 2.0  # then REFINE halvings of the last gap: about ten steps per server
REFINE = 3
RETRIES = 2  # a failing step is tried twice more: other jobs on a shared box cause stalls
READY_TIMEOUT_S = 30.0  # a server process must accept connections within this
STOP_TIMEOUT_S = 10.0
REDIS_CALLS = 300_000
REDIS_DEPTH = 16
REFERENCE_CHANNELS = {  # the straightforward servers loadtest/harness/reference.py has
    "pos": "streams, pyiso8583, one redis-py FCALL per request",
    "jd": "streams, msgspec JSON, one redis-py FCALL per request",
}


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """A server process on free ports; its output goes to a log file."""

    def __init__(self, name: str, argv: list[str], ports: dict[str, int], logs: Path,
                 env: dict[str, str] | None = None) -> None:
        self.name, self.ports = name, ports
        self.log = logs / f"{name}.log"
        with self.log.open("w") as log:
            self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, env=env)

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        pending = set(self.ports.values())
        while pending:
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.name} did not start; see {self.log}:\n"
                                   f"{self.log.read_text()[-2000:]}")
            for port in list(pending):
                with socket.socket() as probe:
                    if probe.connect_ex(("127.0.0.1", port)) == 0:
                        pending.discard(port)
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def switch_channels() -> list[str]:
    """The switch's channels that the load generator can also speak, POS first."""
    return [ch for ch in SWITCH_CHANNELS if ch in CODECS and ch in adapters.ADAPTERS]


async def measure_target(label: str, channel: str, port: int, redis_url: str,
                         args: argparse.Namespace) -> dict:
    say(f"\n== {label}: find-max, p99 <= {args.p99_ms:g} ms, {args.step_duration:g} s steps")
    plan = Plan(rate=START_RATE, duration_s=args.step_duration, mix={channel: 1},
                targets={channel: Target("127.0.0.1", port)}, connections=CONNECTIONS,
                cards=CARDS, seed=SEED, workers=args.workers, redis_url=redis_url)
    criteria = Criteria(p99_ms=args.p99_ms, start_rate=START_RATE, growth=GROWTH,
                        refine=REFINE, retries=RETRIES)

    def show(step: Step) -> None:
        p99 = f"{step.p99_ms:.3f} ms" if step.p99_ms is not None else "-"
        say(f"   {step.rate:>9,.0f}/s  achieved {step.achieved:>10,.1f}/s  p99 {p99:>11}  "
            f"failures {step.failures:>6}  {'pass' if step.passed else 'FAIL'}")

    search = await find_max(plan, criteria, show)
    best = search.best
    p99 = best.totals["all"].percentiles_ms().get("p99") if best else None
    say(f"   -> {search.best_rate:,.0f}/s")
    return {"label": label, "rate": search.best_rate, "p99_ms": p99,
            "steps": msgspec.to_builtins(search.steps)}


async def run_bench(args: argparse.Namespace, logs: Path) -> dict:
    private = PrivateRedis(logs / "redis")
    url = private.start()
    channels = switch_channels()
    results: dict = {"channels": channels, "switch": {}, "ceiling": {}, "reference": {},
                     "settings": {
                         "p99_target_ms": args.p99_ms, "step_duration_s": args.step_duration,
                         "connections": CONNECTIONS, "generator_workers": args.workers,
                         "switch_workers": args.switch_workers,
                         "cards": CARDS, "start_rate": START_RATE, "growth": GROWTH}}
    try:
        say(f"private Redis at {url}; {CARDS:,} cards, seeded afresh before every step")
        pans = load_test_pans(CARDS, SEED)
        seed_cards(url, pans)
        results["redis"] = await measure_redis(url, pans)
        ports = {ch: free_port() for ch in channels}
        listen = [f"--listen={ch}=127.0.0.1:{port}" for ch, port in ports.items()]
        serve = ["serve", "--redis", url, f"--workers={args.switch_workers}", *listen]
        async with serving("switch", python_module("switch.cli", *serve), ports, logs):
            for channel in channels:
                results["switch"][channel] = await measure_target(
                    f"(a) switch, {channel} channel", channel, ports[channel], url, args)
        for channel in channels:
            port = free_port()
            header = adapters.build(channel).header
            header_name = next(n for n, h in HEADER_FORMATS.items() if h == header)
            async with serving(f"echo-{channel}", python_module(
                    "loadtest.harness.echo", "--port", str(port), "--header", header_name),
                    {channel: port}, logs):
                results["ceiling"][channel] = await measure_target(
                    f"(b) ceiling: echo server, {channel} frames", channel, port, "", args)
        for channel in channels:
            if channel not in REFERENCE_CHANNELS:
                continue
            if channel == "pos" and importlib.util.find_spec("iso8583") is None:
                say("\n(d) reference for pos skipped: pyiso8583 is not installed (make test "
                    "installs it)")
                continue
            port = free_port()
            async with serving(f"reference-{channel}", python_module(
                    "loadtest.harness.reference", "--channel", channel, "--port", str(port),
                    "--redis", url), {channel: port}, logs):
                results["reference"][channel] = await measure_target(
                    f"(d) reference: {REFERENCE_CHANNELS[channel]}", channel, port, url, args)
    finally:
        private.stop()
    return results


@contextlib.asynccontextmanager
async def serving(name: str, argv: list[str], ports: dict[str, int], logs: Path,
                  env: dict[str, str] | None = None):
    """`env`: the server process' environment (default: this process')."""
    server = Server(name, argv, ports, logs, env)
    try:
        await asyncio.to_thread(server.wait_ready)
        yield server
    finally:
        server.stop()


async def measure_redis(url: str, pans: list[str]) -> dict:
    say(f"\n== (c) Redis alone: the authorize function, {REDIS_CALLS:,} calls pipelined "
        f"{REDIS_DEPTH} deep")
    result = await redis_rate.measure_with_redis_benchmark(url, pans[0], REDIS_CALLS,
                                                           REDIS_DEPTH)
    if result is None:
        say("   (no redis-benchmark: a raw asyncio pipeline from Python measures instead)")
        result = await redis_rate.measure(url, pans, REDIS_CALLS, REDIS_DEPTH,
                                          run_tag=new_run_id())
        result["client"] = "python asyncio raw pipeline"
    say(f"   -> {result['rate']:,.0f}/s ({result['client']})")
    return result


def add_command(commands) -> None:
    """`loadtest bench`, among the subcommands of the `loadtest` command."""
    bench = commands.add_parser("bench", help="`make bench`: switch vs ceiling vs Redis vs "
                                "a straightforward server, side by side")
    bench.set_defaults(func=main)
    bench.add_argument("--out", type=Path, default=Path("bench-results"))
    bench.add_argument("--step-duration", type=float, default=2.0, help="seconds per step")
    bench.add_argument("--p99-ms", type=float, default=5.0)
    bench.add_argument("--workers", type=int, default=1, help="load generator processes")
    bench.add_argument("--runs", type=int, default=1, help="repeat, report medians")
    bench.add_argument("--switch-workers", type=int, default=1,
                       help="switch serve --workers (processes sharing the ports)")


def main(args: argparse.Namespace) -> int:
    began = time.time()
    say(f"bench: {machine()['summary']}; {args.runs} run(s) of a few minutes each")
    runs = []
    for number in range(1, args.runs + 1):
        if args.runs > 1:
            say(f"\n######## run {number} of {args.runs}")
        with tempfile.TemporaryDirectory(prefix="bench-") as folder:
            try:
                runs.append(run_async(run_bench(args, Path(folder))))
            except RuntimeError as error:
                say(f"bench: {error}")
                return 2
    results = median_of(runs)
    results["machine"] = machine()
    results["date"] = time.strftime("%Y-%m-%d %H:%M:%S %z", time.localtime(began))
    results["seconds"] = round(time.time() - began)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(began))
    args.out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = args.out / f"bench-{stamp}.json", args.out / f"bench-{stamp}.md"
    json_path.write_bytes(msgspec.json.format(msgspec.json.encode(results), indent=2))
    md_path.write_text(markdown(results))
    print(terminal_table(results))
    print(f"\nwritten: {json_path} and {md_path} ({results['seconds']} s)")
    return 0


def median_of(runs: list[dict]) -> dict:
    """One result whose every rate is the median over the runs; the runs themselves kept."""
    first = runs[0]
    merged = {key: first[key] for key in ("channels", "settings")}
    for part in ("switch", "ceiling", "reference"):
        merged[part] = {}
        for channel in first[part]:
            entries = [run[part][channel] for run in runs if channel in run[part]]
            middle = sorted(entries, key=lambda e: e["rate"])[(len(entries) - 1) // 2]
            merged[part][channel] = {**middle, "rates": [e["rate"] for e in entries]}
    redis = sorted((run["redis"] for run in runs), key=lambda r: r["rate"])
    merged["redis"] = {**redis[(len(redis) - 1) // 2], "rates": [r["rate"] for r in redis]}
    merged["settings"] = {**first["settings"], "runs": len(runs)}
    merged["runs"] = runs if len(runs) > 1 else []
    return merged
