"""Our Lua code (switch/lua/) as Redis function libraries, one per component.

The code is loaded with FUNCTION LOAD (Redis 7+): its helpers are defined once when the
library loads, not on every call as in an EVAL script. The library's name and its
functions' names carry a hash of its code, so switches of different versions can share one
Redis.
"""

from __future__ import annotations

import hashlib
from importlib import resources
from typing import NamedTuple

VERSION_LENGTH = 12  # hex digits of the code's hash in the library's and functions' names

# The files of each library, in load order: the shared helpers come before their users.
LEDGER_FILES = ("holds", "statement", "prelude", "authorize", "capture", "reverse", "refund",
                "inquiry", "expire", "settle", "upgrade", "void", "advise", "claim", "batch",
                "repay", "fault_uses")
TOKEN_FILES = ("token_use", "token_admin")


class Library(NamedTuple):
    """A Redis function library built from our Lua files: `register(name, body)` in them
    defines function `name` (run with the call's KEYS and ARGV in place)."""

    version: str  # hash of the Lua code
    code: str  # what FUNCTION LOAD takes

    def function(self, name: str) -> str:
        """The Redis name of our function `name` in this version of the library."""
        return f"{name}_{self.version}"


def build_library(name: str, parts: list[str]) -> Library:
    body = "\n".join(parts)
    version = hashlib.sha1(body.encode()).hexdigest()[:VERSION_LENGTH]
    header = f"""#!lua name={name}_{version}
-- Redis passes each function its keys and arguments; the code reads them as KEYS and ARGV.
local KEYS, ARGV
local function register(name, body)
  redis.register_function(name .. '_{version}', function(keys, args)
    KEYS, ARGV = keys, args
    return body()
  end)
end
"""
    return Library(version, header + body)


def read_lua(names: tuple[str, ...]) -> list[str]:
    folder = resources.files("switch") / "lua"
    return [(folder / f"{name}.lua").read_text() for name in names]


def ledger_library() -> Library:
    """The ledger's functions (authorize, capture, ...), one Redis function library."""
    return build_library("baitiao_ledger", read_lua(LEDGER_FILES))


def token_library() -> Library:
    """The token vault's functions (switch/lua/token_*.lua), one Redis function library."""
    return build_library("baitiao_tokens", read_lua(TOKEN_FILES))
