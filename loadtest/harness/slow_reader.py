"""`loadtest slow-reader`: what a client that sends and never reads costs the switch, and others.

One `switch serve` process (JD listener, a private Redis), then two phases of equal length,
side by side in one run:
(A) a healthy client alone: the open-loop generator on JD at a constant rate;
(B) the same healthy client, and a bad client that sends requests as fast as the switch takes
    them (`--bad-requests`: sales, or frames answered at once with a format error) and never
    reads an answer; when the switch cuts it, it connects again;
(C) unless `--tricklers 0`, the same healthy client beside N sockets that each send a sale one
    byte a second (slowloris): when, if ever, the switch cuts them.
The switch's resident memory (VmRSS of its process, /proc) is sampled throughout: its growth
during (B) and what is still held some seconds after the bad client has left. The healthy
client's p99 in (A) and (B). `--switch-checkout DIR` runs the switch of another checkout (the
commit before a change, say) with this same harness, for a before/after figure.
Results: bench-results/slow-reader-<date>.json, and the table on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

import msgspec

from loadtest.generator.aggregate import OVERALL
from loadtest.generator.cards import seed_cards
from loadtest.generator.client import Target
from loadtest.generator.event_loop import run_async
from loadtest.generator.runner import Plan, run_load
from loadtest.generator.workload import load_test_pans
from loadtest.harness import switch_counters
from loadtest.harness.bench import free_port, python_module, serving
from protocols import jd
from protocols.demo import DEMO_JD_KEY, DEMO_JD_MERCHANT
from protocols.framing import BINARY_4
from protocols.messages import AuthRequest, MessageClass
from switch.redis_runner import PrivateRedis

HEALTHY_CARDS = 2_000
HEALTHY_CONNECTIONS = 2
BAD_CARDS = 100
BAD_REQUESTS = 20_000  # distinct sales, sent over and over (repeats are answered too)
BAD_CHUNK_REQUESTS = 500  # per write of the bad client
# The bad client's receive buffer, fixed (no autotuning), as many clients' are: the kernel's
# buffers then hold little of what it does not read, and what piles up is the switch's.
BAD_RCVBUF_BYTES = 64 * 1024
RSS_SAMPLE_S = 0.25
TRICKLE_INTERVAL_S = 1.0  # one byte a second: a sale's frame would take minutes
FORMAT_ERROR = BINARY_4.encode(5) + b"\xff{not"  # not JSON: answered 30 without Redis
SEED = 1


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def rss_bytes(pid: int) -> int:
    """Resident memory of a process (VmRSS in /proc/PID/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


class RssSampler:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.samples: list[tuple[float, int]] = []
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            self.samples.append((time.monotonic(), rss_bytes(self.pid)))
            await asyncio.sleep(RSS_SAMPLE_S)

    def now(self) -> int:
        return rss_bytes(self.pid)

    def peak(self, since: float) -> int:
        return max((rss for at, rss in self.samples if at >= since), default=self.now())

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


def bad_stream(kind: str) -> list[bytes]:
    """Chunks of framed JD sales of 1 fen on the bad client's own cards, or of frames the
    switch answers at once with a format error (no Redis: the most answers per second)."""
    if kind == "format-errors":
        return [FORMAT_ERROR * (BAD_CHUNK_REQUESTS * 30)]
    pans = load_test_pans(BAD_CARDS, SEED + 1)
    key, stamp = DEMO_JD_KEY.encode(), time.strftime("%Y%m%d%H%M%S")
    frames = []
    for number in range(BAD_REQUESTS):
        request = AuthRequest(
            message_class=MessageClass.SALE, channel="jd", card=pans[number % BAD_CARDS],
            amount_fen=1, mcc="5411", merchant_id=DEMO_JD_MERCHANT,
            txn_ref=f"SLOW{stamp}{number:06d}", transmitted_at=stamp)
        body = jd.encode_request(request, key)
        frames.append(BINARY_4.encode(len(body)) + body)
    return [b"".join(frames[first:first + BAD_CHUNK_REQUESTS])
            for first in range(0, len(frames), BAD_CHUNK_REQUESTS)]


async def bad_client(port: int, chunks: list[bytes], until: float) -> dict[str, int]:
    """Sends without ever reading until `until` (loop time); connects again when cut."""
    loop = asyncio.get_running_loop()
    sent_bytes = connections = cut = 0
    while loop.time() < until:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, BAD_RCVBUF_BYTES)
        sock.setblocking(False)
        await loop.sock_connect(sock, ("127.0.0.1", port))
        connections += 1
        try:
            for number in range(10**9):
                remaining = until - loop.time()
                if remaining <= 0:
                    break
                chunk = chunks[number % len(chunks)]
                async with asyncio.timeout(remaining):
                    await loop.sock_sendall(sock, chunk)
                sent_bytes += len(chunk)
        except TimeoutError:
            pass
        except OSError:  # reset or broken pipe: the switch cut this connection
            cut += 1
        finally:
            sock.close()
    return {"connections": connections, "cut_by_switch": cut, "sent_bytes": sent_bytes}


