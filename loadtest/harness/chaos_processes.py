"""The processes a chaos run hurts: a durable redis-server and the switch, each on ports kept
across restarts, so the clients find them again where they were.

The Redis keeps its data in a folder of the run with the append-only file on: a killed
redis-server restarted on the same folder must find every write it acknowledged, or a Redis
kill would lose books by design and the history check would say so.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

from loadtest.harness.bench import Server, free_port, python_module
from switch.audit import journal_findings
from switch.redis_runner import PrivateRedis

AUDIT_TIMEOUT_S = 300.0  # `switch audit` of a long run's cards: seconds, bounded all the same


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
    """`switch serve` on fixed ports, its run directory (the stand-in journals) `run_dir`;
    each start logs to a file of its own in `logs`."""

    def __init__(self, redis_url: str, channels: list[str], logs: Path, run_dir: Path,
                 config: Path | None = None) -> None:
        self.ports = {channel: free_port() for channel in channels}
        listen = [f"--listen={ch}=127.0.0.1:{port}" for ch, port in self.ports.items()]
        self.config_args = ["--config", str(config)] if config else []
        self.argv = python_module("switch.cli", "serve", "--redis", redis_url, *listen,
                                  *self.config_args)
        self.logs = logs
        self.run_dir = run_dir
        self.env = {**os.environ, "SWITCH_RUN_DIR": str(run_dir)}
        self.starts = 0
        self.server: Server | None = None

    def start(self) -> None:
        """Start and wait (bounded) until every channel accepts connections."""
        self.starts += 1
        self.server = Server(f"switch-{self.starts}", self.argv, self.ports, self.logs,
                             self.env)
        self.server.wait_ready()

    def audit(self, redis_url: str) -> tuple[int, dict]:
        """`switch audit --json` of the books and of this switch's journals: (exit status,
        its report)."""
        done = subprocess.run(
            python_module("switch.cli", "audit", "--json", "--redis", redis_url,
                          "--journal-dir", str(self.run_dir), *self.config_args),
            capture_output=True, text=True, env=self.env, timeout=AUDIT_TIMEOUT_S)
        try:
            return done.returncode, json.loads(done.stdout)
        except ValueError:
            raise RuntimeError(f"switch audit failed (exit {done.returncode}): "
                               f"{done.stderr.strip()[-500:]}") from None

    def journals_drained(self) -> bool:
        return not journal_findings(self.run_dir)

    def kill(self) -> None:
        self.server.process.kill()
        self.server.process.wait()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
