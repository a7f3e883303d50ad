"""Running a coroutine on uvloop (the command, every worker process, the bench's servers)."""

from __future__ import annotations

import asyncio
import signal
import sys

import uvloop


def run_async(coro):
    """`coro` to its end on a fresh uvloop event loop; its result."""
    if sys.version_info >= (3, 12):
        return uvloop.run(coro)
    uvloop.install()
    return asyncio.run(coro)


async def until_stopped() -> None:
    """Return at SIGINT or SIGTERM: how a server process started by the bench ends."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