async def trickler(port: int, frame: bytes, until: float) -> float | None:
    """Sends `frame` a byte at a time; the seconds from its first byte until the switch cut
    the connection, or None when it was still open at `until` (loop time)."""
    loop = asyncio.get_running_loop()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    began = loop.time()
    try:
        for byte in frame:
            if loop.time() >= until:
                return None
            writer.write(bytes([byte]))
            try:
                async with asyncio.timeout(TRICKLE_INTERVAL_S):
                    if await reader.read(1) == b"":
                        return loop.time() - began
            except TimeoutError:
                continue
        return None
    except ConnectionError:
        return loop.time() - began
    finally:
        writer.close()


async def tricklers(port: int, count: int, until: float) -> dict:
    """`count` tricklers at once, each sending a whole sale (which it never finishes)."""
    frame = first_frame(bad_stream("sales")[0])
    cut = [t for t in await asyncio.gather(*(trickler(port, frame, until)
                                             for _ in range(count))) if t is not None]
    return {"sockets": count, "cut": len(cut), "open_at_end": count - len(cut),
            "cut_after_s_min": round(min(cut), 1) if cut else None,
            "cut_after_s_max": round(max(cut), 1) if cut else None}


def first_frame(chunk: bytes) -> bytes:
    return chunk[:BINARY_4.size_bytes + BINARY_4.decode(chunk[:BINARY_4.size_bytes])]


async def healthy_load(port: int, redis_url: str, args: argparse.Namespace) -> dict:
    plan = Plan(rate=args.rate, duration_s=args.duration, mix={"jd": 1},
                targets={"jd": Target("127.0.0.1", port)}, connections=HEALTHY_CONNECTIONS,
                cards=HEALTHY_CARDS, seed=SEED, redis_url=redis_url)
    result = await run_load(plan)
    totals = result.totals[OVERALL]
    percentiles = totals.percentiles_ms()
    return {"answered": totals.counts["answered"], "failures": totals.failures,
            "p50_ms": percentiles.get("p50"), "p99_ms": percentiles.get("p99"),
            "p99.9_ms": percentiles.get("p99.9"), "max_ms": percentiles.get("max")}


async def measure(args: argparse.Namespace, logs: Path) -> dict:
    private = PrivateRedis(logs / "redis")
    url = private.start()
    env = None
    if args.switch_checkout:  # first on the path, ahead of the current directory
        env = dict(os.environ, PYTHONPATH=str(args.switch_checkout.resolve()), PYTHONSAFEPATH="1")
    try:
        seed_cards(url, load_test_pans(BAD_CARDS, SEED + 1))
        chunks = await asyncio.to_thread(bad_stream, args.bad_requests)
        port = free_port()
        argv = python_module("switch.cli", "serve", "--redis", url,
                             f"--listen=jd=127.0.0.1:{port}")
        async with serving("switch", argv, {"jd": port}, logs, env) as server:
            sampler = RssSampler(server.process.pid)
            say(f"== (A) healthy client alone: jd at {args.rate:,.0f}/s for {args.duration:g} s")
            alone_rss = sampler.now()
            alone = await healthy_load(port, url, args)
            say(f"   p99 {alone['p99_ms']} ms")
            say("== (B) the same, and a client that sends and never reads")
            loop = asyncio.get_running_loop()
            before_rss, began = sampler.now(), time.monotonic()
            bad = loop.create_task(bad_client(port, chunks, loop.time() + args.duration + 1))
            with_bad = await healthy_load(port, url, args)
            bad_result = await bad
            say(f"   p99 {with_bad['p99_ms']} ms; bad client: {bad_result}")
            peak_rss = sampler.peak(began)
            await asyncio.sleep(args.settle)
            after_rss = sampler.now()
            trickled = with_tricklers = None
            if args.tricklers:
                say(f"== (C) the healthy client, and {args.tricklers} sockets sending a byte "
                    f"a second")
                slow = loop.create_task(tricklers(port, args.tricklers,
                                                  loop.time() + args.duration))
                with_tricklers = await healthy_load(port, url, args)
                trickled = await slow
                say(f"   p99 {with_tricklers['p99_ms']} ms; tricklers: {trickled}")
            await sampler.stop()
        counters = switch_counters.parse_counters(server.log.read_text()) or {}
    finally:
        private.stop()
    mib = 1024 * 1024
    return {
        "settings": {"rate": args.rate, "duration_s": args.duration, "settle_s": args.settle,
                     "bad_requests": args.bad_requests, "tricklers": args.tricklers,
                     "healthy_connections": HEALTHY_CONNECTIONS,
                     "switch": str(args.switch_checkout or "this checkout")},
        "healthy_alone": alone, "healthy_with_bad_client": with_bad, "bad_client": bad_result,
        "healthy_with_tricklers": with_tricklers, "tricklers": trickled,
        "rss_mib": {"healthy_alone": round(alone_rss / mib, 1),
                    "before_bad": round(before_rss / mib, 1),
                    "peak_with_bad": round(peak_rss / mib, 1),
                    "after_bad_left": round(after_rss / mib, 1),
                    "growth": round((peak_rss - before_rss) / mib, 1),
                    "kept_after": round((after_rss - before_rss) / mib, 1)},
        "switch_counters": {name: counters.get(name) for name in (
            "connections", "requests", "answered", "write_timeouts", "frame_timeouts")},
    }


