"""A master of a Redis Cluster SIGKILLed under load while `switch serve --durable-replicas 1`
runs on it (docs/cluster.md, "Failover"): its replica is promoted by the cluster itself, the
switch follows, no request hangs and no connection drops, and every approval a client saw
is in the surviving cluster's books (tests/failover_support.py has the run)."""

from __future__ import annotations

from tests.failover_support import ANSWER_SLACK_S, run_failover


async def test_a_master_killed_under_load_loses_no_approval_with_durable_replicas(tmp_path):
    outcome = await run_failover(tmp_path, durable_replicas=1)
    print(outcome.line())  # the figures of docs/cluster.md come from such lines
    assert outcome.cards_on_dead_master > 0
    # The kill was felt and got over: 91s while the card's master was gone, then approvals.
    assert set(outcome.codes) == {"00", "91"}, outcome.codes
    # No approval there while the promoted master had no replica: WAIT 1 held them.
    assert outcome.killed_s < outcome.promoted_s <= outcome.restarted_s < outcome.resumed_s
    # Never a hang nor a dropped connection: every request had its answer, 91 at worst.
    assert all(seen.answered_s is not None for seen in outcome.seen)
    assert outcome.dropped_connections == 0
    assert outcome.slowest_s < 2.0 + ANSWER_SLACK_S
    # The books of the surviving cluster hold every approval seen, and nothing else.
    found = outcome.findings
    assert (found.lost, found.doubled, found.invented) == (0, 0, 0), found.examples
    assert outcome.journals_drained
    assert (outcome.audit_status, outcome.audit_broken) == (0, [])
