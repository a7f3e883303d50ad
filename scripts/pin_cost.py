"""CPU per PIN check, by part: the PIN block's decryption (the codec, on the loop) and the
salted hash (switch/pins.py, in a thread), at the configured rounds and at others.

    .venv/bin/python scripts/pin_cost.py [--rounds 1000,2000,20000]

Process CPU time (not wall clock) over many repetitions, so a busy machine inflates the
figures less than it would a rate; run it twice and keep the lower.
"""

from __future__ import annotations

import argparse
import hashlib
import time

from protocols.iso_pin import decrypt_pin, encrypt_pin
from switch import limits

PAN = "6253680000000018"
DECRYPTIONS = 20_000
HASHES_CPU_S = 1.0  # about this much CPU per round count


def cpu_per_call_s(work, times: int) -> float:
    began = time.process_time()
    for _ in range(times):
        work()
    return (time.process_time() - began) / times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", default=f"1000,{limits.pin_hash_rounds},20000")
    args = parser.parse_args()
    key = bytes(range(16))
    block = encrypt_pin(key, "1234", PAN)
    per = cpu_per_call_s(lambda: decrypt_pin(key, block, PAN), DECRYPTIONS)
    print(f"decrypt F52 (3DES + format 0): {per * 1e6:.1f} us CPU")
    for rounds in (int(r) for r in args.rounds.split(",")):
        def one(rounds=rounds):
            hashlib.pbkdf2_hmac("sha256", b"1234", b"s" * 16, rounds)
        first = cpu_per_call_s(one, 5)
        times = max(5, int(HASHES_CPU_S / max(first, 1e-6)))
        mark = "  (configured)" if rounds == limits.pin_hash_rounds else ""
        print(f"PBKDF2-HMAC-SHA256 {rounds:>6} rounds: {cpu_per_call_s(one, times) * 1e3:.2f} "
              f"ms CPU{mark}")


if __name__ == "__main__":
    main()
