"""What recording costs per exchange, without a switch: N exchanges noted (the listener's
part) and written (the writer thread's part) by switch/recorder.py, timed; run it under
callgrind with N and with 0 for an instruction count per exchange (docs/performance.md,
"What recording costs").

    .venv/bin/python scripts/record_cost.py 20000
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

from protocols.messages import AuthRequest, AuthResponse, MessageClass
from protocols.recording import ChannelWire
from switch.recorder import Recorder, RecorderBounds

NEVER_S = 3600.0  # the writer thread never wakes: this script writes, in its own thread


def main(count: int) -> None:
    folder = Path(tempfile.mkdtemp(prefix="record-cost-"))
    try:
        recorder = Recorder(folder, {"pos": ChannelWire("binary2", "iso87ascii")},
                            RecorderBounds(flush_interval_s=NEVER_S,
                                           buffer_records_max=max(count, 1)))
        request = AuthRequest(message_class=MessageClass.SALE, channel="pos",
                              card="6253800000000000", amount_fen=12_800, mcc="5411")
        response = AuthResponse(response_code="00", approved_fen=12_800,
                                open_to_buy_fen=9_987_200)
        body, answer = b"q" * 260, b"a" * 220  # a POS sale and its answer, about
        began = time.perf_counter_ns()
        for number in range(count):
            recorder.note("pos", 1, number, 5_000, body, answer, request, response)
        noted = time.perf_counter_ns()
        recorder.close()
        written = time.perf_counter_ns()
        if count:
            print(f"{count} exchanges: note {(noted - began) / count / 1000:.2f} us, "
                  f"write {(written - noted) / count / 1000:.2f} us each")
    finally:
        shutil.rmtree(folder)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20_000)
