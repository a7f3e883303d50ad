"""`loadtest run --from-recording`: a recording's requests as the load, byte for byte."""

from __future__ import annotations

import pytest

from loadtest.generator.aggregate import OVERALL
from loadtest.generator.client import LoadTestError, Target
from loadtest.generator.recorded import RecordingProblem, read_folder
from loadtest.generator.runner import Plan, run_load
from loadtest.generator.worker import Worker, WorkerPlan
from switch import testing
from switch.redis_runner import PrivateRedis

SALES = 4


@pytest.fixture
async def recorded(tmp_path):
    """A folder with SALES JD sales recorded, and a Redis whose switch answered them."""
    server = PrivateRedis(tmp_path / "redis")
    url = server.start()
    folder = tmp_path / "rec"
    async with testing.start(redis_url=url, record_dir=folder) as switch:
        pan = await switch.new_card(limit_fen=1_000_000)
        for amount in range(1, SALES + 1):
            await switch.send("jd", pan, amount=amount * 100, mcc="5411")
    yield url, folder
    server.stop()


async def test_a_recording_is_sent_again_at_the_rate_asked(recorded):
    url, folder = recorded
    async with testing.start(redis_url=url) as switch:
        plan = Plan(rate=40, duration_s=1, mix={"jd": 1}, connections=1, inflight_max=2,
                    targets={"jd": Target("127.0.0.1", switch.ports["jd"])},
                    recording=str(folder))
        result = await run_load(plan)
    jd = result.totals["jd"].counts
    assert (jd["sent"], jd["answered"]) == (40, 40)
    assert result.totals[OVERALL].failures == 0
    # Repeats of approved sales: the remembered answers, approved again.
    assert result.totals["jd"].codes == {"00": 40}


def worker_plan(folder, inflight_max: int) -> WorkerPlan:
    return WorkerPlan(index=0, rate=10, duration_s=1, targets={}, connections=1,
                      inflight_max=inflight_max, mix={"jd": 1}, cards=1, seed=1, timeout_s=1,
                      ref_prefix="t", lag=1, recording=str(folder))


def test_a_channel_needs_more_distinct_requests_than_it_may_have_in_flight(recorded):
    _, folder = recorded
    assert Worker(worker_plan(folder, SALES - 1), lambda interval: None).workload
    with pytest.raises(LoadTestError, match=f"has {SALES} distinct jd requests"):
        Worker(worker_plan(folder, SALES), lambda interval: None)


def test_a_folder_without_a_recording_is_refused(tmp_path):
    with pytest.raises(RecordingProblem, match="no recording files"):
        read_folder(tmp_path)
