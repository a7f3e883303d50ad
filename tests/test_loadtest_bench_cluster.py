"""bench-cluster: the CPU reading of processes (/proc), the figures pooled over rounds, the
ratios, and the whole bench run for real in --quick mode (its shape, and every configuration
answering; no speed is asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from loadtest.harness import bench_cluster
from loadtest.harness import bench_cluster_report as report
from loadtest.harness.proc_cpu import (
    TICKS_PER_S,
    CpuWindow,
    Watched,
    children,
    cpu_ticks,
    descendants,
    process_tree,
    us_per_answer,
)
from tests.support import LOADTEST, run_command

BUSY_CPU_S = 0.3
QUICK_RUN_WAIT_S = 300.0  # a smoke run takes about a minute on a busy 2-core box


def busy_child(*extra: str) -> subprocess.Popen:
    """A Python process that spends BUSY_CPU_S of CPU, says so, then waits (idle)."""
    code = ("import sys, time\n"
            f"while time.process_time() < {BUSY_CPU_S}: pass\n"
            "print('spent', flush=True)\nsys.stdin.read()\n")
    child = subprocess.Popen([sys.executable, "-c", code, *extra], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline() == "spent\n"
    return child


def ended(child: subprocess.Popen) -> None:
    child.kill()
    child.wait()


def test_cpu_ticks_are_the_processs_cpu_time_and_none_once_it_is_gone():
    child = busy_child()
    try:
        ticks = cpu_ticks(child.pid)
        # BUSY_CPU_S of its own CPU, and Python's start-up: no more than a second more.
        assert BUSY_CPU_S * TICKS_PER_S - 1 <= ticks <= (BUSY_CPU_S + 1) * TICKS_PER_S
        assert cpu_ticks(child.pid) - ticks <= 1  # idle now
    finally:
        ended(child)
    assert cpu_ticks(child.pid) is None


def test_a_process_tree_holds_the_grandchildren_and_names_the_resource_tracker():
    shell = subprocess.Popen(["sh", "-c", "sleep 30 & wait"])
    helper = busy_child("resource_tracker")
    try:
        deadline = time.monotonic() + 10
        while not children(shell.pid):  # the shell forks its sleep
            assert time.monotonic() < deadline, "the shell started no child"
            time.sleep(0.01)
        (sleeper,) = children(shell.pid)
        assert {shell.pid, sleeper} <= set(descendants(os.getpid()))
        assert sleeper not in children(os.getpid())
        tree = process_tree(shell.pid, "switch", "switch supervisor", "switch worker")
        assert tree == [Watched(shell.pid, "switch", "switch supervisor"),
                        Watched(sleeper, "switch", "switch worker")]
        mine = process_tree(os.getpid(), "client", "load client", "load client worker")
        names = {w.pid: w.name for w in mine}
        assert names[helper.pid] == "client resource tracker"
        assert names[sleeper] == "load client worker"
    finally:
        subprocess.run(["kill", str(sleeper)], check=False)
        shell.wait()
        ended(helper)


def test_a_window_counts_the_cpu_and_answers_after_its_first_reading():
    child = busy_child()
    gone = busy_child()
    try:
        window = CpuWindow(lambda: [Watched(child.pid, "switch", "switch"),
                                    Watched(gone.pid, "redis", "redis")])
        window.second(500)  # the start: this second's answers came before it
        window.second(40)
        ended(gone)
        window.second(60)
        result = window.result()
    finally:
        ended(child)
    assert result["answers"] == 100
    # The idle child spent (almost) nothing in the window; the one gone before its end is out.
    assert [(p["pid"], p["name"]) for p in result["processes"]] == [(child.pid, "switch")]
    assert 0 <= result["processes"][0]["ticks"] <= 1
    assert result["seconds"] >= 0


def test_cpu_per_answer_in_microseconds():
    assert us_per_answer(TICKS_PER_S, 1000) == 1000.0  # one second of CPU over 1,000 answers
    assert us_per_answer(5, 0) is None


def cpu(answers: int, **ticks_by_name: int) -> dict:
    roles = {"switch": "switch", "worker": "switch", "master1": "redis", "master2": "redis",
             "replica1": "replica", "client": "client"}
    return {"answers": answers, "seconds": 2.0, "ticks_per_s": TICKS_PER_S,
            "processes": [{"pid": 1, "role": roles[name], "name": name, "ticks": n}
                          for name, n in ticks_by_name.items()]}


def run(configuration: str, workload: str, round_: int, rate: float, answers: int,
        **ticks: int) -> dict:
    return {"configuration": configuration, "workload": workload, "round": round_,
            "rate": rate, "p50": 1.0 * round_, "p99": 10.0 * round_, "failures": 0,
            "load_average": 1.5, "cpu": cpu(answers, **ticks)}


def test_cpu_is_pooled_over_the_rounds_and_rates_are_medians():
    runs = [run("cluster-w2", "closed", 1, 6000, 1000, worker=10, master1=2, master2=2,
                client=4),
            run("cluster-w2", "closed", 2, 9000, 3000, worker=10, master1=2, master2=2,
                client=4),
            run("cluster-w2", "closed", 3, 7000, 2000, worker=10, master1=2, master2=2,
                client=4)]
    entry = report.summarize(runs)["cluster-w2"]["closed"]
    tick_us = 1_000_000 / TICKS_PER_S
    # Pooled: 30 ticks over 6,000 answers (the median of the runs' own would be 10 / 2,000).
    assert entry["cpu_us_per_answer"]["switch"] == round(30 * tick_us / 6000, 1)
    assert entry["cpu_us_per_answer"]["redis"] == round(12 * tick_us / 6000, 1)
    assert entry["cpu_us_per_answer"]["total"] == round(54 * tick_us / 6000, 1)
    assert list(entry["cpu_us_per_answer"]) == ["switch", "redis", "client", "total"]
    assert entry["cpu_us_per_answer_by_process"]["master1"] == round(6 * tick_us / 6000, 1)
    assert entry["rate"] == 7000 and entry["rates"] == [6000, 9000, 7000]
    assert entry["p99"] == 20.0 and entry["answers_in_cpu_windows"] == 6000


def test_the_open_loop_rate_is_a_share_of_the_slowest_saturation():
    runs = [run("redis-w1", "closed", 1, 7821, 1), run("redis-w1", "closed", 2, 9000, 1),
            run("redis-w1", "closed", 3, 100, 1), run("redis-w2", "closed", 1, 4495, 1)]
    # Medians 7,821 and 4,495; half of the slowest, two significant digits, rounded down.
    assert report.open_loop_rate(runs, 0.5) == 2200.0
    assert report.open_loop_rate([run("a", "closed", 1, 15, 1)], 0.5) == 7.5
    with pytest.raises(RuntimeError, match="answered nothing"):
        report.open_loop_rate([*runs, run("cluster-w1", "closed", 1, 0.0, 0)], 0.5)


def fake_results() -> dict:
    runs = []
    for name, rate, replica in (("redis-w1", 8000, 0), ("redis-w2", 4000, 0),
                                ("cluster-w1", 6000, 0), ("cluster-w2", 12000, 0),
                                ("durable-w2", 6000, 3)):
        ticks = {"worker": 20, "master1": 5, "client": 5} | ({"replica1": replica}
                                                              if replica else {})
        runs.append(run(name, "closed", 1, rate, 1000, **ticks))
        runs.append(run(name, "open", 1, 2000, 1000, **ticks) | {"achieved": 2000.0})
    return {"runs": runs, "summary": report.summarize(runs), "open_loop_rate": 2000.0,
            "date": "2026-12-07", "seconds": 60, "machine": {"summary": "2 cores"},
            "load_average": {"start": [1.0, 1.0, 1.0], "end": [2.0, 1.5, 1.0]},
            "hot_card": {"rate": 42000, "master": "master 1", "master_us_per_call": 22.0,
                         "master_busy": 0.84, "whole_core_rate": 45455,
                         "client": "redis-benchmark"},
            "settings": {"channel": "pos", "cards": 20000, "rounds": 1,
                         "closed_loop": {"connections": 16, "inflight": 32, "duration_s": 4,
                                         "warmup_s": 0.5},
                         "open_loop": {"connections": 16, "duration_s": 6, "share": 0.5}}}


def test_the_ratios_put_each_pair_side_by_side():
    text = report.terminal(fake_results())
    rows = {line.split("  ")[0]: line.split() for line in text.splitlines()}
    assert rows["--workers 2 / 1, one Redis"][-5:] == ["0.50x", "1.00x", "1.00x", "1.00x",
                                                        "1.00x"]
    assert rows["cluster / one Redis, --workers 2"][-5] == "3.00x"
    # The replicas' 3 ticks are in "all" only: (30 + 3) / 30.
    assert rows["replicas + --durable-replicas 1 / cluster, --workers 2"][-5:-1] == [
        "0.50x", "1.00x", "1.00x", "1.10x"]
    hot = next(line for line in text.splitlines() if line.startswith("master 1 "))
    assert hot.split()[2:7] == ["42,000/s", "22", "us", "84%", "45,455/s"]


def test_the_markdown_has_every_table_and_every_configuration():
    md = report.markdown(fake_results())
    for title in ("## Closed loop", "## Open loop at 2,000/s", "## Ratios",
                  "## CPU per answer of each process", "## One card's ceiling"):
        assert title in md
    for name in bench_cluster.CONFIGURATIONS:
        assert f"| {name} | " in md
    replica_us = f"{3 * 1_000_000 / TICKS_PER_S / 1000:,.0f}"  # 3 ticks over 1,000 answers
    assert f"| durable-w2 | replica1 | {replica_us} | {replica_us} |" in md


@pytest.mark.parametrize("argv, says", [
    (["--configurations", "redis-w1,nine-masters"], "nine-masters"),
    (["--rounds", "0"], "--rounds"),
    (["--duration", "0"], "--duration"),
    (["--open-duration", "0"], "--open-duration"),
    (["--rate", "-1"], "--rate"),
    (["--hot-card-calls", "0"], "--hot-card-calls"),
])
async def test_bad_options_are_one_line_before_anything_starts(argv, says):
    code, out, err = await run_command(LOADTEST, "bench-cluster", *argv)
    assert code == 2 and out == "" and says in err and len(err.splitlines()) == 1


async def test_a_quick_run_measures_every_configuration_side_by_side(tmp_path):
    code, out, err = await run_command(LOADTEST, "bench-cluster", "--quick", "--out",
                                       str(tmp_path), timeout_s=QUICK_RUN_WAIT_S)
    assert code == 0, err[-3000:]
    assert "== 1. closed loop" in err and "== 3. one card's ceiling" in err
    (json_file,) = tmp_path.glob("cluster-*.json")
    assert json_file.with_suffix(".md").exists()
    results = json.loads(json_file.read_text())
    names = list(bench_cluster.CONFIGURATIONS)
    assert [(r["configuration"], r["workload"]) for r in results["runs"]] == [
        (name, workload) for workload in ("closed", "open") for name in names]
    for each in results["runs"]:
        where = f"{each['configuration']} {each['workload']}"
        assert each["rate"] > 0 and each["codes"].get("00", 0) > 0, where
        assert each["failures"] == 0, where
        assert each["cpu"]["answers"] > 0, where
        roles = {p["role"] for p in each["cpu"]["processes"]}
        expected = {"switch", "redis", "client"} | (
            {"replica"} if each["configuration"] == "durable-w2" else set())
        assert roles == expected, where
    summary = results["summary"]
    assert set(summary) == set(names)
    masters = summary["cluster-w2"]["closed"]["cpu_us_per_answer_by_process"]
    assert {"master 1", "master 2", "master 3", "switch worker"} <= set(masters)
    hot = results["hot_card"]
    assert hot["rate"] > 0 and hot["master"].startswith("master ")
    assert hot["whole_core_rate"] == round(1_000_000 / hot["master_us_per_call"])
    for name in names:
        assert sum(line.startswith(f"{name} ") for line in out.splitlines()) >= 2  # both loops
