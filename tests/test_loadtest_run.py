"""Short real runs against a real switch over TCP: the numbers, and the files that hold them."""

from __future__ import annotations

import json
import multiprocessing
import re
import sys
import types
from pathlib import Path

from loadtest.generator import report
from loadtest.generator.aggregate import OVERALL
from loadtest.generator.cards import seed_cards
from loadtest.generator.client import Target
from loadtest.generator.runner import Plan, run_load, start_workers
from loadtest.generator.workload import load_test_pans
from tests.support import LOADTEST, run_command

CLI_WAIT_S = 120.0  # bound on a CLI run in these tests (a few seconds of load, plus start-up)
SPAWN_WAIT_S = 60.0  # bound on a spawned Python process that does nothing, on a busy box
ROOT = Path(__file__).resolve().parent.parent


def jd_plan(switch, rate: float, duration_s: float, seed: int, **fields) -> Plan:
    return Plan(rate=rate, duration_s=duration_s, mix={"jd": 1}, cards=200, seed=seed,
                targets={"jd": Target("127.0.0.1", switch.ports["jd"])}, **fields)


async def test_a_run_writes_a_table_json_hgrm_and_html_with_its_numbers(jd_switch, redis_url,
                                                                        tmp_path):
    switch, _ = jd_switch
    pans = load_test_pans(200, seed=11)
    seed_cards(redis_url, pans)
    result = await run_load(jd_plan(switch, rate=300, duration_s=2, seed=11))
    files = report.write_all(result, tmp_path)
    summary = json.loads(files["json"].read_text())
    jd = summary["channels"]["jd"]
    assert (jd["sent"], jd["answered"], jd["failures"]) == (600, 600, 0)
    assert sum(jd["codes"].values()) == 600 and jd["codes"].get("00", 0) > 300
    assert sum(jd["kinds"].values()) == 600 and jd["kinds"]["sale"] > 200
    assert summary["channels"][OVERALL]["answered"] == 600
    assert summary["offered_rate"] == 300 and summary["achieved_rate"] == 300
    assert sum(p["answered"] for p in summary["series"][OVERALL]) == 600

    hgrm = files["hgrm:jd"].read_text()
    assert re.search(r"Total count\s+=\s+600\]", hgrm)
    max_ms = float(re.search(r"#\[Max\s+=\s+([\d.]+),", hgrm).group(1))
    assert max_ms == round(jd["latency_ms"]["max"], 3)

    html = files["html"].read_text()
    assert html.count("<svg") == 3
    assert f"{jd['latency_ms']['p99']:.3f}" in html and "<td>600</td>" in html
    assert "<script" not in html and not re.search(r"(src|href)=", html)  # opens offline

    table = report.table(result)
    assert "600" in table and f"{jd['latency_ms']['p99']:>9.3f}" in table
    every_output = table + "".join(path.read_text() for path in files.values())
    assert not any(pan in every_output for pan in pans)  # never a full card number


async def test_two_worker_processes_share_the_rate_and_merge(jd_switch, redis_url):
    switch, _ = jd_switch
    seed_cards(redis_url, load_test_pans(200, seed=12))
    result = await run_load(jd_plan(switch, rate=400, duration_s=1.5, seed=12, workers=2,
                                    connections=3))
    overall = result.totals[OVERALL]
    assert overall.counts["sent"] == overall.counts["answered"] == 600
    assert overall.latency.get_total_count() == 600
    assert sum(overall.codes.values()) == 600 and overall.failures == 0


async def run_cli(*args: str) -> tuple[int, str, str]:
    return await run_command(LOADTEST, *args, cwd=str(ROOT), timeout_s=CLI_WAIT_S)


async def test_the_cli_seeds_runs_and_reports(jd_switch, redis_url, tmp_path):
    switch, _ = jd_switch
    code, out, err = await run_cli(
        "run", "--rate", "200", "--duration", "1", "--mix", "jd=1", "--cards", "100",
        "--seed", "13", "--target", f"jd=127.0.0.1:{switch.ports['jd']}", "--redis", redis_url,
        "--out", str(tmp_path))
    assert code == 0, err
    assert "seeding 100 cards" in err and "[   1 s] offered 200/s" in err  # the live line
    assert re.search(r"^jd\s+200\s+200\s+200\.0\s+0\s+0\s+0", out, re.M)
    assert {p.name for p in tmp_path.iterdir()} == {
        "summary.json", "report.html", "latency-jd.hgrm", "latency-all.hgrm"}


async def test_find_max_steps_up_and_reports_the_highest_passing_rate(jd_switch, redis_url,
                                                                      tmp_path):
    switch, _ = jd_switch
    code, out, err = await run_cli(
        "find-max", "--start-rate", "100", "--growth", "2", "--max-rate", "400",
        "--step-duration", "0.5", "--refine", "0", "--p99-ms", "1000", "--mix", "jd=1",
        "--cards", "100", "--target", f"jd=127.0.0.1:{switch.ports['jd']}", "--redis",
        redis_url, "--out", str(tmp_path))
    assert code == 0, err
    found = json.loads((tmp_path / "find-max.json").read_text())
    assert [step["rate"] for step in found["steps"]] == [100, 200, 400]
    assert found["best_rate"] == 400 and "highest sustainable rate: 400/s" in out
    assert (tmp_path / "best" / "report.html").exists()


def test_a_spawned_worker_does_not_run_the_command_script_again(tmp_path, monkeypatch):
    # A main script that leaves a mark when it runs, in the place of the `loadtest` script.
    mark = tmp_path / "ran"
    script = tmp_path / "command.py"
    script.write_text(f"open({str(mark)!r}, 'a').write('x')\n")
    main = types.ModuleType("__main__")
    main.__file__, main.__spec__ = str(script), None
    monkeypatch.setitem(sys.modules, "__main__", main)
    context = multiprocessing.get_context("spawn")

    def spawn_one(start) -> None:
        process = context.Process(target=sorted, args=((),), daemon=True)
        start([process])
        process.join(timeout=SPAWN_WAIT_S)
        assert process.exitcode == 0

    spawn_one(start_workers)
    assert not mark.exists()
    assert main.__spec__ is None  # as it was
    spawn_one(lambda processes: processes[0].start())  # spawn's own way: the script runs
    assert mark.read_text() == "x"
