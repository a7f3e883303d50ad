"""Redis instructions per ledger call, counted by callgrind: repeatable on a noisy machine.

Starts `valgrind --tool=callgrind redis-server` on a free port, seeds load-test cards,
replays the switch's own authorize call (a POS grocery sale under the default policy,
loadtest/harness/ledger_calls.py) CALLS times, 16 deep, and shuts Redis down; then the same
with no call. Prints (instructions with the calls - without) / CALLS. Run it in two
checkouts to compare a change of the Lua (docs/performance.md):

    .venv/bin/python scripts/lua_instructions.py 1000
"""

from __future__ import annotations

import argparse
import asyncio
import re
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from loadtest.generator.cards import seed_cards
from loadtest.generator.workload import load_test_pans
from loadtest.harness import redis_rate
from switch.redis_runner import free_port, reachable

START_TIMEOUT_S = 300.0  # Redis under valgrind starts slowly on a loaded machine
STOP_TIMEOUT_S = 120.0
CARDS = 100


def instructions(calls: int) -> int:
    """All instructions redis-server ran, from start to shutdown, with `calls` calls."""
    folder = Path(tempfile.mkdtemp(prefix="lua-instructions-"))
    port, out = free_port(), folder / "callgrind.out"
    process = subprocess.Popen(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "redis-server",
         "--port", str(port), "--save", "", "--appendonly", "no", "--dir", str(folder)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"redis://127.0.0.1:{port}/0"
        deadline = time.monotonic() + START_TIMEOUT_S
        while not reachable(url):
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("redis-server under valgrind did not start")
            time.sleep(0.2)
        pans = load_test_pans(CARDS, seed=7)
        seed_cards(url, pans)
        if calls:
            asyncio.run(redis_rate.measure(url, pans, count=calls, depth=16, connections=1))
        else:
            code, _ = asyncio.run(redis_rate.authorize_template())
            asyncio.run(redis_rate.load_library("127.0.0.1", port, code))
        try:
            redis.Redis.from_url(url).shutdown(nosave=True)
        except redis.ConnectionError:
            pass  # the shutdown closes the connection before it answers
        process.wait(timeout=STOP_TIMEOUT_S)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return int(re.search(r"^(?:summary|totals): (\d+)", out.read_text(), re.M).group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("calls", type=int, nargs="?", default=1000,
                        help="authorize calls to count (default 1000)")
    args = parser.parse_args()
    print(f"{(instructions(args.calls) - instructions(0)) / args.calls:,.0f} "
          "Redis instructions per authorize call")


if __name__ == "__main__":
    main()
