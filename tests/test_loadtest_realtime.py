"""Real-time priority for a latency measurement: given where allowed, always taken back."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from loadtest.harness import realtime


@pytest.fixture
def sleeper():
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield process
    process.kill()
    process.wait()


def test_real_time_priority_is_given_inside_and_taken_back_after(sleeper):
    reason = realtime.unavailable()
    if reason is not None:  # not root, no CAP_SYS_NICE, not Linux: the bench says so
        assert "SCHED_FIFO" in reason
        assert os.sched_getscheduler(0) == os.SCHED_OTHER
        return
    with realtime.realtime([sleeper.pid]):
        assert os.sched_getscheduler(sleeper.pid) == os.SCHED_FIFO
        assert os.sched_getscheduler(0) == os.SCHED_FIFO
    assert os.sched_getscheduler(sleeper.pid) == os.SCHED_OTHER
    assert os.sched_getscheduler(0) == os.SCHED_OTHER


def test_priority_is_taken_back_after_an_error_and_a_gone_process_is_no_error(sleeper):
    if realtime.unavailable() is not None:
        with pytest.raises(PermissionError), realtime.realtime([sleeper.pid]):
            pass  # refused before the block runs
    else:
        with pytest.raises(RuntimeError), realtime.realtime([sleeper.pid]):
            sleeper.kill()
            sleeper.wait()
            raise RuntimeError("the run failed")
    assert os.sched_getscheduler(0) == os.SCHED_OTHER


def test_a_process_gets_back_the_scheduling_it_had(sleeper):
    if realtime.unavailable() is not None:
        assert os.sched_getscheduler(sleeper.pid) == os.SCHED_OTHER
        return
    os.sched_setscheduler(sleeper.pid, os.SCHED_RR, os.sched_param(3))
    with realtime.realtime([sleeper.pid]):
        assert os.sched_getscheduler(sleeper.pid) == os.SCHED_FIFO
    assert os.sched_getscheduler(sleeper.pid) == os.SCHED_RR
    assert os.sched_getparam(sleeper.pid).sched_priority == 3
