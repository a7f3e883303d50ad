"""Real-time priority for the processes of one latency measurement, and back.

When the switch, its Redis and the generator share a machine's cores (two here), a process
woken by its socket can wait on the run queue behind another one that holds the core: at
3,000/s that wait was up to a quarter of the switch's wall time (/proc/PID/schedstat) and
made most of the p99. Under SCHED_FIFO a woken process takes the core at once. Linux only, and only
for root or with CAP_SYS_NICE; the kernel's real-time throttling (by default 95% of each
second at most) keeps the rest of the machine alive.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

PRIORITY = 10  # any real-time priority above every normal process will do


def unavailable() -> str | None:
    """Why real-time priority cannot be had here; None when it can."""
    if not hasattr(os, "sched_setscheduler"):
        return "this platform has no SCHED_FIFO"
    before = _policy(0)
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(PRIORITY))
    except PermissionError:
        return "SCHED_FIFO needs root or CAP_SYS_NICE"
    except OSError as error:
        return f"SCHED_FIFO refused: {error}"
    os.sched_setscheduler(0, *before)
    return None


@contextlib.contextmanager
def realtime(pids: list[int]) -> Iterator[None]:
    """SCHED_FIFO for `pids` and for this process (the generator: the workers it starts
    inherit it) while the block runs; each gets its own scheduling back after, whatever
    happened."""
    saved = {pid: _policy(pid) for pid in [os.getpid(), *pids]}
    try:
        for pid in saved:
            os.sched_setscheduler(pid, os.SCHED_FIFO, os.sched_param(PRIORITY))
        yield
    finally:
        for pid, before in saved.items():
            with contextlib.suppress(ProcessLookupError):  # a server that has exited
                os.sched_setscheduler(pid, *before)


def _policy(pid: int) -> tuple[int, os.sched_param]:
    return os.sched_getscheduler(pid), os.sched_getparam(pid)
