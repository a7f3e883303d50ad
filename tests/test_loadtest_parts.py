"""A run cut into parts (`loadtest run --part K/N`), each as on a host of its own, and
`loadtest merge`: the merged figures are the one run's, ids never collide between parts,
bad input is refused and writes nothing. Real switches and Redis over TCP; no speed
asserted."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import random
import socket
import time
from pathlib import Path

import msgspec
import pytest
import redis
from hdrh.histogram import HdrHistogram

from loadtest import cli
from loadtest.generator import adapters, report
from loadtest.generator.adapters.iso import terminal_tag
from loadtest.generator.aggregate import OVERALL, Aggregator
from loadtest.generator.cards import seed_cards
from loadtest.generator.client import ClientConnection, LoadClient, LoadTestError, Target
from loadtest.generator.parts import PartFile, merge_files, write_part
from loadtest.generator.runner import (
    START_AT_AHEAD_MAX_S,
    WORKERS_MAX,
    Plan,
    Result,
    check_plan,
    check_start_at,
    run_id_of,
    run_load,
    with_distinct_terminals,
    worker_plans,
)
from loadtest.generator.stats import (
    LATENCY_MAX_US,
    PERCENTILES,
    histogram_of,
    new_histogram,
    record_counts,
)
from loadtest.generator.switch_side import SwitchSide
from loadtest.generator.workload import load_test_pans
from protocols.ledger_layout import card_indexes, card_key
from switch.config import Listener
from tests.support import LOADTEST, run_command, running_switch, switch_config, until_true
from tests.test_loadtest_stats import interval

CLI_WAIT_S = 120.0  # bound on a CLI run in these tests (a few seconds of load, plus start-up)
START_AHEAD_S = 6.0  # parts spawn and connect before this, even on a busy box
ROOT = Path(__file__).resolve().parent.parent


def part_plan(targets: dict, part: int, parts: int, **fields) -> Plan:
    defaults = {"rate": 300, "duration_s": 2, "mix": dict.fromkeys(targets, 1),
                "cards": 2000, "seed": 71, "connections": 4}
    return Plan(targets=targets, part=part, parts=parts, **(defaults | fields))


def pos_and_jd():
    return switch_config(listeners={"pos": Listener(port=0), "jd": Listener(port=0)})


def summary_of(result: Result, folder: Path) -> dict:
    return json.loads(report.write_all(result, folder)["json"].read_text())


def records_in_books(url: str, pans: list[str]) -> int:
    client = redis.Redis.from_url(url)
    try:
        pipe = client.pipeline(transaction=False)
        for pan in pans:
            pipe.zcard(card_indexes(card_key(pan))[0])
        return sum(pipe.execute())
    finally:
        client.close()


# --- two parts against a real switch ----------------------------------------------------------


async def test_two_parts_merged_give_the_one_runs_figures_and_never_share_an_id(
        redis_url, tmp_path, monkeypatch):
    pans = load_test_pans(2000, 71)
    seed_cards(redis_url, pans)
    every_interval = []  # what the workers of both parts measured, value by value
    add = Aggregator.add

    def add_and_keep(self, found) -> None:
        every_interval.append(found)
        add(self, found)

    monkeypatch.setattr(Aggregator, "add", add_and_keep)
    async with running_switch(redis_url, pos_and_jd()) as (switch, _):
        targets = {ch: Target("127.0.0.1", switch.ports[ch]) for ch in ("pos", "jd")}
        start_at = time.time() + START_AHEAD_S
        results = await asyncio.gather(*(run_load(part_plan(targets, k, 2, start_at=start_at))
                                         for k in (1, 2)))
    files = [write_part(result, tmp_path / f"host{k}") for k, result in enumerate(results, 1)]
    merged, _ = merge_files(files)
    summary = summary_of(merged, tmp_path / "merged")
    parts = [summary_of(result, tmp_path / f"host{k}") for k, result in enumerate(results, 1)]

    assert results[0].plan.run_id == results[1].plan.run_id  # one run, made from --start-at
    assert results[0].start_wall == results[1].start_wall == start_at
    every = summary["channels"][OVERALL]
    for counter in ("sent", "answered", "failures", "timeouts", "errors"):
        assert every[counter] == sum(part["channels"][OVERALL][counter] for part in parts)
    assert every["sent"] == every["answered"] == 600 and every["failures"] == 0
    assert all(part["channels"][OVERALL]["sent"] == 300 for part in parts)  # its share
    for channel in ("pos", "jd", OVERALL):
        codes = summary["channels"][channel]["codes"]
        assert codes == sum_counts(part["channels"][channel]["codes"] for part in parts)
    assert "94" not in every["codes"]  # no id of one part repeated by the other
    # The books hold one record per approved sale or authorization, of both parts.
    assert records_in_books(redis_url, pans) == \
        every["approved"].get("sale", 0) + every["approved"].get("auth", 0) > 300

    all_values = new_histogram()
    for found in every_interval:
        for snapshot in found.channels.values():
            record_counts(all_values, snapshot.latency)
    histogram = merged.totals[OVERALL].latency
    assert histogram.get_total_count() == all_values.get_total_count() == every["answered"]
    for percentile in PERCENTILES:
        assert histogram.get_value_at_percentile(percentile) == \
            all_values.get_value_at_percentile(percentile)
    assert sum(point["answered"] for point in summary["series"][OVERALL]) == 600
    assert summary["offered_rate"] == 300 and parts[0]["offered_rate"] == 150


def sum_counts(dicts) -> dict[str, int]:
    total: dict[str, int] = {}
    for counts in dicts:
        for key, n in counts.items():
            total[key] = total.get(key, 0) + n
    return total


async def test_connections_to_a_fleet_are_dealt_in_turn_across_the_parts(redis_url):
    seed_cards(redis_url, load_test_pans(500, 72))
    async with running_switch(redis_url) as (first, _), \
            running_switch(redis_url) as (second, _):
        fleet = [Target("127.0.0.1", server.ports["jd"]) for server in (first, second)]
        start_at = time.time() + START_AHEAD_S
        results = await asyncio.gather(*(run_load(part_plan(
            {"jd": fleet}, k, 2, rate=100, duration_s=1, cards=500, seed=72, connections=2,
            start_at=start_at)) for k in (1, 2)))
        answered = sum(result.totals[OVERALL].counts["answered"] for result in results)
        # One connection each: part 2's worker takes the run's second, on the second switch.
        assert (first.counters.connections, second.counters.connections) == (1, 1)
        assert first.counters.answered + second.counters.answered == answered == 100


async def test_a_start_the_workers_cannot_be_connected_by_is_an_error(jd_switch):
    switch, _ = jd_switch
    plan = part_plan({"jd": Target("127.0.0.1", switch.ports["jd"])}, 1, 1, rate=10,
                     duration_s=1, start_at=time.time() + 0.25)  # 0.05 s to spawn: too little
    with pytest.raises(LoadTestError, match="not connected 0.2 s before --start-at"):
        await run_load(plan)


# --- the command line ---------------------------------------------------------------------


async def run_cli(*args: str) -> tuple[int, str, str]:
    return await run_command(LOADTEST, *args, cwd=str(ROOT), timeout_s=CLI_WAIT_S)


async def test_one_part_merged_alone_reports_what_its_own_run_did(jd_switch, redis_url,
                                                                  tmp_path):
    switch, _ = jd_switch
    seed_cards(redis_url, load_test_pans(200, 73))
    code, out, err = await run_cli(
        "run", "--rate", "200", "--duration", "1.5", "--mix", "jd=1", "--cards", "200",
        "--seed", "73", "--target", f"jd=127.0.0.1:{switch.ports['jd']}", "--part", "1/1",
        "--run-id", "Ltest73", "--quiet", "--out", str(tmp_path / "part"))
    assert code == 0, err
    assert "run Ltest73, part 1 of 1" in out and "part file (for `loadtest merge`)" in out
    code, merged_out, err = await run_cli("merge", str(tmp_path / "part" / "part-1-of-1.json"),
                                          "--out", str(tmp_path / "merged"))
    assert code == 0, err
    assert "part 1 of 1:" in err and "300 answered" in err
    own = json.loads((tmp_path / "part" / "summary.json").read_text())
    merged = json.loads((tmp_path / "merged" / "summary.json").read_text())
    assert merged["channels"] == own["channels"] and merged["series"] == own["series"]
    assert merged["channels"]["jd"]["answered"] == 300
    assert merged["achieved_rate"] == own["achieved_rate"] == 200
    assert {p.name for p in (tmp_path / "merged").iterdir()} == {
        "summary.json", "report.html", "latency-jd.hgrm", "latency-all.hgrm"}


@pytest.mark.parametrize(("args", "said"), [
    (("--part", "1/2", "--redis", "redis://127.0.0.1:1"), "a part never seeds"),
    (("--part", "1/2"), "a part of a run needs --start-at or --run-id"),
    (("--part", "3/2", "--run-id", "L1"), "--part '3/2': expected K/N with 1 <= K <= N"),
    (("--part", "1/2", "--start-at", "1000"), "s in the past"),
    (("--part", "1/2", "--run-id", "L1", "--start-at", "1e10"), "more than 3,600 s"),
])
async def test_a_part_that_cannot_run_says_why_and_writes_nothing(args, said, tmp_path):
    code, _, err = await run_cli("run", "--rate", "10", "--duration", "1", "--mix", "jd=1",
                                 "--target", "jd=127.0.0.1:1", *args, "--out",
                                 str(tmp_path / "out"))
    assert code == 2 and said in err, err
    assert not (tmp_path / "out").exists()


# --- merge: what it refuses ---------------------------------------------------------------


def synthetic_part(folder: Path, part: int, parts: int, values: list[int],
                   switch: SwitchSide | None = None, **fields) -> Path:
    """A part file as `run --part` writes it, from known latencies (one worker, 1 s)."""
    plan = Plan(rate=100, duration_s=1, targets={"jd": Target("127.0.0.1", 1)}, mix={"jd": 1},
                part=part, parts=parts, run_id="Lsynth", **fields)
    aggregator = Aggregator(["jd"], 1, keep_seconds=True)
    aggregator.add(interval(part - 1, 0, values))
    aggregator.finish()
    totals = dict(aggregator.totals) | {OVERALL: aggregator.overall()}
    result = Result(plan=plan, started_at="2026-11-30T12:00:00+0000", elapsed_s=1.0,
                    totals=totals, series=aggregator.series, start_wall=1_800_000_000.0,
                    seconds=aggregator.seconds, switch=switch)
    return write_part(result, folder / f"host{part}-{len(values)}")


def test_merged_percentiles_are_those_of_every_value_of_every_part(tmp_path):
    rng = random.Random(5)
    values = [[int(rng.lognormvariate(7, 1.3)) + 1 for _ in range(4000)] for _ in range(3)]
    files = [synthetic_part(tmp_path, k, 3, values[k - 1]) for k in (1, 2, 3)]
    merged, _ = merge_files(list(reversed(files)))  # in any order
    everything = histogram_of([v for vs in values for v in vs])
    histogram = merged.totals["jd"].latency
    assert histogram.get_total_count() == 12_000 == merged.totals[OVERALL].counts["answered"]
    for percentile in PERCENTILES:
        assert histogram.get_value_at_percentile(percentile) == \
            everything.get_value_at_percentile(percentile)
    assert merged.totals["jd"].codes == {"00": 12_000}


def refused(*paths: Path, out: Path) -> str:
    """Merge on the command line; it must fail and write nothing. Its message."""
    errors = []
    code = cli_main(["merge", *map(str, paths), "--out", str(out)], errors)
    assert code == 2 and not out.exists()
    return errors[0]


def cli_main(argv: list[str], errors: list[str]) -> int:
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = cli.main(argv)
    errors.append(err.getvalue())
    return code


def test_merge_refuses_a_missing_part_a_part_twice_and_parts_of_other_runs(tmp_path):
    one, two, three = (synthetic_part(tmp_path, k, 3, [100 * k] * 10) for k in (1, 2, 3))
    out = tmp_path / "merged"
    assert "part(s) 2 of 3 missing" in refused(one, three, out=out)
    assert "part 1 given twice" in refused(one, two, three, synthetic_part(
        tmp_path, 1, 3, [5] * 3), out=out)
    other = synthetic_part(tmp_path / "other", 2, 3, [7] * 10)
    data = json.loads(other.read_text())
    data["plan"]["run_id"] = "Lother"
    other.write_text(json.dumps(data))
    assert "parts of different runs" in refused(one, other, three, out=out)
    faster = synthetic_part(tmp_path / "faster", 2, 3, [7] * 10, connections=9)
    assert "differ in connections" in refused(one, faster, three, out=out)
    # Where each host reaches the switches is its own.
    elsewhere = synthetic_part(tmp_path / "elsewhere", 2, 3, [7] * 10,
                               redis_url="redis://h2:6379")
    assert cli_main(["merge", str(one), str(elsewhere), str(three), "--out", str(out)],
                    []) == 0


def test_merge_refuses_what_is_not_a_part_file(tmp_path):
    part = synthetic_part(tmp_path, 1, 1, [100] * 10)
    out = tmp_path / "merged"
    summary = tmp_path / "summary.json"
    summary.write_text(json.dumps({"plan": {}, "channels": {}}))
    assert "not a part file" in refused(summary, out=out)
    broken = tmp_path / "broken.json"
    data = json.loads(part.read_text())
    data["seconds"][0]["channels"]["jd"]["latency"] = "HISTFAAAAB"
    broken.write_text(json.dumps(data))
    assert "not an HdrHistogram encoding" in refused(broken, out=out)
    coarse = histogram_of([100] * 10)
    coarse_total = HdrHistogram(1, LATENCY_MAX_US, 2)
    coarse_total.add(coarse)
    data["seconds"][0]["channels"]["jd"]["latency"] = coarse_total.encode().decode()
    broken.write_text(json.dumps(data))
    assert "other range or precision" in refused(broken, out=out)
    data = json.loads(part.read_text())
    data["seconds"][0]["channels"] = {"atm": data["seconds"][0]["channels"]["jd"]}
    broken.write_text(json.dumps(data))
    assert "channels atm outside its mix" in refused(broken, out=out)
    data = json.loads(part.read_text())
    data["plan"]["part"] = 2
    broken.write_text(json.dumps(data))
    assert "part 2 of 1" in refused(broken, out=out)


def test_the_merged_report_has_the_switchs_side_when_one_part_read_a_switch(tmp_path):
    side = SwitchSide(admin_url="http://sw1:8680", readings=3, failed=0, errors=[],
                      run_requests={"jd": 20}, run_refused={"jd": 0}, run_codes={"00": 20},
                      series=[])
    one, two = (synthetic_part(tmp_path / "one", k, 2, [100] * 10,
                               switch=side if k == 1 else None) for k in (1, 2))
    assert merge_files([one, two])[0].switch == side
    both = synthetic_part(tmp_path / "both", 2, 2, [100] * 10, switch=side)
    assert merge_files([one, both])[0].switch is None


def test_only_a_part_writes_a_part_file(tmp_path):
    part = msgspec.json.decode(synthetic_part(tmp_path, 1, 1, [5]).read_bytes(), type=PartFile)
    whole = Result(plan=msgspec.structs.replace(part.plan, part=0), started_at="",
                   elapsed_s=1.0, totals={}, series={}, seconds=part.seconds)
    with pytest.raises(ValueError, match="only a part"):
        write_part(whole, tmp_path / "whole")


async def test_a_connection_made_after_a_failed_one_goes_to_the_next_of_the_fleet(jd_switch):
    switch, _ = jd_switch
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        down = Target("127.0.0.1", closed.getsockname()[1])
    fleet = {"jd": [down, Target("127.0.0.1", switch.ports["jd"])]}
    client = LoadClient(["jd"], timeout_s=1.0)
    adapter = adapters.build("jd")
    with pytest.raises(LoadTestError, match=f"cannot connect to jd at 127.0.0.1:{down.port}"):
        await client.connect({"jd": 1}, fleet, lambda ch: ClientConnection(client, adapter))
    await client.connect({"jd": 1}, fleet, lambda ch: ClientConnection(client, adapter))
    try:
        assert len(client.conns["jd"]) == 1
        await until_true(lambda: _accepted(switch, 1), "the switch accepted the connection")
    finally:
        client.close_connections()


async def _accepted(switch, count: int) -> bool:
    return switch.counters.connections == count


# --- the plan of a part -------------------------------------------------------------------


def test_a_parts_workers_are_its_share_of_the_runs_numbered_across_every_part():
    plan = Plan(rate=1200, duration_s=1, targets={}, mix={"pos": 1}, workers=2, parts=3,
                connections=8, run_id="Lrun")
    parts = [worker_plans(msgspec.structs.replace(plan, part=k)) for k in (1, 2, 3)]
    every = [worker for share in parts for worker in share]
    assert [worker.index for worker in every] == list(range(6))
    assert [worker.index for worker in parts[1]] == [2, 3]
    assert sum(worker.rate for worker in every) == pytest.approx(1200)
    assert [worker.connections for worker in every] == [2, 2, 1, 1, 1, 1]
    assert [worker.first_connection for worker in every] == [0, 2, 4, 5, 6, 7]
    assert len({worker.ref_prefix for worker in every}) == 6
    assert all(worker.workers == 6 for worker in every)
    assert worker_plans(msgspec.structs.replace(plan, parts=1)) == \
        worker_plans(msgspec.structs.replace(plan, parts=1, part=1))


def test_a_parts_run_id_comes_from_its_start_the_same_on_every_host():
    plan = Plan(rate=1, duration_s=1, targets={}, mix={"pos": 1}, workers=3, parts=4, part=2,
                start_at=1_800_000_000.25)
    run_id = run_id_of(plan)
    assert run_id == run_id_of(msgspec.structs.replace(plan, part=4))
    assert run_id != run_id_of(msgspec.structs.replace(plan, start_at=1_800_000_000.35))
    assert run_id_of(msgspec.structs.replace(plan, run_id="Lmine")).startswith("Lmine")
    tags = {terminal_tag(worker.ref_prefix) for k in (1, 2, 3, 4) for worker in worker_plans(
        msgspec.structs.replace(plan, part=k, run_id=run_id))}
    assert len(tags) == 12  # every worker of the run its own terminals


def test_a_run_id_whose_terminals_clash_gets_one_more_character():
    def prefixes(run_id: str) -> list[str]:
        return ["same", "same"] if run_id in ("Lx", "Lx0") else [run_id + "a", run_id + "b"]

    assert with_distinct_terminals("Lx", prefixes) == "Lx1"
    assert with_distinct_terminals("Ly", prefixes) == "Ly"
    with pytest.raises(LoadTestError, match="terminals clash"):
        with_distinct_terminals("Lz", lambda run_id: ["same", "same"])


def test_the_bounds_of_a_plan():
    plan = Plan(rate=1, duration_s=1, targets={}, mix={"pos": 1})
    check_plan(msgspec.structs.replace(plan, workers=50, parts=WORKERS_MAX // 50), 0.0)
    with pytest.raises(LoadTestError, match="more than 100 workers"):
        check_plan(msgspec.structs.replace(plan, workers=1, parts=WORKERS_MAX + 1, part=1), 0.0)
    check_plan(msgspec.structs.replace(plan, run_id="A" * 12), 0.0)
    with pytest.raises(LoadTestError, match="1 to 12 letters and digits"):
        check_plan(msgspec.structs.replace(plan, run_id="A" * 13), 0.0)
    with pytest.raises(LoadTestError, match="1 to 12 letters and digits"):
        check_plan(msgspec.structs.replace(plan, run_id="L-1"), 0.0)
    with pytest.raises(LoadTestError, match="part 3 of 2"):
        check_plan(msgspec.structs.replace(plan, part=3, parts=2), 0.0)
    with pytest.raises(LoadTestError, match="part 0 of 0"):
        check_plan(msgspec.structs.replace(plan, parts=0), 0.0)
    with pytest.raises(LoadTestError, match="needs --start-at or --run-id"):
        check_plan(msgspec.structs.replace(plan, part=1, parts=2), 0.0)


def test_a_start_time_is_ahead_and_at_most_an_hour_ahead():
    now = 1_800_000_000.0
    check_start_at(now + 0.001, now)
    check_start_at(now + START_AT_AHEAD_MAX_S, now)
    with pytest.raises(LoadTestError, match="in the past"):
        check_start_at(now, now)
    with pytest.raises(LoadTestError, match="ahead, more than"):
        check_start_at(now + START_AT_AHEAD_MAX_S + 0.001, now)


def test_a_part_is_k_of_n():
    assert cli.parse_part("2/3") == (2, 3) and cli.parse_part("1/1") == (1, 1)
    for bad in ("0/2", "3/2", "2", "a/b", "1/"):
        with pytest.raises(ValueError, match="expected K/N"):
            cli.parse_part(bad)


def test_a_channel_named_again_is_a_fleet():
    targets = cli.parse_targets(["jd=10.0.0.1:8601", "jd=10.0.0.2:8601", "pos=10.0.0.1:8583"],
                                {"jd": 1, "pos": 1, "xpay": 1})
    assert targets == {"jd": [Target("10.0.0.1", 8601), Target("10.0.0.2", 8601)],
                       "pos": Target("10.0.0.1", 8583), "xpay": Target("127.0.0.1", 8584)}

