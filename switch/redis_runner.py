"""A private redis-server for `make run` and the tests, started on a free loopback port.

Throw-away by default (the tests, the benches): it keeps nothing on disk. `durable=True`
(what `switch serve` starts unless told `--ephemeral`) keeps its data in its folder with
AOF on, so a restart finds the cards and balances as they were.

A durable folder is claimed with two locks (flock, so the kernel drops them with their
holder; a lock is never stale):
  switch.lock  held by the process that started the Redis, while it runs;
  redis.lock   inherited by redis-server, so it stays held while that Redis lives, even
               after the switch that started it was killed.
redis.lock held but switch.lock free means a Redis left running by a switch that died
without stopping it: it is stopped (SIGTERM: it finishes its AOF) and started afresh on
the same data. switch.lock held means another switch is using the folder: a clear error.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import redis

from switch import limits
from switch.redis_client import plain_url

# Redis' AOF fsync policies that keep acknowledged writes through a Redis crash (docs/
# reliability.md); "always" also through a power loss, at its cost (docs/performance.md).
APPENDFSYNC_POLICIES = ("always", "everysec")
# The durable private Redis' default: the choice and the window of loss it leaves are in
# docs/reliability.md, the measurement behind it in docs/performance.md.
DEFAULT_APPENDFSYNC = "everysec"


class RedisUnavailable(RuntimeError):
    pass


class DataFolderInUse(RedisUnavailable):
    pass


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def reachable(url: str, timeout_s: float = 1.0) -> bool:
    try:
        client = redis.Redis.from_url(plain_url(url), socket_connect_timeout=timeout_s,
                                      socket_timeout=timeout_s)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (redis.RedisError, OSError, ValueError):
        return False


def _try_lock(path: Path) -> int | None:
    """An fd holding an exclusive flock on `path`, or None when another holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _is_redis_server(pid: int, folder: Path) -> bool:
    """Process `pid` is a redis-server working in `folder` (Redis changes into its --dir)."""
    try:
        return (Path(f"/proc/{pid}/comm").read_text().startswith("redis-server")
                and Path(f"/proc/{pid}/cwd").resolve() == folder)
    except (OSError, ValueError):
        return False


