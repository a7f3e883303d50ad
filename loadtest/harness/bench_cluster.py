"""`make bench-cluster`: the switch on one Redis and on a Redis Cluster of 3 masters, with
`--workers 1` and `2`, side by side in one run, and what each process spends per answer.

Configurations (CONFIGURATIONS), every one started at the beginning and kept: its Redis
(switch.redis_runner's PrivateRedis or PrivateCluster), seeded once with the load-test
cards, and its `switch serve` (POS). Then, in rounds, each configuration once per round
(so the shared machine's noise hits each alike):

1. closed loop (saturation): 16 connections x 32 in flight on POS, `--duration` s after
   0.5 s of warm-up: throughput, p50, p99;
2. open loop at one fixed rate for all (`--rate`, by default half of the slowest
   configuration's median saturation rate): p50, p99.

During each run, every process' CPU time (utime + stime, /proc/PID/stat: proc_cpu.py) is
read once a second, with the answers of that second; its CPU per answer is its CPU between
the first and the last reading over the answers between them: each switch process, each
Redis node (masters and replicas), the load client (this process and its workers).

3. The ceiling of ONE card: its master alone running the switch's authorize function on
   that card, pipelined (redis-benchmark, as `make bench`'s (c)), and that master's CPU per
   call: all load on one card is all load on one Redis core.

Results: bench-results/cluster-<date>.json (every run) and .md (bench_cluster_report.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import os
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import redis

from loadtest.generator.cards import seed_cards
from loadtest.generator.client import Target
from loadtest.generator.closed_loop import SaturatePlan
from loadtest.generator.closed_loop_runner import run_saturate
from loadtest.generator.runner import Plan, new_run_id, run_load
from loadtest.generator.workload import load_test_pans
from loadtest.harness import bench_cluster_report as report
from loadtest.harness import redis_rate
from loadtest.harness.bench import Server
from loadtest.harness.bench_report import machine
from loadtest.harness.bench_scale import (
    CARDS,
    OPEN_LOOP_CONNECTIONS,
    SATURATION_CONNECTIONS,
    SATURATION_INFLIGHT,
    SEED,
    WARMUP_S,
    figures,
    open_loop_figures,
    run_in_folder,
    say,
    switch_process,
)
from loadtest.harness.proc_cpu import (
    TICKS_PER_S,
    US_PER_S,
    CpuWindow,
    Watched,
    children,
    command_line,
    cpu_ticks,
    process_tree,
    us_per_answer,
)
from protocols.ledger_layout import card_key
from switch.redis_client import slot_of
from switch.redis_runner import PrivateCluster, PrivateRedis

CHANNEL = "pos"
MASTERS = 3
OPEN_LOOP_SHARE = 0.5  # of the slowest configuration's saturation rate: a rate all sustain
HOT_CARD_DEPTH = 16  # calls per pipeline, as `make bench`'s Redis-alone figure
HOT_CARD_CLIENTS = 2


@dataclasses.dataclass(frozen=True)
class Configuration:
    title: str
    backend: str  # a key of BACKENDS
    workers: int  # switch serve --workers
    options: tuple[str, ...] = ()  # more switch serve options


BACKENDS = {  # name -> (masters, replicas of each; 0 masters: one Redis, not a cluster)
    "redis": (0, 0),
    "cluster": (MASTERS, 0),
    "cluster-replicas": (MASTERS, 1),
}
CONFIGURATIONS = {
    "redis-w1": Configuration("one Redis, switch --workers 1", "redis", 1),
    "redis-w2": Configuration("one Redis, switch --workers 2", "redis", 2),
    "cluster-w1": Configuration("cluster of 3 masters, --workers 1", "cluster", 1),
    "cluster-w2": Configuration("cluster of 3 masters, --workers 2", "cluster", 2),
    "durable-w2": Configuration("3 masters + a replica each, --durable-replicas 1, "
                                "--workers 2", "cluster-replicas", 2,
                                ("--durable-replicas", "1")),
}
QUICK = {"rounds": 1, "duration": 2.2, "open_duration": 2.5, "hot_card_calls": 5000}


@dataclasses.dataclass
class Backend:
    url: str
    nodes: list[Watched]  # every redis-server, as the CPU windows count them
    ports: dict[int, int]  # port -> pid of its redis-server

    def master_of(self, key: str) -> tuple[str, Watched]:
        """The URL and the process of the master serving `key` (on a single Redis: it)."""
        client = redis.Redis.from_url(self.url)
        try:
            port = client.connection_pool.connection_kwargs["port"]
            if client.info("cluster").get("cluster_enabled"):
                slot = slot_of(key)
                port = next(int(master[1]) for first, last, master, *_ in
                            client.execute_command("CLUSTER", "SLOTS") if first <= slot <= last)
        finally:
            client.close()
        node = next(n for n in self.nodes if n.pid == self.ports[port])
        return f"redis://127.0.0.1:{port}/0", node


@contextlib.contextmanager
def started_backend(name: str, folder: Path) -> Iterator[Backend]:
    masters, replicas = BACKENDS[name]
    if not masters:
        single = PrivateRedis(folder / name)
        try:
            single.start()
            yield Backend(single.url, [Watched(single.process.pid, "redis", "redis")],
                          {single.port: single.process.pid})
        finally:
            single.stop()
        return
    cluster = PrivateCluster(folder / name, masters=masters, replicas=replicas)
    try:
        cluster.start()
        nodes = [Watched(n.process.pid, "redis", f"master {i + 1}")
                 for i, n in enumerate(cluster.nodes)]
        nodes += [Watched(n.process.pid, "replica", f"replica {i + 1}")
                  for i, n in enumerate(cluster.replicas)]
        yield Backend(cluster.url, nodes, {n.port: n.process.pid
                                            for n in cluster.nodes + cluster.replicas})
    finally:
        cluster.stop()


@dataclasses.dataclass
class Running:
    """A configuration while the bench runs: its switch process and its Redis."""

    name: str
    configuration: Configuration
    backend: Backend
    server: Server

    def port(self) -> int:
        return self.server.ports[CHANNEL]

    def watched(self) -> list[Watched]:
        root = "switch" if self.configuration.workers == 1 else "switch supervisor"
        switch = process_tree(self.server.process.pid, "switch", root, "switch worker")
        return switch + self.backend.nodes + client_processes()


def client_processes() -> list[Watched]:
    """This process (the closed loop's one worker runs here, and the open loop's parent)
    and the load generator's spawned workers (the switches and Redis are children too)."""
    me = os.getpid()
    out = [Watched(me, "client", "load client")]
    for pid in children(me):
        if "multiprocessing" in command_line(pid):
            out += process_tree(pid, "client", "load client worker", "load client helper")
    return out


