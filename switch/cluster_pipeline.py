"""The auto-pipeline on a Redis Cluster: one connection and one pipeline per loop tick per
master, each call sent to the master of its keys' slot (docs/cluster.md).

Every call's keys share one hash tag (protocols/ledger_layout.py), so its first key names
its slot. The slot map comes from CLUSTER SLOTS when the library is loaded, and is mended
as the cluster answers:
  MOVED slot host:port  the slot lives there now: the map's entry is updated and the call
                        sent there (the whole map is read again when a master is lost);
  ASK slot host:port    the slot is being migrated and the call's keys are not here: a call
                        of one key goes there alone, after ASKING; a call of several keys
                        is sent again shortly, as for TRYAGAIN, until the slot is handed
                        over (then MOVED sends it on);
  TRYAGAIN              the slot is half migrated (some of the call's keys moved): the call
                        is sent again shortly, until its request's deadline;
  CLUSTERDOWN           the master sees a slot unserved (a master failing, its replica not
                        yet promoted): the call is sent again every cluster_down_retry_s,
                        until its request's deadline.
Why a call of several keys does not follow ASK: a card's functions also read keys they do not
name (the due holds' records: switch/lua/holds.lua). On the importing master, after ASKING,
such a key not moved yet reads as absent, and the hold would leave the index while its record
stays pending. On the migrating master a key already moved makes Redis fail the call instead
(no write after it): an error, never a wrong book. The importing master would answer TRYAGAIN
anyway to a call naming a key it does not have yet (every new request's answer key).
  ERR Function not found  a master without our library (it joined, or was promoted, or
                        restarted empty): FUNCTION LOAD on it, then the call again, once.
None of these ran the call, so sending it again is safe; a call redirected more than
limits.cluster_redirects_max times fails. Each master's clock is measured on its own link:
a call's fence is written in the clock of the master that runs it.

Durable replicas (`switch serve --durable-replicas N`): a batch holding a fenced call (one
that moves money or remembers an answer) is followed, in the same write, by `WAIT N ms`,
and none of its replies is handed out before WAIT's. Fewer than N replicas by then: each
fenced call is voided on its master (`on_unreplicated`, Ledger.void) and fails with
ReplicasBehind (answered 91), so the books and the answers agree; the others get their
replies. WAIT's time is bounded by the batch's earliest fence (`wait_timeout_ms`).

On a single Redis the switch uses switch/pipeline.py ScriptPipeline (`script_pipeline`
chooses at start): the cluster's routing costs it nothing. Both write their lanes (a link,
a queue and a clock per Redis server) with switch/pipeline.py LanePipeline; this class adds
the routing, ASKING and WAIT around it (`_send`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import hiredis
from redis.asyncio.cluster import RedisCluster

from switch import limits
from switch.lua_library import Library
from switch.pipeline import (
    FUNCTION_MISSING,
    Call,
    Lane,
    LanePipeline,
    ScriptPipeline,
    pack_fcall,
    resolve,
)
from switch.redis_client import Client, link_settings, node_client, slot_of
from switch.redis_link import RedisLink, resp_command

Address = tuple[str, int]
ASKING_COMMAND = resp_command("ASKING")
CLUSTER_SLOTS = 16384


class Routed(NamedTuple):
    """A call on its way: where ASK sent it (None: its slot's master), how many times it was
    redirected, and whether its master was given our library for it already."""

    call: Call
    hops: int = 0
    ask: Address | None = None
    reloaded: bool = False
    since_s: float = 0.0  # event-loop time it was first sent (TRYAGAIN gives up after)


class Held(NamedTuple):
    """A call of a batch that waits for replicas: its reply joins `replies` until WAIT's."""

    routed: Routed
    replies: list[tuple[Routed, Any]]


class WaitFor(NamedTuple):
    """The WAIT after a batch: the batch's held replies, the replicas wanted, its time."""

    replies: list[tuple[Routed, Any]]
    wanted: int
    timeout_ms: int


class ReplicasBehind(TimeoutError):
    """Fewer replicas than --durable-replicas acknowledged a call's write in time: the call
    ran on its master (and is voided there), its request is answered 91."""


def wait_timeout_ms(now_s: float, fences_s: list[float], wait_max_ms: int) -> int:
    """WAIT's timeout for a batch: `wait_max_ms`, or less so that it ends by the batch's
    earliest fence (the margin after it is for the reply's way back); at least 1 ms
    (WAIT 0 would wait for ever)."""
    until_fence_ms = int((min(fences_s) - now_s) * 1000) if fences_s else wait_max_ms
    return max(1, min(wait_max_ms, until_fence_ms))


def wait_command(replicas: int, timeout_ms: int) -> bytes:
    return resp_command("WAIT", str(replicas), str(timeout_ms))


def script_pipeline(client: Client, library: Library, timeout_s: float,
                    durable_replicas: int = 0,
                    durable_wait_ms: int = limits.durable_wait_ms) -> LanePipeline:
    """The auto-pipeline for `client`'s Redis: the cluster's when it is a cluster.
    `durable_replicas`: WAIT for that many replicas (a cluster only: ValueError else)."""
    if isinstance(client, RedisCluster):
        return ClusterScriptPipeline(client, library, timeout_s, durable_replicas,
                                     durable_wait_ms)
    if durable_replicas:
        raise ValueError("--durable-replicas needs a Redis Cluster (docs/cluster.md); "
                         "on a single Redis it is not supported")
    return ScriptPipeline(client, library, timeout_s)


def slot_owners(ranges: dict) -> list[Address | None]:
    """The master of every slot, from CLUSTER SLOTS as redis-py reads it ({(first, last):
    {"primary": (host, port), ...}}); None: a slot nobody serves."""
    owners: list[Address | None] = [None] * CLUSTER_SLOTS
    for (first, last), nodes in ranges.items():
        host, port = nodes["primary"]
        owners[first:last + 1] = [(host, int(port))] * (last - first + 1)
    return owners


def redirect_target(error: str) -> tuple[int, Address]:
    """(slot, address) of a MOVED or ASK error: "MOVED 3999 127.0.0.1:6381"."""
    _, slot, where = error.split(" ", 2)
    host, _, port = where.rpartition(":")
    return int(slot), (host, int(port))


class ClusterScriptPipeline(LanePipeline):
    def __init__(self, client: RedisCluster, library: Library, timeout_s: float,
                 durable_replicas: int = 0, durable_wait_ms: int = limits.durable_wait_ms
                 ) -> None:
        super().__init__(client, library, timeout_s)
        self.durable_replicas = durable_replicas
        self.durable_wait_ms = durable_wait_ms
        # Told of every fenced call that ran but was not replicated in time (the ledger
        # voids it); None: nobody is.
        self.on_unreplicated: Callable[[Call], None] | None = None
        self.unreplicated = 0  # such calls (for the operator)
        self.owners: list[Address | None] = [None] * CLUSTER_SLOTS
        self.lanes: dict[Address, Lane] = {}  # one per master: its link, queue and clock
        self._mapping: asyncio.Task | None = None  # a read of the slot map under way
        self._unmapped: list[Routed] = []  # calls waiting for it
        # MOVED, ASK, TRYAGAIN and CLUSTERDOWN answers followed (for the operator)
        self.redirects = 0

    async def load(self) -> None:
        """The library on every master (redis-py sends FUNCTION LOAD to each), then the
        slot map."""
        await super().load()
        await self.read_slot_map()

    async def read_slot_map(self) -> None:
        self.owners = slot_owners(await self.client.execute_command(
            "CLUSTER SLOTS", target_nodes=RedisCluster.RANDOM))

    # --- routing ---------------------------------------------------------------------------

    def _enqueue(self, call: Call) -> None:
        self._route(Routed(call, since_s=asyncio.get_running_loop().time()))

    def _route(self, routed: Routed) -> None:
        address = routed.ask or self.owners[slot_of(routed.call[1][0])]
        if address is None:  # nobody serves the slot as far as we know: read the map
            self._unmapped.append(routed)
            self._refresh_map()
            return
        lane = self.lanes.get(address)
        if lane is None:
            lane = self.lanes[address] = Lane(address)
        self._queue_on(lane, routed)

    def _send(self, link: RedisLink, batch: list[Routed],
              fence_ms: Callable[[float], int]) -> None:
        """One batch to a master: ASKING before a call ASK sent there, and WAIT after a batch
        holding a fenced call when replicas are asked for (its replies are held until WAIT's)."""
        payloads: list[Any] = []
        data = []
        fences = [routed.call[5] for routed in batch if routed.call[5] is not None]
        held: list[tuple[Routed, Any]] | None = (
            [] if self.durable_replicas and fences else None)
        for routed in batch:
            name, keys, args, _, _, fence = routed.call
            if routed.ask:  # ASKING holds for the one command after it
                payloads.append(None)
                data.append(ASKING_COMMAND)
            payloads.append(routed if held is None else Held(routed, held))
            data.append(pack_fcall(self.redis_name(name), keys,
                                   args if fence is None else (*args, fence_ms(fence))))
        if held is not None:
            timeout_ms = wait_timeout_ms(asyncio.get_running_loop().time(), fences,
                                         self.durable_wait_ms)
            payloads.append(WaitFor(held, self.durable_replicas, timeout_ms))
            data.append(wait_command(self.durable_replicas, timeout_ms))
        link.send(payloads, b"".join(data))

    def _item(self, call: Call) -> Routed:
        return Routed(call)

    def _lanes(self) -> Iterable[Lane]:
        return self.lanes.values()

    def _busy(self) -> list[asyncio.Task]:
        return super()._busy() + ([self._mapping] if self._mapping else [])

    def _link_settings(self, lane: Lane) -> dict[str, Any]:
        host, port = lane.address
        return {**link_settings(self.client), "host": host, "port": port}

    def _open_failed(self, lane: Lane, error: Exception) -> None:
        super()._open_failed(lane, error)  # that master is down: its calls fail now
        self._refresh_map()  # it may have been replaced

    # --- replies ---------------------------------------------------------------------------

    def _settle(self, routed: Routed | Held | WaitFor | None, reply: Any) -> None:
        if routed is None:  # ASKING's OK (an error would show in the call's reply)
            return
        held = None
        if type(routed) is Held:
            routed, held = routed
        elif type(routed) is WaitFor:
            self._waited(routed, reply)
            return
        if isinstance(reply, hiredis.ReplyError):
            text = str(reply)
            if text.startswith("ASK ") and len(routed.call[1]) > 1:
                text = "TRYAGAIN (ASK for a call that may read keys it does not name)"
            if text.startswith(("MOVED ", "ASK ")) and routed.hops < limits.cluster_redirects_max:
                self._redirect(routed, text)
                return
            if text.startswith("TRYAGAIN") and self._in_time(routed):
                self._later(routed, limits.cluster_tryagain_delay_s)
                return
            if text.startswith("CLUSTERDOWN") and self._in_time(routed):
                self._later(routed, limits.cluster_down_retry_s)
                return
            if text.startswith(FUNCTION_MISSING) and not routed.reloaded:
                self._reload_on(routed)
                return
        elif isinstance(reply, ConnectionError | TimeoutError):
            self._refresh_map()  # a master lost: it may have failed over
        elif held is not None:  # it ran: out once WAIT says it is on the replicas
            held.append((routed, reply))
            return
        resolve(routed.call, reply)

    def _waited(self, wait: WaitFor, reply: Any) -> None:
        """WAIT's reply for a batch: its held replies out, or its fenced calls voided and
        failed when fewer replicas than wanted have their writes."""
        if isinstance(reply, int) and reply >= wait.wanted:
            for routed, held in wait.replies:
                resolve(routed.call, held)
            return
        error = reply if isinstance(reply, Exception) else ReplicasBehind(
            f"{reply} of {wait.wanted} replicas acknowledged the ledger's write within "
            f"{wait.timeout_ms} ms (--durable-replicas)")
        for routed, held in wait.replies:
            if routed.call[5] is None:  # changes no money, remembers no answer
                resolve(routed.call, held)
                continue
            self.unreplicated += 1
            if self.on_unreplicated is not None:
                self.on_unreplicated(routed.call)
            resolve(routed.call, error)

    def _in_time(self, routed: Routed) -> bool:
        return (not routed.call[3].done() and asyncio.get_running_loop().time()
                < routed.since_s + self.timeout_s)

    def _redirect(self, routed: Routed, error: str) -> None:
        self.redirects += 1
        slot, address = redirect_target(error)
        if error.startswith("MOVED"):
            # That slot alone: a full read now could come from a node not told yet, and
            # put the slot back where it was. Every other moved slot answers its own MOVED.
            self.owners[slot] = address
            self._route(routed._replace(hops=routed.hops + 1, ask=None))
        else:
            self._route(routed._replace(hops=routed.hops + 1, ask=address))

    def _later(self, routed: Routed, delay_s: float) -> None:
        self.redirects += 1
        self._pending += 1
        asyncio.get_running_loop().call_later(delay_s, self._again, routed)

    def _again(self, routed: Routed) -> None:
        self._pending -= 1
        self._route(routed)

    def _reload_on(self, routed: Routed) -> None:
        """Load our library on the master that lacked it, then send the call again."""
        self._pending += 1
        asyncio.get_running_loop().create_task(self._load_then_route(routed))

    async def _load_then_route(self, routed: Routed) -> None:
        address = routed.ask or self.owners[slot_of(routed.call[1][0])]
        node = node_client(self.client, *address)
        try:
            await node.function_load(self.library.code, replace=True)
        except Exception as error:  # noqa: BLE001 - the call fails with the reason
            resolve(routed.call, error)
            return
        else:
            self._route(routed._replace(reloaded=True))
        finally:
            self._pending -= 1
            await node.aclose()

    def _refresh_map(self) -> None:
        if self._mapping is None:
            self._mapping = asyncio.get_running_loop().create_task(self._remap())

    async def _remap(self) -> None:
        try:
            await self.read_slot_map()
            error = None
        except Exception as failure:  # noqa: BLE001 - the calls waiting for it fail with it
            error = failure
        finally:
            self._mapping = None
        waiting, self._unmapped = self._unmapped, []
        for routed in waiting:
            if error is not None or self.owners[slot_of(routed.call[1][0])] is None:
                resolve(routed.call, error or ConnectionError(
                    "no master of the Redis Cluster serves this card's slot"))
            else:
                self._route(routed)
