"""Running a coroutine on uvloop, in the command and in every worker process."""

from __future__ import annotations

import asyncio
import sys

import uvloop


def run_async(coro):
    """`coro` to its end on a fresh uvloop event loop; its result."""
    if sys.version_info >= (3, 12):
        return uvloop.run(coro)
    uvloop.install()
    return asyncio.run(coro)