async def closed_loop(running: Running, duration_s: float) -> dict:
    window = CpuWindow(running.watched)
    plan = SaturatePlan(targets={CHANNEL: Target("127.0.0.1", running.port())},
                        connections=SATURATION_CONNECTIONS, inflight=SATURATION_INFLIGHT,
                        duration_s=duration_s, warmup_s=WARMUP_S, cards=CARDS, seed=SEED)
    result = await run_saturate(plan, lambda _, answers: window.second(sum(answers.values())))
    return {**figures(result), "cpu": window.result()}


async def open_loop(running: Running, rate: float, duration_s: float) -> dict:
    window = CpuWindow(running.watched)
    plan = Plan(rate=rate, duration_s=duration_s, mix={CHANNEL: 1},
                targets={CHANNEL: Target("127.0.0.1", running.port())},
                connections=OPEN_LOOP_CONNECTIONS, cards=CARDS, seed=SEED)
    result = await run_load(plan, lambda _, totals: window.second(totals.counts["answered"]))
    return {**open_loop_figures(result), "cpu": window.result()}


def progress_line(run: dict) -> str:
    cpu = report.cpu_by_role(run["cpu"])
    shown = "  ".join(f"{role} {us:,.0f}" for role, us in cpu.items() if us is not None)
    return (f"   round {run['round']}  {run['configuration']:<11} {run['workload']:<6} "
            f"{run['rate']:>9,.0f}/s  p50 {run['p50'] or 0:7.2f}  p99 {run['p99'] or 0:7.2f} ms"
            f"  failures {run['failures']}  CPU us/answer: {shown}")


