"""Record and replay over real TCP on a real Redis: a recording replayed against the same build
and policy differs nowhere; against a policy that blocks one more MCC, exactly the decisions
on that MCC differ."""

from __future__ import annotations

import asyncio
import stat

import pytest

from protocols.jd import JdCodec
from protocols.recording import HEADER, Batch, channel_wires, frame, in_arrival_order
from switch import testing
from switch.ledger import NO_ANSWER, Ledger
from switch.policy import Policy
from switch.policy_file import default_policy_text, parse_policy
from switch.redis_client import connect
from switch.redis_runner import PrivateRedis
from switch.replay import Target
from switch.replay_cli import read_recording, replay, restore
from switch.send import exchange
from tests.support import make_card

RESTAURANTS = "5812"


def stricter_policy() -> Policy:
    """The shipped default, and restaurants blocked too."""
    text = default_policy_text().decode().replace(
        "[mcc_groups]\n", f'[mcc_groups]\nrestaurants = ["{RESTAURANTS}"]\n', 1)
    text += '\n[[mcc_block]]\nid = "restaurants"\ngroups = ["restaurants"]\ncode = "57"\n'
    return Policy(parse_policy(text, "stricter"))


@pytest.fixture
async def own_redis(tmp_path):
    """`--restore` rewrites every card: a Redis of this test's own, not the session's."""
    server = PrivateRedis(tmp_path / "redis")
    url = server.start()
    ledger = Ledger(connect(url))
    await ledger.start()
    yield url, ledger
    await ledger.aclose()
    server.stop()


async def record_traffic(url: str, ledger: Ledger, folder) -> list[str]:
    """A recorded session on three channels; returns the MCC of each request, in order."""
    cards = [await make_card(ledger, limit_fen=100_000) for _ in range(4)]
    diner = await make_card(ledger, limit_fen=100_000)  # only restaurant meals
    mccs = []
    async with testing.start(redis_url=url, record_dir=folder) as switch:
        async def send(channel, pan, **message):
            mccs.append(message.get("mcc", ""))
            return await switch.send(channel, pan, **message)

        sale = await send("jd", cards[0], amount=12_800, mcc="5411")
        await send("jd", cards[0], type="refund", amount=2_800, original=sale.correlation_id)
        auth = await send("pos", cards[1], type="auth", amount=50_000, mcc="5732")
        await send("pos", cards[1], type="capture", amount=40_000, original=auth.correlation_id)
        await send("wechat", cards[2], amount=3_000, mcc="5411")
        await send("jd", cards[3], amount=1_000, mcc="7995")  # gambling: declined either way
        for channel, amount in (("jd", 1_500), ("wechat", 2_500), ("pos", 3_500)):
            answer = await send(channel, diner, amount=amount, mcc=RESTAURANTS)
            assert answer.response.response_code == "00"
    return mccs


async def replay_against(url: str, folder, policy: Policy | None):
    async with testing.start(redis_url=url, policy=policy) as switch:
        await restore(folder, url)
        targets = {ch: Target("127.0.0.1", port) for ch, port in switch.ports.items()}
        return await replay(folder, targets, "max", connections=2, timeout_s=5.0)


async def test_a_replay_differs_nowhere_on_the_same_policy_and_exactly_on_a_newly_blocked_mcc(
        own_redis, tmp_path):
    url, ledger = own_redis
    folder = tmp_path / "recording"
    mccs = await record_traffic(url, ledger, folder)

    same = await replay_against(url, folder, None)
    assert (same.exchanges, same.matching, same.differences) == (len(mccs), len(mccs), [])

    stricter = await replay_against(url, folder, stricter_policy())
    changed = [i for i, mcc in enumerate(mccs) if mcc == RESTAURANTS]
    assert [d.index for d in stricter.differences] == changed
    for difference in stricter.differences:
        assert difference.mcc == RESTAURANTS and difference.card.count("*") >= 6
        assert difference.recorded.response_code == "00"
        assert difference.replayed.response_code == "57"
        assert difference.replayed.approved_fen == 0
    assert stricter.matching == len(mccs) - len(changed)


async def test_the_recording_holds_every_exchange_as_sent_in_private_files(own_redis, tmp_path):
    url, ledger = own_redis
    folder = tmp_path / "recording"
    mccs = await record_traffic(url, ledger, folder)
    series = read_recording(folder)
    played = in_arrival_order(series)
    assert len(played) == len(mccs)
    assert [p.exchange.mcc for p in played] == mccs
    assert set(channel_wires(series)) == set(testing.CHANNELS)
    assert all(p.exchange.answer and p.exchange.decision_ns > 0 for p in played)
    for path in [*folder.glob("rec-*.rec"), folder / "snapshot.msgpack"]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


async def test_speed_one_keeps_the_recorded_pace_and_ten_a_tenth_of_it(own_redis, tmp_path):
    url, ledger = own_redis
    recorded = tmp_path / "recording"
    pan = await make_card(ledger, limit_fen=100_000)
    async with testing.start(redis_url=url, record_dir=recorded) as switch:
        for amount in (100, 200):
            await switch.send("jd", pan, amount=amount, mcc="5411")
    # The same two exchanges, the second arriving (and answered) 0.4 s after the first.
    gap_ns = 400_000_000
    (series,) = read_recording(recorded)  # one process; one batch or two
    meta, (first, second) = series.meta, series.exchanges
    second.arrival_ns = first.answered_ns + gap_ns
    paced = tmp_path / "paced"
    paced.mkdir()
    (paced / "rec-1-000000.rec").write_bytes(HEADER + frame(meta) + frame(Batch([first,
                                                                                 second])))
    async with testing.start(redis_url=url) as switch:
        targets = {"jd": Target("127.0.0.1", switch.ports["jd"])}
        for speed, at_least_s in (("1", 0.4), ("10", 0.04)):
            result = await replay(paced, targets, speed, connections=1, timeout_s=5.0)
            assert result.elapsed_s >= at_least_s and result.exchanges == 2
            assert result.differences == []  # repeats: the remembered answers


async def test_a_refusal_and_a_forced_silence_are_recorded_and_replayed(own_redis, tmp_path):
    url, ledger = own_redis
    folder = tmp_path / "recording"
    pan = await make_card(ledger, limit_fen=100_000)
    async with testing.start(redis_url=url, record_dir=folder) as switch:
        refusal = await exchange("127.0.0.1", switch.ports["jd"], JdCodec.header, b"{not json")
        await switch.force(pan, NO_ANSWER, times=1)
        with pytest.raises(TimeoutError):  # the request went out; no answer will come
            await asyncio.wait_for(switch.send("jd", pan, amount=700, mcc="5411"), 1.0)
    refused, silent = (p.exchange for p in in_arrival_order(read_recording(folder)))
    assert (refused.request, refused.answer, refused.kind) == (b"{not json", refusal, "")
    assert (silent.answer, silent.kind, silent.amount_fen) == (b"", "sale", 700)
    assert silent.response_code == NO_ANSWER

    async with testing.start(redis_url=url) as switch:
        targets = {"jd": Target("127.0.0.1", switch.ports["jd"])}
        # The id's remembered answer is the silence: a repeat is silent too.
        repeated = await replay(folder, targets, "max", connections=1, timeout_s=5.0)
        await restore(folder, url)  # the card as it was: not forced, the id unused
        result = await replay(folder, targets, "max", connections=1, timeout_s=5.0)
    assert (repeated.matching, repeated.differences) == (2, [])
    assert result.matching == 1  # the refusal, refused alike
    (difference,) = result.differences
    assert difference.index == 1 and difference.recorded is None
    assert difference.replayed.response_code == "00"
