"""Stand-in on, Redis killed or frozen, then back: the forwarder posts each advice once."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time

from protocols.cardnumbers import mask_pan
from protocols.codes import Reason
from protocols.ledger_layout import card_key
from protocols.messages import AuthRequest, MessageClass
from switch.journal import HEADER, Advice, Journal, Void, snapshot
from switch.ledger import Ledger
from switch.redis_client import connect
from switch.redis_runner import free_port
from tests.support import make_card
from tests.test_cli import stop
from tests.test_policy_support import CHANNEL_CODECS, PipeClient, request
from tests.test_standin_end_to_end import (
    DEADLINE_MS,
    bring_back,
    journal_records,
    kill,
    own_redis,
    pos_request,
    stand_in_policy,
    standing_in,
    until,
)

# --- stand-in on ------------------------------------------------------------------------------


async def test_on_with_redis_killed_stands_in_marked_on_every_channel_then_forwards_once(
        tmp_path):
    with own_redis(tmp_path) as server:
        async with standing_in(tmp_path, server, stand_in_policy(),
                               channels=("jd", "wechat", "pos")) as (switch, ledger, clients):
            pan, other = [await make_card(ledger, limit_fen=100_000) for _ in range(2)]
            lost = await make_card(ledger, limit_fen=100_000, status="lost")
            for card in (pan, other, lost):  # the switch sees each card once, online
                await clients.send("jd", card, amount_fen=100)
            kill(server)

            jd = await clients.send("jd", pan, amount_fen=1000)  # the per-transaction limit
            assert (jd.response.response_code, jd.response.stand_in) == ("00", True)
            assert (jd.fields["standIn"], jd.fields["code"]) == ("1", "000000")
            wx = await clients.send("wechat", pan, amount_fen=1000)
            assert (wx.fields["result_code"], wx.fields["stand_in"]) == ("SUCCESS", "1")
            pos = await clients.by_channel["pos"].send(pos_request(pan, 500))
            assert (pos.fields["39"], pos.fields["63"]) == ("00", "STIP")
            assert "54" not in pos.fields  # stand-in does not know the balance
            assert pos.response.stand_in

            over_card = await clients.send("jd", pan, amount_fen=1)  # 2501 > 2500 per card
            assert (over_card.response.response_code, over_card.response.reason,
                    over_card.fields["standIn"]) == ("61", Reason.STAND_IN_CARD_LIMIT, "1")
            over_one = await clients.send("jd", other, amount_fen=1001)
            assert over_one.response.reason == Reason.STAND_IN_LIMIT
            blocked = await clients.send("jd", other, amount_fen=100, mcc="7995")
            assert (blocked.response.response_code, blocked.response.stand_in) == ("57", True)
            lost_answer = await clients.send("jd", lost, amount_fen=100)
            assert (lost_answer.response.response_code, lost_answer.response.stand_in) == (
                "41", True)
            repeat = await clients.by_channel["jd"].send(request(
                "jd", pan, MessageClass.SALE, 1000, txn_ref=jd.correlation_id))
            assert (repeat.response.auth_id, repeat.response.repeat) == (jd.response.auth_id,
                                                                         True)

            records = journal_records(tmp_path)
            advices = [r for r in records if isinstance(r, Advice)]
            assert sorted(a.approved_fen for a in advices) == [500, 1000, 1000]
            assert sum(isinstance(r, Void) for r in records) == 7  # each call made, undone

            bring_back(server)
            journal = switch.stand_in.journal

            async def drained():
                return not journal.records and not switch.stand_in.answers

            await until(drained, "the journal is forwarded")
            assert (tmp_path / "run" / "saf-0.journal").read_bytes() == HEADER
            report = switch.forwarder.report
            assert report["advice:applied"] == 3 and report["void:absent"] == 7
            view = await ledger.card(pan)
            assert view.posted == 100 + 2500
            stood_in = {t.auth_id: t.amount for t in view.transactions if t.amount != 100}
            assert stood_in == {a.auth_id: a.approved_fen for a in advices}
            assert (await ledger.card(other)).posted == 100
            again = await clients.by_channel["jd"].send(request(
                "jd", pan, MessageClass.SALE, 1000, txn_ref=jd.correlation_id))
            assert (again.response.auth_id, again.response.repeat) == (jd.response.auth_id, True)
            assert (await ledger.card(pan)).posted == 2600  # the repeat changed nothing


async def test_on_with_redis_frozen_stands_in_at_the_deadline_and_late_calls_do_nothing(
        tmp_path):
    with own_redis(tmp_path) as server:
        async with standing_in(tmp_path, server, stand_in_policy(per_card=100_000)) as (
                switch, ledger, clients):
            pan = await make_card(ledger, limit_fen=100_000)
            await clients.send("jd", pan, amount_fen=100)
            server.process.send_signal(signal.SIGSTOP)
            try:
                answers = await asyncio.gather(*[clients.send("jd", pan, amount_fen=200)
                                                 for _ in range(5)])
            finally:
                server.process.send_signal(signal.SIGCONT)
            for answer in answers:
                r = answer.response
                assert (r.response_code, r.reason, r.stand_in) == ("00", "", True)
            journal = switch.stand_in.journal

            async def drained():
                return not journal.records

            await until(drained, "the journal is forwarded")
            view = await ledger.card(pan)
            assert view.posted == 100 + 5 * 200  # each sale once: the advice, not the late call
            assert {t.auth_id for t in view.transactions if t.amount == 200} == {
                a.response.auth_id for a in answers}


@contextlib.asynccontextmanager
async def redis_with_a_card(tmp_path):
    """A Redis of the test's own, a ledger on it, and a fresh card: (server, ledger, pan)."""
    with own_redis(tmp_path) as server:
        ledger = Ledger(connect(server.url))
        await ledger.start()
        try:
            yield server, ledger, await make_card(ledger, limit_fen=100_000)
        finally:
            await ledger.aclose()


