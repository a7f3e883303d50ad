"""The policy's bounds, exact to the fen and the millisecond.

Per-transaction caps at, below and above; the channel daily cap across the Beijing midnight
on a fixed clock (23:59:59.999 and 00:00:00.000); velocity windows longer than a day, and
the counters' lifetime in Redis that must outlast them. Caps are judged by the pure policy;
counters by the engine called directly on a real Redis.
"""

from __future__ import annotations

import pytest

from protocols.ledger_layout import card_key
from protocols.messages import AuthRequest
from protocols.messages import MessageClass as C
from switch.clock import DAY_MS
from switch.engine import Engine
from switch.policy import PROFILES_CACHED_MAX, Policy
from switch.policy_file import parse_policy
from switch.terms import Counter
from tests.support import FakeClock, make_card
from tests.test_policy_support import new_ref

HOUR_MS = 3600 * 1000
# 2026-11-30 00:00:00.000 in Beijing (UTC+8) = 2026-11-29 16:00:00.000 UTC.
BEIJING_MIDNIGHT_MS = 1_795_953_600_000 + 4 * HOUR_MS
UTC_MIDNIGHT_MS = BEIJING_MIDNIGHT_MS + 8 * HOUR_MS  # 08:00 in Beijing: no new day there

CAPS = Policy(parse_policy("""
[mcc_groups]
luxury = ["5944"]
[[mcc_cap]]
id = "luxury"
groups = ["luxury"]
per_transaction_max_fen = 5000
[channels.wechat]
per_transaction_max_fen = 8000
"""))


def spend(channel: str, amount_fen: int, mcc: str = "5411", cls: C = C.SALE,
          card: str = "6" * 16) -> AuthRequest:
    ref = new_ref("B")
    return AuthRequest(message_class=cls, channel=channel, card=card, amount_fen=amount_fen,
                       mcc=mcc, txn_ref=ref, idempotency_key=ref)


@pytest.mark.parametrize(("channel", "mcc", "amount_fen", "decline"), [
    ("jd", "5944", 4999, None),
    ("jd", "5944", 5000, None),
    ("jd", "5944", 5001, ("61", "mcc_cap:luxury")),
    ("wechat", "5411", 7999, None),
    ("wechat", "5411", 8000, None),
    ("wechat", "5411", 8001, ("61", "channel_cap:wechat")),
    ("jd", "5411", 8001, None),  # the wechat cap is the wechat channel's only
    ("wechat", "5944", 5001, ("61", "mcc_cap:luxury")),
    ("wechat", "5944", 8001, ("61", "channel_cap:wechat")),  # the channel's cap comes first
])
def test_per_transaction_caps_at_below_and_above(channel, mcc, amount_fen, decline):
    assert CAPS.judge(spend(channel, amount_fen, mcc)).decline == decline


@pytest.mark.parametrize("amount_fen", [4999, 5000, 5001])
def test_explain_judges_the_cap_as_judge_does(amount_fen):
    steps = CAPS.explain(spend("jd", amount_fen, "5944"))
    cap = next(step for step in steps if step.rule == "mcc_cap:luxury")
    over = amount_fen > 5000
    assert cap.outcome == ("decline" if over else "pass")
    assert cap.detail == (f"{amount_fen} fen > cap 5000 fen -> 61" if over
                          else f"{amount_fen} fen <= cap 5000 fen")


def test_a_profile_is_compiled_once():
    """The counters' argument is encoded once per profile, not per request."""
    first = CAPS.judge(spend("wechat", 100, "5732")).terms
    assert CAPS.judge(spend("wechat", 200, "5732")).terms is first


def test_the_profile_cache_is_bounded():
    policy = Policy(parse_policy(""))
    for mcc in range(PROFILES_CACHED_MAX):
        policy.judge(spend("jd", 100, f"{mcc:04d}"))
    assert len(policy._profiles) == PROFILES_CACHED_MAX
    policy.judge(spend("jd", 100, "9999"))  # one more: the cache starts over
    assert len(policy._profiles) == 1


# --- the channel daily cap and the Beijing day ---------------------------------------------

DAILY = Policy(parse_policy("""
[channels.jd]
daily_max_fen = 10000
"""))


@pytest.fixture
async def clocked(ledger):
    """(clock, card): the ledger on a fixed clock and a card with room to spare."""
    clock = FakeClock(0)
    ledger.clock = clock
    pan = await make_card(ledger, limit_fen=1_000_000)
    return clock, pan


async def answer_at(ledger, policy: Policy, clock: FakeClock, now_ms: int, request):
    clock.now = now_ms
    answer = await Engine(ledger, policy).decide(request)
    return answer.response_code, answer.reason


