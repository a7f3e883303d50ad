"""Redis' own rate for the switch's authorize function, pipelined.

With redis-benchmark installed (Debian's redis-tools, which redis-server depends on), the
C client runs the switch's FCALL on one card with a fresh reference per call
(`__rand_int__`), `depth` calls per pipeline: a client that costs Redis' competitor for
the CPU little. Without it, `measure` does the same from Python with raw RESP: commands
built before the clock starts (one template, card and reference filled in by byte
replacement), `depth` FCALLs per connection, then the next `depth`. On two cores the
Python client is itself a limit; the summary says which one measured.
"""

from __future__ import annotations

import asyncio
import collections
import csv
import shutil
import subprocess
import time
from urllib.parse import urlparse

import hiredis

from loadtest.harness.ledger_calls import sale, script_call
from switch.redis_link import resp_command

PAN_PLACEHOLDER = "9" * 15 + "8"  # 16 characters, like the load-test card numbers
REF_PLACEHOLDER = "Q" * 16  # replaced by a 16-character reference unique to the call
MEASURE_TIMEOUT_S = 120.0


async def authorize_template() -> tuple[str, str, bytes]:
    """(library code, the RESP bytes of one FCALL with placeholders)."""
    function, code, keys, args = await script_call(sale(PAN_PLACEHOLDER, REF_PLACEHOLDER))
    return code, resp_command("FCALL", function, str(len(keys)), *keys, *args)


def commands(template: bytes, pans: list[str], count: int, run_tag: str) -> list[bytes]:
    """`count` calls over the cards in turn, each with its own reference (no repeats)."""
    pan_bytes = [p.encode() for p in pans]
    prefix = (run_tag[-5:].rjust(5, "0") + "n").encode()
    return [template.replace(PAN_PLACEHOLDER.encode(), pan_bytes[i % len(pan_bytes)])
            .replace(REF_PLACEHOLDER.encode(), prefix + b"%010d" % i) for i in range(count)]


class _Pipelined(asyncio.Protocol):
    def __init__(self, batches: collections.deque, depth: int, replies: collections.Counter,
                 finished: asyncio.Future) -> None:
        self.batches, self.depth, self.replies, self.finished = batches, depth, replies, finished
        self.reader = hiredis.Reader()
        self.outstanding = 0
        self.transport = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def send_next(self) -> None:
        if not self.batches:
            self.transport.close()
            if not self.finished.done():
                self.finished.set_result(None)
            return
        count, data = self.batches.popleft()
        self.outstanding = count
        self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while (reply := self.reader.gets()) is not False:
            self.outstanding -= 1
            code = reply[0].decode() if isinstance(reply, list) else type(reply).__name__
            self.replies[code] += 1
        if self.outstanding == 0:
            self.send_next()

    def connection_lost(self, exc) -> None:
        if not self.finished.done() and (self.outstanding or self.batches):
            self.finished.set_exception(ConnectionError("Redis closed the connection"))


async def measure(url: str, pans: list[str], count: int = 200_000, depth: int = 16,
                  connections: int = 2, run_tag: str = "00000") -> dict:
    """Runs `count` authorize calls; returns the rate and the answers' codes."""
    code, template = await authorize_template()
    parsed = urlparse(url)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 6379
    loop = asyncio.get_running_loop()
    await load_library(host, port, code)
    calls = commands(template, pans, count, run_tag)
    batches = collections.deque((len(calls[i:i + depth]), b"".join(calls[i:i + depth]))
                                for i in range(0, len(calls), depth))
    replies: collections.Counter = collections.Counter()
    protocols = []
    for _ in range(connections):
        finished = loop.create_future()
        _, protocol = await loop.create_connection(
            lambda f=finished: _Pipelined(batches, depth, replies, f), host, port)
        protocols.append(protocol)
    began = time.perf_counter()
    for protocol in protocols:
        protocol.send_next()
    async with asyncio.timeout(MEASURE_TIMEOUT_S):
        await asyncio.gather(*(p.finished for p in protocols))
    elapsed = time.perf_counter() - began
    return {"calls": count, "seconds": round(elapsed, 3), "rate": round(count / elapsed),
            "depth": depth, "connections": connections, "codes": dict(replies)}


async def load_library(host: str, port: int, code: str) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(resp_command("FUNCTION", "LOAD", "REPLACE", code))
        parser = hiredis.Reader()
        async with asyncio.timeout(10):
            while (reply := parser.gets()) is False:
                parser.feed(await reader.read(4096))
        if not isinstance(reply, bytes):
            raise RuntimeError(f"Redis did not load the ledger's functions: {reply!r}")
    finally:
        writer.close()


async def measure_with_redis_benchmark(url: str, pan: str, count: int = 200_000,
                                       depth: int = 16, clients: int = 2) -> dict | None:
    """redis-benchmark's rate for the authorize function on `pan` (seeded, with room for
    `count` sales of 1 fen); None when redis-benchmark is not installed."""
    binary = shutil.which("redis-benchmark")
    if binary is None:
        return None
    function, code, keys, args = await script_call(sale(pan, "B__rand_int__", amount_fen=1))
    parsed = urlparse(url)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 6379
    await load_library(host, port, code)
    command = [binary, "-h", host, "-p", str(port), "-n", str(count), "-P", str(depth),
               "-c", str(clients), "-r", "1000000000", "--csv",
               "FCALL", function, str(len(keys)), *keys, *args]
    done = await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True,
                                   timeout=MEASURE_TIMEOUT_S)
    rows = list(csv.reader(done.stdout.splitlines()))
    if done.returncode != 0 or len(rows) < 2:
        raise RuntimeError(f"redis-benchmark failed: {done.stderr.strip() or done.stdout}")
    # Columns: test, rps, then six latency figures. The test column repeats the command,
    # whose JSON argument has quotes redis-benchmark does not escape: count from the end.
    return {"calls": count, "rate": round(float(rows[1][-7])), "depth": depth,
            "connections": clients, "client": "redis-benchmark",
            "avg_latency_ms": float(rows[1][-6])}
