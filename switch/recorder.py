"""`switch serve --record DIR`: every request and answer of this process, byte for byte, into
rotating files (the format: protocols/recording.py), written off the hot path.

The listener's only work per answer is one `deque.append` of references it already holds
(`note`). A writer thread wakes every `record_flush_interval_s`, turns what waits into records
and writes them. The memory buffer is bounded: when it is full an exchange is counted in
`dropped` and logged (once per interval), never waited for. Files rotate at `file_max_bytes`;
when the series passes `total_max_bytes` its oldest file is deleted, with a log line.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
from pathlib import Path

from protocols.framing import HEADER_FORMATS
from protocols.recording import (
    FILE_GLOB,
    HEADER,
    ChannelWire,
    Meta,
    encode_batch,
    file_name,
    frame,
    frame_payload,
)
from protocols.recording import file_order as recording_file_order
from switch import limits

log = logging.getLogger("switch.recorder")


class RecorderBounds:
    __slots__ = ("file_max_bytes", "total_max_bytes", "buffer_records_max", "flush_interval_s",
                 "batch_records_max")

    def __init__(self, file_max_bytes: int = limits.record_file_max_bytes,
                 total_max_bytes: int = limits.record_total_max_bytes,
                 buffer_records_max: int = limits.record_buffer_records_max,
                 flush_interval_s: float = limits.record_flush_interval_s,
                 batch_records_max: int = limits.record_batch_records_max) -> None:
        if not 0 < file_max_bytes <= total_max_bytes:
            raise ValueError(f"a recording file's bound ({file_max_bytes} bytes) must be "
                             f"positive and at most the total ({total_max_bytes} bytes)")
        self.file_max_bytes = file_max_bytes
        self.total_max_bytes = total_max_bytes
        self.buffer_records_max = buffer_records_max
        self.flush_interval_s = flush_interval_s
        self.batch_records_max = batch_records_max


def channel_wires(listeners: dict, dialects: dict[str, str]) -> dict[str, ChannelWire]:
    """Each listener's length header by its preset name, and its dialect when it has one."""
    names = {header: name for name, header in HEADER_FORMATS.items()}
    return {channel: ChannelWire(names[listener.codec.header], dialects.get(channel, ""))
            for channel, listener in listeners.items()}


class Recorder:
    def __init__(self, folder: Path, channels: dict[str, ChannelWire],
                 bounds: RecorderBounds | None = None) -> None:
        self.folder = folder
        self.bounds = bounds or RecorderBounds()
        self.meta = Meta(process=os.getpid(), started_ns=time.time_ns(), channels=channels)
        # perf_counter_ns (the listener's clock) + this = wall clock ns
        self.wall_offset_ns = time.time_ns() - time.perf_counter_ns()
        self.waiting: collections.deque[tuple] = collections.deque()
        self.dropped = 0
        self.written = 0
        self.files: list[Path] = []  # this series', oldest first
        self.sizes: dict[Path, int] = {}
        self.fd = -1
        self.sequence = 0
        self._dropped_logged = 0
        self._next_drop_log = 0.0
        self._stop = threading.Event()
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._open_next()
        self._thread = threading.Thread(target=self._run, name="switch-recorder", daemon=True)
        self._thread.start()

    # --- the listener's side: one append ---------------------------------------------------

    def note(self, channel: str, connection: int, began_ns: int, decision_ns: int,
             request: bytes, answer: bytes, decoded=None, response=None) -> None:
        """An exchange to record: `began_ns` on perf_counter_ns; `decoded`, `response`: the
        request read and the decision (None: the codec answered by itself)."""
        if len(self.waiting) >= self.bounds.buffer_records_max:
            self.dropped += 1
            return
        self.waiting.append((channel, connection, began_ns, decision_ns, request, answer,
                             decoded, response))

    # --- the writer thread ------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.wait(self.bounds.flush_interval_s):
            self._write_waiting()
            self._log_drops()

    def _write_waiting(self) -> None:
        """What waits now (the listener keeps appending), a batch at a time; a batch that
        would take its file past the bound begins the next file."""
        waiting, batch_max = self.waiting, self.bounds.batch_records_max
        left = len(waiting)
        while left:
            count = min(left, batch_max)
            left -= count
            data = frame_payload(encode_batch([self._row(waiting.popleft())
                                               for _ in range(count)]))
            if (self.sizes[self.files[-1]] > self.header_bytes
                    and self.sizes[self.files[-1]] + len(data) > self.bounds.file_max_bytes):
                self._rotate()
            self._write(data, count)

    def _row(self, noted: tuple) -> tuple:
        """An Exchange's fields in order (protocols/recording.py), from what was noted."""
        channel, connection, began, decision, request, answer, decoded, response = noted
        wall = began + self.wall_offset_ns
        if decoded is None:  # the codec answered by itself
            return channel, connection, wall, decision, request, answer
        code, reason = (response.response_code, response.reason) if response else ("", "")
        return (channel, connection, wall, decision, request, answer, decoded.card,
                decoded.message_class, decoded.amount_fen, decoded.mcc, code, reason)

    def _write(self, data: bytes, count: int) -> None:
        try:
            os.write(self.fd, data)
        except OSError as error:  # disk full: these are lost, the switch goes on
            self.dropped += count
            log.error("recording: cannot write %d exchanges to %s: %s", count,
                      self.files[-1], error)
            return
        self.sizes[self.files[-1]] += len(data)
        self.written += count

    def _open_next(self) -> None:
        path = self.folder / file_name(self.meta.process, self.sequence)
        self.sequence += 1
        # 0600: the requests hold full card numbers.
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        head = HEADER + frame(self.meta)
        os.write(self.fd, head)
        self.header_bytes = len(head)
        self.files.append(path)
        self.sizes[path] = len(head)
        self._prune()

    def _rotate(self) -> None:
        os.close(self.fd)
        self._open_next()

    def _prune(self) -> None:
        """As a file is begun: delete this series' oldest files until the others and this
        one, once full, fit the total bound."""
        bounds = self.bounds
        while len(self.files) > 1 and (sum(self.sizes[path] for path in self.files[:-1])
                                       + bounds.file_max_bytes > bounds.total_max_bytes):
            oldest = self.files.pop(0)
            size = self.sizes.pop(oldest)
            try:
                oldest.unlink()
            except FileNotFoundError:
                pass
            log.warning("recording: deleted the oldest file %s (%d bytes) to stay within "
                        "%d bytes", oldest.name, size, self.bounds.total_max_bytes)

    def _log_drops(self) -> None:
        now = time.monotonic()
        if self.dropped > self._dropped_logged and now >= self._next_drop_log:
            log.warning("recording: %d exchanges dropped so far (buffer of %d full, or the "
                        "disk refused them); the answers went out", self.dropped,
                        self.bounds.buffer_records_max)
            self._dropped_logged = self.dropped
            self._next_drop_log = now + limits.record_drop_log_interval_s

    # --- stopping -----------------------------------------------------------------------------

    def close(self) -> None:
        """Write what waits, then close (once the listeners are shut down)."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join()
        self._write_waiting()
        self._log_drops()
        os.close(self.fd)
        self.fd = -1

    def counters(self) -> dict[str, int]:
        return {"recorded": self.written, "record_dropped": self.dropped}


def recording_files(folder: Path) -> list[Path]:
    return sorted(folder.glob(FILE_GLOB), key=lambda p: recording_file_order(p.name))
