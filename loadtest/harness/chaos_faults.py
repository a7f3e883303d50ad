"""The faults of a chaos run: which, when, for how long, and their injection.

The kinds are taken in turns (in an order drawn from the seed), one fault at a time, about
every `every_s` seconds (each gap drawn between half and one and a half of it), so a run of
a few gaps has every kind once. A fault starts at its time or when the one before has
ended, whichever is later, and none starts once the load's schedule is over; the last one
ends (everything restarted and thawed) before the run goes on to the checks.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter

import msgspec

from loadtest.harness.chaos_processes import DurableRedis, SwitchProcess

KILL_SWITCH, FREEZE_REDIS, KILL_REDIS = "kill-switch", "freeze-redis", "kill-redis"
FAULT_KINDS = (KILL_SWITCH, FREEZE_REDIS, KILL_REDIS)


class FaultPlan(msgspec.Struct, kw_only=True, frozen=True):
    kinds: tuple[str, ...] = FAULT_KINDS
    every_s: float = 5.0  # mean gap between the starts of two faults
    freeze_s: float = 3.0  # how long Redis stays stopped (SIGSTOP .. SIGCONT)
    down_s: float = 1.0  # how long a killed process stays down before it is restarted


class Fault(msgspec.Struct, kw_only=True):
    kind: str
    at_s: float  # since the first intended send
    lasted_s: float  # until the process was back (restarted and ready, or thawed)


def check_plan(plan: FaultPlan) -> None:
    unknown = [kind for kind in plan.kinds if kind not in FAULT_KINDS]
    if unknown:
        raise ValueError(f"no fault {', '.join(unknown)} (faults: {', '.join(FAULT_KINDS)})")
    if plan.every_s <= 0 or plan.freeze_s <= 0 or plan.down_s < 0:
        raise ValueError("--every and --freeze-for must be positive, --down-for not negative")


def schedule(plan: FaultPlan, duration_s: float, seed: int) -> list[tuple[float, str]]:
    """(second of the run, kind) of each fault, in order; none at or after `duration_s`."""
    if not plan.kinds:
        return []
    rng = random.Random(f"faults:{seed}")
    order = list(plan.kinds)
    rng.shuffle(order)
    planned = []
    at = plan.every_s * rng.uniform(0.5, 1.0)
    while at < duration_s:
        planned.append((at, order[len(planned) % len(order)]))
        at += plan.every_s * rng.uniform(0.5, 1.5)
    return planned


class Injector:
    def __init__(self, plan: FaultPlan, redis: DurableRedis, switch: SwitchProcess) -> None:
        self.plan = plan
        self.redis = redis
        self.switch = switch
        self.injected: list[Fault] = []

    def counts(self) -> dict[str, int]:
        counted = Counter(fault.kind for fault in self.injected)
        return {kind: counted.get(kind, 0) for kind in self.plan.kinds}

    async def run(self, planned: list[tuple[float, str]], start_wall: float,
                  end_wall: float) -> None:
        """Inject the planned faults (seconds after `start_wall`); none starts after
        `end_wall`. Whatever happens, every process is back up when this returns."""
        try:
            for at_s, kind in planned:
                delay = start_wall + at_s - time.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                if time.time() >= end_wall:
                    break
                began = time.time()
                await self.inject(kind)
                self.injected.append(Fault(kind=kind, at_s=round(began - start_wall, 3),
                                           lasted_s=round(time.time() - began, 3)))
        finally:
            await self.restore()

    async def inject(self, kind: str) -> None:
        if kind == FREEZE_REDIS:
            self.redis.freeze()
            try:
                await asyncio.sleep(self.plan.freeze_s)
            finally:
                self.redis.thaw()
        elif kind == KILL_REDIS:
            self.redis.kill()
            await asyncio.sleep(self.plan.down_s)
            await asyncio.to_thread(self.redis.start)
        elif kind == KILL_SWITCH:
            self.switch.kill()
            await asyncio.sleep(self.plan.down_s)
            await asyncio.to_thread(self.switch.start)

    async def restore(self) -> None:
        """Thaw a frozen Redis, restart what is down (after an interrupted fault)."""
        if self.redis.frozen:
            self.redis.thaw()
        if self.redis.process.poll() is not None:
            await asyncio.to_thread(self.redis.start)
        if self.switch.server.process.poll() is not None:
            await asyncio.to_thread(self.switch.start)
