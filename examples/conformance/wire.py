"""What the example adapters share: one TCP connection to a listener, framed as it frames.

An adapter writes frames (several at once when it does not wait) and reads answers, each wait
bounded; answers may come back in any order, so the caller matches them by the channel's id.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import sys

from protocols.framing import Framer, HeaderFormat

ANSWER_WAIT_S = 5.0  # an adapter's timeout: far above a healthy switch's few milliseconds
FRAME_MAX_BYTES = 64 * 1024  # the listener's own bound (docs: frame_size_max_bytes)


class Wire:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 header: HeaderFormat) -> None:
        self.reader, self.writer = reader, writer
        self.framer = Framer(header, FRAME_MAX_BYTES)
        self.ready: list[bytes] = []

    @classmethod
    async def open(cls, host: str, port: int, header: HeaderFormat) -> Wire:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port),
                                                ANSWER_WAIT_S)
        return cls(reader, writer, header)

    async def exchange(self, *bodies: bytes) -> list[bytes]:
        """Write the bodies in one write; their answers, in the order they come."""
        self.writer.write(b"".join(self.framer.frame(body) for body in bodies))
        await self.writer.drain()
        async with asyncio.timeout(ANSWER_WAIT_S):
            while len(self.ready) < len(bodies):
                data = await self.reader.read(FRAME_MAX_BYTES)
                if not data:
                    raise ConnectionError("the switch closed the connection")
                self.ready += self.framer.feed(data)
        answers, self.ready = self.ready[:len(bodies)], self.ready[len(bodies):]
        return answers

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def report(step: str, codes: list[str]) -> None:
    print(f"{step}: {' '.join(codes)}", flush=True)


def arguments(description: str, port: int) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=port)
    parser.add_argument("--pan", required=True, help="a test card's number (--cards-out)")
    parser.add_argument("--expiry", required=True, metavar="YYMM", help="the card's expiry")
    return parser


async def play(args: argparse.Namespace, header: HeaderFormat, adapter, script) -> int:
    """`script(adapter(wire, args))` on one connection: 0 when it ran to its end."""
    try:
        wire = await Wire.open(args.host, args.port, header)
    except OSError as error:
        print(f"cannot connect to {args.host}:{args.port}: {error}", file=sys.stderr)
        return 2
    try:
        await script(adapter(wire, args))
    except (TimeoutError, ConnectionError, ValueError) as error:
        print(f"stopped: {error or type(error).__name__}", file=sys.stderr)
        return 1
    finally:
        await wire.close()
    return 0
