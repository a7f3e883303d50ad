"""bench-scale's parts: the switch's counters line, medians, the tables and the SVG curves."""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree

import pytest

from loadtest.harness import bench_scale as scaling
from loadtest.harness.bench_scale_report import curves, markdown, terminal, write_all
from loadtest.harness.switch_counters import parse_counters, parse_line
from switch.app import counters_line
from tests.support import JdClient, jd_request, make_card, running_switch


async def test_the_switchs_own_counters_line_is_read(redis_url):
    async with running_switch(redis_url) as (switch, ledger):
        pan = await make_card(ledger, limit_fen=100_000)
        client = await JdClient.connect(switch.ports["jd"])
        for _ in range(3):
            assert (await client.send(jd_request(pan))).response.response_code == "00"
        await client.close()
        line = counters_line(switch, ledger)
    fields = parse_line(line)
    assert fields["requests"] == fields["answered"] == 3
    # Each request: its id's claim, then its card's call (one after the other).
    assert fields["redis_calls"] == 6 and 2 <= fields["redis_round_trips"] <= 6
    summed = parse_counters(f"switch is up\n{line}\nswitch stopped\n")
    assert summed["processes"] == 1 and summed["redis_calls"] == 6
    assert summed["round_trips_per_call"] == round(fields["redis_round_trips"] / 6, 4)


def test_the_lines_of_every_worker_process_are_summed():
    log = ("Baitiao card authorization switch is up (2 worker processes sharing the ports)\n"
           "counters: connections=8 requests=600 answered=600 timeouts=0 errors=0 "
           "framing_errors=0 redis_calls=600 redis_round_trips=30 round_trips_per_call=0.050\n"
           "counters: connections=8 requests=400 answered=400 timeouts=1 errors=0 "
           "framing_errors=0 redis_calls=400 redis_round_trips=70 round_trips_per_call=0.175\n"
           "switch stopped\n")
    total = parse_counters(log)
    assert total["processes"] == 2 and total["requests"] == 1000 and total["timeouts"] == 1
    assert total["redis_round_trips"] == 100 and total["round_trips_per_call"] == 0.1


def test_an_idle_switch_and_a_missing_line():
    idle = parse_counters("counters: requests=0 answered=0 redis_calls=0 "
                          "redis_round_trips=0 round_trips_per_call=-\n")
    assert idle["round_trips_per_call"] is None and idle["requests"] == 0
    assert parse_counters("switch stopped\n") is None
    with pytest.raises(ValueError):
        parse_line("counters: requests")


def test_in_flight_per_connection_keeps_the_total_sane():
    assert [scaling.scale_inflight(c) for c in (1, 10, 100, 1000)] == [8, 8, 8, 1]


def run(server: str, channel: str, rate: float, round_: int) -> dict:
    return {"server": server, "channel": channel, "round": round_, "rate": rate, "p50": 1.0,
            "p99": 2.0, "p99.9": 3.0, "max": 4.0, "failures": 0, "codes": {"00": 10},
            "duplicates_94": 0, "inflight_seen": [512, 512]}


