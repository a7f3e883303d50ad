"""Fixtures: a private redis-server on a free port (started once), a real switch on free ports."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from switch.ledger import Ledger
from switch.redis_client import connect
from switch.redis_runner import PrivateRedis
from tests.support import running_switch


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory) -> str:
    server = PrivateRedis(tmp_path_factory.mktemp("redis"))
    url = server.start()
    yield url
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


