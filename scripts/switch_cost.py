"""The switch's instructions per JD sale, counted by callgrind: the same count whatever else
the machine runs, so two trees compare on a busy box.

The switch of TREE (any checkout with a `.venv`) serves the jd listener under callgrind on a
private Redis; this script (run with this tree's Python) sends N JD sales of 1 fen on the first
demo card, one at a time (each is its own loop tick and its own Redis batch, so the path does
not depend on timing), stops the switch and reads callgrind's total. Run it with N and with 0:
the difference over N is one sale's instructions in the switch process (Redis not included).

    python scripts/switch_cost.py --tree ../before --requests 2000
    python scripts/switch_cost.py --tree ../before --requests 0

With --profile FILE the switch runs under cProfile instead and its stats are written to FILE:
the calls per sale of each function (deterministic, like the count) show where a difference
between two trees lies (`python -m pstats FILE`). See docs/performance.md.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from protocols.demo import DEMO_JD_KEY, DEMO_JD_MERCHANT
from protocols.jd import decode_response, encode_request
from protocols.messages import AuthRequest, MessageClass
from switch.cli_common import resolve_pan
from switch.redis_runner import free_port

STARTUP_S = 600  # the switch's start-up under callgrind (imports at ~50x slower)
ANSWER_S = 60  # one answer under callgrind


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", required=True, type=Path, help="checkout whose switch runs")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--profile", type=Path, help="run under cProfile, stats to this file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        redis_port, jd_port = free_port(), free_port()
        redis = subprocess.Popen(["redis-server", "--port", str(redis_port), "--save", "",
                                  "--appendonly", "no", "--dir", work],
                                 stdout=subprocess.DEVNULL)
        try:
            count = _count(args.tree.resolve(), redis_port, jd_port, args.requests, work,
                           args.profile)
        finally:
            redis.terminate()
            redis.wait(10)
    if args.profile:
        print(f"{args.tree}: {args.requests} sales, profile in {args.profile}")
    else:
        print(f"{args.tree}: {args.requests} sales, {count:,} instructions in the switch process")
    return 0


def _count(tree: Path, redis_port: int, jd_port: int, requests: int, work: str,
           profile: Path | None) -> int:
    env = {**os.environ, "PYTHONHASHSEED": "0", "PYTHONPATH": str(tree),
           "SWITCH_RUN_DIR": f"{work}/run"}
    log = open(f"{work}/serve.log", "w+")
    runner = (["-m", "cProfile", "-o", str(profile.resolve())] if profile else [])
    counter = [] if profile else ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]
    switch = subprocess.Popen(
        [*counter, str(tree / ".venv/bin/python"), *runner, "-m", "switch.cli", "serve",
         "--redis", f"redis://127.0.0.1:{redis_port}/0",
         "--listen", f"jd=127.0.0.1:{jd_port}", "--demo"],
        cwd=tree, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        connection = _connect(jd_port, switch)
        _sell(connection, requests)
        connection.close()
        switch.send_signal(signal.SIGTERM)
        switch.wait(STARTUP_S)
    finally:
        if switch.poll() is None:
            switch.kill()
    if profile:
        return 0
    log.seek(0)
    found = re.findall(r"Collected : (\d+)", log.read())
    if not found:
        sys.exit(f"no callgrind total in {work}/serve.log")
    return int(found[-1])


def _connect(port: int, switch: subprocess.Popen) -> socket.socket:
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        if switch.poll() is not None:
            sys.exit("the switch stopped during start-up")
        try:
            connection = socket.create_connection(("127.0.0.1", port), timeout=ANSWER_S)
            return connection
        except OSError:
            time.sleep(0.5)
    sys.exit(f"the switch did not listen within {STARTUP_S} s")


def _sell(connection: socket.socket, requests: int) -> None:
    pan = resolve_pan("demo1")
    key = DEMO_JD_KEY.encode()
    for number in range(requests):
        request = AuthRequest(message_class=MessageClass.SALE, channel="jd", card=pan,
                              amount_fen=1, mcc="5411", merchant_id=DEMO_JD_MERCHANT,
                              txn_ref=f"COST{os.getpid()}N{number}",
                              transmitted_at=time.strftime("%Y%m%d%H%M%S"))
        body = encode_request(request, key)
        connection.sendall(len(body).to_bytes(4, "big") + body)
        answer = decode_response(_read_frame(connection), key)
        if answer.response.response_code != "00":
            code = answer.response.response_code
            sys.exit(f"sale {number} answered {code}: not the approval path")


def _read_frame(connection: socket.socket) -> bytes:
    size = int.from_bytes(_read(connection, 4), "big")
    return _read(connection, size)


def _read(connection: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = connection.recv(size - len(data))
        if not chunk:
            sys.exit("the switch closed the connection")
        data += chunk
    return data


if __name__ == "__main__":
    sys.exit(main())
