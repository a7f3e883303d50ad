"""`switch serve` stops gracefully on a SIGTERM that arrives as soon as it says it is up:
its handlers are in place before the banner (a process ended where it stands would leave its
private Redis running)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.support import ANSWER_WAIT_S

# One serve_one whose banner callback signals the process at once: the earliest SIGTERM a
# user (or a test reading the banner) can send.
SCRIPT = textwrap.dedent("""
    import asyncio, os, signal, sys
    from switch.app import serve_one
    from switch.config import Config, Listener

    def up(ports):
        print("up", flush=True)
        os.kill(os.getpid(), signal.SIGTERM)

    asyncio.run(serve_one(Config(listeners={"jd": Listener(port=0)}), sys.argv[1], up))
    print("stopped gracefully", flush=True)
""")


def test_a_sigterm_as_soon_as_the_banner_is_out_stops_gracefully(redis_url):
    done = subprocess.run([sys.executable, "-c", SCRIPT, redis_url], capture_output=True,
                          text=True, timeout=ANSWER_WAIT_S * 5)
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    lines = done.stdout.splitlines()
    assert (lines[0], lines[-1]) == ("up", "stopped gracefully"), done.stdout
