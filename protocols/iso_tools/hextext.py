"""A message typed or pasted as text: plain hex, or a hex dump as the docs and logs show one.

    3032303037323338...                      hex, spaces and line breaks ignored
    0000  00 8B 30 32 30 30 37 32  ..020072   a dump: offset, two spaces, the bytes, two
    0010  43 30 38 30 ...          C080...    spaces, then anything (hexdump -C's |...| too)

A dump's offsets are checked against the bytes read before them, so a column taken for the
wrong one is an error, not a different message.
"""

from __future__ import annotations

import re

_OFFSET = re.compile(r"[0-9A-Fa-f]{4,8}")
_DUMP_LINE = re.compile(r"[0-9A-Fa-f]{4,8}:?  ")  # an offset, then two spaces
_BYTES = re.compile(r"[0-9A-Fa-f]{2}( [0-9A-Fa-f]{2})*")
dump_line_bytes_max = 16  # what one line of a dump holds (hexdump -C, the docs' dumps)


def message_from_text(text: str) -> bytes:
    """The bytes of hex text or of a hex dump; ValueError saying where it is not either."""
    lines = [line for line in text.splitlines() if line.strip()]
    first = next((line for line in lines if not line.startswith("---")), "")
    if _DUMP_LINE.match(first):
        return from_dump(lines)
    compact = "".join(text.split())
    try:
        return bytes.fromhex(compact)
    except ValueError:
        bad = next((i for i, c in enumerate(compact) if c not in "0123456789abcdefABCDEF"),
                   len(compact))
        where = f"character {bad + 1}" if bad < len(compact) else "an odd number of digits"
        raise ValueError(f"the message is not hex ({where})") from None


def from_dump(lines: list[str]) -> bytes:
    out, last, repeat = bytearray(), b"", False
    for number, line in enumerate(lines, 1):
        if line.startswith("---"):  # a dump's title line, as in docs/channels/pos.md
            continue
        if line.strip() == "*":  # hexdump -C: the line before, again, up to the next offset
            repeat = True
            continue
        head, _, rest = line.partition("  ")
        at = int(head.rstrip(":"), 16) if _OFFSET.fullmatch(head.strip().rstrip(":")) else -1
        while repeat and last and len(out) < at:
            out += last
        repeat = False
        if not rest.strip() and at == len(out):
            continue  # hexdump -C ends with the length alone
        if not _DUMP_LINE.match(line) or at != len(out):
            raise ValueError(f"hex dump line {number}: {line[:20]!r} does not start with the "
                             f"offset {len(out):04X} and two spaces")
        taken = 0
        columns = rest.split("  ")
        for index, column in enumerate(columns):
            found = _BYTES.fullmatch(column.strip())
            size = len(column.split()) if found else 0
            # A last column as long as the bytes before it is their text, one character a byte.
            text = index == len(columns) - 1 and len(column) == taken
            if not found or taken + size > dump_line_bytes_max or text:
                break
            out += bytes.fromhex(column)
            taken += size
        if taken == 0:
            raise ValueError(f"hex dump line {number}: no bytes after the offset")
        last = bytes(out[-taken:])
    return bytes(out)
