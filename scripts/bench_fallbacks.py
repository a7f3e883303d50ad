"""CPU per decoded unionpay-pos sale: F7 and F18 sent, against the same sale without them
(the listener reads F13 + F12 and F42 instead: protocols/iso_fallbacks.py).

Both in one process, in alternating pairs of rounds (a drift of the shared machine hits both
alike), timed with `time.process_time`; prints each side's median and spread, and the ratio
of each pair. No MAC, no Redis, no sockets: the listener's decode alone.

    .venv/bin/python scripts/bench_fallbacks.py [--rounds 15] [--number 20000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from protocols.iso8583 import get_codec  # noqa: E402
from protocols.iso_envelope import ENVELOPES  # noqa: E402
from protocols.pos import PosCodec  # noqa: E402

ENVELOPE = ENVELOPES["tpdu+header"]
SALE = {"t": "0200", "2": "6253680000000026", "3": "000000", "4": "000000012800",
        "11": "000123", "12": "120000", "13": "1129", "22": "051", "25": "00",
        "32": "00010000", "41": "TERM0001", "42": "898310054110001", "49": "156",
        "60": "22000001"}


def per_sale_us(server: PosCodec, body: bytes, number: int) -> float:
    decode = server.decode_request
    start = time.process_time()
    for _ in range(number):
        decode(body)
    return (time.process_time() - start) / number * 1e6


def spread(values: list[float], unit: str, digits: int) -> str:
    return (f"median {statistics.median(values):.{digits}f}{unit} (min {min(values):.{digits}f},"
            f" max {max(values):.{digits}f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15, help="pairs of rounds (default 15)")
    parser.add_argument("--number", type=int, default=20_000, help="sales a round")
    args = parser.parse_args()
    codec = get_codec("unionpay")
    front = ENVELOPE.client_front()
    sent = front + codec.encode(SALE | {"7": "1129120000", "18": "5411"})
    read_instead = front + codec.encode(SALE)
    server = PosCodec("unionpay", envelope=ENVELOPE)
    assert server.decode_request(sent).request == server.decode_request(read_instead).request
    with_fields, without = [], []
    for _ in range(args.rounds):
        with_fields.append(per_sale_us(server, sent, args.number))
        without.append(per_sale_us(server, read_instead, args.number))
    ratios = [b / a for a, b in zip(with_fields, without, strict=True)]
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"F7, F18 sent            {spread(with_fields, ' us', 2)}")
    print(f"read from F13+F12, F42  {spread(without, ' us', 2)}")
    print(f"ratio of each pair      {spread(ratios, '', 3)}")


if __name__ == "__main__":
    main()
