"""scripts/generator_cost.py: what it counts is the generator's own path, every request
sent, answered and shipped."""

from __future__ import annotations

from scripts import generator_cost


def test_every_request_is_sent_answered_and_shipped():
    intervals, answered, size = generator_cost.run(4001)
    assert (intervals, answered) == (3, 4001)  # at 2,000, at 4,000, and the rest at the end
    assert size > 0


def test_no_request_still_ships_the_last_interval():
    assert generator_cost.run(0)[:2] == (1, 0)
