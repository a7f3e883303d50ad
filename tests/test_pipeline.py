"""The script pipeline: its FCALL packing, and its own connection to a real redis-server."""

from __future__ import annotations

import asyncio
import socket

import hiredis
import pytest
import redis.asyncio as aioredis
from hypothesis import given
from hypothesis import strategies as st

from switch import limits
from switch.lua_library import build_library, ledger_library
from switch.pipeline import ScriptPipeline, pack_fcall
from switch.redis_client import connect
from switch.redis_link import LINK_NAME
from tests.support import ANSWER_WAIT_S, new_pan

texts = st.text(max_size=40)  # any Unicode: keys and arguments are sent UTF-8
arguments = st.one_of(texts, st.integers(-10**15, 10**15), st.binary(max_size=40))


@given(keys=st.lists(texts, max_size=8).map(tuple),
       args=st.lists(arguments, max_size=20).map(tuple))
def test_packed_fcall_reads_back_as_the_call(keys, args):
    function = build_library("t", ["-- no code"]).function("authorize").encode()
    packed = pack_fcall(function, keys, args)
    reader = hiredis.Reader()  # RESP commands and replies share the array syntax
    reader.feed(packed)
    expected = [b"FCALL", function, str(len(keys)).encode(), *[k.encode() for k in keys],
                *[a if isinstance(a, bytes) else str(a).encode() for a in args]]
    assert reader.gets() == expected
    assert reader.gets() is False  # nothing left over


def test_library_names_carry_the_code_version():
    first, second = build_library("t", ["-- one"]), build_library("t", ["-- two"])
    assert first.version != second.version
    assert first.code.startswith(f"#!lua name=t_{first.version}\n")
    assert first.function("authorize") == f"authorize_{first.version}"


# --- the pipeline's own connection, against the tests' real redis-server -------------------

async def pipeline_on(url: str, timeout_s: float | None = None) -> ScriptPipeline:
    pipeline = ScriptPipeline(connect(url), ledger_library(),
                              timeout_s or limits.request_deadline_ms / 1000)
    await pipeline.load()
    return pipeline


async def settle(pipeline: ScriptPipeline) -> None:
    await pipeline.drain()
    pipeline.close()
    await pipeline.client.aclose()


async def link_ids(admin: aioredis.Redis) -> list[str]:
    return [c["id"] for c in await admin.client_list() if c["name"] == LINK_NAME]


async def test_calls_share_one_connection_and_come_back_in_order(redis_url):
    pipeline = await pipeline_on(redis_url)
    try:
        pans = [new_pan() for _ in range(50)]
        settled = await asyncio.gather(*[pipeline.call("settle", (f"{{c:{pan}}}",), ())
                                         for pan in pans])
        assert settled == [0] * 50  # unknown cards: nothing to settle
        assert (pipeline.calls, pipeline.round_trips) == (50, 1)  # one tick, one write
    finally:
        await settle(pipeline)


BATCH_MAX = 4  # limits.pipeline_batch_max for the next test: a few calls cross it


@pytest.mark.parametrize(("calls", "batches"), [(BATCH_MAX, 1), (BATCH_MAX + 1, 2)])
async def test_a_tick_past_the_batch_bound_goes_out_in_batches(redis_url, monkeypatch, calls,
                                                                batches):
    monkeypatch.setattr(limits, "pipeline_batch_max", BATCH_MAX)
    pipeline = await pipeline_on(redis_url)
    try:
        keys = [(f"{{c:{new_pan()}}}",) for _ in range(calls)]
        settled = await asyncio.gather(*[pipeline.call("settle", key, ()) for key in keys])
        assert settled == [0] * calls
        assert (pipeline.calls, pipeline.round_trips) == (calls, batches)
    finally:
        await settle(pipeline)


async def test_the_link_authenticates_and_selects_the_database(redis_url):
    admin = aioredis.Redis.from_url(redis_url, decode_responses=True)
    user = f"link{new_pan()[-8:]}"
    await admin.acl_setuser(user, enabled=True, passwords=["+s3cret"], keys=["*"],
                            channels=["*"], commands=["+@all"])
    host, port = admin.connection_pool.connection_kwargs["host"], \
        admin.connection_pool.connection_kwargs["port"]
    pipeline = await pipeline_on(f"redis://{user}:s3cret@{host}:{port}/3")
    try:
        pan = new_pan()
        ledger_db3 = aioredis.Redis(host=host, port=port, db=3, decode_responses=True)
        await ledger_db3.hset(f"{{c:{pan}}}", mapping={"posted": 500, "pending_credit": 200})
        assert await pipeline.call("settle", (f"{{c:{pan}}}",), ()) == 200
        assert await ledger_db3.hget(f"{{c:{pan}}}", "posted") == "300"
        await ledger_db3.aclose()
    finally:
        await settle(pipeline)
        await admin.acl_deluser(user)
        await admin.aclose()


async def test_a_killed_connection_fails_its_calls_and_the_next_call_reconnects(redis_url):
    pipeline = await pipeline_on(redis_url)
    admin = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        assert await pipeline.call("settle", (f"{{c:{new_pan()}}}",), ()) == 0
        before = set(await link_ids(admin))
        for link_id in before:
            await admin.execute_command("CLIENT", "KILL", "ID", link_id)
        async with asyncio.timeout(ANSWER_WAIT_S):
            while not pipeline.lane.link.closed:  # the kill reaches us as end of stream
                await asyncio.sleep(0.01)
        assert await pipeline.call("settle", (f"{{c:{new_pan()}}}",), ()) == 0
        assert set(await link_ids(admin)) - before  # a new connection
    finally:
        await settle(pipeline)
        await admin.aclose()


async def test_a_silent_redis_fails_the_waiting_calls_at_the_bound(redis_url):
    pipeline = await pipeline_on(redis_url, timeout_s=0.2)
    admin = aioredis.Redis.from_url(redis_url)
    try:
        assert await pipeline.call("settle", (f"{{c:{new_pan()}}}",), ()) == 0  # linked
        await admin.execute_command("CLIENT", "PAUSE", 1000, "ALL")
        started = asyncio.get_running_loop().time()
        with pytest.raises(TimeoutError):
            await pipeline.call("settle", (f"{{c:{new_pan()}}}",), ())
        assert asyncio.get_running_loop().time() - started < ANSWER_WAIT_S
        await admin.execute_command("CLIENT", "UNPAUSE")
        assert await pipeline.call("settle", (f"{{c:{new_pan()}}}",), ()) == 0
    finally:
        await admin.execute_command("CLIENT", "UNPAUSE")
        await settle(pipeline)
        await admin.aclose()


async def test_no_redis_fails_the_calls_with_a_connection_error():
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    pipeline = ScriptPipeline(connect(f"redis://127.0.0.1:{port}/0"), ledger_library(),
                              limits.request_deadline_ms / 1000)
    try:
        with pytest.raises(OSError):
            await pipeline.call("settle", ("{c:6253990000000001}",), ())
    finally:
        await settle(pipeline)
