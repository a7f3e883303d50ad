"""`Policy.explain`, word for word: what `switch send --explain` shows for each kind of rule.

An explanation is read by people deciding why a card was declined, so every step's rule,
outcome and text is pinned here, for each path through the policy.
"""

from __future__ import annotations

import pytest

from protocols.messages import AuthRequest
from protocols.messages import MessageClass as C
from switch.policy import Policy
from switch.policy_file import parse_policy
from tests.test_policy import POLICY

RULES = Policy(parse_policy(POLICY))
MORE_RULES = Policy(parse_policy("""
[mcc_groups]
cash = ["6010", "6011"]
tech = ["5732"]
[[mcc_block]]
id = "cash_like"
groups = ["cash"]
code = "57"
why = "no cash on a credit line"
[channels.pos]
classes = []
class_decline_code = "12"
[channels.jd]
per_transaction_max_fen = 9000
[[velocity]]
id = "both"
window_s = 60
buckets = 3
count_max = 4
amount_max_fen = 7000
channels = ["jd"]
[[velocity]]
id = "tech_only"
window_s = 60
count_max = 1
groups = ["tech"]
"""))

BURST = ("velocity:burst", "ledger", "in the last 10 s (5 buckets of 2000 ms), with this "
         "one: <= 3 approvals (else 65)")


def explain(policy: Policy, channel: str, cls: C, mcc: str, amount_fen: int = 100):
    return [tuple(step) for step in policy.explain(AuthRequest(
        message_class=cls, channel=channel, card="6" * 16, amount_fen=amount_fen, mcc=mcc))]


