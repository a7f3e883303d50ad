"""The bench's ceiling: a server that only sends every frame back (uvloop, asyncio.Protocol).

Whatever rate the load generator reaches against it is the most any server could show
with this generator on this machine. A JD request carries its trade number, so the JD
adapter reads an echoed request as an answer (with an empty response code).

    python -m loadtest.harness.echo --port 9000 [--header binary4]
"""

from __future__ import annotations

import argparse
import asyncio

from loadtest.generator.event_loop import run_async, until_stopped
from protocols.framing import HEADER_FORMATS, Framer, HeaderFormat

FRAME_SIZE_MAX_BYTES = 64 * 1024  # as the switch's default


class Echo(asyncio.Protocol):
    def __init__(self, header: HeaderFormat) -> None:
        self.framer = Framer(header, FRAME_SIZE_MAX_BYTES)
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        # Split into frames like a real server would, then answer them in one write.
        frames = self.framer.feed(data)
        if frames:
            frame = self.framer.frame
            self.transport.write(b"".join([frame(body) for body in frames]))


async def serve(host: str, port: int, header: HeaderFormat) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Echo(header), host, port)
    print(f"echo listening on {host}:{server.sockets[0].getsockname()[1]}", flush=True)
    await until_stopped()
    server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--header", choices=sorted(HEADER_FORMATS), default="binary4")
    args = parser.parse_args()
    run_async(serve(args.host, args.port, HEADER_FORMATS[args.header]))


if __name__ == "__main__":
    main()
