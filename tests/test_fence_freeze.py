"""Redis frozen (SIGSTOP) or paused (CLIENT PAUSE) with JD sales in flight through a real
switch: every sale is answered 91 at the deadline, and when Redis runs the calls it was sent,
their fences have passed: no sale is posted (paused past the deadline, Redis drops them with
the link the switch closes then; paused until between fence and deadline, Redis runs them and
the fence refuses each). A repeat of a 91-answered sale is then decided
afresh and approved once. Each test has a private redis-server of its own to freeze.
"""

from __future__ import annotations

import asyncio
import os
import signal

import redis.asyncio as aioredis

from protocols.messages import MessageClass as C
from switch.config import Config, ServerLimits
from switch.redis_link import LINK_NAME
from tests.support import (
    ANSWER_WAIT_S,
    JdClient,
    jd_request,
    make_card,
    running_switch,
    switch_config,
)

IN_FLIGHT = 20
PAUSE_MS = 3000  # longer than the request deadline (2 s): every sale is answered first
FENCE_PAUSE_MS = 2200  # past a 1.5 s fence, before a 3 s deadline


async def fcalls(admin: aioredis.Redis) -> int:
    """Function calls Redis has run (INFO commandstats)."""
    stats = await admin.info("commandstats")
    return stats.get("cmdstat_fcall", {}).get("calls", 0)


async def wait_for_fcalls(admin: aioredis.Redis, count: int) -> None:
    """Until Redis has run at least `count` function calls (bounded)."""
    async with asyncio.timeout(ANSWER_WAIT_S):
        while await fcalls(admin) < count:
            await asyncio.sleep(0.02)


async def links(admin: aioredis.Redis) -> set[str]:
    return {c["id"] for c in await admin.client_list() if c["name"] == LINK_NAME}


async def wait_for_links_gone(admin: aioredis.Redis, gone: set[str]) -> None:
    """Until none of the connections `gone` is open in Redis (bounded)."""
    async with asyncio.timeout(ANSWER_WAIT_S):
        while await links(admin) & gone:
            await asyncio.sleep(0.02)


async def sales_through_a_stall(redis_url: str, stall, resume, settled,
                                config: Config | None = None) -> None:
    """IN_FLIGHT sales sent while Redis is stalled: all answered 91; resumed, and once the
    calls are `settled(admin, fcalls before, links before)`, none is posted; a repeat of one
    of them is then approved, once."""
    async with running_switch(redis_url, config) as (switch, ledger):
        pan = await make_card(ledger, limit_fen=100_000)
        await ledger.card(pan)  # the pipeline's link is open: the sales are written to Redis
        client = await JdClient.connect(switch.ports["jd"])
        admin = aioredis.Redis.from_url(redis_url)
        try:
            ran_before, links_before = await fcalls(admin), await links(admin)
            sales = [jd_request(pan, C.SALE, 1_000) for _ in range(IN_FLIGHT)]
            await stall(admin)
            try:
                answers = await asyncio.gather(*(client.send(sale) for sale in sales))
            finally:
                await resume(admin)
            assert {(a.response.response_code, a.response.reason) for a in answers} == {
                ("91", "issuer_timeout")}
            await settled(admin, ran_before, links_before)
            view = await ledger.card(pan)
            assert (view.posted, view.held, view.transactions) == (0, 0, [])

            again = await client.send(sales[0])
            assert (again.response.response_code, again.response.repeat) == ("00", False)
            repeat = await client.send(sales[0])
            assert (repeat.response.response_code, repeat.response.repeat) == ("00", True)
            view = await ledger.card(pan)
            assert view.posted == 1_000 and len(view.transactions) == 1
        finally:
            await client.close()
            await admin.aclose()


def pausing(pause_ms: int):
    """A stall: CLIENT PAUSE ALL for `pause_ms`, from the test's own client."""
    async def pause(admin) -> None:
        await admin.execute_command("CLIENT", "PAUSE", pause_ms, "ALL")
    return pause


async def wait_out(admin) -> None:
    """Until the pause is over: the admin's own next command waits for it (bounded)."""
    async with asyncio.timeout(ANSWER_WAIT_S):
        await admin.ping()


async def all_ran(admin, ran_before, _links) -> None:
    """Until Redis has run every call it was sent (each past its fence)."""
    await wait_for_fcalls(admin, ran_before + IN_FLIGHT)


async def test_sales_in_flight_while_redis_is_stopped_are_not_posted(private_redis):
    pid = private_redis.process.pid

    async def stop(_admin) -> None:
        os.kill(pid, signal.SIGSTOP)

    async def cont(_admin) -> None:  # the kernel kept what the switch wrote: Redis runs it
        os.kill(pid, signal.SIGCONT)

    await sales_through_a_stall(private_redis.url, stop, cont, all_ran)


async def test_sales_in_flight_while_redis_is_paused_are_not_posted(private_redis):
    async def link_closed(admin, _ran, links_before) -> None:
        # The switch dropped its link at the deadline; Redis discards a closed connection's
        # postponed calls. Once that link is gone, none of them can run any more.
        await wait_for_links_gone(admin, links_before)

    await sales_through_a_stall(private_redis.url, pausing(PAUSE_MS), wait_out, link_closed)


async def test_sales_paused_until_past_their_fence_are_refused_by_it(private_redis):
    """A pause that ends after the calls' fence but before the deadline: Redis runs every
    call while the switch still waits, and each answers 91 itself, writing nothing. (A guard
    of 1.5 s of a 3 s deadline leaves the pause's end a wide window on a loaded machine.)"""
    config = switch_config(server_limits=ServerLimits(request_deadline_ms=3000,
                                                      ledger_fence_guard_ms=1500))
    await sales_through_a_stall(private_redis.url, pausing(FENCE_PAUSE_MS), wait_out, all_ran,
                                config)