class PrivateRedis:
    def __init__(self, folder: Path, durable: bool = False,
                 appendfsync: str = DEFAULT_APPENDFSYNC, port: int = 0) -> None:
        """`port`: the one to listen on at every start (a harness that kills and restarts
        this Redis under its clients); 0: a free one, found afresh at each start."""
        if appendfsync not in APPENDFSYNC_POLICIES:
            raise ValueError(f"appendfsync must be one of {', '.join(APPENDFSYNC_POLICIES)}")
        self.folder = folder.resolve()  # redis-server changes into --dir before opening files
        self.durable = durable
        self.appendfsync = appendfsync
        self.process: subprocess.Popen | None = None
        self.fixed_port = port
        self.port = port
        self.pid_file = self.folder / "redis.pid"
        self._owner_fd: int | None = None  # switch.lock, while this object runs a Redis
        self._data_fd: int | None = None  # redis.lock, shared with the redis-server
        self.notes: list[str] = []  # what start() found and did, for the banner

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def options(self) -> list[str]:
        """redis-server's persistence options."""
        if not self.durable:
            return ["--save", "", "--appendonly", "no"]
        return ["--save", "", "--appendonly", "yes", "--appendfsync", self.appendfsync,
                "--pidfile", str(self.pid_file)]

    def start(self, attempts: int = 5) -> str:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RedisUnavailable(
                "redis-server is not installed: run `make redis` (installs Debian's "
                "redis-server) or set REDIS_URL to a Redis you own")
        self.folder.mkdir(parents=True, exist_ok=True)
        if self.durable:
            self._claim()
        for _ in range(attempts):  # another process may take the free port before we bind it
            self.port = self.fixed_port or free_port()
            self.process = subprocess.Popen(
                [binary, "--port", str(self.port), "--bind", "127.0.0.1", *self.options(),
                 "--dir", str(self.folder), "--logfile", str(self.folder / "redis.log")],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                pass_fds=(self._data_fd,) if self._data_fd is not None else (),
                # Its own session: Ctrl-C reaches the switch alone, which drains its answers
                # and then stops Redis.
                start_new_session=True)
            if self._wait_ready():
                return self.url
            self._end_process()
        self._release()
        raise RedisUnavailable(f"redis-server did not start; see {self.folder / 'redis.log'}")

    def _claim(self) -> None:
        """Take the folder's locks (see the module's doc); stop a Redis left running."""
        if self._owner_fd is None:
            self._owner_fd = _try_lock(self.folder / "switch.lock")
            if self._owner_fd is None:
                raise DataFolderInUse(
                    f"{self.folder} is in use by another running switch (its private Redis "
                    "keeps its data there): stop that one first, or start this one with "
                    "--ephemeral or --redis URL")
        if self._data_fd is None:
            self._data_fd = _try_lock(self.folder / "redis.lock")
        if self._data_fd is None:
            self._stop_left_running()

    def _stop_left_running(self) -> None:
        """SIGTERM the redis-server an earlier switch left running on this folder, and wait
        (bounded) until it has let go of the data: then hold redis.lock."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            pid = 0
        stopping = _is_redis_server(pid, self.folder)
        if stopping:
            os.kill(pid, signal.SIGTERM)
            self.notes.append(f"stopped redis-server pid {pid}, left running on this data by "
                              "a switch that ended without stopping it; its data is kept")
        # The lock, not the process, says when it has let go: an exiting process loses its
        # working directory before the kernel drops its flocks.
        deadline = time.monotonic() + limits.redis_stop_timeout_s
        while (fd := _try_lock(self.folder / "redis.lock")) is None:
            if not stopping or time.monotonic() >= deadline:
                self._release()
                if stopping:
                    raise DataFolderInUse(f"{self.folder}: the Redis left running there did "
                                          "not let go of its data; see its redis.log")
                raise DataFolderInUse(
                    f"{self.folder / 'redis.lock'} is held, but {self.pid_file} names no "
                    "running redis-server: find the process holding it (`fuser -v` on the "
                    "file) and stop it")
            time.sleep(0.05)
        self._data_fd = fd

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + limits.redis_start_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            if reachable(self.url, timeout_s=0.2):
                return True
            time.sleep(0.02)
        return False

    def _end_process(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()  # Redis finishes its AOF on SIGTERM
            try:
                self.process.wait(timeout=limits.redis_stop_timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def _release(self) -> None:
        for fd in (self._data_fd, self._owner_fd):
            if fd is not None:
                os.close(fd)
        self._data_fd = self._owner_fd = None

    def stop(self) -> None:
        self._end_process()
        self._release()


def persistence(url: str) -> tuple[str, bool | None]:
    """What a Redis we did not start keeps on disk, from CONFIG GET: (a phrase for the
    banner, True/False whether acknowledged writes survive a restart of it, None: unknown,
    when CONFIG is refused, as managed Redis services often do)."""
    try:
        client = redis.Redis.from_url(plain_url(url), socket_connect_timeout=1.0,
                                      socket_timeout=1.0,
                                      decode_responses=True)
        try:
            config = client.config_get("appendonly") | client.config_get("appendfsync")
            config |= client.config_get("save")
        finally:
            client.close()
    except (redis.RedisError, OSError, ValueError):
        return "persistence unknown (CONFIG GET refused)", None
    if config.get("appendonly") == "yes":
        return f"persists: AOF, appendfsync {config.get('appendfsync', '?')}", True
    if config.get("save"):
        return (f"RDB snapshots only (save {config['save']}): a restart loses the writes since "
                "the last snapshot"), False
    return "nothing kept on disk: a restart loses every card", False


class ClusterNode(PrivateRedis):
    """A throw-away redis-server with Redis Cluster enabled (its nodes.conf in its folder)."""

    def options(self) -> list[str]:
        # A master emptied by a reshard stays a master (Redis would make it a replica).
        return [*super().options(), "--cluster-enabled", "yes", "--cluster-config-file",
                "nodes.conf", "--cluster-node-timeout", str(limits.cluster_node_timeout_ms),
                "--cluster-allow-replica-migration", "no"]


class PrivateCluster:
    """A throw-away Redis Cluster of `masters` nodes on free loopback ports (the tests', the
    benches'): the slots split evenly, every node met, started once every node says
    cluster_state:ok (bounded)."""

    def __init__(self, folder: Path, masters: int = 3, replicas: int = 0) -> None:
        """`replicas`: of each master (its failover's stand-ins)."""
        self.nodes = [ClusterNode(folder / f"node{index}") for index in range(masters)]
        self.replicas = [ClusterNode(folder / f"replica{index}")
                         for index in range(masters * replicas)]

    @property
    def url(self) -> str:
        """Any node's URL is the cluster's: the switch finds the others."""
        return self.nodes[0].url

    def start(self) -> str:
        try:
            for node in self.nodes + self.replicas:
                node.start()
            clients = [redis.Redis.from_url(node.url, decode_responses=True)
                       for node in self.nodes + self.replicas]
            try:
                self._form(clients[:len(self.nodes)])
                self._replicate(clients[:len(self.nodes)], clients[len(self.nodes):])
            finally:
                for client in clients:
                    client.close()
        except BaseException:
            self.stop()
            raise
        return self.url

    def _form(self, clients: list[redis.Redis]) -> None:
        share = CLUSTER_SLOTS // len(clients)
        for index, client in enumerate(clients):
            last = CLUSTER_SLOTS - 1 if index == len(clients) - 1 else (index + 1) * share - 1
            client.execute_command("CLUSTER", "ADDSLOTSRANGE", index * share, last)
        for node in self.nodes[1:]:
            clients[0].execute_command("CLUSTER", "MEET", "127.0.0.1", node.port)
        deadline = time.monotonic() + limits.cluster_form_timeout_s
        while not all(cluster_ok(client) for client in clients):
            if time.monotonic() >= deadline:
                raise RedisUnavailable(f"the cluster did not form within "
                                       f"{limits.cluster_form_timeout_s} s")
            time.sleep(0.05)

    def _replicate(self, masters: list[redis.Redis], replicas: list[redis.Redis]) -> None:
        """Each replica met, then made a replica of its master (round robin), and in sync."""
        ids = [master.execute_command("CLUSTER", "MYID") for master in masters]
        for replica in self.replicas:
            masters[0].execute_command("CLUSTER", "MEET", "127.0.0.1", replica.port)
        deadline = time.monotonic() + limits.cluster_form_timeout_s
        for index, replica in enumerate(replicas):
            master_id = ids[index % len(masters)]
            while True:  # it must know the master before it can follow it
                try:
                    replica.execute_command("CLUSTER", "REPLICATE", master_id)
                    break
                except redis.ResponseError:
                    if time.monotonic() >= deadline:
                        raise
                    time.sleep(0.05)
        while not all(replica.info("replication").get("master_link_status") == "up"
                      and cluster_ok(replica) for replica in replicas):
            if time.monotonic() >= deadline:
                raise RedisUnavailable(f"the replicas did not sync within "
                                       f"{limits.cluster_form_timeout_s} s")
            time.sleep(0.05)

    def stop(self) -> None:
        for node in self.nodes + self.replicas:
            node.stop()


CLUSTER_SLOTS = 16384


def cluster_ok(client: redis.Redis) -> bool:
    """The node sees every slot served and knows every node of the cluster's slot map."""
    info = client.execute_command("CLUSTER", "INFO")
    if isinstance(info, bytes):
        info = info.decode()
    return "cluster_state:ok" in info and len(client.execute_command("CLUSTER", "SLOTS")) > 0
