"""The processes a chaos run hurts: a durable redis-server and the switch, each on ports kept
across restarts, so the clients find them again where they were.

The Redis keeps its data in a folder of the run with the append-only file on: a killed
redis-server restarted on the same folder must find every write it acknowledged, or a Redis
kill would lose books by design and the history check would say so.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from loadtest.harness.bench import Server, free_port, python_module
from switch.redis_runner import PrivateRedis


class DurableRedis:
    """The switch's durable private Redis (switch.redis_runner: AOF, `appendfsync` always
    or everysec) in `folder`, on one port at every start, and the faults done to it."""

    def __init__(self, folder: Path, appendfsync: str) -> None:
        self.server = PrivateRedis(folder, durable=True, appendfsync=appendfsync,
                                   port=free_port())
        self.frozen = False

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def process(self):
        return self.server.process

    def start(self) -> str:
        return self.server.start()

    def kill(self) -> None:
        """SIGKILL: no shutdown, no last write; what the AOF holds is what comes back."""
        self.server.process.kill()
        self.server.process.wait()
        self.frozen = False

    def freeze(self) -> None:
        os.kill(self.server.process.pid, signal.SIGSTOP)
        self.frozen = True

    def thaw(self) -> None:
        os.kill(self.server.process.pid, signal.SIGCONT)
        self.frozen = False

    def stop(self) -> None:
        if self.frozen:
            self.thaw()  # a stopped process would not act on SIGTERM
        self.server.stop()


class SwitchProcess:
    """`switch serve` on fixed ports; each start logs to a file of its own."""

    def __init__(self, redis_url: str, channels: list[str], logs: Path,
                 config: Path | None = None) -> None:
        self.ports = {channel: free_port() for channel in channels}
        listen = [f"--listen={ch}=127.0.0.1:{port}" for ch, port in self.ports.items()]
        extra = ["--config", str(config)] if config else []
        self.argv = python_module("switch.cli", "serve", "--redis", redis_url, *listen, *extra)
        self.logs = logs
        self.starts = 0
        self.server: Server | None = None

    def start(self) -> None:
        """Start and wait (bounded) until every channel accepts connections."""
        self.starts += 1
        self.server = Server(f"switch-{self.starts}", self.argv, self.ports, self.logs)
        self.server.wait_ready()

    def kill(self) -> None:
        self.server.process.kill()
        self.server.process.wait()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
