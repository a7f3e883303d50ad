"""The forwarder (switch/forwarder.py) on a real journal and a real Redis."""

from __future__ import annotations

import asyncio
import logging
import time

from switch import limits
from switch.forwarder import Forwarder
from switch.journal import Journal, Void
from switch.ledger import Ledger
from switch.policy import Policy
from switch.policy_file import load_policy
from switch.redis_client import connect
from switch.redis_runner import free_port
from tests.support import make_card
from tests.test_standin_forwarding import stand_in_advice

POLICY = Policy(load_policy())


def void(pan: str, wait_s: float) -> Void:
    now_ms = time.time_ns() // 1_000_000
    return Void(id=f"void-{time.time_ns()}", pan=pan, idempotency_key=f"jd:m:V{time.time_ns()}",
                auth_id="000001", not_before_ms=now_ms + int(wait_s * 1000), written_ms=now_ms)


async def test_a_void_waits_for_its_requests_deadline_then_finds_nothing(tmp_path, ledger):
    pan = await make_card(ledger)
    journal = Journal.open_locked(tmp_path / "saf-0.journal")
    await journal.append([void(pan, 0.4)])
    began = time.monotonic()
    report = await Forwarder(journal, ledger, POLICY).replay()
    assert time.monotonic() - began >= 0.4  # not before the original call's fence is past
    assert report == {"void:absent": 1} and not journal.records  # forwarded and truncated
    journal.close()


async def test_a_replay_cut_short_keeps_the_progress_it_made(tmp_path, ledger):
    pan = await make_card(ledger, limit_fen=100_000)
    journal = Journal.open_locked(tmp_path / "saf-0.journal")
    await journal.append([stand_in_advice(pan, 1, 500), void(pan, 30), stand_in_advice(pan, 2, 9)])
    forwarder = Forwarder(journal, ledger, POLICY)
    replay = asyncio.ensure_future(forwarder.replay())

    async def posted() -> int:
        return (await ledger.card(pan)).posted

    deadline = time.monotonic() + 10
    while await posted() != 500:  # the first advice is in; the void now waits its 30 s
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    replay.cancel()
    await asyncio.gather(replay, return_exceptions=True)
    assert journal.forwarded == 1 and len(journal.pending) == 2  # the cursor moved past it
    assert forwarder.report == {"advice:applied": 1}
    journal.close()
    again = Journal.open_locked(tmp_path / "saf-0.journal")
    assert again.forwarded == 1  # on disk
    again.close()


async def test_the_probe_says_whether_redis_answers_within_its_bound(redis_url, tmp_path):
    journal = Journal.open_locked(tmp_path / "saf-0.journal")
    # A peer that accepts and never answers: a frozen Redis, as the probe sees it.
    silent = await asyncio.start_server(lambda reader, writer: None, "127.0.0.1", 0)
    mute_port = silent.sockets[0].getsockname()[1]
    ledgers = [Ledger(connect(url)) for url in (
        redis_url, f"redis://127.0.0.1:{free_port()}/0", f"redis://127.0.0.1:{mute_port}/0")]
    live, dead, mute = (Forwarder(journal, ledger, POLICY) for ledger in ledgers)
    try:
        assert await live.reachable()
        assert not await dead.reachable()  # refused at once
        began = time.monotonic()
        assert not await mute.reachable()
        waited_s = time.monotonic() - began
        assert limits.saf_probe_timeout_s - 0.1 <= waited_s <= limits.saf_probe_timeout_s + 0.5
    finally:
        for ledger in ledgers:
            await ledger.aclose()
        silent.close()
        journal.close()


async def test_an_advice_whose_key_holds_another_decision_posts_nothing_and_is_logged(
        tmp_path, ledger, caplog):
    pan = await make_card(ledger, limit_fen=100_000)
    advice = stand_in_advice(pan, 3, 700)
    online = await ledger.execute(advice.request, auth_id="999999")  # decided online meanwhile
    assert online.approved
    journal = Journal.open_locked(tmp_path / "saf-0.journal")
    await journal.append([advice])
    with caplog.at_level(logging.ERROR, logger="switch.forwarder"):
        report = await Forwarder(journal, ledger, POLICY).replay()
    journal.close()
    assert report == {"advice:conflict": 1}
    assert (await ledger.card(pan)).posted == 700  # once: the online decision
    [logged] = caplog.records
    assert advice.request.idempotency_key in logged.getMessage() and pan not in logged.getMessage()
