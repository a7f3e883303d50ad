"""The switch's side of a load test (`--admin-url`, loadtest/generator/switch_side.py): its
/metrics read once a second during a real run against a real switch, the numbers agreeing
with the switch's own count, the report in a real headless browser, and readings that fail
(a gap, counted, never a failed run), each bounded."""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from loadtest.generator import html_report, report, switch_side
from loadtest.generator.cards import seed_cards
from loadtest.generator.runner import run_load
from loadtest.generator.switch_side import (
    Reading,
    ScrapeError,
    Scraper,
    parse_samples,
    quantile_ms,
    side_of,
)
from loadtest.generator.workload import load_test_pans
from tests.admin_support import admin_switch, metric
from tests.test_dashboard import browser
from tests.test_loadtest_run import jd_plan, run_cli

# Where to keep the report's screenshot (docs/loadtest-report.png is made this way).
SCREENSHOT_TO = os.environ.get("LOADTEST_REPORT_SCREENSHOT")
WAIT_S = 10.0


# --- reading /metrics -------------------------------------------------------------------------

async def test_the_small_parser_reads_the_switchs_page_as_prometheus_client_does(redis_url):
    async with admin_switch(redis_url, channels=("jd", "pos")) as admin:
        pan = await admin.switch.new_card(limit_fen=100_000)
        await admin.switch.send("jd", pan, amount=100, mcc="5411")
        await admin.switch.send("pos", pan, amount=100, mcc="7995")  # 57: another code
        _, text = await admin.call("GET", "/metrics", token=None)
    ours = sorted((name, sorted(labels.items()), value)
                  for name, labels, value in parse_samples(text))
    theirs = sorted((s.name, sorted(s.labels.items()), s.value)
                    for family in text_string_to_metric_families(text) for s in family.samples)
    assert ours == theirs and len(ours) > 20


@pytest.mark.parametrize("text", ["switch_inflight{channel=\"jd\" 1",
                                  "switch_inflight one", "<html>not found</html>"])
def test_what_is_not_prometheus_text_is_a_failed_reading(text):
    with pytest.raises(ScrapeError):
        parse_samples(text)


def test_a_page_without_the_switchs_histogram_is_not_the_switch():
    with pytest.raises(ScrapeError, match="no switch_decision_seconds"):
        switch_side.reading_of(parse_samples("up 1\n"), 0.0)


def test_percentiles_come_from_the_bucket_differences():
    before = {"0.001": 10.0, "0.002": 10.0, "+Inf": 10.0}  # earlier decisions do not count
    after = {"0.001": 60.0, "0.002": 110.0, "+Inf": 110.0}  # 50 under 1 ms, 50 in 1-2 ms
    assert quantile_ms(before, after, 0.5) == pytest.approx(1.0)
    assert quantile_ms(before, after, 0.99) == pytest.approx(1.98)
    assert quantile_ms(after, after, 0.5) is None  # nothing decided between the readings
    slow = {"0.001": 0.0, "0.002": 0.0, "+Inf": 5.0}  # above every bound
    assert quantile_ms({}, slow, 0.99) == pytest.approx(2.0)


def reading(at_s: float, jd: float, late: float = 0.0) -> Reading:
    return Reading(at_s=at_s, requests={"jd": jd}, refused={"jd": 0.0}, codes={"00": jd},
                   buckets={"0.001": jd, "+Inf": jd}, inflight=2.0, redis_calls=jd * 2,
                   redis_batches=jd, late=late)


def test_a_failed_reading_is_a_gap_and_the_next_covers_the_time_since_the_last_good_one():
    readings = [reading(99.0, 1000), reading(101.0, 1100), ScrapeError("TimeoutError"),
                reading(104.0, 1400, late=3), reading(105.0, 1450, late=3)]
    side = side_of("http://x", readings, [99.0, 101.0, 102.8, 104.0, 105.0], ["TimeoutError"],
                   first_send_s=100.0)
    assert (side.readings, side.failed, side.errors) == (5, 1, ["TimeoutError"])
    assert [p.ok for p in side.series] == [True, False, True, True]
    assert [p.second for p in side.series] == [1.0, 2.8, 4.0, 5.0]
    assert side.series[0].requests_per_s == {"jd": 50.0}  # 100 over the 2 s since the baseline
    assert side.series[2].requests_per_s == {"jd": 100.0}  # 300 over 3 s, across the gap
    assert (side.series[2].late, side.series[3].late) == (3, 0)
    assert side.series[2].redis_calls_per_batch == 2.0
    assert (side.run_requests, side.run_codes) == ({"jd": 450}, {"00": 450})


