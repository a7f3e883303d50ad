"""`loadtest chaos`: open-loop load on a switch while its processes are hurt, then a check
that what the clients were answered is what the books say.

1. Start a durable redis-server (AOF) in the run folder and `switch serve` on it; seed the
   run's cards.
2. Run the open-loop generator (one worker, in this process) with a history of every
   request and answer, reconnecting when the switch goes away; meanwhile inject the faults
   on their schedule (chaos_faults.py): SIGKILL and restart the switch, SIGSTOP/SIGCONT
   Redis, SIGKILL and restart Redis on the same folder.
3. Send every request that got no answer once more, the same bytes (the switch's
   idempotency gives the first answer, or decides afresh if there was none).
4. Read the books straight from Redis and check them against the history
   (history_check.py: lost, doubled, invented), once the switch has forwarded its stand-in
   journals; then `switch audit` checks the books' own rules and that the journals are
   drained.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import msgspec

from loadtest.generator.aggregate import OVERALL, Aggregator
from loadtest.generator.client import LoadTestError, Target
from loadtest.generator.history import Entry, History, Resender
from loadtest.generator.runner import START_DELAY_S, Plan, Result, new_run_id, seed, worker_plans
from loadtest.generator.stats import Totals
from loadtest.generator.worker import Worker
from loadtest.generator.workload import CARD_LIMIT_FEN, load_test_pans
from loadtest.harness import chaos_ledger, history_check
from loadtest.harness.chaos_faults import FaultPlan, Injector, check_plan, schedule
from loadtest.harness.chaos_processes import DurableRedis, SwitchProcess
from protocols.cardnumbers import mask_pan
from switch.config import load

RESEND_ROUNDS = 3  # a request still unanswered after this many more sends is reported
# The switch forwards its journals once Redis answers again: seconds for a long run's.
JOURNAL_DRAIN_TIMEOUT_S = 60.0
JOURNAL_POLL_S = 0.2

# The promise the run checks under Redis kills holds only with `always`: with `everysec` Redis
# may answer writes it has not yet written to its AOF while a background fsync is slow, and a
# kill then loses them (docs/reliability.md, "the window of loss").
CHAOS_APPENDFSYNC = "always"


class ChaosPlan(msgspec.Struct, kw_only=True):
    rate: float
    duration_s: float
    mix: dict[str, int]
    faults: FaultPlan = FaultPlan()
    cards: int = 1000
    seed: int = 1
    # Per channel, `inflight` each. At 500/s in a long run, 2 left thousands of requests
    # waiting unsent past their timeout during the outages; 4 left none.
    connections: int = 4
    inflight: int = 128  # per connection
    timeout_s: float = 5.0  # per request; above the switch's deadline, so it answers 91 first
    appendfsync: str = CHAOS_APPENDFSYNC
    switch_config: str = ""  # a config file for `switch serve` ([limits], stand-in ...)
    card_limit_fen: int = CARD_LIMIT_FEN
    # Also send again, once the journals are drained, the requests answered only 91 or 96,
    # as a client retrying after the outage would: the books must agree with what they get
    # then. Off by default: a client told 91 may never retry, and a 91 whose call ran and
    # was never taken back must show as invented, not be answered from the books.
    resend_undecided: bool = False


class ChaosOutcome(msgspec.Struct, kw_only=True):
    requests: int  # distinct requests sent
    sends: int  # sends in all (the workload's repeats and the resends included)
    answered: int  # requests with an answer in the end
    approvals: int  # requests whose last answer approves
    resent: int  # requests sent again: unanswered (and undecided, when asked)
    unanswered: int  # requests with no answer even after the resends
    codes: dict[str, int]  # the last answers' response codes
    faults: dict[str, int]  # injected, by kind
    fault_log: list[dict]
    lost: int
    doubled: int
    invented: int
    audit: list[str]  # what `switch audit` found broken, one line each
    examples: list[dict]  # the first findings in full

    @property
    def passed(self) -> bool:
        return not (self.lost or self.doubled or self.invented or self.audit
                    or self.unanswered)


async def run_chaos(plan: ChaosPlan, folder: Path,
                    progress: Callable[[int, Totals], None] | None = None,
                    say: Callable[[str], None] = print) -> tuple[Result, ChaosOutcome]:
    check_plan(plan.faults)
    if plan.rate <= 0 or plan.duration_s <= 0:
        raise LoadTestError("rate and duration must be positive")
    config_path = Path(plan.switch_config) if plan.switch_config else None
    config = load(config_path)
    folder.mkdir(parents=True, exist_ok=True)
    redis = DurableRedis(folder / "redis", plan.appendfsync)
    url = await asyncio.to_thread(redis.start)
    switch = SwitchProcess(url, list(plan.mix), folder, folder / "run", config_path)
    try:
        await asyncio.to_thread(switch.start)
        say(f"redis-server (appendonly, appendfsync {plan.appendfsync}) at {url}; switch on "
            + ", ".join(f"{ch} {port}" for ch, port in switch.ports.items()))
        targets = {ch: Target("127.0.0.1", port) for ch, port in switch.ports.items()}
        load_plan = Plan(rate=plan.rate, duration_s=plan.duration_s, targets=targets,
                         mix=plan.mix, connections=plan.connections,
                         inflight_max=plan.inflight, cards=plan.cards, seed=plan.seed,
                         timeout_s=plan.timeout_s, run_id=new_run_id(), redis_url=url,
                         card_limit_fen=plan.card_limit_fen)
        await asyncio.to_thread(seed, load_plan)
        injector = Injector(plan.faults, redis, switch)
        result, worker = await _load(load_plan, injector, progress, say)
        history = worker.history
        resent = await _resend(history.unanswered, "unanswered", worker, targets, plan, say)
        await _drained(switch, say)
        if plan.resend_undecided:  # after the journals' voids: decided afresh, or served
            resent += await _resend(history.undecided, "undecided (91, 96)", worker, targets,
                                    plan, say)
            await _drained(switch, say)
        say("reading the books")
        outcome = await asyncio.to_thread(_check, history, config, url, load_test_pans(
            plan.cards, plan.seed), worker.schedule.start_ns)
        status, report = await asyncio.to_thread(switch.audit, url)
        outcome.audit = [f"{f['card']} {f['rule']}: {f['detail']}" for f in report["broken"]]
        if status not in (0, 1) or (status == 1) != bool(outcome.audit):
            raise LoadTestError(f"switch audit answered {status} with {report}")
        outcome.resent, outcome.faults = resent, injector.counts()
        outcome.fault_log = [msgspec.to_builtins(fault) for fault in injector.injected]
        await asyncio.to_thread(write_history, history, worker.schedule.start_ns, folder)
        return result, outcome
    finally:
        switch.stop()
        redis.stop()


async def _load(plan: Plan, injector: Injector, progress, say) -> tuple[Result, Worker]:
    """The open loop with its history, the faults injected meanwhile."""
    aggregator = Aggregator(list(plan.mix), 1, progress)
    worker_plan = msgspec.structs.replace(worker_plans(plan)[0], reconnect=True)
    worker = Worker(worker_plan, aggregator.add)
    worker.history = History()
    planned = schedule(injector.plan, plan.duration_s, plan.seed)
    say(f"{len(planned)} faults planned: " + ", ".join(
        f"{kind} {count}" for kind, count in Counter(kind for _, kind in planned).items()))
    faults: list[asyncio.Task] = []

    def get_start() -> float:
        start_wall = time.time() + START_DELAY_S
        faults.append(asyncio.get_running_loop().create_task(
            injector.run(planned, start_wall, start_wall + plan.duration_s)))
        return start_wall

    started_at = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    began = time.time()
    try:
        await worker.run(get_start)
    except BaseException:
        if faults:
            faults[0].cancel()  # no more faults: the run is over
        raise
    finally:
        if faults:  # every process back up: the injector restores them whatever happened
            await asyncio.gather(faults[0], return_exceptions=True)
    aggregator.finish()
    totals = dict(aggregator.totals)
    totals[OVERALL] = aggregator.overall()
    result = Result(plan=plan, started_at=started_at, elapsed_s=time.time() - began,
                    totals=totals, series=aggregator.series)
    return result, worker


async def _resend(select: Callable[[], list[Entry]], what: str, worker: Worker,
                  targets: dict[str, Target], plan: ChaosPlan, say) -> int:
    """Send the requests `select` picks again, up to RESEND_ROUNDS times (picked afresh
    each round); how many were."""
    resent: set = set()
    for _ in range(RESEND_ROUNDS):
        waiting = select()
        if not waiting:
            break
        say(f"sending {len(waiting):,} {what} requests again")
        resent.update(id(entry) for entry in waiting)
        resender = Resender(worker.history, worker.adapters, targets, plan.timeout_s,
                            plan.inflight)
        try:
            await resender.resend(waiting)
        except LoadTestError as error:  # a connection lost: the next round tries again
            say(f"sending again: {error}")
    return len(resent)


async def _drained(switch: SwitchProcess, say) -> None:
    """Wait (bounded) until the switch has forwarded its stand-in journals to the books."""
    if switch.journals_drained():
        return
    say("waiting for the stand-in journals to be forwarded")
    deadline = time.monotonic() + JOURNAL_DRAIN_TIMEOUT_S
    while not switch.journals_drained():
        if time.monotonic() > deadline:
            return  # the audit reports what is still waiting
        await asyncio.sleep(JOURNAL_POLL_S)


def _check(history: History, config, url: str, pans: list[str], start_ns: int
           ) -> ChaosOutcome:
    entries = list(history.entries.values())
    requests = chaos_ledger.requests_of(entries, config, start_ns)
    refs: dict[str, set[str]] = {}
    for request in requests:
        refs.setdefault(request.card, set()).add(request.ref)
    cards = chaos_ledger.read_cards(url, pans, refs)
    findings = history_check.check(requests, cards)
    lasts = [entry.last for entry in entries]
    return ChaosOutcome(
        requests=len(entries), sends=sum(entry.sends for entry in entries),
        answered=sum(1 for last in lasts if last is not None),
        approvals=sum(1 for last in lasts if last is not None and last.approved),
        resent=0, unanswered=sum(1 for last in lasts if last is None),
        codes=dict(sorted(Counter(last.code for last in lasts if last is not None).items())),
        faults={}, fault_log=[], lost=findings.lost, doubled=findings.doubled,
        invented=findings.invented, audit=[],
        examples=[finding._asdict() for finding in findings.examples])


def summary_lines(outcome: ChaosOutcome) -> list[str]:
    faults = ", ".join(f"{kind} {n}" for kind, n in outcome.faults.items()) or "none"
    lines = [
        f"requests {outcome.requests:,}  answered {outcome.answered:,}  approvals "
        f"{outcome.approvals:,}  sent again {outcome.resent:,}  unanswered "
        f"{outcome.unanswered:,}",
        f"faults injected: {faults}",
        f"lost {outcome.lost}  doubled {outcome.doubled}  invented {outcome.invented}  "
        f"audit {'clean' if not outcome.audit else f'{len(outcome.audit)} broken rule(s)'}",
    ]
    lines += [f"  {f['kind']}: card {f['card']} {f['ref']}: {f['detail']}"
              for f in outcome.examples]
    lines += [f"  audit: {line}" for line in outcome.audit[:history_check.EXAMPLES_KEPT_MAX]]
    lines.append("PASS: the books agree with every answer" if outcome.passed else "FAIL")
    return lines


def write_history(history: History, start_ns: int, folder: Path) -> Path:
    """history.jsonl: one line per request, what it was and every answer seen (card masked)."""
    path = folder / "history.jsonl"
    encode = msgspec.json.encode
    with path.open("wb") as out:
        for (channel, correlation_id), entry in history.entries.items():
            request = entry.txn.request
            out.write(encode({
                "channel": channel, "id": correlation_id, "kind": entry.txn.kind,
                "class": request.message_class.value, "card": mask_pan(request.card),
                "amount_fen": request.amount_fen, "original": request.original_ref,
                "sent_s": round((entry.first_sent_ns - start_ns) / 1e9, 3),
                "sends": entry.sends, "answers": entry.answers}) + b"\n")
    return path


def write_outcome(outcome: ChaosOutcome, plan: ChaosPlan, folder: Path) -> Path:
    path = folder / "chaos.json"
    path.write_bytes(msgspec.json.format(msgspec.json.encode(
        {"plan": plan, "outcome": outcome, "passed": outcome.passed}), indent=2))
    return path