async def test_the_daily_cap_resets_exactly_at_beijing_midnight(ledger, clocked):
    clock, pan = clocked
    last_ms = BEIJING_MIDNIGHT_MS - 1  # 23:59:59.999 in Beijing

    async def sale(now_ms: int, amount_fen: int):
        return await answer_at(ledger, DAILY, clock, now_ms, spend("jd", amount_fen, card=pan))

    assert await sale(last_ms - 1000, 9_999) == ("00", "")
    assert await sale(last_ms, 2) == ("61", "channel_daily:jd")
    assert await sale(last_ms, 1) == ("00", "")  # at the cap exactly
    assert await sale(last_ms, 1) == ("61", "channel_daily:jd")
    assert await sale(BEIJING_MIDNIGHT_MS, 10_000) == ("00", "")  # a new day, the whole cap
    assert await sale(BEIJING_MIDNIGHT_MS, 1) == ("61", "channel_daily:jd")


def test_the_daily_cap_is_one_beijing_day_with_no_count_limit():
    assert DAILY.judge(spend("jd", 100)).terms.counters == (Counter(
        "d:jd", DAY_MS, 1, 8 * HOUR_MS, 0, 10000, "channel_daily:jd", "channel_daily:jd"),)


def test_a_velocity_rule_without_a_count_limit_has_count_max_0():
    amount_only = Policy(parse_policy(
        "[[velocity]]\nid = 'spend'\nwindow_s = 60\nbuckets = 2\namount_max_fen = 500\n"))
    assert amount_only.judge(spend("jd", 100)).terms.counters == (Counter(
        "v:spend:30000", 30_000, 2, 0, 0, 500, "velocity_count:spend", "velocity_amount:spend"),)


@pytest.mark.parametrize("cls", [C.CAPTURE, C.REVERSAL, C.REFUND, C.INQUIRY])
def test_releasing_or_reading_money_earns_nothing_and_counts_nothing(cls):
    verdict = DAILY.judge(spend("jd", 100, cls=cls))
    assert (verdict.decline, verdict.beans_per_yuan, verdict.terms.counters) == (None, 0, ())


async def test_utc_midnight_is_no_new_day(ledger, clocked):
    clock, pan = clocked

    async def sale(now_ms: int, amount_fen: int):
        return await answer_at(ledger, DAILY, clock, now_ms, spend("jd", amount_fen, card=pan))

    assert await sale(UTC_MIDNIGHT_MS - 1, 10_000) == ("00", "")
    assert await sale(UTC_MIDNIGHT_MS, 1) == ("61", "channel_daily:jd")
    assert await sale(BEIJING_MIDNIGHT_MS + DAY_MS, 10_000) == ("00", "")


# --- velocity windows longer than a day -----------------------------------------------------

LONG_WINDOW = Policy(parse_policy("""
[[velocity]]
id = "three_days"
window_s = 259200
buckets = 3
count_max = 2
"""))


def test_counters_outlive_the_longest_window_by_a_day():
    assert Policy(parse_policy("")).base_terms.counters_ttl_ms == 2 * DAY_MS
    short = Policy(parse_policy("[[velocity]]\nid = 'v'\nwindow_s = 3600\ncount_max = 1\n"))
    assert short.base_terms.counters_ttl_ms == 2 * DAY_MS  # never less than a day past a day
    terms = LONG_WINDOW.judge(spend("jd", 100)).terms
    assert terms.counters_ttl_ms == 4 * DAY_MS
    assert terms.counters == (Counter("v:three_days:86400000", DAY_MS, 3, 0, 2, 0,
                                      "velocity_count:three_days",
                                      "velocity_amount:three_days"),)


async def test_a_three_day_window_counts_until_its_last_bucket_leaves(ledger, clocked):
    clock, pan = clocked
    first_ms = BEIJING_MIDNIGHT_MS + 5 * HOUR_MS  # buckets are UTC days (no offset)
    leaves_ms = (first_ms // DAY_MS + 3) * DAY_MS  # the first approval's bucket leaves

    async def sale(now_ms: int):
        return await answer_at(ledger, LONG_WINDOW, clock, now_ms, spend("jd", 100, card=pan))

    assert await sale(first_ms) == ("00", "")
    assert await sale(first_ms + DAY_MS) == ("00", "")
    assert await sale(leaves_ms - 1) == ("65", "velocity_count:three_days")
    assert await sale(leaves_ms) == ("00", "")
    # the counters' hash in Redis lives a day past the window after the last approval
    ttl_ms = await ledger.client.pttl(f"{card_key(pan)}:n")
    assert 4 * DAY_MS - 60_000 < ttl_ms <= 4 * DAY_MS
