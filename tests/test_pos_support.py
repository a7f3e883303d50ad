"""Helpers for the pos and x-pay tests: pyiso8583 as the independent peer, over real TCP.

Requests are built and answers read by pyiso8583 (`iso8583.encode` / `iso8583.decode` with
its `default_ascii` and `default` specs), never by our codec, so the tests check the wire
format and not our codec against itself. The MAC is computed here from its definition in
docs/channels/pos.md. No tests live in this module.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import time

import iso8583
import iso8583.specs

from protocols.framing import BINARY_2, Framer, HeaderFormat
from switch.config import Config, Iso8583, Listener
from tests.support import ANSWER_WAIT_S

SPECS = {"iso87ascii": iso8583.specs.default_ascii, "iso87binary": iso8583.specs.default}
TERMINAL = "TERM0001"
ACQUIRER = "00010000"
MERCHANT = "898310048990001"

_stans = itertools.count(time.time_ns() // 1000 % 900_000)


def new_stan() -> str:
    return f"{next(_stans) % 1_000_000:06d}"


def new_f7() -> str:
    """A transmission time MMDDhhmmss that differs from call to call."""
    seconds = next(_stans) % 86_400
    return f"1129{seconds // 3600:02d}{seconds // 60 % 60:02d}{seconds % 60:02d}"


def iso_config(dialect: str = "iso87ascii", mac_key: str = "", header: str = "binary2",
               channels: tuple[str, ...] = ("pos", "xpay")) -> Config:
    settings = Iso8583(dialect=dialect, header=header, mac_key=mac_key)
    return Config(listeners={name: Listener(port=0) for name in channels},
                  pos=settings, xpay=settings)


def financial(mti: str, card: str, processing: str, amount_fen: int | None, *, stan: str = "",
              f7: str = "", mcc: str = "5411", condition: str = "00", entry: str = "052",
              terminal: str = TERMINAL, original: str = "", track2: bool = False,
              rrn: str = "") -> dict:
    """A pyiso8583 doc of a financial message (all fields text, as both specs take them)."""
    stan, f7 = stan or new_stan(), f7 or new_f7()
    doc = {"t": mti, "3": processing}
    if track2:
        doc["35"] = f"{card}=30121010000000000"
    else:
        doc["2"] = card
    if amount_fen is not None:
        doc["4"] = f"{amount_fen:012d}"
    doc |= {"7": f7, "11": stan, "12": f7[4:], "13": f7[:4], "18": mcc, "22": entry,
            "25": condition, "32": ACQUIRER, "37": rrn or f"{f7[4:]}{stan}", "41": terminal,
            "42": MERCHANT, "43": f"{'BAITIAO DEMO SHOP SHANGHAI CN':<40}", "49": "156"}
    if original:
        doc["90"] = original
    return doc


def f90(original: dict) -> str:
    """Original data elements naming `original` (MTI, STAN, F7, acquirer, forwarding)."""
    return f"{original['t']}{original['11']}{original['7']}{ACQUIRER:0>11}{'0' * 11}"


def encode(doc: dict, dialect: str = "iso87ascii", mac_key: bytes | None = None) -> bytes:
    """pyiso8583's bytes for `doc`; with a key, F64 (or F128) set to the MAC over the rest."""
    doc = dict(doc)
    if mac_key is None:
        return bytes(iso8583.encode(doc, SPECS[dialect])[0])
    binary = dialect == "iso87binary"
    field = "128" if any(k.isdigit() and int(k) > 64 for k in doc) else "64"
    doc[field] = "0" * 16  # pyiso8583 takes binary fields as hex text in both specs
    body = bytes(iso8583.encode(doc, SPECS[dialect])[0])
    width = 8 if binary else 16
    code = hmac.new(mac_key, body[:-width], hashlib.sha256).digest()[:8]
    return body[:-width] + (code if binary else code.hex().upper().encode())


def field_at(body: bytes, field: str, dialect: str = "iso87ascii") -> int:
    """Where `field`'s value (after its length prefix) starts in `body`, as pyiso8583 reads
    it: a test damages the field it means by position, never by searching for its text."""
    pos = 0
    for key, part in iso8583.decode(bytearray(body), SPECS[dialect])[1].items():  # wire order
        pos += len(part["len"])
        if key == field:
            return pos
        pos += len(part["data"])
    raise KeyError(f"field {field} is not in the message")


def decode(body: bytes, dialect: str = "iso87ascii") -> dict:
    doc = iso8583.decode(bytearray(body), SPECS[dialect])[0]
    doc.pop("p", None)
    doc.pop("1", None)
    return doc


def mac_ok(body: bytes, doc: dict, key: bytes, dialect: str = "iso87ascii") -> bool:
    """The answer's MAC (pyiso8583 gives binary fields as hex text) matches its bytes."""
    given = bytes.fromhex(doc["128" if "128" in doc else "64"])
    width = 8 if dialect == "iso87binary" else 16
    expected = hmac.new(key, body[:-width], hashlib.sha256).digest()[:8]
    return hmac.compare_digest(given, expected)


class Wire:
    """One TCP connection to a listener; one request in flight at a time."""

    def __init__(self, reader, writer, header: HeaderFormat) -> None:
        self.reader, self.writer = reader, writer
        self.framer = Framer(header, 1 << 20)
        self.pending: list[bytes] = []

    @classmethod
    async def connect(cls, port: int, header: HeaderFormat = BINARY_2) -> Wire:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer, header)

    async def exchange(self, body: bytes) -> bytes:
        self.writer.write(self.framer.frame(body))
        return await self.next_answer()

    async def next_answer(self) -> bytes:
        async with asyncio.timeout(ANSWER_WAIT_S):
            while not self.pending:
                data = await self.reader.read(65536)
                if not data:
                    raise ConnectionError("closed before an answer")
                self.pending += self.framer.feed(data)
        return self.pending.pop(0)

    async def closed_by_peer(self) -> bool:
        """True once the switch has closed the connection (bounded wait)."""
        async with asyncio.timeout(ANSWER_WAIT_S):
            try:
                while await self.reader.read(65536):
                    pass
            except ConnectionError:
                pass
        return True

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except ConnectionError:
            pass


async def ask(port: int, doc: dict, dialect: str = "iso87ascii",
              mac_key: bytes | None = None) -> dict:
    """Send one pyiso8583-built request on a new connection; the decoded answer."""
    wire = await Wire.connect(port)
    try:
        return decode(await wire.exchange(encode(doc, dialect, mac_key)), dialect)
    finally:
        await wire.close()
