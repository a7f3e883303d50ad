"""Micro-benchmark: our ISO 8583 codec against pyiso8583 with the same spec, side by side.

One "pair" is what the switch does per authorization: decode a 0100 request (20 data
fields), encode it (as the acquirer side would), and the same for the 0110 answer (20 data
fields). Both libraries run the same pairs in the same process; the table shows the median
CPU microseconds per pair over several interleaved timeit repeats and the speed-up ratio.

"ours" is the steady state (message shapes seen before run on compiled plans, as in a
switch's traffic); "ours generic" is a codec with plans off, the cost of a never-seen shape.

    python -m loadtest.harness.bench_codec [--repeat 7] [--json results.json]
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import os
import platform
import statistics
import sys
import time
import timeit
from collections.abc import Callable

from protocols.iso8583 import Codec, get_codec, load_dialect

try:
    import iso8583
    from iso8583.specs import default, default_ascii
except ImportError:  # a test-only peer: the bench says so instead of a traceback
    iso8583 = None

DIALECTS = ("iso87ascii", "iso87binary")
repeat_default_count = 7  # enough repeats for a stable median on a noisy 2-core machine

ICC = bytes.fromhex("9F2608A1B2C3D4E5F607189F2701809F360200A1950500000080009A032601059C0100")
REQUEST = {
    "t": "0100",
    "2": "6259000000000001",
    "3": "000000",
    "4": "000000012345",
    "7": "0105093015",
    "11": "000123",
    "12": "093015",
    "13": "0105",
    "14": "2712",
    "18": "5411",
    "22": "051",
    "25": "00",
    "32": "12345678",
    "35": "6259000000000001=27121010000000000",
    "37": "000000123456",
    "41": "TERM0001",
    "42": "MERCH0000000001",
    "43": "PINGAN TEST STORE".ljust(23) + "SHENZHEN".ljust(15) + "CN",
    "49": "156",
    "52": b"\x01\x23\x45\x67\x89\xab\xcd\xef",
    "55": ICC,
}
_ECHOED = ("2", "3", "4", "7", "11", "12", "13", "14", "18", "22", "25", "32", "37", "41", "42")
RESPONSE = (
    {"t": "0110"}
    | {k: REQUEST[k] for k in _ECHOED}
    | {
        "38": "A1B2C3",
        "39": "00",
        "44": "OTB000000100000",
        "49": "156",
        "55": ICC[:11],
    }
)


def messages_for(name: str) -> tuple[dict, dict]:
    """The pair in this dialect's value types (binary data is hex text in the ASCII one)."""
    if name == "iso87binary":
        return dict(REQUEST), dict(RESPONSE)
    as_text = {k: v.hex().upper() if isinstance(v, bytes) else v for k, v in REQUEST.items()}
    answer = {k: v.hex().upper() if isinstance(v, bytes) else v for k, v in RESPONSE.items()}
    return as_text, answer


def ours_pair(codec: Codec, request: dict, response: dict) -> Callable[[], object]:
    encode, decode = codec.encode, codec.decode
    request_wire, response_wire = encode(request), encode(response)

    def pair() -> None:
        encode(decode(request_wire))
        encode(decode(response_wire))

    return pair


def peer_pair(spec: dict, request: dict, response: dict) -> Callable[[], object]:
    peer = {
        key: {k: v.hex().upper() if isinstance(v, bytes) else v for k, v in doc.items()}
        for key, doc in (("req", request), ("resp", response))
    }
    request_wire = bytes(iso8583.encode(copy.deepcopy(peer["req"]), spec)[0])
    response_wire = bytes(iso8583.encode(copy.deepcopy(peer["resp"]), spec)[0])
    encode, decode = iso8583.encode, iso8583.decode

    def pair() -> None:
        encode(decode(request_wire, spec)[0], spec)
        encode(decode(response_wire, spec)[0], spec)

    return pair


def median_us(contenders: dict[str, Callable[[], object]], repeat: int) -> dict[str, float]:
    """Median CPU microseconds per call of each contender.

    Repeats are interleaved (A, B, C, A, B, C, ...) so a burst of load from elsewhere hits
    every contender alike, and timed in process CPU time, not wall time, so other
    processes sharing the 2 cores do not count against whichever runs at that moment.
    """
    timers = {name: timeit.Timer(fn, timer=time.process_time) for name, fn in contenders.items()}
    # Calls per repeat: grown until one repeat takes at least 0.2 s.
    numbers = {name: timer.autorange()[0] for name, timer in timers.items()}
    runs: dict[str, list[float]] = {name: [] for name in timers}
    for _ in range(repeat):
        for name, timer in timers.items():
            runs[name].append(timer.timeit(numbers[name]) / numbers[name])
    return {name: statistics.median(times) * 1e6 for name, times in runs.items()}


def check_same_bytes(name: str, codec: Codec, spec: dict) -> None:
    """Refuse to time codecs that disagree: the comparison would mean nothing."""
    for message in messages_for(name):
        peer_doc = {k: v.hex().upper() if isinstance(v, bytes) else v for k, v in message.items()}
        theirs = bytes(iso8583.encode(copy.deepcopy(peer_doc), spec)[0])
        if codec.encode(message) != theirs:
            raise SystemExit(f"{name}: our bytes differ from pyiso8583's for {message['t']}")


def bench(name: str, repeat: int) -> dict:
    spec = {"iso87ascii": default_ascii, "iso87binary": default}[name]
    request, response = messages_for(name)
    codec = get_codec(name)
    generic = Codec(load_dialect(name), plans=False)
    check_same_bytes(name, codec, spec)
    for _ in range(3):  # warm up: shapes seen twice get their compiled plan
        ours_pair(codec, request, response)()
    medians = median_us(
        {
            "peer": peer_pair(spec, request, response),
            "ours": ours_pair(codec, request, response),
            "generic": ours_pair(generic, request, response),
        },
        repeat,
    )
    peer, ours, cold = medians["peer"], medians["ours"], medians["generic"]
    return {
        "dialect": name,
        "fields_per_message": [len(request) - 1, len(response) - 1],
        "pyiso8583_us_per_pair": round(peer, 2),
        "ours_us_per_pair": round(ours, 2),
        "ratio": round(peer / ours, 1),
        "ours_generic_us_per_pair": round(cold, 2),
        "generic_ratio": round(peer / cold, 1),
    }


def table(results: list[dict]) -> str:
    head = f"{'dialect':<12} {'pyiso8583':>10} {'ours':>8} {'ratio':>6} {'generic':>8} {'ratio':>6}"
    lines = [head, "-" * len(head)]
    for r in results:
        cells = (
            f"{r['dialect']:<12}",
            f"{r['pyiso8583_us_per_pair']:>10.1f}",
            f"{r['ours_us_per_pair']:>8.1f}",
            f"{r['ratio']:>5.1f}x",
            f"{r['ours_generic_us_per_pair']:>8.1f}",
            f"{r['generic_ratio']:>5.1f}x",
        )
        lines.append(" ".join(cells))
    lines.append("median CPU microseconds per 0100/0110 pair (decode + encode of each message)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=repeat_default_count)
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = parser.parse_args(argv)
    if iso8583 is None:
        print("pyiso8583 is not installed (pip install -e '.[test]')", file=sys.stderr)
        return 2
    results = [bench(name, args.repeat) for name in DIALECTS]
    print(table(results))
    if args.json:
        report = {
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "python": platform.python_version(),
            "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
            "cpus": os.cpu_count(),
            "pyiso8583": getattr(iso8583, "__version__", "?"),
            "repeat": args.repeat,
            "results": results,
        }
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump(report, out, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