@pytest.mark.parametrize("failed", [0, -1])
def test_without_the_reading_before_or_after_the_run_its_count_is_unknown(failed):
    readings: list = [reading(99.0, 1000), reading(101.0, 1100), reading(102.0, 1200)]
    readings[failed] = ScrapeError("refused")
    side = side_of("http://x", readings, [99.0, 101.0, 102.0], ["refused"], 100.0)
    assert side.run_requests is None and side.run_codes is None and side.failed == 1


@pytest.mark.parametrize("url", ["https://127.0.0.1:8680", "127.0.0.1:x", "http://"])
def test_an_admin_url_that_is_not_http_host_port_is_refused(url):
    with pytest.raises(ValueError, match="--admin-url"):
        switch_side.metrics_url(url)


async def test_a_reading_that_gets_no_answer_gives_up_at_its_timeout():
    """A peer that accepts and says nothing: the reading fails within its bound."""
    done = asyncio.Event()

    async def silent(reader, writer):
        await reader.read(1 << 16)
        async with asyncio.timeout(WAIT_S):
            await done.wait()
        writer.close()
    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        scraper = Scraper(f"http://127.0.0.1:{port}")
        began = time.monotonic()
        await scraper.read()
        took_s = time.monotonic() - began
    finally:
        done.set()
        server.close()
        await server.wait_closed()
    assert isinstance(scraper.readings[0], ScrapeError)
    assert switch_side.SCRAPE_TIMEOUT_S <= took_s < switch_side.SCRAPE_TIMEOUT_S + 1.0
    assert scraper.errors == ["TimeoutError"]


@pytest.mark.parametrize(("size", "taken"), [(1000, True), (1001, False)])
async def test_a_page_larger_than_the_bound_is_refused(monkeypatch, size, taken):
    monkeypatch.setattr(switch_side, "SCRAPE_BODY_MAX_BYTES", 1000)
    head = b"HTTP/1.0 200 OK\r\n\r\n"
    page = b"switch_decision_seconds_bucket{le=\"+Inf\"} 0\n"
    body = head + page + b"#" * (size - len(head) - len(page) - 1) + b"\n"

    async def serve(reader, writer):
        await reader.read(1 << 16)
        writer.write(body)
        writer.close()
    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        scraper = Scraper(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}")
        await scraper.read()
    finally:
        server.close()
    assert isinstance(scraper.readings[0], Reading) == taken
    assert taken or "larger than 1000 bytes" in scraper.errors[0]


async def test_a_switch_that_cannot_be_read_leaves_gaps_not_a_failed_run(jd_switch, redis_url,
                                                                        unused_tcp_port):
    switch, _ = jd_switch
    seed_cards(redis_url, load_test_pans(200, seed=21))
    plan = jd_plan(switch, rate=100, duration_s=1.5, seed=21,
                   admin_url=f"http://127.0.0.1:{unused_tcp_port}")  # nothing listens there
    result = await run_load(plan)
    assert result.totals["all"].counts["answered"] == 150  # the run itself is whole
    side = result.switch
    assert side.failed == side.readings >= 3 and side.run_requests is None
    assert "ConnectionRefusedError" in side.errors[0]
    assert "failed" in report.table(result)


# --- a real run against a real switch -----------------------------------------------------------