def fake_results() -> dict:
    runs = [run(server, channel, rate * factor, r)
            for r, factor in ((1, 1.0), (2, 1.2), (3, 0.9))
            for server, rate in (("switch-1", 20_000), ("switch-2", 30_000),
                                 ("reference", 5_000), ("echo", 70_000))
            for channel in ("pos", "jd")]
    points = [{"switch_processes": w, "connections": c, "inflight": scaling.scale_inflight(c),
               "total_inflight": c * scaling.scale_inflight(c), "rate": 1000.0 * w * (c ** .5),
               "p50": 1.0, "p99": 0.5 * c, "p99.9": c, "max": c, "failures": 0}
              for c in (1, 10, 100, 1000) for w in (1, 2)]
    memory = [{"cards": n, "idle_per_card": 200.0, "approved_per_card": 1000.0,
               "keys_per_card": 5, "seed_s": 0.1, "approve_s": 0.2,
               "sample_card_key_bytes": {"card": 168, ":t:": 232}} for n in (1000, 100_000)]
    return {"settings": {"channels": ["pos", "jd"]},
            "saturation": {"connections": 16, "inflight": 32, "duration_s": 3, "warmup_s": 0.5,
                           "rounds": 3, "runs": runs, "median": scaling.medians(runs),
                           "counters": {"switch-1": {"round_trips_per_call": 0.05},
                                        "switch-2": None}},
            "openloop": {"sustainable": {"rate": 12_000, "p99_ms": 4.0, "steps": []},
                         "half": {"rate": 6000, "achieved": 6000, "p50": 0.5, "p99": 1.5,
                                  "p99.9": 12.0, "max": 20.0, "failures": 0}},
            "scaling": {"duration_s": 3, "points": points, "inflight_rule": "min(8, ...)"},
            "memory": memory, "date": "2026-11-29", "seconds": 200,
            "machine": {"summary": "2 cores"},
            "targets": {"saturation_ratio": 5.0, "visanet_rate": 65_000,
                        "round_trips_per_call": 0.2, "open_loop_ms": {"p99": 2.0,
                                                                      "p99.9": 10.0}}}


def test_medians_take_the_middle_run_of_each_server_and_channel():
    median = fake_results()["saturation"]["median"]
    assert median["switch-1"]["pos"]["median_rate"] == 20_000
    assert median["switch-1"]["pos"]["rates"] == [20_000, 24_000, 18_000]  # in round order
    assert median["reference"]["jd"]["round"] == 1


def test_the_report_shows_each_target_and_the_side_by_side_ratios(tmp_path):
    results = fake_results()
    text = terminal(results)
    row = next(line for line in text.splitlines() if line.startswith("pos "))
    assert row.split()[:7] == ["pos", "20,000/s", "30,000/s", "5,000/s", "70,000/s", "4.00x",
                               "6.00x"]
    target = next(line for line in text.splitlines() if "5x the reference" in line)
    assert target.split()[-2:] == ["6.00x", "yes"]
    assert "0.050" in text and "p99.9 <= 10 ms" in text
    p999 = next(line for line in text.splitlines() if "p99.9 <= 10 ms" in line)
    assert p999.split()[-1] == "no"
    files = write_all(results, tmp_path, "scale-x")
    assert [p.name for p in files["svg"]] == ["scale-x-connections-rate.svg",
                                              "scale-x-connections-p99.svg", "scale-x-memory.svg"]
    md = files["md"].read_text()
    assert "![Redis memory per card against cards](scale-x-memory.svg)" in md
    assert "| 1,000 | 1 | 1,000 |" in md and md == markdown(results, [p.name for p in
                                                                        files["svg"]])


def test_the_curves_are_svg_with_a_line_per_series():
    svgs = curves(fake_results())
    assert set(svgs) == {"connections-rate", "connections-p99", "memory"}
    for text in svgs.values():
        root = ElementTree.fromstring(text)
        lines = root.findall("{http://www.w3.org/2000/svg}polyline")
        assert len(lines) == 2 and all(len(p.get("points").split()) >= 2 for p in lines)
    assert curves({"settings": {}}) == {}


def test_the_real_time_run_has_its_own_target_rows_or_says_why_it_was_skipped():
    results = fake_results()
    results["openloop"]["half_realtime"] = {"rate": 6000, "achieved": 6000, "p50": 0.4,
                                            "p99": 0.9, "p99.9": 4.0, "max": 6.0,
                                            "failures": 0}
    rows = [line for line in terminal(results).splitlines() if "real-time priority)" in line]
    assert [row.split()[-3:] for row in rows] == [["0.900", "ms", "yes"],
                                                  ["4.000", "ms", "yes"]]
    assert "p99 0.900 ms" in markdown(results, [])
    results["openloop"]["half_realtime"] = {"unavailable": "SCHED_FIFO needs root"}
    text = terminal(results)
    assert "real-time priority)" not in text
    assert "skipped: SCHED_FIFO needs root" in markdown(results, [])
