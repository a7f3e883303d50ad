"""Runs one load test: splits the plan over workers, starts them together, merges results.

Every worker runs in a process of its own (spawned, so nothing of this process' event loop
is inherited) and sends its snapshots through a queue; this process merges them and shows
progress. A worker's event loop thus does nothing but send and receive: merging a second's
snapshot in it held its sends for ~3 ms a second, counted as latency. Every wait on the
workers is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib.machinery
import multiprocessing
import queue as queue_module
import random
import sys
import time
from collections.abc import Callable

import msgspec

from loadtest.generator.aggregate import OVERALL, Aggregator, Point
from loadtest.generator.cards import seed_cards, seed_tokens
from loadtest.generator.client import LoadTestError, Target, freeze_startup_heap
from loadtest.generator.event_loop import run_async
from loadtest.generator.stats import Interval, Totals
from loadtest.generator.switch_side import Scraper, SwitchSide
from loadtest.generator.worker import Worker, WorkerPlan
from loadtest.generator.workload import CARD_LIMIT_FEN, load_test_pans

START_DELAY_S = 0.2  # from "all connected" to the first intended send, for every worker
WORKER_READY_TIMEOUT_S = 60.0  # spawning a Python process and connecting, on a busy box
WORKER_EXIT_TIMEOUT_S = 5.0
REFERENCE_DELAY_S = 0.5  # a capture/reversal/refund names a transaction about this old
REFERENCE_LAG_STEPS = (16, 5000)  # ... in steps, within these bounds


class Plan(msgspec.Struct, kw_only=True):
    rate: float  # requests per second, all channels and workers together
    duration_s: float
    targets: dict[str, Target]
    mix: dict[str, int]  # channel -> weight
    connections: int = 8  # per channel, shared out over the workers
    inflight_max: int = 128  # per connection
    cards: int = 10_000
    seed: int = 1
    workers: int = 1
    timeout_s: float = 2.0
    options: dict[str, dict[str, str]] = {}
    run_id: str = ""  # prefix of every transaction id; unique per run (see `new_run_id`)
    redis_url: str = ""  # when set, the cards (and tokens) are seeded afresh before the run
    card_limit_fen: int = CARD_LIMIT_FEN
    admin_url: str = ""  # when set, the switch's /metrics is read during the run
    recording: str = ""  # `--from-recording DIR`: its requests instead of synthetic ones


@dataclasses.dataclass
class Result:
    plan: Plan
    started_at: str  # local time, ISO 8601
    elapsed_s: float  # from the first intended send to the last answer or timeout
    totals: dict[str, Totals]  # per channel, plus OVERALL
    series: dict[str, list[Point]]
    switch: SwitchSide | None = None  # the switch's side, with --admin-url

    @property
    def achieved_rate(self) -> float:
        """Answers per second of the planned duration (as wrk2 and k6 count)."""
        return self.totals[OVERALL].counts["answered"] / self.plan.duration_s


def new_run_id() -> str:
    """Base-36 tenths of a second and two random characters: short, and not repeated by a
    later run nor by a run started at the same moment elsewhere."""
    alphabet = "0123456789abcdefghijklmnopqrstuvwxyz"
    tenths = int(time.time() * 10)
    digits = ""
    while tenths:
        tenths, digit = divmod(tenths, 36)
        digits = alphabet[digit] + digits
    return "L" + digits + "".join(random.choice(alphabet) for _ in range(2))


def worker_plans(plan: Plan) -> list[WorkerPlan]:
    run_id = plan.run_id
    rate = plan.rate / plan.workers
    lag = int(min(max(rate * REFERENCE_DELAY_S, REFERENCE_LAG_STEPS[0]), REFERENCE_LAG_STEPS[1]))
    return [
        WorkerPlan(
            index=i, rate=rate, duration_s=plan.duration_s, targets=plan.targets,
            connections=max(1, plan.connections // plan.workers
                            + (i < plan.connections % plan.workers)),
            inflight_max=plan.inflight_max, mix=plan.mix, cards=plan.cards, seed=plan.seed,
            timeout_s=plan.timeout_s, ref_prefix=f"{run_id}w{i}n", lag=lag,
            options=plan.options, recording=plan.recording, workers=plan.workers)
        for i in range(plan.workers)
    ]


async def run_load(plan: Plan, progress: Callable[[int, Totals], None] | None = None) -> Result:
    if plan.rate <= 0 or plan.duration_s <= 0 or plan.workers < 1 or not plan.mix:
        raise LoadTestError("rate, duration and workers must be positive, and the mix not empty")
    if not plan.run_id:
        plan = msgspec.structs.replace(plan, run_id=new_run_id())
    if plan.redis_url:
        await asyncio.to_thread(seed, plan)
    channels = list(plan.mix)
    aggregator = Aggregator(channels, plan.workers, progress)
    started_at = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    plans = worker_plans(plan)
    scraper = Scraper(plan.admin_url) if plan.admin_url else None
    if scraper is not None:
        await scraper.start()
    try:
        first_send = await _run_processes(plans, aggregator)
    finally:
        if scraper is not None:
            await scraper.stop()
    elapsed_s = time.time() - first_send
    aggregator.finish()
    totals = dict(aggregator.totals)
    totals[OVERALL] = aggregator.overall()
    return Result(plan=plan, started_at=started_at, elapsed_s=elapsed_s, totals=totals,
                  series=aggregator.series,
                  switch=scraper.side(first_send) if scraper is not None else None)


def seed(plan: Plan) -> None:
    """The run's cards afresh, and the wallet tokens of its workers when it speaks x-pay."""
    pans = load_test_pans(plan.cards, plan.seed)
    seed_cards(plan.redis_url, pans, plan.card_limit_fen)
    if "xpay" in plan.mix:
        seed_tokens(plan.redis_url, pans, plan.workers)



