"""`loadtest slow-reader`'s parts: what the bad client sends, how memory is read, the table.
No figure is asserted: only that each part measures what it says."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from loadtest.cli import parser
from loadtest.harness import slow_reader
from protocols.codes import Code
from protocols.framing import BINARY_4, Framer
from switch.channels import CODECS
from switch.config import Config, ServerLimits
from tests.support import running_switch, switch_config


def test_rss_is_the_processs_resident_memory():
    status = Path(f"/proc/{os.getpid()}/status").read_text()
    kib = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
    assert abs(slow_reader.rss_bytes(os.getpid()) - kib * 1024) < 64 * 1024 * 1024


@pytest.mark.parametrize(("kind", "answer"), [
    ("sales", None), ("format-errors", Code.FORMAT_ERROR)])
def test_the_bad_client_sends_whole_jd_frames_the_switch_takes(kind, answer):
    chunks = slow_reader.bad_stream(kind)
    codec = CODECS["jd"](Config())
    framer = Framer(BINARY_4, 1 << 20)
    bodies = [body for chunk in chunks for body in framer.feed(chunk)]
    assert bodies and not framer.in_frame  # every chunk ends with a whole frame
    for body in bodies[:50]:
        decoded = codec.decode_request(body)
        if answer is None:  # a sale the switch decides
            assert decoded.request.message_class == "sale" and decoded.request.amount_fen == 1
        else:  # answered at once, without Redis
            assert isinstance(decoded, bytes) and f'"isoCode":"{answer.value}"' in decoded.decode()


def test_the_command_and_its_options():
    args = parser().parse_args(["slow-reader", "--rate", "300", "--bad-requests",
                                "format-errors", "--duration", "5"])
    assert (args.func, args.rate, args.bad_requests, args.duration, args.settle) == (
        slow_reader.main, 300.0, "format-errors", 5.0, 5.0)
    with pytest.raises(ValueError, match="no switch/cli.py there"):
        slow_reader.main(parser().parse_args(["slow-reader", "--switch-checkout", "/"]))


def test_the_table_puts_both_phases_side_by_side():
    phase = {"p50_ms": 1.0, "p99_ms": 2.0, "p99.9_ms": 3.0, "answered": 10, "failures": 0}
    result = {"healthy_alone": phase, "healthy_with_bad_client": phase | {"p99_ms": 9.5},
              "rss_mib": {"before_bad": 40.0, "peak_with_bad": 41.5, "after_bad_left": 40.5,
                          "growth": 1.5, "kept_after": 0.5},
              "settings": {"settle_s": 5.0}, "bad_client": {"connections": 2},
              "switch_counters": {"write_timeouts": 1}}
    text = slow_reader.table(result)
    assert "healthy p99 (ms)" in text and "9.5" in text
    assert "peak 41.5 MiB (+1.5 MiB)" in text and "(+0.5 MiB)" in text
    assert "tricklers" not in text
    result |= {"healthy_with_tricklers": phase | {"p99_ms": 7.25},
               "tricklers": {"sockets": 200, "cut": 200}}
    text = slow_reader.table(result)
    assert "with 200 tricklers" in text and "7.25" in text and "'cut': 200" in text


async def test_a_trickler_is_timed_until_the_switch_cuts_it(redis_url):
    """Against a real switch with a frame deadline of half a second: cut, and timed."""
    limits = ServerLimits(frame_deadline_s=0.5)
    async with running_switch(redis_url, switch_config(server_limits=limits)) as (switch, _):
        loop = asyncio.get_running_loop()
        result = await slow_reader.tricklers(switch.ports["jd"], 3, loop.time() + 8)
    assert (result["sockets"], result["cut"], result["open_at_end"]) == (3, 3, 0)
    assert 0.5 <= result["cut_after_s_min"] <= result["cut_after_s_max"] < 8


def test_the_first_frame_of_a_chunk():
    frames = [BINARY_4.encode(3) + b"abc", BINARY_4.encode(2) + b"de"]
    assert slow_reader.first_frame(b"".join(frames)) == frames[0]
