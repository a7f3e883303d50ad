"""Running a closed-loop plan (closed_loop.py): seeding, worker processes, merging, the summary.

One worker runs in this event loop; several run as spawned processes, each with its share
of the connections, started together at one wall-clock instant, their histograms merged
exactly (as runner.py does for the open loop).
"""

from __future__ import annotations

import asyncio
import dataclasses
import multiprocessing
import resource
import time
from collections.abc import Callable

import msgspec

from loadtest.generator.cards import seed_cards
from loadtest.generator.client import LoadTestError, freeze_startup_heap
from loadtest.generator.closed_loop import ClosedLoop, SaturatePlan, WorkerOutcome, ref_prefix
from loadtest.generator.event_loop import run_async
from loadtest.generator.runner import (
    expect,
    join_workers,
    new_run_id,
    start_workers,
    with_distinct_terminals,
)
from loadtest.generator.stats import Totals
from loadtest.generator.switch_side import Scraper, SwitchSide
from loadtest.generator.workload import CARD_LIMIT_FEN, load_test_pans

START_DELAY_S = 0.2  # from "all connected" to the first send, for every worker
WORKER_READY_TIMEOUT_S = 60.0  # spawning a Python process and connecting, on a busy box
FD_HEADROOM = 64  # descriptors beyond one per connection: Redis, pipes, files, the loop
ALL = "all"
DUPLICATE_CODE = "94"

Progress = Callable[[int, dict[str, int]], None]  # (second, answers per channel in it)


@dataclasses.dataclass
class SaturateResult:
    plan: SaturatePlan
    started_at: str
    window: dict[str, Totals]  # per channel and ALL: the measured window (rate, latency)
    outside: dict[str, Totals]  # warm-up and drain: counted for codes and failures only
    inflight_seen: dict[str, list[int]]  # per channel: min, max in flight (window, sampled)
    window_s: float
    switch: SwitchSide | None = None  # the switch's side, with --admin-url

    def rate(self, channel: str = ALL) -> float:
        return self.window[channel].counts["answered"] / self.window_s if self.window_s else 0.0

    def codes(self, channel: str = ALL) -> dict[str, int]:
        """Response codes of every answer of the run, warm-up and drain included."""
        merged = dict(self.window[channel].codes)
        for code, n in self.outside[channel].codes.items():
            merged[code] = merged.get(code, 0) + n
        return dict(sorted(merged.items()))

    def failures(self, channel: str = ALL) -> int:
        return self.window[channel].failures + self.outside[channel].failures

    def channel_summary(self, channel: str) -> dict:
        window, outside = self.window[channel], self.outside[channel]
        pct = window.percentiles_ms()
        if pct:
            pct["mean"] = round(window.latency.get_mean_value() / 1000, 3)
        counts = {name: window.counts[name] + outside.counts[name]
                  for name in ("sent", "answered", "timeouts", "errors", "bad_answers",
                               "late_answers")}
        codes = self.codes(channel)
        return {"rate": round(self.rate(channel), 1),
                "answered_in_window": window.counts["answered"], **counts,
                "failures": self.failures(channel), "codes": codes,
                "duplicates_94": codes.get(DUPLICATE_CODE, 0),
                "kinds": dict(sorted(window.kinds.items())), "latency_ms": pct,
                "inflight_seen": self.inflight_of(channel),
                "histogram": window.latency.encode().decode()
                if window.counts["answered"] else ""}

    def inflight_of(self, channel: str = ALL) -> list[int] | None:
        """Least and most requests in flight seen in the window (summed over channels)."""
        if channel != ALL:
            return self.inflight_seen.get(channel)
        seen = list(self.inflight_seen.values())
        return [sum(s[0] for s in seen), sum(s[1] for s in seen)] if seen else None

    def summary(self) -> dict:
        plan = self.plan
        return {"started_at": self.started_at, "plan": msgspec.to_builtins(plan),
                "window_s": round(self.window_s, 3),
                "inflight_total": plan.inflight * plan.connections * len(plan.targets),
                "channels": {ch: self.channel_summary(ch) for ch in self.window},
                **({"switch": msgspec.to_builtins(self.switch)} if self.switch else {})}


