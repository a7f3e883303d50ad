"""The switch over real TCP: concurrency, limits, deadlines, shutdown."""

from __future__ import annotations

import asyncio

import msgspec
import redis.asyncio as aioredis
import redis.exceptions

from protocols.framing import BINARY_4
from protocols.messages import MessageClass as C
from switch.config import ServerLimits
from switch.pipeline import ScriptPipeline
from tests.support import (
    ANSWER_WAIT_S,
    CARD_EXPIRY,
    JdClient,
    jd_request,
    make_card,
    running_switch,
    switch_config,
)


async def read_until_closed(reader: asyncio.StreamReader) -> bytes:
    async with asyncio.timeout(ANSWER_WAIT_S):
        return await reader.read()


async def test_200_concurrent_authorizations_approve_exactly_what_fits(jd_switch):
    switch, ledger = jd_switch
    pan = await make_card(ledger, limit_fen=10_000)
    clients = [await JdClient.connect(switch.ports["jd"]) for _ in range(8)]
    try:
        answers = await asyncio.gather(*(
            clients[i % 8].send(jd_request(pan, C.AUTH, 1_000)) for i in range(200)))
    finally:
        for client in clients:
            await client.close()
    codes = [a.response.response_code for a in answers]
    assert ledger.scripts.round_trips < ledger.scripts.calls  # calls of one tick share a trip
    assert codes.count("00") == 10
    assert codes.count("51") == 190
    view = await ledger.card(pan)
    assert (view.held, view.open_to_buy) == (10_000, 0)


async def test_each_message_class_over_tcp(jd_switch):
    switch, ledger = jd_switch
    pan = await make_card(ledger, limit_fen=50_000)
    client = await JdClient.connect(switch.ports["jd"])
    try:
        inquiry = await client.send(jd_request(pan, C.INQUIRY, 0, mcc="", expiry=CARD_EXPIRY))
        assert (inquiry.response.response_code, inquiry.response.open_to_buy_fen) == ("00", 50_000)
        auth = await client.send(jd_request(pan, C.AUTH, 20_000))
        assert auth.response.open_to_buy_fen == 30_000
        capture = await client.send(jd_request(pan, C.CAPTURE, 15_000,
                                               original=auth.correlation_id))
        assert (capture.response.response_code, capture.response.open_to_buy_fen) == (
            "00", 35_000)  # 15,000 posted, the other 5,000 of the hold released
        assert capture.response.auth_id == auth.response.auth_id
        refund = await client.send(jd_request(pan, C.REFUND, 5_000, original=auth.correlation_id,
                                              instant_refund=True))
        assert (refund.response.response_code, refund.response.open_to_buy_fen) == ("00", 40_000)
        slow_refund = await client.send(jd_request(pan, C.REFUND, 5_000,
                                                   original=auth.correlation_id))
        assert slow_refund.response.open_to_buy_fen == 40_000  # waits for settlement
        assert await ledger.settle(pan) == 5_000
        assert (await ledger.card(pan)).open_to_buy == 45_000
        sale = await client.send(jd_request(pan, C.SALE, 45_001))
        assert (sale.response.response_code, sale.fields["code"]) == ("51", "BAL001")
        partial = await client.send(jd_request(pan, C.SALE, 45_001, partial_ok=True))
        assert (partial.response.response_code, partial.response.approved_fen) == ("10", 45_000)
        reverse = await client.send(jd_request(pan, C.REVERSAL, 0,
                                               original=partial.correlation_id))
        assert reverse.response.open_to_buy_fen == 45_000
    finally:
        await client.close()


