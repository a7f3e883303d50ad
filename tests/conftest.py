"""Fixtures: a private redis-server on a free port (started once), a real switch on free ports;
and the suite-wide guard: no log record and no printed line of any test shows a full card
number (commands run as processes are checked in tests/support.py)."""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import AsyncIterator

import pytest

from protocols.cardnumbers import full_card_numbers_in, mask_card_numbers_in
from switch.ledger import Ledger
from switch.redis_client import connect
from switch.redis_runner import PrivateRedis, free_port
from tests.support import running_switch


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory) -> str:
    server = PrivateRedis(tmp_path_factory.mktemp("redis"))
    url = server.start()
    yield url
    server.stop()


@pytest.fixture
def private_redis(tmp_path):
    """A redis-server of the test's own, to freeze (SIGSTOP), pause or kill: durable (AOF,
    appendfsync always) on one port at every start, so a SIGKILL and `start()` serve the same
    data at the same URL. A failed test never leaves it stopped or running."""
    server = PrivateRedis(tmp_path / "redis", durable=True, appendfsync="always",
                          port=free_port())
    server.start()
    yield server
    if server.process and server.process.poll() is None:
        os.kill(server.process.pid, signal.SIGCONT)
    server.stop()


@pytest.fixture
async def ledger(redis_url) -> AsyncIterator[Ledger]:
    ledger = Ledger(connect(redis_url))
    await ledger.start()
    yield ledger
    await ledger.aclose()


@pytest.fixture
async def jd_switch(redis_url):
    async with running_switch(redis_url) as (switch, ledger):
        yield switch, ledger




# --- the guard against full card numbers ---------------------------------------------------

PROJECT_LOGGERS = ("switch", "protocols", "loadtest")


class CardNumberWatch(logging.Handler):
    """Sees every record of the project's loggers, at every level, tracebacks included."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.found: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = self.format(record)
        if full_card_numbers_in(text):
            self.found.append(mask_card_numbers_in(text)[:300])


WATCH = CardNumberWatch()


@pytest.fixture(scope="session", autouse=True)
def watch_every_log_record():
    loggers = [logging.getLogger(name) for name in PROJECT_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.DEBUG)
        logger.addHandler(WATCH)
    yield
    for logger, level in zip(loggers, levels, strict=True):
        logger.removeHandler(WATCH)
        logger.setLevel(level)


@pytest.fixture(autouse=True)
def no_card_number_in_log_records():
    WATCH.found.clear()
    yield
    found, WATCH.found[:] = list(WATCH.found), []
    assert not found, f"a log record shows a full card number: {found[0]}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A test whose printed output (stdout, stderr, captured log) shows a full card number
    fails at teardown, when every phase's output is in the report."""
    outcome = yield
    report = outcome.get_result()
    if report.when != "teardown" or report.failed:
        return
    for title, content in report.sections:
        if full_card_numbers_in(content):
            report.outcome = "failed"
            report.longrepr = (f"{title} shows a full card number: "
                               f"{mask_card_numbers_in(content)[:300]!r}")
            return
