"""A run cut into parts, each run on a host of its own, and the merge of their files.

`loadtest run --part K/N` runs the K-th share of a run's workers (runner.py `worker_plans`)
and writes, beside its own report, `part-K-of-N.json`: its plan, its start, and every
second's totals per channel, the latency histograms in HdrHistogram's exact encoding.
`loadtest merge` checks that the files are every part of one run and adds them up second
by second, as the parent of one run adds its workers' seconds (aggregate.py `Aggregator`):
HDR histograms add bucket by bucket, so the merged percentiles are those of every latency
of every part in one histogram, never averages of percentiles.
"""

from __future__ import annotations

import socket
from pathlib import Path

import msgspec

from loadtest.generator.aggregate import OVERALL, Aggregator, SecondRecord
from loadtest.generator.client import LoadTestError
from loadtest.generator.runner import Plan, Result
from loadtest.generator.switch_side import SwitchSide

PART_FORMAT = "loadtest-part/1"  # a later, different layout gets another number
# Plan fields each part has of its own: where its host reaches the switches, Redis, the
# admin API and a recording. Every other field says what load the run offers: the same on
# every part, or the files are not parts of one run.
LOCAL_FIELDS = frozenset({"part", "targets", "redis_url", "admin_url", "recording"})


class PartFile(msgspec.Struct, kw_only=True):
    format: str
    host: str  # where the part ran (its hostname), for the reader
    plan: Plan
    started_at: str
    start_wall: float  # wall-clock time of its first intended send
    elapsed_s: float
    seconds: list[SecondRecord]  # the seconds that saw something, in order
    switch: SwitchSide | None = None  # with --admin-url: what that switch said


class _Format(msgspec.Struct):
    format: str = ""


def part_file_name(plan: Plan) -> str:
    return f"part-{plan.part}-of-{plan.parts}.json"


def write_part(result: Result, folder: Path) -> Path:
    """The part's file, in `folder` beside its report."""
    plan = result.plan
    if not plan.part or result.seconds is None:
        raise ValueError("only a part of a run (--part) writes a part file")
    path = folder / part_file_name(plan)
    folder.mkdir(parents=True, exist_ok=True)
    path.write_bytes(msgspec.json.encode(PartFile(
        format=PART_FORMAT, host=socket.gethostname(), plan=plan,
        started_at=result.started_at, start_wall=result.start_wall,
        elapsed_s=result.elapsed_s, seconds=result.seconds, switch=result.switch)))
    return path


def read_part(path: Path) -> PartFile:
    data = path.read_bytes()
    try:
        found = msgspec.json.decode(data, type=_Format).format
        if found != PART_FORMAT:
            raise LoadTestError(f"{path}: not a part file of `loadtest run --part` (format "
                                f"{found or 'none'}, expected {PART_FORMAT})")
        part = msgspec.json.decode(data, type=PartFile)
    except msgspec.MsgspecError as error:
        raise LoadTestError(f"{path}: not a part file of `loadtest run --part` ({error})"
                            ) from None
    if not 1 <= part.plan.part <= part.plan.parts:
        raise LoadTestError(f"{path}: part {part.plan.part} of {part.plan.parts}")
    unknown = {ch for record in part.seconds for ch in record.channels} - set(part.plan.mix)
    if unknown:
        raise LoadTestError(f"{path}: channels {', '.join(sorted(unknown))} outside its mix")
    return part


def check_parts(parts: list[tuple[Path, PartFile]]) -> None:
    """Every part of one run, each once; else an error naming the files."""
    if not parts:
        raise LoadTestError("no part files given")
    (first_path, first), *others = parts
    load = _load_fields(first.plan)
    for path, part in others:
        if part.plan.run_id != first.plan.run_id:
            raise LoadTestError(f"parts of different runs: {first_path} (run "
                                f"{first.plan.run_id}) and {path} (run {part.plan.run_id})")
        differ = [f"{name} ({first_path}: {load[name]!r}, {path}: {value!r})"
                  for name, value in _load_fields(part.plan).items() if load[name] != value]
        if differ:
            raise LoadTestError("the parts do not offer one run's load, they differ in "
                                + "; ".join(differ))
    numbers: dict[int, Path] = {}
    for path, part in parts:
        if part.plan.part in numbers:
            raise LoadTestError(f"part {part.plan.part} given twice: {numbers[part.plan.part]} "
                                f"and {path}")
        numbers[part.plan.part] = path
    missing = sorted(set(range(1, first.plan.parts + 1)) - set(numbers))
    if missing:
        raise LoadTestError(f"part(s) {', '.join(map(str, missing))} of {first.plan.parts} "
                            f"missing (run {first.plan.run_id}): merge every part")


def _load_fields(plan: Plan) -> dict:
    fields = msgspec.to_builtins(plan)
    return {name: value for name, value in fields.items() if name not in LOCAL_FIELDS}


def merge(parts: list[PartFile]) -> Result:
    """The run the parts make, as one host running all of it would report it (the plan and
    targets as part 1 has them; the switch's side when exactly one part read a switch)."""
    parts = sorted(parts, key=lambda part: part.plan.part)
    plan = msgspec.structs.replace(parts[0].plan, part=0)
    aggregator = Aggregator(list(plan.mix), len(parts))
    by_second = [{record.second: record.channels for record in part.seconds}
                 for part in parts]
    for second in sorted(set().union(*by_second)):
        for source, seconds in enumerate(by_second):
            aggregator.add_totals(second, source, seconds.get(second, {}))
    aggregator.finish()
    totals = dict(aggregator.totals)
    totals[OVERALL] = aggregator.overall()
    first = min(parts, key=lambda part: part.start_wall)
    end = max(part.start_wall + part.elapsed_s for part in parts)
    switches = [part.switch for part in parts if part.switch is not None]
    return Result(plan=plan, started_at=first.started_at, elapsed_s=end - first.start_wall,
                  totals=totals, series=aggregator.series,
                  switch=switches[0] if len(switches) == 1 else None,
                  start_wall=first.start_wall)


def merge_files(paths: list[Path]) -> tuple[Result, list[PartFile]]:
    """Read, check and merge part files; nothing is written (an error changes nothing)."""
    parts = [(path, read_part(path)) for path in paths]
    check_parts(parts)
    found = [part for _, part in parts]
    return merge(found), found