async def test_a_switch_started_on_a_torn_journal_forwards_the_good_records_only(tmp_path):
    async with redis_with_a_card(tmp_path) as (server, ledger, pan):
        folder = tmp_path / "run"
        journal = Journal.open_locked(folder / "saf-0.journal")
        advices = [stand_in_advice(pan, n, 300 + n) for n in range(3)]
        await journal.append(advices)
        journal.close()
        whole = (folder / "saf-0.journal").read_bytes()
        (folder / "saf-0.journal").write_bytes(whole[:-7])  # the third one torn
        async with standing_in(tmp_path, server, stand_in_policy()) as (switch, _, _):
            async def drained():
                return not switch.stand_in.journal.records

            await until(drained, "the journal is forwarded")
            assert switch.forwarder.report == {"advice:applied": 2}
        view = await ledger.card(pan)
        assert view.posted == 300 + 301
        assert sorted(t.auth_id for t in view.transactions) == ["000000", "000001"]


def stand_in_advice(pan: str, n: int, amount: int) -> Advice:
    key = f"jd:110000001:S{n}x{time.time_ns() % 10**9}"
    req = AuthRequest(message_class=MessageClass.SALE, channel="jd", card=pan,
                      amount_fen=amount, mcc="5411", merchant_id="110000001", txn_ref=key,
                      idempotency_key=key, transmitted_at="20261207120000")
    return Advice(id=f"advice-{key}", request=req, auth_id=f"{n:06d}", approved_fen=amount,
                  beans_per_yuan=0, written_ms=time.time_ns() // 1_000_000)


# --- kill -9 of the switch in the middle of a replay --------------------------------------

CARDS, SALES_PER_CARD, SALE_FEN = 10, 60, 10


def serve_process(tmp_path, redis_url: str, port: int) -> subprocess.Popen:
    (tmp_path / "policy.toml").write_text(stand_in_policy(per_card=1_000_000))
    (tmp_path / "switch.toml").write_text(
        f'policy = "{tmp_path / "policy.toml"}"\njournal_dir = "{tmp_path / "run"}"\n'
        f"[listeners.jd]\nport = {port}\n[limits]\nrequest_deadline_ms = {DEADLINE_MS}\n")
    log = (tmp_path / "switch.log").open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "switch.cli", "serve", "--config", str(tmp_path / "switch.toml"),
         "--redis", redis_url], stdout=log, stderr=log,
        env=dict(os.environ, SWITCH_RUN_DIR=str(tmp_path / "run")))


async def listening(port: int) -> None:
    async def accepts():
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            return False
        writer.close()
        return True

    await until(accepts, f"the switch listens on {port}")


async def test_a_switch_killed_mid_replay_forwards_each_record_exactly_once_on_restart(
        tmp_path):
    journal_path, cursor = tmp_path / "run" / "saf-0.journal", tmp_path / "run" / "saf-0.cursor"
    port = free_port()
    with own_redis(tmp_path) as server:
        ledger = Ledger(connect(server.url))
        await ledger.start()
        switch = serve_process(tmp_path, server.url, port)
        try:
            await listening(port)
            pans = [await make_card(ledger, limit_fen=1_000_000) for _ in range(CARDS)]
            client = await PipeClient.connect(port, CHANNEL_CODECS["jd"])
            for pan in pans:  # seen once online: stand-in knows them
                online = await client.send(request("jd", pan, amount_fen=SALE_FEN))
                assert online.response.approved
            kill(server)
            answers = await asyncio.gather(*[
                client.send(request("jd", pan, amount_fen=SALE_FEN))
                for _ in range(SALES_PER_CARD) for pan in pans])
            assert all(a.response.approved and a.response.stand_in for a in answers)
            await client.close()
            size = journal_path.stat().st_size
            bring_back(server)

            async def mid_replay():
                text = cursor.read_text().strip() if cursor.exists() else ""
                return text.isdigit() and len(HEADER) < int(text) < size

            await until(mid_replay, "the forwarder is half way")
            switch.send_signal(signal.SIGKILL)
            switch.wait()
            assert len(HEADER) < int(cursor.read_text()) < size  # killed mid-replay
            switch = serve_process(tmp_path, server.url, port)

            async def drained():
                return journal_path.stat().st_size == len(HEADER)

            await until(drained, "the restarted switch has forwarded the journal")
            for pan in pans:
                view = await ledger.card(pan)
                assert view.posted == SALE_FEN * (1 + SALES_PER_CARD), mask_pan(pan)
                transactions = await ledger.client.zcard(f"{card_key(pan)}:tx")
                assert transactions == 1 + SALES_PER_CARD, mask_pan(pan)
        finally:
            stop(switch)
            await ledger.aclose()


async def test_a_journal_no_process_holds_is_forwarded_by_the_next_switch_to_start(tmp_path):
    async with redis_with_a_card(tmp_path) as (server, ledger, pan):
        left = tmp_path / "run" / "saf-3.journal"  # a worker of an earlier, larger run
        orphan = Journal.open_locked(left)
        await orphan.append([stand_in_advice(pan, 7, 700)])
        orphan.close()
        async with standing_in(tmp_path, server, stand_in_policy()) as (switch, _, _):
            async def forwarded():
                return not snapshot(left).records

            await until(forwarded, "the orphan journal is forwarded")
            assert switch.stand_in.journal.path.name == "saf-0.journal"
        assert (await ledger.card(pan)).posted == 700