# --- the worker processes ------------------------------------------------------------------


async def _run_processes(plans: list[WorkerPlan], aggregator: Aggregator) -> float:
    """Runs the workers; returns the wall-clock time of the first intended send."""
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    pipes = [context.Pipe(duplex=False) for _ in plans]
    processes = [context.Process(target=worker_process, daemon=True,
                                 args=(msgspec.msgpack.encode(p), results, pipe[0]))
                 for p, pipe in zip(plans, pipes, strict=True)]
    start_workers(processes)
    try:
        intervals = ("interval", lambda data: aggregator.add(
            msgspec.msgpack.decode(data, type=Interval)))
        await expect(results, "ready", len(plans), WORKER_READY_TIMEOUT_S, intervals)
        start_wall = time.time() + START_DELAY_S
        for _, sender in pipes:
            sender.send(start_wall)
        budget_s = plans[0].duration_s + plans[0].timeout_s + WORKER_READY_TIMEOUT_S
        await expect(results, "done", len(plans), budget_s, intervals)
        return start_wall
    finally:
        join_workers(processes)


@contextlib.contextmanager
def main_not_rerun():
    """Processes spawned within do not run this process' __main__ again.

    A spawned child re-runs the parent's main script, so that what was pickled from it can
    be found; a worker's entry point lives in this package and is handed nothing from
    __main__. The `loadtest` script imports the whole command, the harness and through it
    switch/: re-run in every worker, that was a tenth of a second of CPU each, and switch/
    in a process that is only a client. A __main__ named `__main__` is what spawn leaves
    alone (a package's __main__.py)."""
    main = sys.modules["__main__"]
    spec = getattr(main, "__spec__", None)
    main.__spec__ = importlib.machinery.ModuleSpec("__main__", None)
    try:
        yield
    finally:
        main.__spec__ = spec


def start_workers(processes) -> None:
    """Start spawned worker processes (see `main_not_rerun`)."""
    with main_not_rerun():
        for process in processes:
            process.start()


def join_workers(processes) -> None:
    """Wait (bounded) for worker processes to exit; terminate any that do not."""
    for process in processes:
        process.join(timeout=WORKER_EXIT_TIMEOUT_S)
        if process.is_alive():
            process.terminate()
            process.join(timeout=WORKER_EXIT_TIMEOUT_S)


async def expect(messages, kind: str, count: int, timeout_s: float,
                 progress: tuple[str, Callable[..., None]]) -> list:
    """Read worker messages until `count` of `kind` came (their payloads are returned); a
    message of the progress kind goes to its callback, an error ends the wait."""
    progress_kind, on_progress = progress
    loop = asyncio.get_running_loop()
    deadline = time.monotonic() + timeout_s
    found: list = []
    while len(found) < count:
        if time.monotonic() > deadline:
            raise LoadTestError(f"workers did not report {kind!r} within {timeout_s:.0f} s")
        try:
            message = await loop.run_in_executor(None, messages.get, True, 0.5)
        except queue_module.Empty:
            continue
        if message[0] == "error":
            raise LoadTestError(f"worker {message[1]}: {message[2]}")
        if message[0] == progress_kind:
            on_progress(*message[1:])
        elif message[0] == kind:
            found.append(message[1])
    return found


def worker_process(plan_bytes: bytes, results, start_pipe) -> None:
    """Entry point of a worker process."""
    plan = msgspec.msgpack.decode(plan_bytes, type=WorkerPlan)

    def sink(interval: Interval) -> None:
        results.put(("interval", msgspec.msgpack.encode(interval)))

    def get_start() -> float:
        freeze_startup_heap()
        results.put(("ready", plan.index))
        if not start_pipe.poll(WORKER_READY_TIMEOUT_S):
            raise LoadTestError("no start signal from the parent")
        return start_pipe.recv()

    try:
        run_async(Worker(plan, sink).run(get_start))
        results.put(("done", plan.index))
    except BaseException as error:  # the parent must hear of it, whatever it is
        results.put(("error", plan.index, f"{type(error).__name__}: {error}"))