async def test_a_run_shows_the_switchs_side_and_it_agrees_with_the_switchs_count(redis_url,
                                                                                tmp_path):
    async with admin_switch(redis_url, channels=("jd", "pos")) as admin:
        before = await admin.metrics()
        code, out, err = await run_cli(
            "run", "--rate", "150", "--duration", "3", "--mix", "jd=1,pos=3", "--cards", "200",
            "--seed", "23", "--redis", redis_url, "--admin-url", admin.url,
            "--target", f"jd=127.0.0.1:{admin.switch.ports['jd']}",
            "--target", f"pos=127.0.0.1:{admin.switch.ports['pos']}",
            "--out", str(tmp_path), "--quiet")
        after = await admin.metrics()
    assert code == 0, err
    summary = json.loads((tmp_path / "summary.json").read_text())
    side, client = summary["switch"], summary["channels"]
    assert side["failed"] == 0 and side["readings"] >= 4
    # What the switch counted for the run is what the generator was answered, channel by
    # channel and code by code, and what the switch's own /metrics moved by.
    for channel in ("jd", "pos"):
        answered = side["run_requests"].get(channel, 0) + side["run_refused"].get(channel, 0)
        assert answered == client[channel]["answered"] == client[channel]["sent"] > 0
        moved = (metric(after, "switch_requests_total", channel=channel)
                 - metric(before, "switch_requests_total", channel=channel))
        assert side["run_requests"][channel] == moved
    assert side["run_codes"] == client["all"]["codes"]
    points = [p for p in side["series"] if p["ok"]]
    assert sum(sum(p["codes"].values()) for p in points) == sum(side["run_codes"].values())
    busy = [p for p in points if p.get("decision_p50_ms") is not None]
    assert busy and all(0 < p["decision_p50_ms"] <= p["decision_p99_ms"] for p in busy)
    assert any(sum(p["requests_per_s"].values()) > 50 for p in points)
    assert all(p.get("late", 0) == 0 for p in points)
    assert f"{sum(side['run_requests'].values()):,} answers with a decision" in out

    html = (tmp_path / "report.html").read_text()
    assert html.count("<svg") == 7 and "The switch's side" in html and "(the same)" in html
    assert "<script" not in html and not re.search(r"(src|href)=", html)  # opens offline
    await look_at_it(tmp_path / "report.html", tmp_path)


async def look_at_it(page: Path, tmp_path: Path) -> None:
    """The report in headless chromium: the switch's section is there, drawn with its four
    charts; a screenshot of it is kept (LOADTEST_REPORT_SCREENSHOT names where)."""
    driver = browser()
    try:
        await asyncio.to_thread(driver.get, page.as_uri())
        height = driver.execute_script("return document.body.scrollHeight")
        driver.set_window_size(1100, height + 40)  # the whole page: the section in view
        section = driver.find_element("id", "switch-side")
        charts = section.find_elements("css selector", "svg")
        assert section.is_displayed() and len(charts) == 4
        assert all(chart.size["height"] > 200 for chart in charts)
        assert len(section.find_elements("css selector", "polyline")) >= 6
        shot = Path(SCREENSHOT_TO) if SCREENSHOT_TO else tmp_path / "report.png"
        await asyncio.to_thread(section.screenshot, str(shot))
        assert shot.stat().st_size > 20_000
    finally:
        driver.quit()


@pytest.mark.parametrize(("counted", "words"), [
    (900, "(the same)"), (1000, "the other 100 after the client's timeout"),
    (1001, "not the same"), (899, "not the same")])
def test_the_report_says_why_the_two_counts_differ(counted, words):
    assert words in html_report._agreement(counted, {"answered": 900, "timeouts": 100})


@pytest.mark.parametrize("command", ["run", "find-max", "saturate"])
async def test_a_bad_admin_url_is_one_line_before_anything_runs(command):
    code, out, err = await run_cli(command, "--no-seed", "--admin-url", "https://127.0.0.1:1",
                                   *(["--rate", "10"] if command == "run" else []))
    assert code == 2 and "Traceback" not in err
    assert err.strip() == ("loadtest: --admin-url 'https://127.0.0.1:1': expected "
                           "http://HOST:PORT, e.g. http://127.0.0.1:8680 (the switch's admin API)")
