"""What a store-and-forward journal record costs: one write + fsync per event-loop tick,
shared by the records of that tick (switch/journal.py). Real file, real fsync, in FOLDER
(default: a fresh folder under .run, on the disk the switch's journals use).

    .venv/bin/python scripts/journal_fsync_bench.py [FOLDER]
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from protocols.messages import AuthRequest, MessageClass  # noqa: E402
from switch.journal import Advice, Journal  # noqa: E402

TICKS = 200


def advice(n: int) -> Advice:
    key = f"jd:110000001:T{n:012d}"
    request = AuthRequest(message_class=MessageClass.SALE, channel="jd",
                          card="6253990000000018", amount_fen=12_800, mcc="5411",
                          merchant_id="110000001", txn_ref=key, idempotency_key=key,
                          transmitted_at="20261207120000")
    return Advice(id=f"{n:024x}", request=request, auth_id=f"{n % 10**6:06d}",
                  approved_fen=12_800, beans_per_yuan=5, written_ms=n)


async def measure(folder: Path) -> None:
    print(f"journal in {folder}")
    for per_tick in (1, 10, 100):
        journal = Journal.open_locked(folder / f"saf-{per_tick}.journal", records_max=10**7)
        began = time.perf_counter()
        for tick in range(TICKS):
            await journal.append([advice(tick * per_tick + i) for i in range(per_tick)])
        elapsed = time.perf_counter() - began
        print(f"  {per_tick:>3} records a tick: {journal.fsync_ns / journal.fsyncs / 1e3:7.0f} us "
              f"a write+fsync, {elapsed / (TICKS * per_tick) * 1e6:7.1f} us a record in all, "
              f"{journal.size / (TICKS * per_tick):.0f} bytes a record")
        journal.close()


def main() -> None:
    if len(sys.argv) > 1:
        folder = Path(sys.argv[1])
        folder.mkdir(parents=True, exist_ok=True)
        asyncio.run(measure(folder))
        return
    Path(".run").mkdir(exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="journal-bench-", dir=".run"))
    try:
        asyncio.run(measure(folder))
    finally:
        shutil.rmtree(folder)


if __name__ == "__main__":
    main()
