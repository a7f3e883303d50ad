"""bench-cluster's figures: each configuration's medians over the rounds, the CPU per answer
of each process pooled over the rounds (its ticks over all rounds / their answers: a run
holds only a few hundred ticks of 10 ms), the ratios, and the tables (terminal, Markdown).
"""

from __future__ import annotations

import math
import statistics

from loadtest.harness.bench_scale_report import (
    md_table,
    ms_cell,
    rate_cell,
    ratio_cell,
    text_table,
)
from loadtest.harness.proc_cpu import us_per_answer

ROLES = ("switch", "redis", "replica", "client")  # the CPU columns, in this order
ROLE_TITLES = {"switch": "switch", "redis": "Redis masters", "replica": "replicas",
               "client": "load client", "total": "all"}
WORKLOADS = {"closed": "closed loop (saturation)", "open": "open loop (fixed rate)"}
RATIOS = (  # (what, numerator configuration, denominator configuration)
    ("--workers 2 / 1, one Redis", "redis-w2", "redis-w1"),
    ("--workers 2 / 1, cluster", "cluster-w2", "cluster-w1"),
    ("cluster / one Redis, --workers 1", "cluster-w1", "redis-w1"),
    ("cluster / one Redis, --workers 2", "cluster-w2", "redis-w2"),
    ("replicas + --durable-replicas 1 / cluster, --workers 2", "durable-w2", "cluster-w2"),
)


