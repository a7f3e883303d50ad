"""The policy's pure functions: what `Policy.judge` and `Policy.explain` say, no Redis."""

from __future__ import annotations

import pytest

from protocols.messages import AuthRequest
from protocols.messages import MessageClass as C
from switch.clock import DAY_MS
from switch.policy import BEIJING_OFFSET_MS, Policy
from switch.policy_file import load_policy, parse_policy

POLICY = """
[mcc_groups]
gambling = ["7995", "7800-7802"]
luxury = ["5944"]
tech = ["5732"]
[[mcc_block]]
id = "gambling"
groups = ["gambling"]
code = "57"
[[mcc_cap]]
id = "luxury"
groups = ["luxury"]
per_transaction_max_fen = 5000
[channels.wechat]
classes = ["sale", "refund"]
class_decline_code = "57"
per_transaction_max_fen = 8000
daily_max_fen = 20000
[[velocity]]
id = "burst"
window_s = 10
buckets = 5
count_max = 3
[[velocity]]
id = "tech_day"
window_s = 86400
buckets = 24
amount_max_fen = 30000
groups = ["tech"]
channels = ["jd"]
[holds]
expiry_days = 7
capture_tolerance_percent = 20
[rewards]
beans_per_yuan = 2
beans_per_yuan_by_channel = { jd = 6 }
no_points_groups = ["gambling", "luxury"]
"""


def judge(policy: Policy, channel: str, kind: C, mcc: str = "5411", amount: int = 100):
    return policy.judge(AuthRequest(message_class=kind, channel=channel, card="6" * 16,
                                    amount_fen=amount, mcc=mcc))


@pytest.fixture(scope="module")
def policy() -> Policy:
    return Policy(parse_policy(POLICY))


@pytest.mark.parametrize(("channel", "kind", "mcc", "amount", "decline"), [
    ("jd", C.SALE, "5411", 100, None),
    ("jd", C.SALE, "7801", 100, ("57", "mcc_blocked:7801")),
    ("jd", C.AUTH, "7995", 100, ("57", "mcc_blocked:7995")),
    ("jd", C.SALE, "5944", 5000, None),
    ("jd", C.SALE, "5944", 5001, ("61", "mcc_cap:luxury")),
    ("wechat", C.AUTH, "5411", 100, ("57", "channel_class:wechat")),
    ("wechat", C.REVERSAL, "", 0, ("57", "channel_class:wechat")),
    ("wechat", C.REFUND, "", 100, None),
    # the class rule comes before the MCC block, the channel cap before the MCC cap
    ("wechat", C.AUTH, "7995", 100, ("57", "channel_class:wechat")),
    ("wechat", C.SALE, "5944", 9000, ("61", "channel_cap:wechat")),
    ("wechat", C.SALE, "5944", 6000, ("61", "mcc_cap:luxury")),
    # releasing money is never blocked by a spending rule
    ("jd", C.REFUND, "7995", 100, None),
    ("jd", C.REVERSAL, "7995", 100, None),
])
def test_static_rules_and_their_order(policy, channel, kind, mcc, amount, decline):
    assert judge(policy, channel, kind, mcc, amount).decline == decline


def test_counters_are_the_rules_in_scope(policy):
    wechat = judge(policy, "wechat", C.SALE, "5732").terms.counters
    assert [(c.field, c.bucket_ms, c.buckets, c.offset_ms) for c in wechat] == [
        ("d:wechat", DAY_MS, 1, BEIJING_OFFSET_MS), ("v:burst:2000", 2000, 5, 0)]
    assert (wechat[0].amount_max_fen, wechat[0].amount_reason) == (20000, "channel_daily:wechat")
    assert (wechat[1].count_max, wechat[1].count_reason) == (3, "velocity_count:burst")
    jd_tech = judge(policy, "jd", C.AUTH, "5732").terms.counters
    assert [c.field for c in jd_tech] == ["v:burst:2000", "v:tech_day:3600000"]
    assert jd_tech[1].amount_reason == "velocity_amount:tech_day"
    assert judge(policy, "jd", C.CAPTURE, "5732").terms.counters == ()


def test_holds_and_rewards(policy):
    verdict = judge(policy, "jd", C.SALE)
    assert verdict.terms.hold_expiry_ms == 7 * DAY_MS
    assert verdict.terms.capture_tolerance_percent == 20
    assert verdict.beans_per_yuan == 6
    assert judge(policy, "wechat", C.SALE).beans_per_yuan == 2
    assert judge(policy, "jd", C.SALE, "5944").beans_per_yuan == 0


def test_the_cache_answers_by_amount(policy):
    """The per-(channel, class, MCC) profile is cached; the amount is judged every time."""
    assert judge(policy, "jd", C.SALE, "5944", 4000).decline is None
    assert judge(policy, "jd", C.SALE, "5944", 7000).decline == ("61", "mcc_cap:luxury")
    assert judge(policy, "jd", C.SALE, "5944", 4000).decline is None


def test_explain_walks_the_same_rules(policy):
    request = AuthRequest(message_class=C.SALE, channel="wechat", card="6" * 16,
                          amount_fen=6000, mcc="5944")
    steps = policy.explain(request)
    assert [(s.rule, s.outcome) for s in steps] == [
        ("channel_class:wechat", "pass"),
        ("mcc_block", "pass"),
        ("channel_cap:wechat", "pass"),
        ("mcc_cap:luxury", "decline"),
        ("channel_daily:wechat", "skip"),
        ("velocity:burst", "skip"),
        ("velocity:tech_day", "skip"),
        ("rewards", "info"),
    ]
    assert steps[3].detail == "6000 fen > cap 5000 fen -> 61"
    assert policy.judge(request).decline == ("61", "mcc_cap:luxury")


def test_explain_names_the_block_and_why():
    policy = Policy(load_policy())
    request = AuthRequest(message_class=C.SALE, channel="jd", card="6" * 16, amount_fen=100,
                          mcc="6011")
    steps = policy.explain(request)
    decline = [s for s in steps if s.outcome == "decline"]
    assert [s.rule for s in decline] == ["mcc_blocked:6011"]
    assert "'cash_like'" in decline[0].detail and "-> 57" in decline[0].detail
