"""A master of a 3+3 Redis Cluster SIGKILLed under load, ROUNDS times with `switch serve
--durable-replicas 1` and as many without, alternately (tests/failover_support.py has the
run; tests/test_cluster_failover.py asserts the durable one). Prints one line per run: the
answers' codes, the failover's times and the history check (lost, doubled, invented).

    .venv/bin/python scripts/cluster_failover_runs.py --rounds 5 [--replica-behind 0.5]

Without --durable-replicas an approval the killed master had answered before its replica
had it is lost with it: `lost` counts those (docs/cluster.md, "Failover").
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the tests' helpers

from tests.failover_support import run_failover  # noqa: E402


async def main(rounds: int, replica_behind_s: float) -> None:
    print(f"load average {os.getloadavg()[0]:.2f}", flush=True)
    for round_ in range(1, rounds + 1):
        for durable_replicas in (0, 1):
            with tempfile.TemporaryDirectory(prefix="failover-") as folder:
                outcome = await run_failover(Path(folder), durable_replicas, replica_behind_s)
            print(f"round {round_} {outcome.line()}", flush=True)
    print(f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="runs of each kind (3)")
    parser.add_argument("--replica-behind", type=float, default=0.0, metavar="S",
                        help="freeze the killed master's replica S seconds before the kill "
                             "(0: it keeps up, as on an idle loopback)")
    args = parser.parse_args()
    asyncio.run(main(args.rounds, args.replica_behind))
