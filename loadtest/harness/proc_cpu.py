"""CPU time of processes, read from /proc/PID/stat (utime + stime, every thread of the
process), and a window over a run: each process' CPU between two instants over the answers
given between them, the figure a busy machine disturbs least (a process waiting for a core
spends no CPU while it waits).

Linux only; a process that has ended reads as None and drops out of the window.
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

TICKS_PER_S = os.sysconf("SC_CLK_TCK")  # the unit of utime and stime
US_PER_S = 1_000_000
# Fields of /proc/PID/stat counted from the one after the command's closing parenthesis
# (the command may hold spaces and parentheses): state is 0, ppid 1, utime 11, stime 12.
PPID_FIELD, UTIME_FIELD, STIME_FIELD = 1, 11, 12


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return None
    return text[text.rindex(")") + 2:].split()


def cpu_ticks(pid: int) -> int | None:
    """utime + stime of `pid` so far, in clock ticks; None when it is gone."""
    fields = _stat_fields(pid)
    return int(fields[UTIME_FIELD]) + int(fields[STIME_FIELD]) if fields else None


def _children_map() -> dict[int, list[int]]:
    """Parent pid -> its living children, read from /proc."""
    out: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat_fields(int(entry.name))):
            out.setdefault(int(fields[PPID_FIELD]), []).append(int(entry.name))
    return out


def children(parent: int) -> list[int]:
    return _children_map().get(parent, [])


def descendants(root: int) -> list[int]:
    """Every living process below `root` (children, theirs, ...)."""
    tree = _children_map()
    found, todo = [], [root]
    while todo:
        for child in tree.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except (OSError, ValueError):
        return ""


@dataclasses.dataclass(frozen=True)
class Watched:
    """A process whose CPU a window counts: its role (what the tables add up, e.g.
    "switch") and its own name (e.g. "switch worker")."""

    pid: int
    role: str
    name: str


def process_tree(root: int, role: str, root_name: str, child_name: str) -> list[Watched]:
    """`root` and every process below it, in one role. A spawned helper of the
    multiprocessing module (its resource tracker) is named as such."""
    out = [Watched(root, role, root_name)]
    for pid in descendants(root):
        helper = "resource_tracker" in command_line(pid)
        out.append(Watched(pid, role, f"{role} resource tracker" if helper else child_name))
    return out


class CpuWindow:
    """Fed once a second with the answers of that second (a load run's progress); the
    first call starts the window, each later one moves its end. The processes are found
    at the first call (`find`), when a run's spawned client processes exist."""

    def __init__(self, find) -> None:
        self.find = find  # () -> list[Watched]
        self.watched: list[Watched] = []
        self.first: dict[int, int] = {}
        self.last: dict[int, int] = {}
        self.answers = 0
        self.began = self.ended = 0.0

    def second(self, answers: int) -> None:
        now = time.monotonic()
        if not self.watched:
            self.watched = self.find()
            self.first, self.began = self._sample(), now
            return
        self.answers += answers
        self.last, self.ended = self._sample(), now

    def _sample(self) -> dict[int, int]:
        return {w.pid: ticks for w in self.watched if (ticks := cpu_ticks(w.pid)) is not None}

    def result(self) -> dict:
        """Per process its ticks in the window; the answers and the window's seconds."""
        processes = [{"pid": w.pid, "role": w.role, "name": w.name,
                      "ticks": self.last[w.pid] - self.first[w.pid]}
                     for w in self.watched if w.pid in self.first and w.pid in self.last]
        return {"answers": self.answers, "seconds": round(self.ended - self.began, 3),
                "ticks_per_s": TICKS_PER_S, "processes": processes}


def us_per_answer(ticks: int, answers: int) -> float | None:
    return round(ticks * US_PER_S / TICKS_PER_S / answers, 1) if answers else None
