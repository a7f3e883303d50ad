"""A connection's time bounds, judged from the times it is given (no clock of its own).

One timer per connection (switch/server.py Connection) asks `judge` whether the connection
has overstayed a bound and when to look again. The bounds come from the config's [limits]:
- `write_paused_max_s`: output paused (above the high-water mark: the peer reads nothing);
- `frame_deadline_s`: a frame begun and still not whole, counted from its first byte (the
  connection gives no frame start while it is not reading, and restarts the count when it
  reads again: a pause of ours is not the peer's delay);
- `idle_timeout_s`: no whole frame and no answer written, with nothing in flight, no frame
  begun and output flowing.
The next look is never further away than one frame deadline, so a frame that begins after a
look is still judged on time: the timer is armed once per look, never per frame or per byte.
"""

from __future__ import annotations

import enum

from switch.config import ServerLimits


class Overstay(enum.Enum):
    WRITE_PAUSED = "its output stayed paused too long: the peer reads nothing"
    FRAME_LATE = "a frame did not arrive whole in time"
    IDLE = "idle"


def judge(now: float, server_limits: ServerLimits, *, last_activity: float, inflight: int,
          frame_started: float | None, write_paused_since: float | None
          ) -> tuple[Overstay | None, float]:
    """(the bound overstayed, or None; when to look again). Times in one clock's seconds;
    a bound is overstayed from the very moment it is reached."""
    dues = [now + server_limits.frame_deadline_s]
    if write_paused_since is not None:
        due = write_paused_since + server_limits.write_paused_max_s
        if now >= due:
            return Overstay.WRITE_PAUSED, now
        dues.append(due)
    if frame_started is not None:
        due = frame_started + server_limits.frame_deadline_s
        if now >= due:
            return Overstay.FRAME_LATE, now
        dues.append(due)
    elif inflight == 0 and write_paused_since is None:
        due = last_activity + server_limits.idle_timeout_s
        if now >= due:
            return Overstay.IDLE, now
        dues.append(due)
    return None, min(dues)