async def rounds(workload: str, running: list[Running], count: int, measure) -> list[dict]:
    runs = []
    for number in range(1, count + 1):
        for one in running:
            load = os.getloadavg()[0]
            run = {"configuration": one.name, "workload": workload, "round": number,
                   "load_average": round(load, 2), **await measure(one)}
            runs.append(run)
            say(progress_line(run))
    return runs


async def hot_card(backend: Backend, pan: str, calls: int) -> dict:
    """All load on one card: its master alone, the switch's authorize on that card."""
    url, master = backend.master_of(card_key(pan))
    before, began = cpu_ticks(master.pid), time.monotonic()
    found = await redis_rate.measure_with_redis_benchmark(url, pan, calls, HOT_CARD_DEPTH,
                                                          HOT_CARD_CLIENTS)
    if found is None:  # no redis-benchmark: the Python client, a weaker one
        found = await redis_rate.measure(url, [pan], calls, HOT_CARD_DEPTH, HOT_CARD_CLIENTS,
                                         run_tag=new_run_id())
        found["client"] = "python asyncio raw pipeline"
    seconds, ticks = time.monotonic() - began, cpu_ticks(master.pid) - before
    per_call = us_per_answer(ticks, calls)
    # On a shared machine the master may not get a whole core: its CPU per call says what
    # one would give it.
    return {**found, "master": master.name, "master_us_per_call": per_call,
            "master_busy": round(ticks / TICKS_PER_S / seconds, 2),
            "whole_core_rate": round(US_PER_S / per_call) if per_call else None}


async def run_cluster_bench(args: argparse.Namespace, logs: Path) -> dict:
    names = chosen(args.configurations)  # checked already by main
    pans = load_test_pans(CARDS, SEED)
    results: dict = {"settings": settings(args, names)}
    async with contextlib.AsyncExitStack() as stack:
        backends = {}
        for backend in dict.fromkeys(CONFIGURATIONS[n].backend for n in names):
            found = stack.enter_context(started_backend(backend, logs))
            await asyncio.to_thread(seed_cards, found.url, pans)
            backends[backend] = found
            say(f"{backend}: {found.url}, {len(found.nodes)} redis-server(s), "
                f"{CARDS:,} cards seeded")
        running = []
        for name in names:
            configuration = CONFIGURATIONS[name]
            backend = backends[configuration.backend]
            server = await stack.enter_async_context(switch_process(
                name, configuration.workers, backend.url, logs, configuration.options))
            running.append(Running(name, configuration, backend, server))
        say(f"\n== 1. closed loop: {SATURATION_CONNECTIONS} x {SATURATION_INFLIGHT} in flight, "
            f"{args.duration:g} s, {args.rounds} round(s)")
        closed = await rounds("closed", running, args.rounds,
                              lambda one: closed_loop(one, args.duration))
        rate = args.rate or report.open_loop_rate(closed, OPEN_LOOP_SHARE)
        say(f"\n== 2. open loop at {rate:,.0f}/s, {args.open_duration:g} s, "
            f"{args.rounds} round(s)")
        opened = await rounds("open", running, args.rounds,
                              lambda one: open_loop(one, rate, args.open_duration))
        results["runs"] = closed + opened
        results["open_loop_rate"] = rate
        hot = backends.get("cluster") or next(iter(backends.values()))
        say(f"\n== 3. one card's ceiling: {args.hot_card_calls:,} authorize calls on one card, "
            f"its master alone")
        results["hot_card"] = await hot_card(hot, pans[0], args.hot_card_calls)
        say(f"   -> {results['hot_card']['rate']:,.0f}/s on {results['hot_card']['master']}, "
            f"{results['hot_card']['master_us_per_call']} us of its CPU per call")
    return results


def chosen(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in CONFIGURATIONS]
    if unknown or not names:
        raise ValueError(f"--configurations: {', '.join(unknown) or 'none given'}; choose "
                         f"from {', '.join(CONFIGURATIONS)}")
    return names