def table(result: SaturateResult) -> str:
    plan = result.plan
    lines = [f"closed loop: {plan.connections} connection(s) x {plan.inflight} in flight per "
             f"channel, {plan.duration_s:g} s measured after {plan.warmup_s:g} s warm-up, "
             f"{plan.workers} worker(s), kinds: {plan.kinds}", "",
             f"{'channel':<8}{'answered':>10}{'rate/s':>11}{'p50':>9}{'p90':>9}{'p99':>9}"
             f"{'p99.9':>9}{'max':>9}  (ms){'failures':>10}{'94s':>6}"]
    for channel in result.window:
        s = result.channel_summary(channel)
        pct = s["latency_ms"]
        cells = "".join(f"{pct[k]:>9.3f}" if k in pct else f"{'-':>9}"
                        for k in ("p50", "p90", "p99", "p99.9", "max"))
        lines.append(f"{channel:<8}{s['answered_in_window']:>10}{s['rate']:>11,.1f}{cells}"
                     f"      {s['failures']:>10}{s['duplicates_94']:>6}")
    for channel in result.window:
        if channel != ALL:
            codes = "  ".join(f"{c or '-'}: {n}" for c, n in result.codes(channel).items())
            lines.append(f"\nresponse codes {channel} (whole run): {codes}")
    return "\n".join(lines)


# --- running ----------------------------------------------------------------------------------


def prepared(plan: SaturatePlan) -> SaturatePlan:
    """The plan with a run id whose POS terminal tags differ for every worker and channel
    (a clash would reuse STANs on one terminal, and the switch would answer 94)."""
    if plan.workers < 1 or plan.connections < 1 or plan.inflight < 1 or not plan.targets:
        raise LoadTestError("workers, connections and inflight must be positive, with a target")
    if plan.duration_s <= 0 or plan.warmup_s < 0:
        raise LoadTestError("duration must be positive and warm-up not negative")
    run_id = with_distinct_terminals(plan.run_id or new_run_id(), lambda candidate: [
        ref_prefix(candidate, w, ch) for w in range(plan.workers) for ch in plan.targets])
    return msgspec.structs.replace(plan, run_id=run_id)


def shares(plan: SaturatePlan) -> list[dict[str, int]]:
    """Each worker's connections per channel; workers with none are not started."""
    out = []
    for worker in range(plan.workers):
        share = {ch: plan.connections // plan.workers + (worker < plan.connections % plan.workers)
                 for ch in plan.targets}
        if any(share.values()):
            out.append(share)
    return out


