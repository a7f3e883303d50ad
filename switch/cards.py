"""Deterministic demo cards: Luhn-valid UnionPay numbers (62...) from a seed."""

from __future__ import annotations

import random

import msgspec

from protocols.cardnumbers import luhn_check_digit
from protocols.demo import NO_ANSWER_OUTCOME, TEST_CARDS

DEMO_BIN = "625368"  # a UnionPay 62 BIN for the simulated Ping An Baitiao card
DEMO_EXPIRY = "3012"
DEMO_LIMITS_FEN = (1_000_000, 2_000_000, 5_000_000, 500_000, 10_000_000)


class DemoCard(msgspec.Struct):
    pan: str
    limit_fen: int
    expiry: str
    status: str = "active"


def demo_pan(rng: random.Random) -> str:
    body = DEMO_BIN + "".join(str(rng.randrange(10)) for _ in range(9))
    return body + luhn_check_digit(body)


def demo_cards(count: int, seed: int = 0) -> list[DemoCard]:
    """`count` active cards, the same for the same seed, no number twice."""
    rng = random.Random(seed)
    pans: dict[str, None] = {}
    while len(pans) < count:
        pans[demo_pan(rng)] = None
    return [DemoCard(pan, DEMO_LIMITS_FEN[i % len(DEMO_LIMITS_FEN)], DEMO_EXPIRY)
            for i, pan in enumerate(pans)]


def showcase_cards(seed: int = 0) -> list[DemoCard]:
    """The cards `make run` loads: a few active ones and one of each blocking status."""
    cards = demo_cards(7, seed)
    for card, status in zip(cards[3:], ("lost", "frozen", "stolen"), strict=False):
        card.status = status
    cards[6].expiry = "2301"  # expired
    return cards


NO_ANSWER_ALIAS = "na"  # testNA: the card never answered


def pan_of_test_card(name: str) -> str | None:
    """The number of the test card `name` names: its outcome ("51", "no answer"), or the
    alias test51 / testNA; None when it names none."""
    outcome = name[4:] if name.startswith("test") else name
    if outcome.lower() == NO_ANSWER_ALIAS:
        outcome = NO_ANSWER_OUTCOME
    for pan, card_outcome, _ in TEST_CARDS:
        if card_outcome == outcome:
            return pan
    return None