def table(result: dict) -> str:
    phases = [("healthy alone", result["healthy_alone"]),
              ("with a client that never reads", result["healthy_with_bad_client"])]
    if result.get("healthy_with_tricklers"):
        phases.append((f"with {result['tricklers']['sockets']} tricklers",
                       result["healthy_with_tricklers"]))
    rows = [("", *(name for name, _ in phases))] + [
        (label, *(phase[key] for _, phase in phases)) for label, key in (
            ("healthy p50 (ms)", "p50_ms"), ("healthy p99 (ms)", "p99_ms"),
            ("healthy p99.9 (ms)", "p99.9_ms"), ("healthy answered", "answered"),
            ("healthy failures", "failures"))]
    lines = [f"{row[0]:<20}" + "".join(f" {cell!s:>32}" for cell in row[1:]) for row in rows]
    rss = result["rss_mib"]
    lines.append(f"\nswitch RSS: {rss['before_bad']} MiB before the bad client, peak "
                 f"{rss['peak_with_bad']} MiB (+{rss['growth']} MiB), "
                 f"{rss['after_bad_left']} MiB {result['settings']['settle_s']:g} s after it "
                 f"left ({rss['kept_after']:+} MiB)")
    lines.append(f"bad client: {result['bad_client']}; switch counters: "
                 f"{result['switch_counters']}")
    if result.get("tricklers"):
        lines.append(f"tricklers: {result['tricklers']}")
    return "\n".join(lines)


def add_command(commands) -> None:
    """`loadtest slow-reader`, among the subcommands of the `loadtest` command."""
    sub = commands.add_parser(
        "slow-reader", help="a client that never reads: the switch's memory and a healthy "
        "client's p99, with and without it (starts its own switch and Redis)")
    sub.set_defaults(func=main)
    sub.add_argument("--rate", type=float, default=1000.0,
                     help="the healthy client's rate, requests/s (default 1000)")
    sub.add_argument("--duration", type=float, default=30.0,
                     help="seconds of each phase (default 30)")
    sub.add_argument("--settle", type=float, default=5.0,
                     help="seconds after the bad client left before the last RSS (default 5)")
    sub.add_argument("--bad-requests", choices=("sales", "format-errors"), default="sales",
                     help="what the bad client sends: JD sales (default), or frames answered "
                     "at once with a format error (the most answers per second)")
    sub.add_argument("--tricklers", type=int, default=200,
                     help="sockets sending a byte a second in phase (C); 0 skips it "
                     "(default 200)")
    sub.add_argument("--switch-checkout", type=Path, metavar="DIR",
                     help="run the switch of this checkout instead (e.g. a worktree of the "
                     "commit before a change), for a before/after figure")
    sub.add_argument("--out", type=Path, default=Path("bench-results"))


def main(args: argparse.Namespace) -> int:
    if args.switch_checkout and not (args.switch_checkout / "switch" / "cli.py").is_file():
        raise ValueError(f"--switch-checkout {args.switch_checkout}: no switch/cli.py there")
    began = time.time()
    with tempfile.TemporaryDirectory(prefix="slow-reader-") as folder:
        result = run_async(measure(args, Path(folder)))
    result["date"] = time.strftime("%Y-%m-%d %H:%M:%S %z", time.localtime(began))
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"slow-reader-{time.strftime('%Y%m%d-%H%M%S', time.localtime(began))}.json"
    path.write_bytes(msgspec.json.format(msgspec.json.encode(result), indent=2))
    print(table(result))
    print(f"\nwritten: {path}")
    return 0