def raise_fd_limit(needed: int) -> None:
    """Raise the soft limit of open files to `needed` if the hard limit allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        if target < needed:
            raise LoadTestError(f"{needed} open files needed, the hard limit is {hard}")


async def run_saturate(plan: SaturatePlan, progress: Progress | None = None) -> SaturateResult:
    plan = prepared(plan)
    if plan.redis_url:
        pans = load_test_pans(plan.cards, plan.seed)
        await asyncio.to_thread(seed_cards, plan.redis_url, pans,
                                plan.card_limit_fen or CARD_LIMIT_FEN)
    split = shares(plan)
    raise_fd_limit(plan.connections * len(plan.targets) + FD_HEADROOM)
    started_at = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    # With one worker this process sends too: its readings share the sending loop (about a
    # millisecond a second); --workers 2 or more keeps them off it.
    scraper = Scraper(plan.admin_url) if plan.admin_url else None
    if scraper is not None:
        await scraper.start()
    first_send = time.time() + START_DELAY_S  # as the workers' start is set (about)
    try:
        if len(split) == 1:
            def get_start() -> float:
                return time.time() + START_DELAY_S

            outcomes = [await ClosedLoop(plan, 0, split[0], progress).run(get_start)]
        else:
            outcomes = await _run_processes(plan, split, progress)
    finally:
        if scraper is not None:
            await scraper.stop()
    result = merge(plan, started_at, outcomes)
    result.switch = scraper.side(first_send) if scraper is not None else None
    return result


def merge(plan: SaturatePlan, started_at: str, outcomes: list[WorkerOutcome]
          ) -> SaturateResult:
    channels = list(plan.targets)
    window = {ch: Totals() for ch in [*channels, ALL]}
    outside = {ch: Totals() for ch in [*channels, ALL]}
    seen: dict[str, list[int]] = {}
    for outcome in outcomes:
        for channel in channels:
            window[channel].add_snapshot(outcome.window[channel])
            outside[channel].add_snapshot(outcome.outside[channel])
            low, high = outcome.inflight_seen.get(channel, (0, 0))
            total = seen.setdefault(channel, [0, 0])
            total[0], total[1] = total[0] + low, total[1] + high
    for channel in channels:
        window[ALL].add(window[channel])
        outside[ALL].add(outside[channel])
    window_s = sum(o.window_s for o in outcomes) / len(outcomes)
    return SaturateResult(plan, started_at, window, outside, seen, window_s)


class _Seconds:
    """Progress of several workers: a second is shown once every worker has sent it."""

    def __init__(self, workers: int, progress: Progress | None) -> None:
        self.workers, self.progress = workers, progress
        self.pending: dict[int, list] = {}

    def add(self, second: int, counts: dict[str, int]) -> None:
        entry = self.pending.setdefault(second, [0, {}])
        entry[0] += 1
        for channel, n in counts.items():
            entry[1][channel] = entry[1].get(channel, 0) + n
        if entry[0] == self.workers:
            del self.pending[second]
            if self.progress is not None:
                self.progress(second, entry[1])


async def _run_processes(plan: SaturatePlan, split: list[dict[str, int]],
                         progress: Progress | None) -> list[WorkerOutcome]:
    context = multiprocessing.get_context("spawn")
    messages = context.Queue()
    pipes = [context.Pipe(duplex=False) for _ in split]
    encoded = msgspec.msgpack.encode(plan)
    processes = [context.Process(target=worker_process, daemon=True,
                                 args=(encoded, index, share, messages, pipe[0]))
                 for index, (share, pipe) in enumerate(zip(split, pipes, strict=True))]
    start_workers(processes)
    seconds = _Seconds(len(split), progress)
    try:
        await expect(messages, "ready", len(split), WORKER_READY_TIMEOUT_S,
                     ("second", seconds.add))
        start_wall = time.time() + START_DELAY_S
        for _, sender in pipes:
            sender.send(start_wall)
        budget_s = plan.warmup_s + plan.duration_s + plan.timeout_s + WORKER_READY_TIMEOUT_S
        done = await expect(messages, "done", len(split), budget_s, ("second", seconds.add))
        return [msgspec.msgpack.decode(d, type=WorkerOutcome) for d in done]
    finally:
        join_workers(processes)


def worker_process(plan_bytes: bytes, index: int, share: dict[str, int], messages,
                   start_pipe) -> None:
    """Entry point of a worker process."""
    plan = msgspec.msgpack.decode(plan_bytes, type=SaturatePlan)

    def get_start() -> float:
        freeze_startup_heap()
        messages.put(("ready", index))
        if not start_pipe.poll(WORKER_READY_TIMEOUT_S):
            raise LoadTestError("no start signal from the parent")
        return start_pipe.recv()

    def on_second(second: int, counts: dict[str, int]) -> None:
        messages.put(("second", second, dict(counts)))

    try:
        raise_fd_limit(sum(share.values()) + FD_HEADROOM)
        outcome = run_async(ClosedLoop(plan, index, share, on_second).run(get_start))
        messages.put(("done", msgspec.msgpack.encode(outcome)))
    except BaseException as error:  # the parent must hear of it, whatever it is
        messages.put(("error", index, f"{type(error).__name__}: {error}"))