async def test_repeat_returns_the_first_answer_and_changes_nothing(jd_switch):
    switch, ledger = jd_switch
    pan = await make_card(ledger, limit_fen=5_000)
    client = await JdClient.connect(switch.ports["jd"])
    try:
        request = jd_request(pan, C.SALE, 3_000)
        first = await client.send(request)
        again = await client.send(request)
        assert again.response.repeat and not first.response.repeat
        assert (again.response.auth_id, again.response.open_to_buy_fen) == (
            first.response.auth_id, 2_000)
        assert (await ledger.card(pan)).posted == 3_000
        changed = await client.send(jd_request(pan, C.SALE, 1, txn_ref=request.txn_ref))
        assert (changed.response.response_code, changed.response.reason) == (
            "94", "duplicate_key_mismatch")
        assert (await ledger.card(pan)).posted == 3_000
    finally:
        await client.close()


async def test_card_and_rule_declines_name_their_reason(jd_switch):
    switch, ledger = jd_switch
    client = await JdClient.connect(switch.ports["jd"])
    cases = {
        "14": ("card_unknown", "6253990000000000000"),
        "41": ("card_lost", await make_card(ledger, status="lost")),
        "43": ("card_stolen", await make_card(ledger, status="stolen")),
        "62": ("card_frozen", await make_card(ledger, status="frozen")),
        "54": ("card_expired", await make_card(ledger, expiry="2001")),
    }
    try:
        for code, (reason, pan) in cases.items():
            answer = await client.send(jd_request(pan, C.SALE, 100))
            assert (answer.response.response_code, answer.response.reason) == (code, reason)
        pan = await make_card(ledger)
        gambling = await client.send(jd_request(pan, C.SALE, 100, mcc="7995"))
        assert (gambling.response.response_code, gambling.response.reason) == (
            "57", "mcc_blocked:7995")
        too_big = await client.send(jd_request(pan, C.SALE, 10**12))
        assert too_big.response.response_code == "13"
        orphan = await client.send(jd_request(pan, C.REVERSAL, 0, original="nothing"))
        assert (orphan.response.response_code, orphan.response.reason) == (
            "25", "original_not_found")
        assert (await ledger.card(pan)).open_to_buy == 10_000
    finally:
        await client.close()


async def test_inflight_bound_pauses_reading_and_everything_is_answered(redis_url):
    config = switch_config(server_limits=ServerLimits(inflight_per_connection_max=2))
    async with running_switch(redis_url, config) as (switch, ledger):
        pan = await make_card(ledger, limit_fen=1_000_000)
        client = await JdClient.connect(switch.ports["jd"])
        try:
            answers = await asyncio.gather(*(
                client.send(jd_request(pan, C.SALE, 10)) for _ in range(100)))
        finally:
            await client.close()
    assert [a.response.response_code for a in answers] == ["00"] * 100
    assert (await ledger_card_posted(redis_url, pan)) == 1_000


async def ledger_card_posted(redis_url: str, pan: str) -> int:
    client = aioredis.Redis.from_url(redis_url)
    try:
        return int(await client.hget(f"{{c:{pan}}}", "posted"))
    finally:
        await client.aclose()


async def test_oversized_frame_closes_that_connection_only(jd_switch):
    switch, ledger = jd_switch
    pan = await make_card(ledger)
    reader, writer = await asyncio.open_connection("127.0.0.1", switch.ports["jd"])
    good = await JdClient.connect(switch.ports["jd"])
    try:
        writer.write(BINARY_4.encode(10**9))  # a gigabyte announced: refused at the header
        assert await read_until_closed(reader) == b""
        answer = await good.send(jd_request(pan, C.SALE, 100))
        assert answer.response.response_code == "00"
    finally:
        writer.close()
        await good.close()


async def test_garbage_frame_is_answered_with_a_format_error(jd_switch):
    switch, _ = jd_switch
    reader, writer = await asyncio.open_connection("127.0.0.1", switch.ports["jd"])
    try:
        writer.write(BINARY_4.encode(5) + b"\xff{not")
        async with asyncio.timeout(ANSWER_WAIT_S):
            length = BINARY_4.decode(await reader.readexactly(4))
            reply = msgspec.json.decode(await reader.readexactly(length))
        assert (reply["isoCode"], reply["code"]) == ("30", "PARA01")
    finally:
        writer.close()


