"""For random policies and random transaction streams, the switch decides as a plain model does.

Hypothesis draws a policy (MCC groups with ranges, blocks, caps, channel classes and caps,
velocity rules, hold expiry and capture tolerance, rewards) and a stream of sales,
pre-authorizations, captures and reversals on the JD and WeChat channels with the clock
jumping between them. Each request goes through the switch's own decision path (the
`Engine` the listeners use, with the Lua scripts on a real redis-server and a FakeClock);
`Reference` below is written from docs/policy.md alone, sharing no code with switch/policy.py.
Code, reason, approved amount, open-to-buy and beans must agree at every step.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocols.messages import AuthRequest, MessageClass
from switch.engine import Engine
from switch.ledger import Ledger
from switch.policy import Policy
from switch.policy_file import from_dict
from switch.redis_client import connect
from tests.support import FakeClock, new_pan
from tests.test_policy_support import T0_MS

C = MessageClass
DAY_MS = 86_400_000
BEIJING_MS = 8 * 3_600_000
LIMIT_FEN = 10_000
MCCS = ["5411", "5732", "5944", "7995", "5511", "6011"]
CHANNELS = ["jd", "wechat"]
CLASSES = ["auth", "sale", "capture", "reversal", "refund", "inquiry"]
_refs = itertools.count()

# --- random policies ------------------------------------------------------------------------

mcc_entry = st.sampled_from(MCCS + ["5500-5599", "5900-5950", "7990-7999"])


@st.composite
def policies(draw) -> dict:
    groups = {f"g{i}": draw(st.lists(mcc_entry, min_size=1, max_size=3, unique=True))
              for i in range(draw(st.integers(0, 3)))}
    names = sorted(groups)
    some_groups = st.lists(st.sampled_from(names), min_size=1, max_size=2, unique=True) \
        if names else st.nothing()
    policy: dict = {"mcc_groups": groups}
    if names:
        policy["mcc_block"] = [{"id": f"b{i}", "groups": draw(some_groups),
                                "code": draw(st.sampled_from(["57", "62", "05"]))}
                               for i in range(draw(st.integers(0, 2)))]
        policy["mcc_cap"] = [{"id": f"c{i}", "groups": draw(some_groups),
                              "per_transaction_max_fen": draw(st.integers(1, 5_000))}
                             for i in range(draw(st.integers(0, 2)))]
    policy["channels"] = {name: draw(channel_rules()) for name in CHANNELS
                          if draw(st.booleans())}
    policy["velocity"] = [draw(velocity_rule(f"v{i}", names))
                          for i in range(draw(st.integers(0, 3)))]
    policy["holds"] = {"expiry_days": draw(st.integers(1, 3)),
                       "capture_tolerance_percent": draw(st.integers(0, 30))}
    rates = st.integers(0, 6)
    policy["rewards"] = {
        "beans_per_yuan": draw(rates),
        "beans_per_yuan_by_channel": draw(st.dictionaries(st.sampled_from(CHANNELS), rates)),
        "no_points_groups": draw(st.lists(st.sampled_from(names), max_size=2, unique=True))
        if names else [],
    }
    return policy


@st.composite
def channel_rules(draw) -> dict:
    rules: dict = {}
    if draw(st.booleans()):
        rules["classes"] = draw(st.lists(st.sampled_from(CLASSES), unique=True))
        rules["class_decline_code"] = draw(st.sampled_from(["12", "57"]))
    if draw(st.booleans()):
        rules["per_transaction_max_fen"] = draw(st.integers(1, 5_000))
    if draw(st.booleans()):
        rules["daily_max_fen"] = draw(st.integers(1, 12_000))
    return rules


@st.composite
def velocity_rule(draw, rule_id: str, group_names: list[str]) -> dict:
    window_s = draw(st.sampled_from([1, 2, 5, 10, 60, 3600]))
    rule: dict = {"id": rule_id, "window_s": window_s,
                  "buckets": draw(st.sampled_from([b for b in (1, 2, 5, 10) if window_s % b == 0]))}
    kind = draw(st.sampled_from(["count", "amount", "both"]))
    if kind != "amount":
        rule["count_max"] = draw(st.integers(1, 4))
    if kind != "count":
        rule["amount_max_fen"] = draw(st.integers(1, 9_000))
    if group_names and draw(st.booleans()):
        rule["groups"] = [draw(st.sampled_from(group_names))]
    if draw(st.booleans()):
        rule["channels"] = [draw(st.sampled_from(CHANNELS))]
    return rule


class Step:
    def __init__(self, advance_ms, kind, channel, mcc, amount, partial, pick, factor) -> None:
        self.advance_ms, self.kind, self.channel, self.mcc = advance_ms, kind, channel, mcc
        self.amount, self.partial, self.pick, self.factor = amount, partial, pick, factor

    def __repr__(self) -> str:
        return (f"Step(+{self.advance_ms}ms {self.kind.value} {self.channel} {self.mcc} "
                f"{self.amount} partial={self.partial} pick={self.pick} x{self.factor})")


steps = st.builds(
    Step,
    advance_ms=st.sampled_from([0, 0, 1, 400, 1_000, 2_500, 10_000, 60_000, 3_600_000, DAY_MS,
                                2 * DAY_MS]),
    kind=st.sampled_from([C.SALE, C.SALE, C.AUTH, C.CAPTURE, C.REVERSAL]),
    channel=st.sampled_from(CHANNELS),
    mcc=st.sampled_from(MCCS),
    amount=st.integers(1, 4_000),
    partial=st.booleans(),
    pick=st.integers(0, 50),
    factor=st.sampled_from([50, 100, 110, 120, 140]),  # capture amount, percent of the hold
)

# --- the reference model --------------------------------------------------------------------


def expand(entries: list[str]) -> set[str]:
    codes = set()
    for entry in entries:
        first, _, last = entry.partition("-")
        codes |= {f"{n:04d}" for n in range(int(first), int(last or first) + 1)}
    return codes


@dataclass
class Txn:
    kind: str
    state: str
    hold: int
    posted: int
    rate: int
    beans: int = 0
    deadline: int = 0


@dataclass
class Reference:
    policy: dict
    posted: int = 0
    held: int = 0
    txns: dict[str, Txn] = field(default_factory=dict)
    approvals: list[tuple[int, int, str, str]] = field(default_factory=list)  # t, fen, ch, mcc

    def group(self, names: list[str]) -> set[str]:
        return set().union(*(expand(self.policy["mcc_groups"][n]) for n in names))

    def otb(self) -> int:
        return max(0, LIMIT_FEN - self.posted - self.held)

    def answer(self, code: str, reason: str = "", approved: int = 0, beans: int = 0):
        return code, reason, approved, self.otb(), beans

    def decide(self, now: int, kind: C, channel: str, mcc: str, amount: int, partial: bool,
               ref: str, original: str):
        for txn in self.txns.values():
            if txn.state == "pending" and txn.deadline <= now:
                self.held -= txn.hold
                txn.state, txn.hold = "expired", 0
        rules = self.policy["channels"].get(channel, {})
        if "classes" in rules and kind.value not in rules["classes"]:
            return self.answer(rules["class_decline_code"], f"channel_class:{channel}")
        if kind in (C.SALE, C.AUTH):
            return self.spend(now, kind, channel, mcc, amount, partial, ref, rules)
        txn = self.txns[original]
        return self.capture(txn, amount) if kind is C.CAPTURE else self.reverse(txn)

    def spend(self, now, kind, channel, mcc, amount, partial, ref, rules):
        for block in self.policy.get("mcc_block", []):
            if mcc in self.group(block["groups"]):
                return self.answer(block["code"], f"mcc_blocked:{mcc}")
        if amount > rules.get("per_transaction_max_fen", amount):
            return self.answer("61", f"channel_cap:{channel}")
        for cap in self.policy.get("mcc_cap", []):
            if mcc in self.group(cap["groups"]) and amount > cap["per_transaction_max_fen"]:
                return self.answer("61", f"mcc_cap:{cap['id']}")
        refusal = self.counters(now, channel, mcc, amount, rules)
        if refusal:
            return self.answer(*refusal)
        approved, code = amount, "00"
        if amount > self.otb():
            if not partial or self.otb() == 0:
                return self.answer("51", "insufficient_open_to_buy")
            approved, code = self.otb(), "10"
        rate = self.rate(channel, mcc)
        self.approvals.append((now, approved, channel, mcc))
        if kind is C.AUTH:
            self.held += approved
            deadline = now + self.policy["holds"]["expiry_days"] * DAY_MS
            self.txns[ref] = Txn("auth", "pending", approved, 0, rate, deadline=deadline)
            return self.answer(code, "", approved, 0)
        self.posted += approved
        beans = approved // 100 * rate
        self.txns[ref] = Txn("sale", "captured", 0, approved, rate, beans)
        return self.answer(code, "", approved, beans)

    def counters(self, now, channel, mcc, amount, rules):
        if "daily_max_fen" in rules:
            today = (now + BEIJING_MS) // DAY_MS
            spent = sum(fen for t, fen, ch, _ in self.approvals
                        if ch == channel and (t + BEIJING_MS) // DAY_MS == today)
            if spent + amount > rules["daily_max_fen"]:
                return "61", f"channel_daily:{channel}"
        for rule in self.policy["velocity"]:
            def in_scope(ch: str, code: str, rule=rule) -> bool:
                return ((not rule.get("groups") or code in self.group(rule["groups"]))
                        and (not rule.get("channels") or ch in rule["channels"]))
            if not in_scope(channel, mcc):
                continue
            bucket_ms = rule["window_s"] * 1000 // rule["buckets"]
            current = now // bucket_ms
            window = [fen for t, fen, ch, code in self.approvals if in_scope(ch, code)
                      and current - rule["buckets"] < t // bucket_ms <= current]
            if "count_max" in rule and len(window) + 1 > rule["count_max"]:
                return "65", f"velocity_count:{rule['id']}"
            if "amount_max_fen" in rule and sum(window) + amount > rule["amount_max_fen"]:
                return "61", f"velocity_amount:{rule['id']}"
        return None

    def rate(self, channel: str, mcc: str) -> int:
        rewards = self.policy["rewards"]
        if mcc in self.group(rewards["no_points_groups"]):
            return 0
        return rewards["beans_per_yuan_by_channel"].get(channel, rewards["beans_per_yuan"])

    def capture(self, txn: Txn, amount: int):
        if txn.kind != "auth":
            return self.answer("12", "original_not_an_authorization")
        if txn.state != "pending":
            return self.answer("12", f"original_already_{txn.state}")
        if amount * 100 > txn.hold * (100 + self.policy["holds"]["capture_tolerance_percent"]):
            return self.answer("13", "capture_exceeds_hold")
        if amount - txn.hold > self.otb():
            return self.answer("51", "insufficient_open_to_buy")
        self.held -= txn.hold
        self.posted += amount
        txn.state, txn.hold, txn.posted = "captured", 0, amount
        txn.beans = amount // 100 * txn.rate
        return self.answer("00", "", amount, txn.beans)

    def reverse(self, txn: Txn):
        if txn.kind == "auth" and txn.state == "pending":
            released, txn.hold, txn.state = txn.hold, 0, "reversed"
            self.held -= released
            return self.answer("00", "", released, 0)
        if txn.kind == "sale" and txn.state == "captured":
            released, beans, txn.posted, txn.beans = txn.posted, -txn.beans, 0, 0
            self.posted -= released
            txn.state = "reversed"
            return self.answer("00", "", released, beans)
        if txn.state == "captured":
            return self.answer("12", "original_already_captured_or_refunded")
        return self.answer("12", f"original_already_{txn.state}")


# --- the property ---------------------------------------------------------------------------

# T0 is 12:00 UTC, so T0 + 4 h is midnight in Beijing: streams starting just before it cross
# the day boundary of the channel daily caps (UTC+8, not UTC).
near_beijing_midnight = st.integers(4 * 3_600_000 - 180_000, 4 * 3_600_000)


async def run_stream(redis_url: str, policy: dict, start_ms: int, stream: list[Step]) -> None:
    clock = FakeClock(start_ms)
    ledger = Ledger(connect(redis_url), clock)
    try:
        await ledger.start()
        engine = Engine(ledger, Policy(from_dict(policy, "random policy")))
        pan = new_pan()
        await ledger.set_card(pan, limit_fen=LIMIT_FEN, expiry="3012")
        model = Reference(policy)
        for index, step in enumerate(stream):
            clock.now += step.advance_ms
            ref, original, amount = f"{pan}r{next(_refs)}", "", step.amount  # ids: no other test's
            if step.kind in (C.CAPTURE, C.REVERSAL):
                if not model.txns:
                    continue
                original = list(model.txns)[step.pick % len(model.txns)]
                target = model.txns[original]
                amount = target.hold * step.factor // 100 if step.kind is C.CAPTURE else 0
                if step.kind is C.CAPTURE and amount == 0:
                    continue
            expected = model.decide(clock.now, step.kind, step.channel, step.mcc, amount,
                                    step.partial, ref, original)
            request = AuthRequest(
                message_class=step.kind, channel=step.channel, card=pan, amount_fen=amount,
                mcc=step.mcc if step.kind in (C.SALE, C.AUTH) else "", txn_ref=ref,
                idempotency_key=ref, original_ref=original, partial_ok=step.partial)
            r = await engine.decide(request)
            got = (r.response_code, r.reason, r.approved_fen, r.open_to_buy_fen, r.beans)
            assert got == expected, f"step {index} {step}: switch {got} != model {expected}"
    finally:
        await ledger.aclose()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(policy=policies(), start=st.integers(0, DAY_MS - 1) | near_beijing_midnight,
       stream=st.lists(steps, min_size=1, max_size=30))
def test_switch_decides_as_the_reference_model(redis_url, policy, start, stream):
    asyncio.run(run_stream(redis_url, policy, T0_MS + start, stream))
