"""The dashboard in a real headless browser (Debian's chromium through chromedriver, driven
by selenium): loaded while traffic flows, its numbers move, and once traffic stops they
agree with /metrics. scripts/ensure-chromium (make test) installs the browser; without it
this test fails and says so: it is never skipped."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.admin_support import admin_switch, metric

WAIT_S = 20.0
TRAFFIC_REQUESTS_MAX = 5_000  # the traffic stops by itself at this count ...
TRAFFIC_S_MAX = 60.0  # ... or after this long
# Where to keep the screenshot (docs/dashboard.png is made this way); else the test's tmp.
SCREENSHOT_TO = os.environ.get("DASHBOARD_SCREENSHOT")


def browser() -> webdriver.Chrome:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.fail("the dashboard test needs Debian's chromium and chromium-driver: run "
                    "scripts/ensure-chromium (make test does) or apt-get install chromium "
                    "chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--disable-gpu", "--window-size=1280,900"):
        options.add_argument(argument)
    return webdriver.Chrome(service=Service(driver), options=options)


async def traffic(admin, stop: asyncio.Event) -> int:
    """Sales on two channels (and a decline now and then) until `stop`, bounded."""
    pan = await admin.switch.new_card(limit_fen=10_000_000)
    loop = asyncio.get_running_loop()
    end, sent = loop.time() + TRAFFIC_S_MAX, 0
    while not stop.is_set() and sent < TRAFFIC_REQUESTS_MAX and loop.time() < end:
        channel = "jd" if sent % 3 else "pos"
        mcc = "7995" if sent % 10 == 9 else "5411"  # gambling: 57
        await admin.switch.send(channel, pan, amount=100, mcc=mcc)
        sent += 1
        await asyncio.sleep(0.005)
    return sent


def number(driver, element_id: str) -> float | None:
    text = driver.find_element(By.ID, element_id).text.replace("%", "").replace("ms", "")
    try:
        return float(text)
    except ValueError:
        return None


def wait_until(driver, what: str, check):
    return WebDriverWait(driver, WAIT_S, poll_frequency=0.1).until(
        lambda d: check(d), message=f"not within {WAIT_S} s: {what}")


def channel_answered(driver, channel: str) -> float:
    row = driver.find_element(By.CSS_SELECTOR, f'#channels tr[data-channel="{channel}"]')
    return float(row.find_elements(By.TAG_NAME, "td")[2].text)


async def test_the_dashboard_moves_with_traffic_and_agrees_with_metrics(redis_url, tmp_path):
    driver = browser()
    try:
        async with admin_switch(redis_url) as admin:
            stop = asyncio.Event()
            flowing = asyncio.ensure_future(traffic(admin, stop))
            try:
                await asyncio.to_thread(driver.get, admin.url + "/")
                first = await asyncio.to_thread(wait_until, driver, "a count above 0",
                                                lambda d: (number(d, "total-requests") or 0) > 0
                                                and number(d, "total-requests"))
                await asyncio.to_thread(wait_until, driver, "the count to move", lambda d: (
                    number(d, "total-requests") or 0) > first)
                await asyncio.to_thread(wait_until, driver, "a rate above 0", lambda d: (
                    number(d, "rate-total") or 0) > 0)
                shot = Path(SCREENSHOT_TO) if SCREENSHOT_TO else tmp_path / "dashboard.png"
                await asyncio.to_thread(driver.save_screenshot, str(shot))
                assert shot.stat().st_size > 10_000
            finally:
                stop.set()
                sent = await flowing
            samples = await admin.metrics()
            total = metric(samples, "switch_requests_total")
            assert total == sent
            await asyncio.to_thread(wait_until, driver, "the page to show /metrics' total",
                                    lambda d: number(d, "total-requests") == total)
            assert number(driver, "connections") == metric(samples, "switch_connections")
            assert number(driver, "late") == metric(samples, "switch_answers_late_total") == 0
            for channel in ("jd", "pos"):
                assert channel_answered(driver, channel) == metric(
                    samples, "switch_requests_total", channel=channel) > 0
            approved = metric(samples, "switch_requests_total", response_code="00")
            share = number(driver, "approved-share")
            assert abs(share - 100 * approved / total) < 0.051
            declined = driver.find_element(By.CSS_SELECTOR, 'g[data-code="57"] .count').text
            assert float(declined) == metric(samples, "switch_requests_total",
                                             response_code="57") > 0
            p99 = number(driver, "p99")
            assert p99 is not None and p99 > 0
    finally:
        driver.quit()
