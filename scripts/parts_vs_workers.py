"""One run of W workers against the same run cut into W parts of one worker, merged
(`loadtest run --part K/W` + `loadtest merge`), alternated side by side against a running
switch: what the parts' merge reports beside one host's run, and what a part file costs.

    .venv/bin/python scripts/parts_vs_workers.py --redis redis://127.0.0.1:6390 \\
        --target pos=127.0.0.1:8583 --target jd=127.0.0.1:8601 --rate 2000 --pairs 3

The cards are seeded afresh (`loadtest seed`) before every run. Prints per run the answers,
p50, p99, p99.9 and the failures, then the medians and spreads of each side, the part files'
size per second of load and the merge's time, with the load average. See docs/loadtest.md,
"Several hosts".
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

LOADTEST = (str(Path(__file__).resolve().parent.parent / ".venv" / "bin" / "loadtest"),)
START_AHEAD_S = 5.0  # the parts spawn and connect before their common start
RUN_WAIT_S = 300.0


def loadtest(*args: str) -> None:
    subprocess.run([*LOADTEST, *args], check=True, capture_output=True, timeout=RUN_WAIT_S)


def figures(summary_path: Path) -> dict:
    every = json.loads(summary_path.read_text())["channels"]["all"]
    return {"answered": every["answered"], "failures": every["failures"],
            **{key: every["latency_ms"][key] for key in ("p50", "p99", "p99.9")}}


def one_run(args, common: list[str], folder: Path) -> dict:
    loadtest("run", *common, "--workers", str(args.workers), "--out", str(folder))
    return figures(folder / "summary.json")


def parts_run(args, common: list[str], folder: Path) -> dict:
    start_at = f"{time.time() + START_AHEAD_S:.3f}"
    processes = [subprocess.Popen(
        [*LOADTEST, "run", *common, "--part", f"{k}/{args.workers}", "--start-at", start_at,
         "--out", str(folder / f"part{k}")], stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL) for k in range(1, args.workers + 1)]
    for process in processes:
        if process.wait(timeout=RUN_WAIT_S):
            raise SystemExit(f"a part failed: exit {process.returncode}")
    files = [folder / f"part{k}" / f"part-{k}-of-{args.workers}.json"
             for k in range(1, args.workers + 1)]
    began = time.perf_counter()
    loadtest("merge", *map(str, files), "--out", str(folder / "merged"))
    merge_s = time.perf_counter() - began
    size = sum(path.stat().st_size for path in files)
    return figures(folder / "merged" / "summary.json") | {
        "merge_s": merge_s, "part_bytes_per_s": size / args.duration}


def show(name: str, runs: list[dict]) -> None:
    for key in ("answered", "failures", "p50", "p99", "p99.9", "merge_s", "part_bytes_per_s"):
        values = [run[key] for run in runs if key in run]
        if values:
            print(f"  {name:<6} {key:<17} median {statistics.median(values):>12,.3f}  "
                  f"spread {min(values):,.3f} .. {max(values):,.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis", required=True, help="the switch's Redis, to seed")
    parser.add_argument("--target", action="append", required=True)
    parser.add_argument("--rate", type=float, default=2000.0)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=2, help="W: workers, or parts")
    parser.add_argument("--cards", type=int, default=10_000)
    parser.add_argument("--pairs", type=int, default=3)
    args = parser.parse_args()
    common = ["--rate", f"{args.rate:g}", "--duration", f"{args.duration:g}", "--cards",
              str(args.cards), "--no-seed", "--quiet",
              *[f"--target={target}" for target in args.target]]
    sides: dict[str, list[dict]] = {"one": [], "parts": []}
    with tempfile.TemporaryDirectory() as temp:
        for pair in range(args.pairs):
            for name, run in (("one", one_run), ("parts", parts_run)):
                loadtest("seed", "--cards", str(args.cards), "--workers", str(args.workers),
                         "--redis", args.redis)
                found = run(args, common, Path(temp) / f"{name}-{pair}")
                sides[name].append(found)
                print(f"pair {pair + 1} {name:<6} " + "  ".join(
                    f"{key} {value:,.3f}" for key, value in found.items()), flush=True)
    print(f"\n{args.rate:,.0f}/s for {args.duration:g} s, {args.workers} workers against "
          f"{args.workers} parts; load average {os.getloadavg()[0]:.2f} "
          f"({time.strftime('%Y-%m-%d %H:%M')})")
    for name, runs in sides.items():
        show(name, runs)


if __name__ == "__main__":
    main()
