"""A pytest fixture for testers' own suites (installed as a pytest plugin with the package):

    async def test_a_sale(baitiao_switch):
        pan = await baitiao_switch.new_card(limit_fen=100_000)
        answer = await baitiao_switch.send("pos", pan, amount=100, mcc="5411")
        assert answer.response.response_code == "00"

It needs pytest-asyncio (without it, the plugin offers nothing and stays out of the way). The
switch runs on a private throw-away Redis, or on the Redis of $SWITCH_TEST_REDIS_URL when set
(a Redis of the tester's own: only fresh card numbers are written, nothing is flushed).
"""

from __future__ import annotations

import os

from switch import testing

try:
    import pytest_asyncio
except ImportError:  # pragma: no cover - a suite without pytest-asyncio gets no fixture
    pytest_asyncio = None

if pytest_asyncio is not None:
    @pytest_asyncio.fixture
    async def baitiao_switch():
        async with testing.start(redis_url=os.environ.get("SWITCH_TEST_REDIS_URL") or None
                                 ) as switch:
            yield switch