def _ticks_by(cpu: dict, key: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for process in cpu["processes"]:
        out[process[key]] = out.get(process[key], 0) + process["ticks"]
    return out


def cpu_by_role(cpu: dict) -> dict[str, float | None]:
    """One run's CPU per answer (us) of each role present, and of all together."""
    ticks = _ticks_by(cpu, "role")
    out = {role: us_per_answer(ticks[role], cpu["answers"]) for role in ROLES if role in ticks}
    out["total"] = us_per_answer(sum(ticks.values()), cpu["answers"])
    return out


def _pooled(runs: list[dict], key: str) -> dict[str, float | None]:
    ticks: dict[str, int] = {}
    for run in runs:
        for name, n in _ticks_by(run["cpu"], key).items():
            ticks[name] = ticks.get(name, 0) + n
    answers = sum(run["cpu"]["answers"] for run in runs)
    return {name: us_per_answer(n, answers) for name, n in ticks.items()}


def _median(values: list) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def summarize(runs: list[dict]) -> dict:
    """configuration -> workload -> medians of the rounds (rate, p50, p99) with every
    round's rate, the failures, and the CPU per answer pooled over the rounds, by role
    (with "total") and by process."""
    out: dict = {}
    for run in runs:
        out.setdefault(run["configuration"], {}).setdefault(run["workload"], []).append(run)
    for configuration, by_workload in out.items():
        for workload, mine in by_workload.items():
            roles = _pooled(mine, "role")
            ordered = {role: roles[role] for role in ROLES if role in roles}
            total = sum(n for run in mine for n in _ticks_by(run["cpu"], "role").values())
            ordered["total"] = us_per_answer(total, sum(r["cpu"]["answers"] for r in mine))
            by_workload[workload] = {
                "rate": _median([r["rate"] for r in mine]),
                "rates": [r["rate"] for r in mine],
                "achieved": _median([r.get("achieved") for r in mine]),
                "p50": _median([r["p50"] for r in mine]),
                "p99": _median([r["p99"] for r in mine]),
                "p99s": [r["p99"] for r in mine],
                "failures": sum(r["failures"] for r in mine),
                "answers_in_cpu_windows": sum(r["cpu"]["answers"] for r in mine),
                "cpu_us_per_answer": ordered,
                "cpu_us_per_answer_by_process": _pooled(mine, "name"),
                "load_average": [r["load_average"] for r in mine]}
        out[configuration] = by_workload
    return out


def open_loop_rate(closed_runs: list[dict], share: float) -> float:
    """`share` of the slowest configuration's median saturation rate, two significant
    digits, rounded down (a rate every configuration sustains)."""
    medians = [_median([r["rate"] for r in closed_runs if r["configuration"] == name])
               for name in dict.fromkeys(r["configuration"] for r in closed_runs)]
    slowest = min((m or 0) for m in medians)
    if slowest <= 0:
        raise RuntimeError("a configuration answered nothing in the closed loop (the "
                           "progress lines above say which): no open-loop rate to run at")
    rate = slowest * share
    step = 10 ** (math.floor(math.log10(rate)) - 1)
    return float(math.floor(rate / step) * step)


# --- the tables, as rows of cells ----------------------------------------------------------


def _us(value: float | None) -> str:
    return f"{value:,.0f}" if value is not None else "-"


def workload_rows(results: dict, workload: str) -> list[list[str]]:
    summary = results["summary"]
    rows = [["configuration", "rate", "p50 ms", "p99 ms", "failures",
             *[f"{ROLE_TITLES[r]} us" for r in (*ROLES, "total")]]]
    for name, by_workload in summary.items():
        entry = by_workload.get(workload)
        if entry:
            cpu = entry["cpu_us_per_answer"]
            rows.append([name, rate_cell(entry["rate"]), ms_cell(entry["p50"]),
                         ms_cell(entry["p99"]), str(entry["failures"]),
                         *[_us(cpu.get(r)) for r in (*ROLES, "total")]])
    return rows if len(rows) > 1 else []


def ratio_rows(results: dict) -> list[list[str]]:
    summary = results["summary"]
    rows = [["ratio", "saturation rate", "switch CPU/answer", "Redis CPU/answer",
             "all CPU/answer", "open-loop p99"]]
    for what, top, bottom in RATIOS:
        if top not in summary or bottom not in summary:
            continue
        a, b = summary[top].get("closed", {}), summary[bottom].get("closed", {})
        ca, cb = a.get("cpu_us_per_answer", {}), b.get("cpu_us_per_answer", {})
        rows.append([what, ratio_cell(a.get("rate"), b.get("rate")),
                     ratio_cell(ca.get("switch"), cb.get("switch")),
                     ratio_cell(ca.get("redis"), cb.get("redis")),
                     ratio_cell(ca.get("total"), cb.get("total")),
                     ratio_cell(summary[top].get("open", {}).get("p99"),
                                summary[bottom].get("open", {}).get("p99"))])
    return rows if len(rows) > 1 else []


def process_rows(results: dict) -> list[list[str]]:
    rows = [["configuration", "process", "closed loop us/answer", "open loop us/answer"]]
    for name, by_workload in results["summary"].items():
        closed = by_workload.get("closed", {}).get("cpu_us_per_answer_by_process", {})
        opened = by_workload.get("open", {}).get("cpu_us_per_answer_by_process", {})
        for process in dict.fromkeys([*closed, *opened]):
            rows.append([name, process, _us(closed.get(process)), _us(opened.get(process))])
    return rows if len(rows) > 1 else []


def hot_card_rows(results: dict) -> list[list[str]]:
    hot = results.get("hot_card")
    if not hot:
        return []
    return [["one card's master", "authorizations/s", "its CPU per call", "its core busy",
             "with a whole core", "client"],
            [hot["master"], rate_cell(hot["rate"]), f"{_us(hot['master_us_per_call'])} us",
             f"{hot['master_busy'] * 100:.0f}%", rate_cell(hot.get("whole_core_rate")),
             hot["client"]]]


def sections(results: dict) -> list[tuple[str, list[list[str]]]]:
    rate = results.get("open_loop_rate")
    return [("Closed loop (saturation), medians of the rounds; CPU per answer pooled",
             workload_rows(results, "closed")),
            (f"Open loop at {rate:,.0f}/s, medians of the rounds; CPU per answer pooled"
             if rate else "Open loop", workload_rows(results, "open")),
            ("Ratios (closed loop unless named)", ratio_rows(results)),
            ("CPU per answer of each process (us, pooled over the rounds)",
             process_rows(results)),
            ("One card's ceiling: its master alone, the authorize function on one card",
             hot_card_rows(results))]


def notes(results: dict) -> list[str]:
    s = results["settings"]
    closed, opened = s["closed_loop"], s["open_loop"]
    load = results["load_average"]
    out = [f"Channel {s['channel']}, {s['cards']:,} cards seeded once per Redis, the load "
           f"generator's mix of kinds; {s['rounds']} round(s), every configuration once per "
           f"round. Closed loop: {closed['connections']} connections x {closed['inflight']} "
           f"in flight, {closed['duration_s']:g} s after {closed['warmup_s']:g} s warm-up. "
           f"Open loop: {opened['connections']} connections, {opened['duration_s']:g} s.",
           "CPU per answer: utime + stime (/proc/PID/stat) between the first and the last "
           "once-a-second reading of the run, over the answers between them; pooled: the "
           "rounds' ticks over the rounds' answers. 'all' adds every process, the load "
           "client too.",
           f"Load average (1, 5, 15 min) at the start {', '.join(map(str, load['start']))}, "
           f"at the end {', '.join(map(str, load['end']))}; each run's is in the JSON."]
    return out


def terminal(results: dict) -> str:
    lines = [f"\nbench-cluster {results['date']}: {results['machine']['summary']}"]
    for title, rows in sections(results):
        if rows:
            lines += ["", title, *text_table(rows)]
    return "\n".join([*lines, "", *notes(results)])


def markdown(results: dict) -> str:
    lines = [f"# Bench-cluster {results['date']}", "",
             f"Machine: {results['machine']['summary']}. The load client, the switches and "
             "every redis-server share its cores.", ""]
    for title, rows in sections(results):
        if rows:
            lines += [f"## {title}", "", *md_table(rows), ""]
    lines += [note + "\n" for note in notes(results)]
    lines.append(f"`make bench-cluster` (`loadtest bench-cluster`), "
                 f"{results.get('seconds', '?')} s; every run is in the JSON file next to "
                 "this one.")
    return "\n".join(lines) + "\n"
