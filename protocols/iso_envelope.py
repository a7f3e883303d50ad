"""What UnionPay terminals send between the length header and the MTI, sans-IO.

- The TPDU (5 bytes): `60` (the TPDU id), a 2-byte destination address and a 2-byte source
  address. An answer carries the request's TPDU with the two addresses swapped.
- The UnionPay message header (6 bytes, after the TPDU): application type (n2, one BCD
  byte), software version (n2), terminal status (n1: 0 normal, 1 test) and processing
  requirement (n1: 0 none, 1 download parameters, 2 upload status, 3 sign on again, ...)
  sharing one byte, and 3 reserved bytes (the terminal's software sub-version). The answer
  echoes it with the processing requirement 0: the switch asks nothing of the terminal.

An `Envelope` says which of the two a listener expects (docs/channels/pos.md, "TPDU and
message header"). The length header counts them: they are part of the frame body.
"""

from __future__ import annotations

from typing import NamedTuple

TPDU_ID = 0x60
TPDU_SIZE_BYTES = 5
MESSAGE_HEADER_SIZE_BYTES = 6
# What `switch send` puts in front of its requests unless told otherwise: destination 0003
# (the host's network address), source 0000; application type 60, version 22, status and
# processing requirement 0, nothing reserved.
CLIENT_TPDU = bytes.fromhex("6000030000")
CLIENT_MESSAGE_HEADER = bytes.fromhex("602200000000")


class EnvelopeError(ValueError):
    """A TPDU or message header that cannot be read: answered 30 `format:tpdu` or
    `format:message_header`."""

    def __init__(self, part: str, reason: str, front: Front | None = None) -> None:
        super().__init__(f"{part}: {reason}")
        self.part, self.reason = part, reason
        self.front = front  # what could be taken for the front: its answer still swaps it


class Front(NamedTuple):
    """A message's TPDU and header as they came (b"" when the envelope has none)."""

    tpdu: bytes
    header: bytes


class Envelope(NamedTuple):
    name: str
    tpdu: bool
    message_header: bool

    @property
    def size_bytes(self) -> int:
        return (TPDU_SIZE_BYTES if self.tpdu else 0) + (
            MESSAGE_HEADER_SIZE_BYTES if self.message_header else 0)

    def split(self, body: bytes) -> tuple[Front, bytes]:
        """(the front, the ISO 8583 message after it); EnvelopeError when it is short or
        not a TPDU / header."""
        tpdu = body[:TPDU_SIZE_BYTES] if self.tpdu else b""
        header = (body[len(tpdu):len(tpdu) + MESSAGE_HEADER_SIZE_BYTES]
                  if self.message_header else b"")
        front = Front(tpdu, header)
        if self.tpdu:
            if len(tpdu) < TPDU_SIZE_BYTES:
                raise EnvelopeError("tpdu", f"{len(tpdu)} bytes, a TPDU is {TPDU_SIZE_BYTES}",
                                    front)
            if tpdu[0] != TPDU_ID:
                raise EnvelopeError("tpdu", f"id {tpdu[0]:02X}, not {TPDU_ID:02X}", front)
        if self.message_header:
            if len(header) < MESSAGE_HEADER_SIZE_BYTES:
                raise EnvelopeError("message_header", f"{len(header)} bytes, the header is "
                                    f"{MESSAGE_HEADER_SIZE_BYTES}", front)
            if not header[:3].hex().isdigit():
                raise EnvelopeError("message_header", f"{header[:3].hex().upper()} is not "
                                    "BCD digits (application type, version, status)", front)
        return front, body[self.size_bytes:]

    def answer_front(self, front: Front | None) -> bytes:
        """What goes before the answer's MTI: the TPDU with its addresses swapped, the
        header echoed with processing requirement 0. A TPDU or header too short to be one
        is answered with zero addresses, the client's default header."""
        tpdu, header = front if front is not None else (b"", b"")
        out = b""
        if self.tpdu:
            if len(tpdu) == TPDU_SIZE_BYTES:
                out = bytes((TPDU_ID,)) + tpdu[3:5] + tpdu[1:3]
            else:
                out = bytes((TPDU_ID, 0, 0, 0, 0))
        if self.message_header:
            if len(header) == MESSAGE_HEADER_SIZE_BYTES:
                out += header[:2] + bytes((header[2] & 0xF0,)) + header[3:]
            else:
                out += CLIENT_MESSAGE_HEADER
        return out

    def client_front(self, tpdu: bytes = CLIENT_TPDU,
                     header: bytes = CLIENT_MESSAGE_HEADER) -> bytes:
        """What a client puts before its request's MTI."""
        return (tpdu if self.tpdu else b"") + (header if self.message_header else b"")


NO_ENVELOPE = Envelope("none", False, False)
ENVELOPES = {
    "none": NO_ENVELOPE,
    "tpdu": Envelope("tpdu", True, False),
    "tpdu+header": Envelope("tpdu+header", True, True),
}


def describe(front: Front) -> dict[str, str]:
    """The front's parts by name, for people (`switch iso parse`)."""
    out = {}
    if front.tpdu:
        out |= {"tpdu_id": front.tpdu[:1].hex().upper(),
                "tpdu_destination": front.tpdu[1:3].hex().upper(),
                "tpdu_source": front.tpdu[3:5].hex().upper()}
    if front.header:
        status = front.header[2]
        out |= {"application_type": front.header[:1].hex(),
                "software_version": front.header[1:2].hex(),
                "terminal_status": f"{status >> 4:X}",
                "processing_requirement": f"{status & 0x0F:X}",
                "reserved": front.header[3:].hex().upper()}
    return out
