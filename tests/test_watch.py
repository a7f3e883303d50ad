"""A connection's time bounds as a table: the times given, the bound overstayed, the next look.

Each bound is overstayed from the very moment it is reached and not a moment before (the
rows a quarter second either side of each bound), so a bound moved by any amount fails here.
"""

from __future__ import annotations

import pytest

from switch.config import ServerLimits
from switch.watch import Overstay, judge

LIMITS = ServerLimits(idle_timeout_s=8.0, frame_deadline_s=2.0, write_paused_max_s=4.0)
T = 100.0  # when the thing judged began: the last activity, a frame's first byte, a pause
QUIET = {"last_activity": T, "inflight": 0, "frame_started": None, "write_paused_since": None}


def verdict(now: float, **state) -> tuple[Overstay | None, float]:
    return judge(now, LIMITS, **(QUIET | state))


@pytest.mark.parametrize(("now", "state", "expected"), [
    # idle: nothing in flight, no frame begun, output flowing
    (T + 7.75, {}, None),
    (T + 8.0, {}, Overstay.IDLE),
    (T + 60.0, {"inflight": 1}, None),  # waiting for our answer is not idle
    # a frame begun is timed from its first byte, and idleness does not apply meanwhile
    (T + 1.75, {"frame_started": T}, None),
    (T + 2.0, {"frame_started": T}, Overstay.FRAME_LATE),
    (T + 2.0, {"frame_started": T, "inflight": 5}, Overstay.FRAME_LATE),
    (T + 9.0, {"last_activity": T - 10, "frame_started": T + 8.0}, None),
    # output paused: the peer reads nothing; idleness does not apply meanwhile
    (T + 3.75, {"write_paused_since": T}, None),
    (T + 4.0, {"write_paused_since": T}, Overstay.WRITE_PAUSED),
    (T + 4.0, {"write_paused_since": T, "inflight": 3}, Overstay.WRITE_PAUSED),
    (T + 9.0, {"last_activity": T - 10, "write_paused_since": T + 6.0}, None),
    # both: each bound on its own
    (T + 2.0, {"write_paused_since": T, "frame_started": T}, Overstay.FRAME_LATE),
    (T + 4.0, {"write_paused_since": T, "frame_started": T + 3.0}, Overstay.WRITE_PAUSED),
])
def test_each_bound_is_overstayed_when_reached(now, state, expected):
    assert verdict(now, **state)[0] is expected


@pytest.mark.parametrize(("now", "state", "next_look"), [
    (T, {}, T + 2.0),  # idle due at T + 8; a frame begun now must still be judged at T + 2
    (T + 7.0, {}, T + 8.0),  # idle due first
    (T + 1.0, {"frame_started": T}, T + 2.0),  # the frame's own deadline
    (T + 1.0, {"frame_started": T + 0.5}, T + 2.5),
    (T + 1.0, {"write_paused_since": T}, T + 3.0),  # frame watch before the pause's bound
    (T + 3.5, {"write_paused_since": T}, T + 4.0),  # the pause's bound
    (T + 50.0, {"inflight": 2}, T + 52.0),  # busy: only the frame watch; never in the past
])
def test_the_next_look_is_the_first_bound_due(now, state, next_look):
    assert verdict(now, **state) == (None, next_look)


def test_each_bound_names_itself_in_the_log_line_of_a_cut():
    reasons = [overstay.value for overstay in Overstay]
    assert all(reasons) and len(set(reasons)) == len(reasons) == 3
    assert "frame" in Overstay.FRAME_LATE.value and "reads nothing" in Overstay.WRITE_PAUSED.value
