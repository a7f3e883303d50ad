"""Length-header framing, sans-IO: bytes in, whole frames out, and back.

A frame is a length header followed by that many bytes of body. The header is checked
against the frame size maximum *before* any of the body is buffered, so a peer cannot make
us hold more than one maximum frame per connection.
"""

from __future__ import annotations

import msgspec


class FramingError(ValueError):
    """The stream cannot be split into frames any more; the connection must be closed."""


class HeaderFormat(msgspec.Struct, frozen=True):
    name: str
    size_bytes: int
    ascii_digits: bool  # False: big-endian binary length; True: zero-padded decimal text
    # True: the length counts the header too (header + body), as some hosts send it.
    counts_itself: bool = False

    @property
    def length_max(self) -> int:
        """The longest body the header can announce."""
        capacity = 10**self.size_bytes - 1 if self.ascii_digits else 256**self.size_bytes - 1
        return capacity - self.size_bytes if self.counts_itself else capacity

    def encode(self, length: int) -> bytes:
        """The header of a body of `length` bytes."""
        # The bound is checked by what encodes (to_bytes refuses what does not fit, the digits
        # are counted), not against `length_max`: every frame sent goes through here.
        value = length + self.size_bytes if self.counts_itself and length >= 0 else length
        if self.ascii_digits:
            header = b"%0*d" % (self.size_bytes, value)
            if value >= 0 and len(header) == self.size_bytes:
                return header
        else:
            try:
                return value.to_bytes(self.size_bytes, "big")
            except OverflowError:  # negative, or more than the header holds
                pass
        raise FramingError(f"frame body of {length} bytes does not fit a {self.name} header")

    def decode(self, header: bytes) -> int:
        """The length of the body that follows `header`."""
        if not self.ascii_digits:
            value = int.from_bytes(header, "big")
        elif not header.isdigit():
            raise FramingError(f"{self.name} length header {header!r} is not decimal digits")
        else:
            value = int(header)
        if not self.counts_itself:
            return value
        if value < self.size_bytes:
            raise FramingError(f"{self.name} length header {header!r} counts less than the "
                               f"{self.size_bytes} bytes of the header itself")
        return value - self.size_bytes


BINARY_2 = HeaderFormat("2-byte binary", 2, False)
BINARY_4 = HeaderFormat("4-byte binary", 4, False)
ASCII_4 = HeaderFormat("4-byte ASCII", 4, True)
ASCII_2 = HeaderFormat("2-digit ASCII", 2, True)  # bodies of at most 99 bytes
BINARY_2_SELF = HeaderFormat("2-byte binary, counting itself", 2, False, counts_itself=True)
ASCII_4_SELF = HeaderFormat("4-byte ASCII, counting itself", 4, True, counts_itself=True)
# The presets of `[pos] header`, `switch serve --header` and `switch send --header`
# (docs/channels/pos.md, "Framing").
HEADER_FORMATS = {"binary2": BINARY_2, "binary4": BINARY_4, "ascii4": ASCII_4,
                  "ascii2": ASCII_2, "binary2self": BINARY_2_SELF, "ascii4self": ASCII_4_SELF}


class Framer:
    """Splits a byte stream into frame bodies; one per connection (it keeps partial input)."""

    __slots__ = ("header", "frame_size_max_bytes", "_buffer", "_body_length")

    def __init__(self, header: HeaderFormat, frame_size_max_bytes: int) -> None:
        self.header = header
        self.frame_size_max_bytes = frame_size_max_bytes
        self._buffer = bytearray()
        self._body_length: int | None = None  # None: waiting for a header

    def feed(self, data: bytes) -> list[bytes]:
        """Add received bytes; return the frame bodies now complete (possibly none)."""
        buffer = self._buffer
        buffer += data
        frames = []
        header_size = self.header.size_bytes
        while True:
            if self._body_length is None:
                if len(buffer) < header_size:
                    break
                length = self.header.decode(bytes(buffer[:header_size]))
                if length > self.frame_size_max_bytes:
                    raise FramingError(
                        f"frame of {length} bytes exceeds the maximum of "
                        f"{self.frame_size_max_bytes} bytes"
                    )
                del buffer[:header_size]
                self._body_length = length
            if len(buffer) < self._body_length:
                break
            frames.append(bytes(buffer[: self._body_length]))
            del buffer[: self._body_length]
            self._body_length = None
        return frames

    @property
    def pending_bytes(self) -> int:
        return len(self._buffer)

    @property
    def in_frame(self) -> bool:
        """Part of a frame has arrived (a header, or a header and some body), not all of it."""
        return bool(self._buffer) or self._body_length is not None

    def frame(self, body: bytes) -> bytes:
        if len(body) > self.frame_size_max_bytes:
            raise FramingError(f"frame of {len(body)} bytes exceeds the maximum")
        return self.header.encode(len(body)) + body
