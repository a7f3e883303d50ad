"""CPU per POS sale on the listener's codec path: the request decoded (TPDU and header off,
MAC checked) and its answer encoded (MAC made), `unionpay-pos` against `iso87ascii`.

Both run in one process, in alternating repeats (so a drift of the shared machine hits both
alike), timed with `time.process_time` (other processes do not count); the median of the
repeats is printed in microseconds per sale. No Redis, no sockets: the codec alone.

    .venv/bin/python scripts/bench_unionpay_codec.py [--repeat 7] [--number 5000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from protocols.iso_channel import IsoChannel  # noqa: E402
from protocols.iso_client import IsoClient  # noqa: E402
from protocols.iso_envelope import ENVELOPES, NO_ENVELOPE  # noqa: E402
from protocols.iso_mac import KeyRing, MacKey  # noqa: E402
from protocols.messages import AuthResponse  # noqa: E402

KEY = MacKey.parse("x9.19", "0123456789ABCDEFFEDCBA9876543210")
SALE = {"t": "0200", "2": "6253680000000026", "3": "000000", "4": "000000012800",
        "7": "1129120000", "11": "000123", "12": "120000", "13": "1129", "18": "5411",
        "22": "051", "25": "00", "32": "00010000", "41": "TERM0001",
        "42": "898310054110001", "49": "156", "60": "22000001"}
ANSWER = AuthResponse(response_code="00", approved_fen=12800, auth_id="724935",
                      open_to_buy_fen=987200)
WIRES = {"unionpay-pos": ("unionpay", ENVELOPES["tpdu+header"]),
         "iso87ascii": ("iso87ascii", NO_ENVELOPE)}


def sale_round(dialect: str, envelope):
    server = IsoChannel(dialect, keys=KeyRing({("10000", "TERM0001"): KEY}), envelope=envelope)
    body = IsoClient(dialect, KEY, envelope).encode(SALE)

    def one() -> None:
        decoded = server.decode_request(body)
        server.encode_response(decoded.context, ANSWER)

    return one


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--number", type=int, default=5000)
    args = parser.parse_args()
    rounds = {name: sale_round(*wire) for name, wire in WIRES.items()}
    samples: dict[str, list[float]] = {name: [] for name in rounds}
    for _ in range(args.repeat):
        for name, one in rounds.items():
            for _ in range(100):  # warm: the codec compiles its plans
                one()
            start = time.process_time()
            for _ in range(args.number):
                one()
            samples[name].append((time.process_time() - start) / args.number * 1e6)
    for name, values in samples.items():
        print(f"{name:<14} {statistics.median(values):6.1f} us CPU per sale "
              f"(min {min(values):.1f}, max {max(values):.1f}, {args.repeat} repeats)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
