"""A private redis-server for `make run` and the tests, started on a free loopback port.

It keeps nothing on disk and is stopped by whoever started it.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import redis

from switch import limits


class RedisUnavailable(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def reachable(url: str, timeout_s: float = 1.0) -> bool:
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=timeout_s,
                                      socket_timeout=timeout_s)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (redis.RedisError, OSError, ValueError):
        return False


class PrivateRedis:
    def __init__(self, folder: Path) -> None:
        self.folder = folder.resolve()  # redis-server changes into --dir before opening files
        self.process: subprocess.Popen | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, attempts: int = 5) -> str:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RedisUnavailable(
                "redis-server is not installed: run `make redis` (installs Debian's "
                "redis-server) or set REDIS_URL to a Redis you own")
        self.folder.mkdir(parents=True, exist_ok=True)
        for _ in range(attempts):  # another process may take the free port before we bind it
            self.port = free_port()
            self.process = subprocess.Popen(
                [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--dir", str(self.folder),
                 "--logfile", str(self.folder / "redis.log")],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if self._wait_ready():
                return self.url
            self.stop()
        raise RedisUnavailable(f"redis-server did not start; see {self.folder / 'redis.log'}")

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + limits.redis_start_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            if reachable(self.url, timeout_s=0.2):
                return True
            time.sleep(0.02)
        return False

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
