"""Runs one load test: splits the plan over workers, starts them together, merges results.

Every worker runs in a process of its own (spawned, so nothing of this process' event loop
is inherited) and sends its snapshots through a queue; this process merges them and shows
progress. A worker's event loop thus does nothing but send and receive: merging a second's
snapshot in it held its sends for ~3 ms a second, counted as latency. Every wait on the
workers is bounded.

A run may be cut into parts, each run on a host of its own (`--part K/N`): the run's
workers are numbered across every part, each part starts its own share of them, and the
parts' files are merged as the workers' snapshots are (parts.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib.machinery
import multiprocessing
import queue as queue_module
import random
import re
import sys
import time
from collections.abc import Callable

import msgspec

from loadtest.generator.adapters.iso import terminal_tag
from loadtest.generator.aggregate import OVERALL, Aggregator, Point, SecondRecord
from loadtest.generator.cards import seed_cards, seed_tokens
from loadtest.generator.client import LoadTestError, Targets, freeze_startup_heap
from loadtest.generator.event_loop import run_async
from loadtest.generator.stats import Interval, Totals
from loadtest.generator.switch_side import Scraper, SwitchSide
from loadtest.generator.worker import Worker, WorkerPlan
from loadtest.generator.workload import CARD_LIMIT_FEN, load_test_pans

START_DELAY_S = 0.2  # from "all connected" to the first intended send, for every worker
# With a start time given (`--start-at`): the workers are started this long before it (a
# spawned process connects within a second or two even on a busy box), and they must be
# connected START_DELAY_S before it. Earlier would hold idle connections open for nothing.
START_AT_LEAD_S = 10.0
START_AT_AHEAD_MAX_S = 3600.0  # further ahead is a mistake (milliseconds for seconds ...)
# x-pay tokens number the run's worker in two digits (adapters/iso.py load_test_token): the
# run's workers, every part's together, are at most this many.
WORKERS_MAX = 100
RUN_ID_PATTERN = re.compile(r"[A-Za-z0-9]{1,12}")  # in every trade number: 32 characters max
BASE36 = "0123456789abcdefghijklmnopqrstuvwxyz"
WORKER_READY_TIMEOUT_S = 60.0  # spawning a Python process and connecting, on a busy box
WORKER_EXIT_TIMEOUT_S = 5.0
QUEUE_POLL_S = 0.5  # longest single wait on the workers' queue
REFERENCE_DELAY_S = 0.5  # a capture/reversal/refund names a transaction about this old
REFERENCE_LAG_STEPS = (16, 5000)  # ... in steps, within these bounds


class Plan(msgspec.Struct, kw_only=True):
    rate: float  # requests per second, all channels, workers and parts together
    duration_s: float
    targets: dict[str, Targets]  # channel -> address, or a fleet (connections dealt in turn)
    mix: dict[str, int]  # channel -> weight
    connections: int = 8  # per channel, shared out over the workers (of every part)
    inflight_max: int = 128  # per connection
    cards: int = 10_000
    seed: int = 1
    workers: int = 1  # processes of this host (of each part)
    timeout_s: float = 2.0
    options: dict[str, dict[str, str]] = {}
    run_id: str = ""  # prefix of every transaction id; unique per run (see `new_run_id`)
    redis_url: str = ""  # when set, the cards (and tokens) are seeded afresh before the run
    card_limit_fen: int = CARD_LIMIT_FEN
    admin_url: str = ""  # when set, the switch's /metrics is read during the run
    recording: str = ""  # `--from-recording DIR`: its requests instead of synthetic ones
    part: int = 0  # this process runs part `part` of `parts` (1-based); 0: the whole run
    parts: int = 1  # of a run cut into parts, or a merged run (part 0)
    start_at: float = 0.0  # wall-clock time (epoch s) of the first intended send; 0: soon


class NotInTime(LoadTestError):
    """The workers did not report within the time they had."""


@dataclasses.dataclass
class Result:
    plan: Plan
    started_at: str  # local time, ISO 8601
    elapsed_s: float  # from the first intended send to the last answer or timeout
    totals: dict[str, Totals]  # per channel, plus OVERALL
    series: dict[str, list[Point]]
    switch: SwitchSide | None = None  # the switch's side, with --admin-url
    start_wall: float = 0.0  # wall-clock time of the first intended send
    seconds: list[SecondRecord] | None = None  # a part's seconds, for its file (parts.py)

    @property
    def achieved_rate(self) -> float:
        """Answers per second of the planned duration (as wrk2 and k6 count)."""
        return self.totals[OVERALL].counts["answered"] / self.plan.duration_s

    @property
    def offered_rate(self) -> float:
        return offered_rate(self.plan)


def offered_rate(plan: Plan) -> float:
    """What this process offers: a part its share, else the whole run's rate."""
    return plan.rate / plan.parts if plan.part else plan.rate


