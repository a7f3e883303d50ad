"""The load generator's work per request, repeatable enough to count its instructions.

N JD requests go through the worker's own code: the workload makes them, the worker's send
path encodes, signs and frames them into a transport that keeps the bytes; a fake JD switch
(this file's code: the same in every tree measured) answers each batch of 16 in one chunk,
which the connection reads, matches and records; the worker ships its counts every 2,000
requests, as it does every second. No sockets, no clock in the count.

    PYTHONHASHSEED=0 valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        .venv/bin/python scripts/generator_cost.py --requests 10000

Run it with --requests 0 as well: the difference over N is the cost of one request (the
fake switch's answer included). It runs in the trees from before the generator moved into
loadtest/generator/ too (the older layout's modules are tried second), so one copy of it
measures both sides of a change. See docs/performance.md.
"""

from __future__ import annotations

import argparse
import struct

import msgspec

try:
    from loadtest.generator.client import Target
    from loadtest.generator.worker import Worker, WorkerPlan

    Connection = None  # the worker makes its own
except ImportError:  # the layout before loadtest/generator/
    from loadtest.connection import Connection
    from loadtest.worker import Target, Worker, WorkerPlan

BATCH = 16  # requests a write, answers a read
PER_INTERVAL = 2000  # requests between two shipped intervals
BLOCKED_MCCS = ("7995", "6011")  # what the shipped policy declines (57)
SIGN = "0123456789abcdef" * 4  # the generator does not check answer signatures

_fields = msgspec.json.Decoder(dict[str, str])
_encode = msgspec.json.Encoder().encode


def answer(body: bytes) -> bytes:
    """A JD answer with every field the switch's has (protocols/jd.py response_fields)."""
    request = _fields.decode(body)
    approved = request.get("industryCategoryCode") not in BLOCKED_MCCS
    return _encode({
        "merchant": request.get("merchant", ""), "tradeNum": request.get("tradeNum", ""),
        "tradeType": request.get("tradeType", ""),
        "code": "000000" if approved else "RISK01",
        "desc": "success" if approved else "not permitted for this card",
        "isoCode": "00" if approved else "57", "authCode": "A12345" if approved else "",
        "amount": request.get("amount", "0") if approved else "0",
        "availableAmount": "9876543", "beans": "5",
        "reason": "" if approved else "mcc_blocked:7995", "repeat": "0",
        "tradeState": "captured" if approved else "", "sign": SIGN,
    })


def fake_switch(data: bytes) -> bytes:
    """Every 4-byte-framed request in `data` answered, in one chunk."""
    out = []
    position = 0
    while position < len(data):
        (length,) = struct.unpack_from(">I", data, position)
        reply = answer(data[position + 4:position + 4 + length])
        out.append(struct.pack(">I", len(reply)) + reply)
        position += 4 + length
    return b"".join(out)


class KeptBytes:
    """A transport that keeps what is written."""

    def __init__(self) -> None:
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def abort(self) -> None:
        raise AssertionError("the connection was aborted: an answer did not read")

    def close(self) -> None:
        pass


class NoTimer:
    """What the send path reads of the worker's timer."""

    min_gap_ns = 200_000
    behind_ns = 1_000_000


def run(requests: int) -> tuple[int, int, int]:
    """(intervals shipped, answers they count, their bytes) after `requests` requests."""
    shipped: list[int] = []
    answered: list[int] = []

    def sink(interval) -> None:
        shipped.append(len(msgspec.msgpack.encode(interval)))
        answered.append(sum(channel.answered for channel in interval.channels.values()))

    plan = WorkerPlan(index=0, rate=1000.0, duration_s=max(1, requests) / 1000.0,
                      targets={"jd": Target("127.0.0.1", 1)}, connections=1,
                      inflight_max=1 << 20, mix={"jd": 1}, cards=1000, seed=1,
                      timeout_s=2.0, ref_prefix="Lcost", lag=200)
    worker = Worker(plan, sink)
    worker.timer = NoTimer()
    if Connection is None:
        conn = worker._connection("jd")
    else:
        conn = Connection(worker.adapters["jd"], plan.inflight_max, worker._answered,
                          worker._count, worker._lost)
    transport = KeptBytes()
    conn.connection_made(transport)
    worker.conns["jd"].append(conn)
    start_ns = 10**12
    sent = 0
    while sent < requests:
        for _ in range(min(BATCH, requests - sent)):
            intended = start_ns + sent * 1000
            if not worker._send(worker.workload.next(), intended, intended + 50_000):
                raise AssertionError("the connection took no request")
            sent += 1
        worker._flush()
        data = b"".join(transport.written)
        transport.written.clear()
        conn.data_received(fake_switch(data))
        if sent % PER_INTERVAL == 0:
            worker._emit()
    worker._emit()
    if conn.pending:
        raise AssertionError(f"{len(conn.pending)} requests were not answered")
    return len(shipped), sum(answered), sum(shipped)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10_000,
                        help="JD requests to make, send and answer (default 10,000)")
    args = parser.parse_args()
    if args.requests < 0:
        parser.error("--requests must be 0 or more")
    intervals, answered, size = run(args.requests)
    # The same outcome in every tree: the same stream, answered the same.
    print(f"{args.requests} requests, {answered} answered, {intervals} intervals shipped "
          f"({size} bytes)")


if __name__ == "__main__":
    main()
