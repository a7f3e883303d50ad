"""A master of a Redis Cluster killed under load, and the chaos history check afterwards
(docs/cluster.md, "Failover"): no tests live here; tests/test_cluster_failover.py runs it
and scripts/cluster_failover_runs.py repeats it with and without --durable-replicas.

The run: a private cluster of 3 masters with a replica each (cluster-node-timeout lowered so
the cluster fails over by itself within seconds), `switch serve` on it, and closed-loop JD
and POS sales on several connections, cards on every master, every answer recorded in a
loadtest History. Meanwhile one master is SIGKILLed; its replica is promoted. Afterwards
the books are read from the surviving cluster and checked against what the clients saw
(loadtest/harness/history_check.py: lost, doubled, invented), and `switch audit` runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import time
from pathlib import Path
from typing import NamedTuple

import redis

from loadtest.generator import adapters
from loadtest.generator.adapters.base import ClientAdapter, Context
from loadtest.generator.cards import seed_cards
from loadtest.generator.client import ANSWER_SIZE_MAX_BYTES
from loadtest.generator.history import History
from loadtest.generator.workload import CARD_EXPIRY, Txn, load_test_pans
from loadtest.harness import chaos_ledger, history_check
from loadtest.harness.chaos_processes import SwitchProcess
from protocols.framing import Framer
from protocols.ledger_layout import card_key
from protocols.messages import AuthRequest, MessageClass
from switch.config import load as load_config
from tests.cluster_support import Nodes, fast_failover, running_cluster

CHANNELS = ("jd", "pos")
CONNECTIONS_PER_CHANNEL = 2
INFLIGHT_PER_CONNECTION = 4  # closed loop: each connection keeps this many sales out
CARDS = 48  # spread over the three masters by their slots
CARD_LIMIT_FEN = 10**9  # no sale of the run is declined for want of credit
SALE_FEN_MAX = 999
WARM_UP_S = 1.5  # load before the kill: every connection and lane open, the map read
AFTER_FOLLOW_S = 1.0  # load after the first approval on the new master
FAILOVER_WAIT_S = 30.0  # kill -> promotion -> an approval there, on a loaded two-core box
# An answer later than the switch's deadline by more than this is a hang (the deadline
# answers 91 itself; the slack is the loaded box's, not the switch's).
ANSWER_SLACK_S = 3.0
ROLE_POLL_S = 0.01  # how finely the promotion's instant is seen
JOURNAL_DRAIN_WAIT_S = 30.0


class Seen(NamedTuple):
    """One request as its client saw it (times in seconds since the load began)."""

    channel: str
    pan: str
    sent_s: float
    answered_s: float | None  # None: no answer within the bound (a hang)
    code: str


class Outcome(NamedTuple):
    durable_replicas: int
    seen: list[Seen]
    dropped_connections: int
    killed_s: float  # when the master was SIGKILLed
    promoted_s: float  # when its replica said it was master
    restarted_s: float  # when the killed node was up again (started after the promotion)
    rejoined_s: float  # when it was the new master's replica, in sync
    resumed_s: float  # first approval on a card of the killed master, sent after the kill
    findings: history_check.Findings
    audit_status: int
    audit_broken: list[str]
    journals_drained: bool
    dead_cards: set[str]  # the cards of the killed master

    def unavailable(self, dead: bool) -> int:
        """Requests answered 91 on the killed master's cards (`dead`), or on the others'."""
        return sum(1 for s in self.seen if s.code == "91" and (s.pan in self.dead_cards) == dead)

    @property
    def codes(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for seen in self.seen:
            counts[seen.code] = counts.get(seen.code, 0) + 1
        return dict(sorted(counts.items()))

    @property
    def slowest_s(self) -> float:
        return max(s.answered_s - s.sent_s for s in self.seen if s.answered_s is not None)

    def line(self) -> str:
        found = self.findings
        return (f"durable_replicas={self.durable_replicas} requests={len(self.seen)} "
                f"codes={self.codes} 91_on_its_cards={self.unavailable(True)} "
                f"91_on_others={self.unavailable(False)} "
                f"dropped_connections={self.dropped_connections} "
                f"promoted_after_kill_s={self.promoted_s - self.killed_s:.2f} "
                f"rejoined_after_promotion_s={self.rejoined_s - self.promoted_s:.2f} "
                f"approved_after_promotion_s={self.resumed_s - self.promoted_s:.2f} "
                f"slowest_answer_s={self.slowest_s:.2f} lost={found.lost} "
                f"doubled={found.doubled} invented={found.invented} "
                f"audit={'clean' if self.audit_status == 0 else self.audit_broken}")


class SaleLoad:
    """Closed-loop sales on several connections per channel; every send and answer goes into
    `history` (the chaos check's record) and `seen` (its timing)."""

    def __init__(self, ports: dict[str, int], pans: list[str], answer_bound_s: float) -> None:
        self.ports = ports
        self.pans = pans
        self.answer_bound_s = answer_bound_s
        self.ref_prefix = f"F{time.time_ns() % 10**9}x"  # this run's ids: never a repeat
        context = Context(ref_prefix=self.ref_prefix)
        self.adapters = {ch: adapters.build(ch, None, context) for ch in ports}
        self.numbers = itertools.count(1)
        self.history = History()
        self.seen: list[Seen] = []
        self.dropped = 0  # connections the switch closed or reset
        self.began = time.monotonic()
        self.stopping = asyncio.Event()

    def now_s(self) -> float:
        return time.monotonic() - self.began

    async def run(self) -> None:
        streams = [self._connection(channel) for channel in self.ports
                   for _ in range(CONNECTIONS_PER_CHANNEL)]
        await asyncio.gather(*streams)

    def stop(self) -> None:
        self.stopping.set()

    def _sale(self, channel: str) -> Txn:
        number = next(self.numbers)
        pan = self.pans[number % len(self.pans)]
        request = AuthRequest(message_class=MessageClass.SALE, channel=channel, card=pan,
                              amount_fen=1 + number % SALE_FEN_MAX, mcc="5411",
                              expiry=CARD_EXPIRY, txn_ref=f"{self.ref_prefix}{number}",
                              transmitted_at=time.strftime("%Y%m%d%H%M%S"))
        txn = Txn(number, "sale", channel, request, None)
        txn.wire = self.adapters[channel].encode(txn)
        return txn

    async def _connection(self, channel: str) -> None:
        adapter = self.adapters[channel]
        reader, writer = await asyncio.open_connection("127.0.0.1", self.ports[channel])
        waiting: dict[str, asyncio.Future] = {}
        reading = asyncio.ensure_future(self._read(adapter, reader, waiting))
        try:
            await asyncio.gather(*[self._sender(channel, writer, waiting)
                                   for _ in range(INFLIGHT_PER_CONNECTION)])
        finally:
            writer.close()
            reading.cancel()
            with contextlib.suppress(BaseException):
                await reading

    async def _read(self, adapter: ClientAdapter, reader, waiting) -> None:
        framer = Framer(adapter.header, ANSWER_SIZE_MAX_BYTES)
        try:
            while data := await reader.read(65536):
                for body in framer.feed(data):
                    correlation_id, response = adapter.decode(body)
                    future = waiting.pop(correlation_id, None)
                    if future is not None and not future.done():
                        future.set_result(response)
        except ConnectionError:
            pass
        self.dropped += 1  # the switch ended the connection: no more answers on it
        for future in waiting.values():
            if not future.done():
                future.set_exception(ConnectionError("closed before an answer"))

    async def _sender(self, channel: str, writer, waiting) -> None:
        framer = Framer(self.adapters[channel].header, ANSWER_SIZE_MAX_BYTES)
        while not self.stopping.is_set():
            txn = self._sale(channel)
            correlation_id, body = txn.wire
            answer = waiting[correlation_id] = asyncio.get_running_loop().create_future()
            sent_s = self.now_s()
            self.history.sent(txn)
            writer.write(framer.frame(body))
            try:
                async with asyncio.timeout(self.answer_bound_s):
                    response = await answer
            except (TimeoutError, ConnectionError):
                self.seen.append(Seen(channel, txn.request.card, sent_s, None, ""))
                return  # a hang or a dropped connection: the run's finding, not retried
            self.history.answered(txn, response)
            self.seen.append(Seen(channel, txn.request.card, sent_s, self.now_s(),
                                  response.response_code))


async def role_of(port: int, wanted) -> None:
    """Until the node on `port` reports the `wanted(INFO replication)` (polled)."""
    client = redis.asyncio.Redis(port=port, decode_responses=True)
    try:
        while not wanted(await client.info("replication")):
            await asyncio.sleep(ROLE_POLL_S)
    finally:
        await client.aclose()


def is_master(info: dict) -> bool:
    return info["role"] == "master"


def is_replica_in_sync(info: dict) -> bool:
    return info["role"] == "slave" and info.get("master_link_status") == "up"


def cut_replicas(port: int) -> None:
    """The master on `port` closes its replicas' links."""
    client = redis.Redis(port=port)
    try:
        client.execute_command("CLIENT", "KILL", "TYPE", "replica")
    finally:
        client.close()


def restart(node) -> None:
    """The killed node started again on its port and folder (its nodes.conf: the same node
    id), as a supervisor would: it finds its slots taken and follows their new master."""
    node.fixed_port = node.port
    node.start()


def first_approval_after(load: SaleLoad, pans: set[str], after_s: float) -> float | None:
    times = [s.answered_s for s in load.seen
             if s.pan in pans and s.sent_s > after_s and s.code == "00"]
    return min(times) if times else None


async def until(condition, bound_s: float) -> None:
    """Until `condition()` holds; TimeoutError after `bound_s`."""
    async with asyncio.timeout(bound_s):
        while not condition():
            await asyncio.sleep(ROLE_POLL_S)


def write_config(folder: Path, durable_replicas: int) -> Path:
    path = folder / "switch.toml"
    path.write_text(f"[limits]\ndurable_replicas = {durable_replicas}\n")
    return path


async def run_failover(folder: Path, durable_replicas: int, replica_behind_s: float = 0.0
                       ) -> Outcome:
    """The whole run in `folder`; the processes it starts are stopped when it returns.
    `replica_behind_s`: the killed master's replica is cut off that long before the kill
    (frozen with SIGSTOP, its link closed by the master: what the master sent is read on
    the thaw, what came after never reaches it), thawed right after the kill, so the
    master answers writes its replica will never have."""
    with running_cluster(folder / "cluster", replicas=1) as cluster:
        fast_failover(cluster)
        return await _under_load(cluster, folder, durable_replicas, replica_behind_s)


async def _under_load(cluster, folder: Path, durable_replicas: int, replica_behind_s: float
                      ) -> Outcome:
    pans = load_test_pans(CARDS, seed=int(time.time()))
    await asyncio.to_thread(seed_cards, cluster.url, pans, CARD_LIMIT_FEN)
    victim = cluster.nodes[1]  # not the URL's node: the switch's way in stays up
    nodes = Nodes(cluster)
    try:
        owner = {pan: nodes.owner(card_key(pan)) for pan in pans}
        replica = nodes.replica(cluster, victim.port)
    finally:
        nodes.close()
    assert set(owner.values()) == {node.port for node in cluster.nodes}, "cards on every master"
    dead_cards = {pan for pan, port in owner.items() if port == victim.port}
    config_path = write_config(folder, durable_replicas)
    config = load_config(config_path)
    switch = SwitchProcess(cluster.url, list(CHANNELS), folder, folder / "run", config_path)
    await asyncio.to_thread(switch.start)
    try:
        load = SaleLoad(switch.ports, pans,
                        config.server_limits.request_deadline_ms / 1000 + ANSWER_SLACK_S)
        running = asyncio.ensure_future(load.run())
        try:
            await asyncio.sleep(WARM_UP_S)
            times = await _fail_over(load, victim, replica, replica_behind_s)
            await until(lambda: first_approval_after(load, dead_cards, times[0]) is not None,
                        FAILOVER_WAIT_S)  # a card of the dead master approved again
            await asyncio.sleep(AFTER_FOLLOW_S)
        finally:
            load.stop()
            await running
        drained = await _journals_drained(switch)
        findings = await asyncio.to_thread(_check, load, config, cluster.url, pans)
        status, report = await asyncio.to_thread(switch.audit, cluster.url)
    finally:
        await asyncio.to_thread(switch.stop)
    return Outcome(durable_replicas, load.seen, load.dropped, *times,
                   first_approval_after(load, dead_cards, times[0]), findings, status,
                   [f"{f['card']} {f['rule']}: {f['detail']}" for f in report["broken"]],
                   drained, dead_cards)


async def _fail_over(load: SaleLoad, victim, replica, replica_behind_s: float
                     ) -> tuple[float, float, float, float]:
    """The master killed (its replica cut off first, if asked), its replica promoted, the
    master restarted and in sync as its replica: (killed, promoted, restarted, rejoined) in
    seconds of the load."""
    if replica_behind_s:
        os.kill(replica.process.pid, signal.SIGSTOP)
        await asyncio.to_thread(cut_replicas, victim.port)
        await asyncio.sleep(replica_behind_s)
    victim.process.kill()
    killed_s = load.now_s()
    os.kill(replica.process.pid, signal.SIGCONT)
    await asyncio.wait_for(role_of(replica.port, is_master), FAILOVER_WAIT_S)
    promoted_s = load.now_s()
    await asyncio.to_thread(restart, victim)
    restarted_s = load.now_s()
    await asyncio.wait_for(role_of(victim.port, is_replica_in_sync), FAILOVER_WAIT_S)
    return killed_s, promoted_s, restarted_s, load.now_s()


async def _journals_drained(switch: SwitchProcess) -> bool:
    """Wait (bounded) until the switch has forwarded its journals: the voids of the 91s.
    Not read again once seen drained: a journal starting over writes its cursor before it
    truncates (switch/journal.py `drained`), and a read between the two sees every record
    waiting again for a moment."""
    try:
        await until(switch.journals_drained, JOURNAL_DRAIN_WAIT_S)
    except TimeoutError:
        return False
    return True


def _check(load: SaleLoad, config, url: str, pans: list[str]) -> history_check.Findings:
    """The chaos history check on the surviving cluster's books."""
    requests = chaos_ledger.requests_of(load.history.entries.values(), config)
    refs: dict[str, set[str]] = {}
    for request in requests:
        refs.setdefault(request.card, set()).add(request.ref)
    return history_check.check(requests, chaos_ledger.read_cards(url, pans, refs))
