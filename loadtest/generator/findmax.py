"""find-max: raise the rate step by step until p99 passes its target or failures appear.

The rate grows by `growth` while steps pass; a failing step is run once more before it
counts (these machines are shared, one noisy second should not end the search); then the
gap between the last passing and the first failing rate is halved `refine` times. The
answer is the highest rate that passed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
from collections.abc import Callable

import msgspec

from loadtest.generator.aggregate import OVERALL
from loadtest.generator.runner import Plan, Result, run_load

SETTLE_S = 0.5  # between steps: let the target drain what the last step left in flight
DESCENT_STEPS_MAX = 4  # when the start rate fails, halve it at most this often
RATE_MIN = 10.0


@dataclasses.dataclass
class Criteria:
    p99_ms: float = 5.0
    start_rate: float = 1000.0
    growth: float = 1.5
    max_rate: float = 1_000_000.0
    refine: int = 3
    retries: int = 1


class Step(msgspec.Struct):
    rate: float
    achieved: float
    p99_ms: float | None
    failures: int
    passed: bool


@dataclasses.dataclass
class Search:
    steps: list[Step] = dataclasses.field(default_factory=list)
    best: Result | None = None  # the run at the highest passing rate

    @property
    def best_rate(self) -> float:
        return self.best.plan.rate if self.best else 0.0


def judge(result: Result, p99_target_ms: float) -> Step:
    overall = result.totals[OVERALL]
    p99 = overall.percentiles_ms().get("p99")
    answered_all = overall.counts["answered"] > 0
    passed = answered_all and overall.failures == 0 and p99 is not None and p99 <= p99_target_ms
    return Step(rate=result.plan.rate, achieved=round(result.achieved_rate, 1), p99_ms=p99,
                failures=overall.failures, passed=passed)


async def find_max(plan: Plan, criteria: Criteria,
                   on_step: Callable[[Step], None] | None = None) -> Search:
    search = Search()

    async def attempt(rate: float) -> bool:
        for _ in range(1 + criteria.retries):
            result = await run_load(msgspec.structs.replace(plan, rate=round(rate), run_id=""))
            step = judge(result, criteria.p99_ms)
            search.steps.append(step)
            if on_step:
                on_step(step)
            await asyncio.sleep(SETTLE_S)
            if step.passed:
                if search.best is None or rate > search.best.plan.rate:
                    search.best = result
                return True
        return False

    rate, failed_at = criteria.start_rate, None
    while rate <= criteria.max_rate:
        if not await attempt(rate):
            failed_at = rate
            break
        rate *= criteria.growth
    for _ in range(DESCENT_STEPS_MAX):  # even the start rate failed: look lower
        if search.best is not None or failed_at is None or failed_at / 2 < RATE_MIN:
            break
        if not await attempt(failed_at / 2):
            failed_at /= 2
    for _ in range(criteria.refine):
        if search.best is None or failed_at is None:
            break
        middle = math.sqrt(search.best_rate * failed_at)
        if failed_at / search.best_rate < 1.05:
            break  # within 5%: the noise of these machines is larger than that
        if not await attempt(middle):
            failed_at = middle
    return search