def parts_line(plan: Plan) -> str:
    """What share of a run cut into parts this is (docs/loadtest.md, "Several hosts")."""
    if plan.part:
        return (f"run {plan.run_id}, part {plan.part} of {plan.parts}: its share of "
                f"{plan.rate:,.0f}/s, {plan.workers} of the run's {plan.workers * plan.parts} "
                "workers")
    return (f"run {plan.run_id}: {plan.parts} parts merged, {plan.workers} worker(s) each "
            "(the workers below are each part's)")


def check_plan(plan: Plan, now: float) -> None:
    """Refuse, before anything is done, a plan that cannot run (`now`: time.time())."""
    if plan.rate <= 0 or plan.duration_s <= 0 or plan.workers < 1 or not plan.mix:
        raise LoadTestError("rate, duration and workers must be positive, and the mix not empty")
    if not (plan.parts >= 1 and 0 <= plan.part <= plan.parts):
        raise LoadTestError(f"part {plan.part} of {plan.parts}: expected 1 <= K <= N")
    if plan.workers * plan.parts > WORKERS_MAX:
        raise LoadTestError(f"{plan.workers} worker(s) x {plan.parts} part(s) is more than "
                            f"{WORKERS_MAX} workers in one run")
    if plan.part and not (plan.run_id or plan.start_at):
        raise LoadTestError("a part of a run needs --start-at or --run-id: every part must "
                            "have the run's id")
    if plan.run_id and not RUN_ID_PATTERN.fullmatch(plan.run_id):
        raise LoadTestError(f"run id {plan.run_id!r}: 1 to 12 letters and digits")
    if plan.start_at:
        check_start_at(plan.start_at, now)


def check_start_at(start_at: float, now: float) -> None:
    if start_at <= now:
        raise LoadTestError(f"--start-at {start_at:.3f} is {now - start_at:.1f} s in the past "
                            "(seconds since the epoch, as `date +%s` prints)")
    if start_at - now > START_AT_AHEAD_MAX_S:
        raise LoadTestError(f"--start-at {start_at:.3f} is {start_at - now:,.0f} s ahead, "
                            f"more than {START_AT_AHEAD_MAX_S:,.0f} s: seconds since the epoch "
                            "expected (as `date +%s` prints)")


def new_run_id() -> str:
    """Base-36 tenths of a second and two random characters: short, and not repeated by a
    later run nor by a run started at the same moment elsewhere."""
    return "L" + _base36(int(time.time() * 10)) + "".join(random.choice(BASE36)
                                                          for _ in range(2))


def _base36(number: int) -> str:
    digits = ""
    while number:
        number, digit = divmod(number, 36)
        digits = BASE36[digit] + digits
    return digits or "0"


def with_distinct_terminals(run_id: str, prefixes: Callable[[str], list[str]]) -> str:
    """`run_id`, or it with one more character, such that the POS terminal tags of the id
    prefixes `prefixes(run_id)` are all distinct: a clash would send two workers' STANs
    from one terminal, and the switch would answer 94. Deterministic: every part of a run
    makes the same choice from the same id."""
    for candidate in (run_id + suffix for suffix in ("", *BASE36)):
        named = prefixes(candidate)
        if len({terminal_tag(prefix) for prefix in named}) == len(named):
            return candidate
    raise LoadTestError(f"run id {run_id!r}: its workers' terminals clash; choose another")


def run_id_of(plan: Plan) -> str:
    """The run's id: given, or for a part the one its start time makes (the same on every
    host), else a new one; made to give every worker of the run its own terminals."""
    run_id = plan.run_id
    if not run_id and plan.part:  # check_plan: a part has one or the other
        run_id = "L" + _base36(int(plan.start_at * 10))
    return with_distinct_terminals(run_id or new_run_id(), lambda candidate: [
        ref_prefix(candidate, index) for index in range(plan.workers * plan.parts)])


def ref_prefix(run_id: str, worker: int) -> str:
    """Ids (and POS terminals) of one worker, numbered across every part of the run."""
    return f"{run_id}w{worker}n"