@pytest.mark.parametrize(("policy", "channel", "cls", "mcc", "amount_fen", "steps"), [
    (RULES, "wechat", C.SALE, "5732", 100, [
        ("channel_class:wechat", "pass", "sale is allowed on wechat"),
        ("mcc_block", "pass", "MCC 5732 is in no blocked group"),
        ("channel_cap:wechat", "pass", "100 fen <= cap 8000 fen"),
        ("channel_daily:wechat", "ledger", "approvals on wechat today (Beijing) plus this one "
         "must stay <= 20000 fen, else 61"),
        BURST,
        ("velocity:tech_day", "skip", "not this MCC group or channel"),
        ("rewards", "info", "2 JD beans per whole yuan posted on wechat"),
    ]),
    (RULES, "jd", C.AUTH, "5732", 100, [
        ("channel_class:jd", "pass", "channel jd may send every message class"),
        ("mcc_block", "pass", "MCC 5732 is in no blocked group"),
        ("caps", "pass", "no per-transaction cap on jd / MCC 5732"),
        BURST,
        ("velocity:tech_day", "ledger", "in the last 86400 s (24 buckets of 3600000 ms), "
         "with this one: <= 30000 fen (else 61)"),
        ("rewards", "info", "6 JD beans per whole yuan posted on jd"),
    ]),
    (RULES, "jd", C.SALE, "7995", 100, [
        ("channel_class:jd", "pass", "channel jd may send every message class"),
        ("mcc_blocked:7995", "decline", "MCC 7995 is in block 'gambling' (gambling) -> 57"),
    ]),
    (RULES, "wechat", C.AUTH, "5411", 100, [
        ("channel_class:wechat", "decline",
         "auth is not allowed on wechat (allowed: sale, refund) -> 57"),
    ]),
    (RULES, "jd", C.REFUND, "5944", 100, [
        ("channel_class:jd", "pass", "channel jd may send every message class"),
        ("spending_rules", "skip",
         "refund releases or reads money; only channel classes apply to it"),
    ]),
    (RULES, "xpay", C.SALE, "5944", 5001, [
        ("channel_class:xpay", "pass", "channel xpay may send every message class"),
        ("mcc_block", "pass", "MCC 5944 is in no blocked group"),
        ("mcc_cap:luxury", "decline", "5001 fen > cap 5000 fen -> 61"),
        ("velocity:burst", "skip", "declined before this"),
        ("velocity:tech_day", "skip", "not this MCC group or channel"),
        ("rewards", "info", "MCC 5944 earns no beans"),
    ]),
    (RULES, "xpay", C.SALE, "5944", 5000, [
        ("channel_class:xpay", "pass", "channel xpay may send every message class"),
        ("mcc_block", "pass", "MCC 5944 is in no blocked group"),
        ("mcc_cap:luxury", "pass", "5000 fen <= cap 5000 fen"),
        BURST,
        ("velocity:tech_day", "skip", "not this MCC group or channel"),
        ("rewards", "info", "MCC 5944 earns no beans"),
    ]),
    (MORE_RULES, "pos", C.SALE, "5411", 100, [
        ("channel_class:pos", "decline",
         "sale is not allowed on pos (allowed: nothing) -> 12"),
    ]),
    (MORE_RULES, "jd", C.SALE, "6011", 100, [
        ("channel_class:jd", "pass", "channel jd may send every message class"),
        ("mcc_blocked:6011", "decline", "MCC 6011 is in block 'cash_like' (cash) -> 57: "
         "no cash on a credit line"),
    ]),
    (MORE_RULES, "jd", C.SALE, "5732", 9001, [
        ("channel_class:jd", "pass", "channel jd may send every message class"),
        ("mcc_block", "pass", "MCC 5732 is in no blocked group"),
        ("channel_cap:jd", "decline", "9001 fen > cap 9000 fen -> 61"),
        ("velocity:both", "skip", "declined before this"),
        ("velocity:tech_only", "skip", "declined before this"),
        ("rewards", "info", "1 JD beans per whole yuan posted on jd"),
    ]),
    (MORE_RULES, "wechat", C.SALE, "5411", 100, [
        ("channel_class:wechat", "pass", "channel wechat may send every message class"),
        ("mcc_block", "pass", "MCC 5411 is in no blocked group"),
        ("caps", "pass", "no per-transaction cap on wechat / MCC 5411"),
        ("velocity:both", "skip", "not this MCC group or channel"),
        ("velocity:tech_only", "skip", "not this MCC group or channel"),
        ("rewards", "info", "1 JD beans per whole yuan posted on wechat"),
    ]),
    (MORE_RULES, "jd", C.SALE, "5411", 100, [
        ("channel_class:jd", "pass", "channel jd may send every message class"),
        ("mcc_block", "pass", "MCC 5411 is in no blocked group"),
        ("channel_cap:jd", "pass", "100 fen <= cap 9000 fen"),
        ("velocity:both", "ledger", "in the last 60 s (3 buckets of 20000 ms), with this "
         "one: <= 4 approvals (else 65) and <= 7000 fen (else 61)"),
        ("velocity:tech_only", "skip", "not this MCC group or channel"),
        ("rewards", "info", "1 JD beans per whole yuan posted on jd"),
    ]),
])
def test_explain_word_for_word(policy, channel, cls, mcc, amount_fen, steps):
    assert explain(policy, channel, cls, mcc, amount_fen) == steps


@pytest.mark.parametrize(("channel", "mcc", "decline"), [
    ("pos", "5411", ("12", "channel_class:pos")),
    ("jd", "6011", ("57", "mcc_blocked:6011")),
    ("jd", "6012", None),
    ("wechat", "5732", None),
])
def test_judge_agrees_with_the_explanation(channel, mcc, decline):
    request = AuthRequest(message_class=C.SALE, channel=channel, card="6" * 16,
                          amount_fen=100, mcc=mcc)
    verdict = MORE_RULES.judge(request)
    assert verdict.decline == decline
    assert verdict.beans_per_yuan == (0 if decline else 1)
    tech_only = [c for c in verdict.terms.counters if c.field.startswith("v:tech_only")]
    assert len(tech_only) == (1 if mcc == "5732" and not decline else 0)
