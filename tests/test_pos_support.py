"""Helpers for the pos and x-pay tests: pyiso8583 as the independent peer, over real TCP.

Requests are built and answers read by pyiso8583 (`iso8583.encode` / `iso8583.decode` with
its `default_ascii` and `default` specs), never by our codec, so the tests check the wire
format and not our codec against itself. The MAC is computed here from its definition in
docs/channels/pos.md, with the block ciphers of the `cryptography` library block by block
(never protocols/iso_mac.py). Requests are signed with the demo POS terminal's key unless a
test says otherwise. No tests live in this module.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import time

import iso8583
import iso8583.specs
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from protocols.demo import DEMO_POS_MAC
from protocols.framing import BINARY_2, Framer, HeaderFormat
from switch.config import Config, Iso8583, Listener
from tests.support import ANSWER_WAIT_S

SPECS = {"iso87ascii": iso8583.specs.default_ascii, "iso87binary": iso8583.specs.default,
         # iso87ascii with F52 at 32 hex characters (one SM4 PIN block), written here by hand
         "iso87ascii-sm4": iso8583.specs.default_ascii | {
             "52": iso8583.specs.default_ascii["52"] | {"max_len": 32}}}
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


# A MAC key as the tests name one: (algorithm, key bytes); bare bytes are HMAC-SHA256.
DEMO_KEY = (DEMO_POS_MAC[0], bytes.fromhex(DEMO_POS_MAC[1]))  # of ACQUIRER's TERMINAL


def iso_config(dialect: str = "iso87ascii", mac: str = "required", header: str = "binary2",
               channels: tuple[str, ...] = ("pos", "xpay"), terminals=None) -> Config:
    """`terminals`: the listeners' configured keys (default: the demo terminals)."""
    settings = Iso8583(dialect=dialect, header=header, mac=mac)
    if terminals is not None:
        settings.terminals = terminals
    return Config(listeners={name: Listener(port=0) for name in channels},
                  pos=settings, xpay=settings)


def _ecb(cipher, block: bytes) -> bytes:
    return Cipher(cipher, modes.ECB()).encryptor().update(block)


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def reference_mac(key, data: bytes) -> bytes:
    """The MAC as docs/channels/pos.md defines it, one cipher block at a time."""
    if isinstance(key, bytes):
        return hmac.new(key, data, hashlib.sha256).digest()[:8]
    algorithm, raw = key
    if algorithm == "x9.19":  # CBC with single DES (left half), then 3DES on the last block
        left, right = TripleDES(raw[:8] * 3), TripleDES(raw[8:] * 3)
        data += bytes(-len(data) % 8)
        chain = bytes(8)
        for at in range(0, len(data), 8):
            chain = _ecb(left, _xor(chain, data[at:at + 8]))
        decrypt = Cipher(right, modes.ECB()).decryptor().update(chain)
        return _ecb(left, decrypt)
    assert algorithm == "sm4", algorithm  # CBC-MAC, 0x80 then zeros, first 8 bytes
    data += b"\x80" + bytes(-(len(data) + 1) % 16)
    chain = bytes(16)
    for at in range(0, len(data), 16):
        chain = _ecb(algorithms.SM4(raw), _xor(chain, data[at:at + 16]))
    return chain[:8]


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


def encode(doc: dict, dialect: str = "iso87ascii", mac_key=DEMO_KEY) -> bytes:
    """pyiso8583's bytes for `doc`; with a key (None: unsigned), F64 (or F128) set to the
    MAC over the rest."""
    doc = dict(doc)
    if mac_key is None:
        return bytes(iso8583.encode(doc, SPECS[dialect])[0])
    binary = dialect == "iso87binary"
    field = "128" if any(k.isdigit() and int(k) > 64 for k in doc) else "64"
    doc[field] = "0" * 16  # pyiso8583 takes binary fields as hex text in both specs
    body = bytes(iso8583.encode(doc, SPECS[dialect])[0])
    width = 8 if binary else 16
    code = reference_mac(mac_key, body[:-width])
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


def mac_ok(body: bytes, doc: dict, key=DEMO_KEY, dialect: str = "iso87ascii") -> bool:
    """The answer's MAC (pyiso8583 gives binary fields as hex text) matches its bytes."""
    given = bytes.fromhex(doc["128" if "128" in doc else "64"])
    width = 8 if dialect == "iso87binary" else 16
    return hmac.compare_digest(given, reference_mac(key, body[:-width]))


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


async def ask(port: int, doc: dict, dialect: str = "iso87ascii", mac_key=DEMO_KEY) -> dict:
    """Send one pyiso8583-built request on a new connection; the decoded answer."""
    wire = await Wire.connect(port)
    try:
        return decode(await wire.exchange(encode(doc, dialect, mac_key)), dialect)
    finally:
        await wire.close()
