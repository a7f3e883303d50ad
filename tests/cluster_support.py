"""The cluster tests' helpers: a private Redis Cluster as a fixture, plain clients on its nodes,
a quick failover, and a slot moved by hand, as `redis-cli --cluster reshard` moves it, one step
at a time (so a test can send its request between two steps): IMPORTING on the target,
MIGRATING on the source, the slot's keys moved with MIGRATE, then the slot given to the target
everywhere. A cluster down on one master (CLUSTERDOWN) for as long as a test wants."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from switch.redis_client import slot_of
from switch.redis_runner import PrivateCluster
from tests.support import ANSWER_WAIT_S

MIGRATE_TIMEOUT_MS = 5000
KEYS_PER_MIGRATE = 10  # what redis-cli --cluster reshard moves per MIGRATE by default
# A master unreachable this long is failing, and its replica takes over within about as
# much again (an election after 0.5-1 s): seconds, not the default's tens of seconds.
FAST_NODE_TIMEOUT_MS = 1000


@contextlib.contextmanager
def running_cluster(folder: Path, masters: int = 3, replicas: int = 0
                    ) -> Iterator[PrivateCluster]:
    """A private cluster of `masters`, with `replicas` each, stopped on exit."""
    private = PrivateCluster(folder, masters=masters, replicas=replicas)
    private.start()
    try:
        yield private
    finally:
        private.stop()


def cluster_fixtures(replicas: int = 0):
    """A test module's `cluster` (one per module, 3 masters with `replicas` each) and `nodes`
    (a Nodes on it per test) fixtures: `cluster, nodes = cluster_fixtures(replicas=1)`."""

    @pytest.fixture(scope="module")
    def cluster(tmp_path_factory):
        with running_cluster(tmp_path_factory.mktemp("cluster"), replicas=replicas) as private:
            yield private

    @pytest.fixture
    def nodes(cluster):
        handle = Nodes(cluster)
        yield handle
        handle.close()

    return cluster, nodes


def fast_failover(cluster: PrivateCluster, node_timeout_ms: int = FAST_NODE_TIMEOUT_MS) -> None:
    """Every node of `cluster` judges a silent node failing after `node_timeout_ms`, and
    syncs a new replica at once (not after diskless sync's default 5 s wait for others)."""
    for node in cluster.nodes + cluster.replicas:
        client = redis.Redis(host="127.0.0.1", port=node.port)
        try:
            client.config_set("cluster-node-timeout", node_timeout_ms)
            client.config_set("repl-diskless-sync-delay", 0)
        finally:
            client.close()


class Nodes:
    """Plain clients on every node of a private cluster, by port."""

    def __init__(self, cluster: PrivateCluster) -> None:
        self.clients = {node.port: redis.Redis(host="127.0.0.1", port=node.port,
                                               decode_responses=True)
                        for node in cluster.nodes}
        self.ids = {port: client.execute_command("CLUSTER", "MYID")
                    for port, client in self.clients.items()}

    def close(self) -> None:
        for client in self.clients.values():
            client.close()

    def owner(self, key: str) -> int:
        """The port of the master serving `key`'s slot (as the first node sees it)."""
        slot = slot_of(key)
        for first, last, master, *_ in next(iter(self.clients.values())).execute_command(
                "CLUSTER", "SLOTS"):
            if first <= slot <= last:
                return int(master[1])
        raise AssertionError(f"nobody serves slot {slot}")

    def replica_port(self, master: int) -> int:
        """The port of the first replica of the master on port `master`, as it reports it."""
        return int(self.clients[master].info("replication")["slave0"]["port"])

    def replica(self, cluster: PrivateCluster, master: int):
        """The replica node (its process) of the master on port `master`."""
        port = self.replica_port(master)
        return next(node for node in cluster.replicas if node.port == port)

    def serving(self) -> list[int]:
        """The masters that serve slots (a reshard may empty one)."""
        return sorted({int(master[1]) for _, _, master, *_ in next(iter(
            self.clients.values())).execute_command("CLUSTER", "SLOTS")})

    def other(self, port: int) -> int:
        """A master serving slots other than `port`."""
        return next(p for p in self.serving() if p != port)

    def askings(self, port: int) -> int:
        """ASKING commands the node has run (INFO commandstats)."""
        stats = self.clients[port].info("commandstats").get("cmdstat_asking", {})
        return int(stats.get("calls", 0))

    def begin(self, slot: int, source: int, target: int) -> None:
        self.clients[target].execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING",
                                             self.ids[source])
        self.clients[source].execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING",
                                             self.ids[target])

    def move_keys(self, slot: int, source: int, target: int) -> int:
        moved = 0
        while keys := self.clients[source].execute_command(
                "CLUSTER", "GETKEYSINSLOT", slot, KEYS_PER_MIGRATE):
            self.clients[source].execute_command("MIGRATE", "127.0.0.1", target, "", 0,
                                                 MIGRATE_TIMEOUT_MS, "KEYS", *keys)
            moved += len(keys)
        return moved

    def finish(self, slot: int, target: int) -> None:
        """The slot is the target's: told to the target first, as redis-cli does."""
        for port in (target, *[p for p in self.clients if p != target]):
            self.clients[port].execute_command("CLUSTER", "SETSLOT", slot, "NODE",
                                               self.ids[target])

    def move_slot(self, key: str, target: int | None = None) -> tuple[int, int]:
        """Move `key`'s slot to `target` (default: another master); (source, target)."""
        slot, source = slot_of(key), self.owner(key)
        target = target or self.other(source)
        self.begin(slot, source, target)
        self.move_keys(slot, source, target)
        self.finish(slot, target)
        return source, target


async def wait_for(condition, what: str) -> None:
    """Until `condition()` holds (bounded)."""
    async with asyncio.timeout(ANSWER_WAIT_S):
        while not condition():
            await asyncio.sleep(0.001)
    assert condition(), what


def empty_slot_of(nodes: Nodes, port: int) -> int:
    """A slot the master on `port` serves that holds no key."""
    client = nodes.clients[port]
    for first, last, master, *_ in client.execute_command("CLUSTER", "SLOTS"):
        if int(master[1]) == port:
            for slot in range(first, last + 1):
                if not client.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot):
                    return slot
    raise AssertionError(f"no empty slot on {port}")


def cluster_state(nodes: Nodes, port: int) -> str:
    info = nodes.clients[port].execute_command("CLUSTER", "INFO")
    return re.search(r"cluster_state:(\w+)", info).group(1)


@contextlib.asynccontextmanager
async def cluster_down_on(nodes: Nodes, port: int):
    """The master on `port` sees the cluster down (a slot of its own given up: not every slot
    served) and answers CLUSTERDOWN to every call, until the slot is its own again (on
    leaving, or when the caller calls the function it is given)."""
    slot = empty_slot_of(nodes, port)
    nodes.clients[port].execute_command("CLUSTER", "DELSLOTS", slot)

    def restore() -> None:
        if cluster_state(nodes, port) != "ok":
            nodes.clients[port].execute_command("CLUSTER", "ADDSLOTS", slot)

    try:
        await wait_for(lambda: cluster_state(nodes, port) == "fail", "the cluster down")
        yield restore
    finally:
        restore()
        await wait_for(lambda: cluster_state(nodes, port) == "ok", "the cluster up again")
