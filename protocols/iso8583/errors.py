"""The one error type of the ISO 8583 codec.

Bad bytes from a peer and bad values from a caller both end here, so the switch can answer
every one of them the same way (response code 30, format error) without guessing which of
several exception types a decoder might leak.
"""

from __future__ import annotations


class Iso8583Error(ValueError):
    """A message (or a value for one) breaks the dialect.

    ``field`` names where: "MTI", "bitmap", a field number such as "2", or "trailing" for
    bytes after the last field. ``offset`` is the byte offset into the message being
    decoded; it is None for encode errors, where a value (not a byte position) is wrong.
    ``decoded`` is what a decode read before the defect: the MTI ("t") and the fields
    before the broken one (all of them for "trailing"); empty for MTI and encode errors.
    A switch answers a broken request with it.
    """

    def __init__(self, field: str, offset: int | None, reason: str,
                 decoded: dict | None = None) -> None:
        where = f"field {field}" if offset is None else f"field {field} at offset {offset}"
        super().__init__(f"{where}: {reason}")
        self.field = field
        self.offset = offset
        self.reason = reason
        self.decoded = {} if decoded is None else decoded

    def __reduce__(self):  # keep the attributes when pickled (multiprocessing, logging)
        return (type(self), (self.field, self.offset, self.reason, self.decoded))