async def test_idle_connection_is_closed(redis_url):
    config = switch_config(server_limits=ServerLimits(idle_timeout_s=0.2))
    async with running_switch(redis_url, config) as (switch, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", switch.ports["jd"])
        assert await read_until_closed(reader) == b""
        writer.close()


async def test_slow_redis_is_answered_91_within_the_deadline(redis_url):
    config = switch_config(server_limits=ServerLimits(request_deadline_ms=200))
    async with running_switch(redis_url, config) as (switch, ledger):
        pan = await make_card(ledger)
        client = await JdClient.connect(switch.ports["jd"])
        admin = aioredis.Redis.from_url(redis_url)
        try:
            await admin.execute_command("CLIENT", "PAUSE", 1000, "ALL")
            answer = await client.send(jd_request(pan, C.SALE, 100))
            assert (answer.response.response_code, answer.response.reason) == (
                "91", "issuer_timeout")
            assert answer.fields["code"] == "SYS001"
        finally:
            await client.close()
            await admin.aclose()
        await wait_for_redis(redis_url)


async def test_the_configured_deadline_bounds_every_wait_on_redis(redis_url):
    config = switch_config(server_limits=ServerLimits(request_deadline_ms=200))
    async with running_switch(redis_url, config) as (_, ledger):
        scripts = [p for p in ledger.pipelines if isinstance(p, ScriptPipeline)]
        assert [p.timeout_s for p in scripts] == [0.2, 0.2]  # the ledger's, the vault's
        assert ledger.client.connection_pool.connection_kwargs["socket_timeout"] == 0.2
        pan = await make_card(ledger)
        await ledger.settle(pan)  # the pipeline's own connection is open
        admin = aioredis.Redis.from_url(redis_url)
        try:
            await admin.execute_command("CLIENT", "PAUSE", 600, "ALL")
            async with asyncio.timeout(ANSWER_WAIT_S):
                outcomes = await asyncio.gather(
                    ledger.settle(pan), ledger.client.hget(f"{{c:{pan}}}", "limit"),
                    return_exceptions=True)
            # Both gave up before the pause ended (with the default 2 s they would answer).
            assert [type(outcome) for outcome in outcomes] == [
                TimeoutError, redis.exceptions.TimeoutError]
        finally:
            await admin.aclose()
        await wait_for_redis(redis_url)


async def wait_for_redis(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    try:
        async with asyncio.timeout(ANSWER_WAIT_S):
            await client.ping()
    finally:
        await client.aclose()


async def test_lost_function_library_is_reloaded(jd_switch):
    switch, ledger = jd_switch
    pan = await make_card(ledger)
    await ledger.client.function_flush()  # what a restart of a Redis that keeps nothing does
    client = await JdClient.connect(switch.ports["jd"])
    try:
        answer = await client.send(jd_request(pan, C.SALE, 100))
        assert answer.response.response_code == "00"
    finally:
        await client.close()


async def test_shutdown_under_load_answers_every_decision(redis_url):
    async with running_switch(redis_url) as (switch, ledger):
        pan = await make_card(ledger, limit_fen=1_000_000)
        client = await JdClient.connect(switch.ports["jd"])
        futures = [client.send_body(r.txn_ref, body) for r, body in
                   (_signed(jd_request(pan, C.SALE, 1)) for _ in range(2000))]
        async with asyncio.timeout(ANSWER_WAIT_S):
            await futures[0]  # the switch is busy with the stream
        await switch.shutdown()
        async with asyncio.timeout(ANSWER_WAIT_S):  # every request is answered or refused
            await asyncio.wait(futures)
        answered = [f.result() for f in futures if not f.exception()]
        await client.close()
        posted = (await ledger.card(pan)).posted
    assert 0 < len(answered)
    assert all(a.response.response_code == "00" for a in answered)
    # every approval the ledger recorded reached the client, and nothing else was approved
    assert posted == sum(a.response.approved_fen for a in answered)


def _signed(request):
    from protocols import jd
    from protocols.demo import DEMO_JD_KEY
    return request, jd.encode_request(request, DEMO_JD_KEY.encode())