def settings(args: argparse.Namespace, names: list[str]) -> dict:
    return {"channel": CHANNEL, "cards": CARDS, "seed": SEED, "rounds": args.rounds,
            "closed_loop": {"connections": SATURATION_CONNECTIONS,
                            "inflight": SATURATION_INFLIGHT, "duration_s": args.duration,
                            "warmup_s": WARMUP_S},
            "open_loop": {"connections": OPEN_LOOP_CONNECTIONS,
                          "duration_s": args.open_duration, "share": OPEN_LOOP_SHARE},
            "configurations": {name: described(name) for name in names}}


def described(name: str) -> dict:
    configuration = CONFIGURATIONS[name]
    masters, replicas = BACKENDS[configuration.backend]
    return {**dataclasses.asdict(configuration), "masters": masters,
            "replicas_per_master": replicas}


def add_command(commands) -> None:
    """`loadtest bench-cluster`, among the subcommands of the `loadtest` command."""
    bench = commands.add_parser(
        "bench-cluster", help="`make bench-cluster`: one Redis against a 3-master Redis "
        "Cluster, switch --workers 1 and 2, closed and open loop side by side, CPU per answer "
        "of every process, one card's ceiling",
        description="Starts a private Redis, a private cluster of 3 masters (and one with a "
        "replica each) and a switch per configuration, then alternates them in rounds. "
        "Progress on stderr, the tables on stdout, JSON and Markdown in --out. "
        "See docs/loadtest.md and docs/capacity.md.")
    bench.set_defaults(func=main)
    bench.add_argument("--out", type=Path, default=Path("bench-results"),
                       help="folder of the JSON and Markdown results (bench-results)")
    bench.add_argument("--rounds", type=int, default=3,
                       help="rounds, each configuration once per round; medians reported (3)")
    bench.add_argument("--duration", type=float, default=4.0,
                       help="measured seconds of each closed-loop run (4)")
    bench.add_argument("--open-duration", type=float, default=6.0,
                       help="seconds of each open-loop run (6)")
    bench.add_argument("--rate", type=float, default=0.0,
                       help="open-loop rate, requests/s (default: half of the slowest "
                       "configuration's median saturation rate)")
    bench.add_argument("--hot-card-calls", type=int, default=200_000,
                       help="authorize calls on the one card of the ceiling (200,000)")
    bench.add_argument("--configurations", default=",".join(CONFIGURATIONS),
                       help=f"comma-separated, from {', '.join(CONFIGURATIONS)} (all)")
    bench.add_argument("--quick", action="store_true",
                       help="a smoke run: one round of about 2 s runs, 5,000 calls on the card")


def main(args: argparse.Namespace) -> int:
    if args.quick:
        for name, value in QUICK.items():
            setattr(args, name, value)
    if args.rounds < 1 or args.duration <= 0 or args.open_duration <= 0 or args.rate < 0:
        raise ValueError("--rounds, --duration and --open-duration must be positive, --rate "
                         "not negative")
    if args.hot_card_calls < 1:
        raise ValueError("--hot-card-calls must be positive")
    chosen(args.configurations)
    load = os.getloadavg()
    say(f"bench-cluster: {machine()['summary']}; load average {load[0]:.2f}; "
        f"{'a quick smoke run' if args.quick else 'a few minutes'}")
    results = run_in_folder("bench-cluster", lambda folder: run_cluster_bench(args, folder))
    if results is None:
        return 2
    results |= {"load_average": {"start": [round(x, 2) for x in load],
                                 "end": [round(x, 2) for x in os.getloadavg()]},
                "quick": args.quick, "summary": report.summarize(results["runs"])}
    stamp = results["stamp"]
    args.out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = args.out / f"cluster-{stamp}.json", args.out / f"cluster-{stamp}.md"
    json_path.write_bytes(msgspec.json.format(msgspec.json.encode(results), indent=2))
    md_path.write_text(report.markdown(results))
    print(report.terminal(results))
    print(f"\nwritten: {json_path} and {md_path} ({results['seconds']} s)")
    return 0
