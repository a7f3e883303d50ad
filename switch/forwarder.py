"""The forwarder: replays the store-and-forward journal (switch/journal.py) into the ledger
once Redis answers again, in journal order, one record at a time.

A void (`Ledger.void`) is replayed only once its request's deadline has passed, so the
ledger call it undoes can no longer apply after it (fence.md: the call's fence in Redis'
clock falls before that deadline). An advice (`Ledger.advise`) posts a stand-in approval.
Both are idempotent by their ids, so a record replayed twice (a crash between applying it
and moving the cursor) changes the books once. Progress is the journal's cursor, written
every `saf_cursor_every_records` records and at the end; a fully forwarded journal is
truncated.

While records wait, Redis is probed every `saf_probe_interval_s` (each probe bounded by
`saf_probe_timeout_s`): a switch whose Redis is back forwards within about a second.

At start it also forwards the journals of its folder that no process holds (left by a
worker of a run with more workers than this one), so none waits for an operator.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time

from switch import limits
from switch.faults import give_back
from switch.journal import Advice, Journal, JournalBusy, JournalCorrupt, Record, journal_paths
from switch.ledger import Ledger
from switch.policy import Policy

log = logging.getLogger("switch.forwarder")


class Report(collections.Counter):
    """Outcomes of replayed records, e.g. {"void:voided": 2, "advice:applied": 5}."""

    def line(self) -> str:
        return ", ".join(f"{name} {count}" for name, count in sorted(self.items())) or "nothing"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class Forwarder:
    def __init__(self, journal: Journal, ledger: Ledger, policy: Policy) -> None:
        self.journal = journal
        self.ledger = ledger
        self.policy = policy
        self.report = Report()  # everything this forwarder replayed
        self._last_problem = ""

    async def replay(self) -> Report:
        """Replay every pending record now, in order; truncate the journal when all are
        forwarded. Raises what the ledger raised (Redis down again); the progress made so
        far is kept."""
        journal, report = self.journal, Report()
        done = 0
        try:
            for record in journal.pending:
                report[await self._apply(record)] += 1
                done += 1
                if done == limits.saf_cursor_every_records:
                    journal.advance(done)
                    done = 0
        finally:
            if done:
                journal.advance(done)
            self.report.update(report)
        journal.drained()
        return report

    async def _apply(self, record: Record) -> str:
        if isinstance(record, Advice):
            request = record.request
            outcome = await self.ledger.advise(
                request, record.auth_id, record.approved_fen, record.id,
                beans_per_yuan=record.beans_per_yuan, terms=self.policy.judge(request).terms)
            if outcome == "conflict":  # the client holds our answer, the books another one's
                log.error("store-and-forward: advice %s (auth id %s) not posted: %s already "
                          "holds another decision", record.id, record.auth_id,
                          request.idempotency_key)
            return f"advice:{outcome}"
        wait_ms = record.not_before_ms - now_ms()
        if wait_ms > 0:  # its request's deadline (and so its call's fence) must be past
            await asyncio.sleep(wait_ms / 1000)
        outcome = await self.ledger.void(record.pan, record.idempotency_key, record.auth_id)
        if record.fault_use and outcome in ("voided", "absent"):  # the rule did not answer
            await give_back(self.ledger, record.fault_use, record.idempotency_key)
        if outcome == "changed":  # a later message built on the attempt: it stands
            log.warning("store-and-forward: void %s of %s (auth id %s) left it standing: a "
                        "later message changed what it made", record.id,
                        record.idempotency_key, record.auth_id)
        return f"void:{outcome}"

    async def reachable(self) -> bool:
        try:
            async with asyncio.timeout(limits.saf_probe_timeout_s):
                await self.ledger.client.ping()
        except Exception:  # noqa: BLE001 - any failure means: not yet
            return False
        return True

    async def adopt_orphans(self) -> Report:
        """Forward every other journal of this one's folder that no process holds."""
        report = Report()
        for path in journal_paths(self.journal.path.parent):
            if path == self.journal.path:
                continue
            try:
                orphan = Journal.open_locked(path)
            except JournalBusy:
                continue  # another worker's
            except JournalCorrupt as error:
                self._problem(f"{error}; `switch saf show` to inspect")
                continue
            with contextlib.closing(orphan):
                if orphan.records:  # pending, or forwarded and not yet truncated
                    adopted = await Forwarder(orphan, self.ledger, self.policy).replay()
                    log.warning("store-and-forward: forwarded %s, left by an earlier run: %s",
                                path, adopted.line())
                    report.update(adopted)
        self.report.update(report)
        return report

    async def run(self) -> None:
        """Forward whenever records wait and Redis answers; until cancelled."""
        try:
            await self.adopt_orphans()
        except Exception as error:  # noqa: BLE001 - Redis gone already: `switch saf replay`
            self._problem(f"journals left by an earlier run wait: {type(error).__name__}: "
                          f"{error}")
        while True:
            if self.journal.pending and await self.reachable():
                try:
                    report = await self.replay()
                except Exception as error:  # noqa: BLE001 - Redis went again: try later
                    self._problem(f"forwarding stopped ({type(error).__name__}: {error}); "
                                  "the records wait for the next try")
                else:
                    self._last_problem = ""
                    log.warning("store-and-forward: journal forwarded: %s", report.line())
            await asyncio.sleep(limits.saf_probe_interval_s)

    def _problem(self, text: str) -> None:
        """Logged once per distinct problem, not every probe."""
        if text != self._last_problem:
            log.error("store-and-forward: %s", text)
            self._last_problem = text