def worker_plans(plan: Plan) -> list[WorkerPlan]:
    """The plans of this process' workers: of the whole run's, numbered across every part
    (rate, connections and ids shared out over them all), the share of plan.part."""
    run_workers = plan.workers * plan.parts
    rate = plan.rate / run_workers
    lag = int(min(max(rate * REFERENCE_DELAY_S, REFERENCE_LAG_STEPS[0]), REFERENCE_LAG_STEPS[1]))
    plans, first_connection = [], 0
    for i in range(run_workers):
        connections = max(1, plan.connections // run_workers + (i < plan.connections % run_workers))
        plans.append(WorkerPlan(
            index=i, rate=rate, duration_s=plan.duration_s, targets=plan.targets,
            connections=connections, inflight_max=plan.inflight_max, mix=plan.mix,
            cards=plan.cards, seed=plan.seed, timeout_s=plan.timeout_s,
            ref_prefix=ref_prefix(plan.run_id, i), lag=lag, options=plan.options,
            recording=plan.recording, workers=run_workers, first_connection=first_connection))
        first_connection += connections
    first = (max(plan.part, 1) - 1) * plan.workers
    return plans[first:first + plan.workers]


async def run_load(plan: Plan, progress: Callable[[int, Totals], None] | None = None) -> Result:
    check_plan(plan, time.time())
    plan = msgspec.structs.replace(plan, run_id=run_id_of(plan))
    if plan.redis_url:
        await asyncio.to_thread(seed, plan)
    channels = list(plan.mix)
    aggregator = Aggregator(channels, plan.workers, progress, keep_seconds=bool(plan.part))
    started_at = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    plans = worker_plans(plan)
    if plan.start_at:  # bounded: check_start_at allows START_AT_AHEAD_MAX_S at most
        await asyncio.sleep(max(0.0, plan.start_at - START_AT_LEAD_S - time.time()))
    scraper = Scraper(plan.admin_url) if plan.admin_url else None
    if scraper is not None:
        await scraper.start()
    try:
        first_send = await _run_processes(plans, aggregator, plan.start_at)
    finally:
        if scraper is not None:
            await scraper.stop()
    elapsed_s = time.time() - first_send
    aggregator.finish()
    totals = dict(aggregator.totals)
    totals[OVERALL] = aggregator.overall()
    return Result(plan=plan, started_at=started_at, elapsed_s=elapsed_s, totals=totals,
                  series=aggregator.series,
                  switch=scraper.side(first_send) if scraper is not None else None,
                  start_wall=first_send, seconds=aggregator.seconds)


def seed(plan: Plan) -> None:
    """The run's cards afresh, and the wallet tokens of its workers when it speaks x-pay."""
    pans = load_test_pans(plan.cards, plan.seed)
    seed_cards(plan.redis_url, pans, plan.card_limit_fen)
    if "xpay" in plan.mix:
        seed_tokens(plan.redis_url, pans, plan.workers)



# --- the worker processes ------------------------------------------------------------------


async def _run_processes(plans: list[WorkerPlan], aggregator: Aggregator,
                         start_at: float = 0.0) -> float:
    """Runs the workers; returns the wall-clock time of the first intended send: `start_at`
    when given (the workers connected by then, else an error), else right after connecting."""
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
        await _ready(results, len(plans), start_at, intervals)
        if start_at:
            await asyncio.sleep(max(0.0, start_at - START_DELAY_S - time.time()))
        start_wall = start_at or time.time() + START_DELAY_S
        for _, sender in pipes:
            sender.send(start_wall)
        budget_s = plans[0].duration_s + plans[0].timeout_s + WORKER_READY_TIMEOUT_S
        await expect(results, "done", len(plans), budget_s, intervals)
        return start_wall
    finally:
        for _, sender in pipes:
            sender.close()  # a worker still waiting for its start hears the end, and exits
        join_workers(processes)


async def _ready(results, count: int, start_at: float, intervals) -> None:
    """Wait until every worker is connected: within WORKER_READY_TIMEOUT_S, or with a start
    time, up to START_DELAY_S before it (the workers are told the start then)."""
    if not start_at:
        await expect(results, "ready", count, WORKER_READY_TIMEOUT_S, intervals)
        return
    left_s = start_at - START_DELAY_S - time.time()
    try:
        await expect(results, "ready", count, min(left_s, WORKER_READY_TIMEOUT_S), intervals)
    except NotInTime:
        raise LoadTestError(
            f"the workers were not connected {START_DELAY_S:g} s before --start-at (they had "
            f"{max(left_s, 0):.1f} s): give a start time further ahead") from None


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
        left_s = deadline - time.monotonic()
        if left_s <= 0:
            raise NotInTime(f"workers did not report {kind!r} within {timeout_s:.0f} s")
        try:  # a short wait: the deadline is checked between waits, and Ctrl-C heard
            message = await loop.run_in_executor(None, messages.get, True,
                                                 min(left_s, QUEUE_POLL_S))
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
