"""The policy applied: pure functions of the request and the policy spec.

`Policy.judge(request)` gives the static verdict (a decline naming its rule, or none), the
beans rate, and the counters the ledger's Lua must check and count atomically with the
hold (velocity windows, channel daily caps). Whatever does not depend on the amount is
compiled once per (channel, message class, MCC) and cached, so a decision costs a dict
lookup.
`Policy.explain(request)` walks the very same steps and says what each rule did.

Order of the checks (the first decline wins): card checks (in the ledger's Lua), then
channel classes, MCC blocks, channel per-transaction caps, MCC per-transaction caps, then
(in the ledger's Lua) the channel daily caps and velocity rules in file order, then
open-to-buy.
"""

from __future__ import annotations

from typing import NamedTuple

from protocols.codes import Code, Reason
from protocols.messages import AuthRequest, MessageClass
from switch.clock import DAY_MS
from switch.policy_file import PolicySpec, mcc_codes
from switch.terms import Counter, Terms, Verdict

# Rules judge new spending; releasing or crediting money is only subject to channel classes.
SPENDING_CLASSES = frozenset({MessageClass.AUTH, MessageClass.SALE})
BEIJING_OFFSET_MS = 8 * 3600 * 1000  # daily caps follow the Beijing calendar day (UTC+8)
# Distinct (channel, class, MCC) profiles kept; at most 4 x 6 x 10,001 exist, far fewer in
# practice. Past the bound the cache starts over rather than grow.
PROFILES_CACHED_MAX = 8192


class Step(NamedTuple):
    """One line of an explanation: a rule, what it did, and why."""

    rule: str
    outcome: str  # pass, decline, skip, ledger (checked atomically in Redis), info
    detail: str


class _Profile(NamedTuple):
    decline: tuple[str, str] | None
    caps: tuple[tuple[int, str], ...]  # (per-transaction max in fen, rule id)
    beans_per_yuan: int
    terms: Terms


class Policy:
    def __init__(self, spec: PolicySpec) -> None:
        self.spec = spec
        self.groups = {name: mcc_codes(entries) for name, entries in spec.mcc_groups.items()}
        self.no_points = self._union(spec.rewards.no_points_groups)
        longest_ms = max([v.window_s * 1000 for v in spec.velocity] + [DAY_MS])
        self.base_terms = Terms(
            counters_ttl_ms=longest_ms + DAY_MS,  # a day past the longest window: slack
            hold_expiry_ms=spec.holds.expiry_days * DAY_MS,
            capture_tolerance_percent=spec.holds.capture_tolerance_percent,
            pin_tries_max=spec.pin.tries_max,
        )
        self.pin_channels = frozenset(spec.pin.channels)
        self._profiles: dict[tuple[str, MessageClass, str], _Profile] = {}

    def _union(self, groups: list[str]) -> frozenset[str]:
        return frozenset().union(*(self.groups[name] for name in groups))

    # --- deciding ---------------------------------------------------------------------------

    def judge(self, request: AuthRequest) -> Verdict:
        key = (request.channel, request.message_class, request.mcc)
        profile = self._profiles.get(key)
        if profile is None:
            if len(self._profiles) >= PROFILES_CACHED_MAX:
                self._profiles.clear()
            profile = self._profiles[key] = self._profile(*key, trace=None)
        decline = profile.decline
        if decline is None and self.pin_missing(request):
            decline = (Code.WRONG_PIN, Reason.PIN_REQUIRED)
        if decline is None:
            for cap_fen, rule in profile.caps:
                if request.amount_fen > cap_fen:
                    decline = (Code.EXCEEDS_AMOUNT_LIMIT, rule)
                    break
        return Verdict(decline, profile.beans_per_yuan, profile.terms)

    def pin_required(self, request: AuthRequest) -> bool:
        """[pin]: a spending request on a listed channel whose entry mode (F22's first two
        digits) asks for a PIN above an amount, and is above it."""
        if (request.message_class not in SPENDING_CLASSES
                or request.channel not in self.pin_channels):
            return False
        above_fen = self.spec.pin.required_above_fen.get(request.entry_mode[:2])
        return above_fen is not None and request.amount_fen > above_fen

    def pin_missing(self, request: AuthRequest) -> bool:
        return not request.pin and self.pin_required(request)

    def explain(self, request: AuthRequest) -> list[Step]:
        """What each rule does with this request (counters: what the ledger will check)."""
        steps: list[Step] = []
        profile = self._profile(request.channel, request.message_class, request.mcc, steps)
        if (profile.decline is None and request.message_class in SPENDING_CLASSES
                and request.channel in self.pin_channels):
            at = next((i for i, step in enumerate(steps) if step.outcome in ("cap", "ledger")),
                      len(steps))
            steps.insert(at, self._pin_step(request))
        declined = False
        for index, step in enumerate(steps):
            if step.outcome == "decline":
                declined = True
            elif step.outcome == "cap":  # judged here: the only amount-dependent static rule
                cap_fen = int(step.detail)
                over = request.amount_fen > cap_fen and not declined
                declined = declined or over
                steps[index] = Step(step.rule, "decline" if over else "pass",
                                    f"{request.amount_fen} fen {'>' if over else '<='} cap "
                                    f"{cap_fen} fen" + (" -> 61" if over else ""))
            elif declined and step.outcome == "ledger":
                steps[index] = step._replace(outcome="skip", detail="declined before this")
        return steps

    def _pin_step(self, request: AuthRequest) -> Step:
        if not self.pin_required(request):
            return Step("pin", "pass", f"no PIN required (entry mode {request.entry_mode or '-'}"
                        f" on {request.channel})")
        if request.pin:
            return Step("pin", "ledger", "a PIN is required and was entered: checked against "
                        "the card's in the ledger")
        return Step("pin", "decline", f"a PIN is required (entry mode {request.entry_mode}, "
                    f"above {self.spec.pin.required_above_fen[request.entry_mode[:2]]} fen) "
                    "and none was entered -> 55 pin_required")

    # --- compiling one (channel, class, MCC) ------------------------------------------------

    def _profile(self, channel: str, cls: MessageClass, mcc: str,
                 trace: list[Step] | None) -> _Profile:
        note = trace.append if trace is not None else (lambda step: None)
        decline = self._class_decline(channel, cls, note)
        spending = cls in SPENDING_CLASSES
        if not spending:
            note(Step("spending_rules", "skip", f"{cls.value} releases or reads money; only "
                      "channel classes apply to it"))
        caps: tuple[tuple[int, str], ...] = ()
        counters: tuple[Counter, ...] = ()
        if spending and decline is None:
            decline = self._mcc_block(mcc, note)
        if spending and decline is None:
            caps = self._caps(channel, mcc, note)
            counters = self._counters(channel, mcc, note)
        beans = self._beans(channel, mcc, note) if spending and decline is None else 0
        return _Profile(decline, caps, beans, self.base_terms.with_counters(counters))

    def _class_decline(self, channel: str, cls: MessageClass, note) -> tuple[str, str] | None:
        rules = self.spec.channels.get(channel)
        rule = Reason.CHANNEL_CLASS.format(channel=channel)
        if rules is None or rules.classes is None:
            note(Step(rule, "pass", f"channel {channel} may send every message class"))
            return None
        if cls in rules.classes:
            note(Step(rule, "pass", f"{cls.value} is allowed on {channel}"))
            return None
        allowed = ", ".join(c.value for c in rules.classes) or "nothing"
        note(Step(rule, "decline", f"{cls.value} is not allowed on {channel} (allowed: "
                  f"{allowed}) -> {rules.class_decline_code}"))
        return rules.class_decline_code, rule

    def _mcc_block(self, mcc: str, note) -> tuple[str, str] | None:
        for block in self.spec.mcc_block:
            if mcc in self._union(block.groups):
                reason = Reason.MCC_BLOCKED.format(mcc=mcc)
                note(Step(reason, "decline", f"MCC {mcc} is in block "
                          f"{block.id!r} ({', '.join(block.groups)}) -> {block.code}"
                          + (f": {block.why}" if block.why else "")))
                return block.code, reason
        note(Step("mcc_block", "pass", f"MCC {mcc} is in no blocked group"))
        return None

    def _caps(self, channel: str, mcc: str, note) -> tuple[tuple[int, str], ...]:
        caps = []
        channel_rules = self.spec.channels.get(channel)
        if channel_rules and channel_rules.per_transaction_max_fen:
            caps.append((channel_rules.per_transaction_max_fen,
                         Reason.CHANNEL_CAP.format(channel=channel)))
        for cap in self.spec.mcc_cap:
            if mcc in self._union(cap.groups):
                caps.append((cap.per_transaction_max_fen, Reason.MCC_CAP.format(rule=cap.id)))
        for cap_fen, rule in caps:
            note(Step(rule, "cap", str(cap_fen)))
        if not caps:
            note(Step("caps", "pass", f"no per-transaction cap on {channel} / MCC {mcc}"))
        return tuple(caps)

    def _counters(self, channel: str, mcc: str, note) -> tuple[Counter, ...]:
        counters = []
        channel_rules = self.spec.channels.get(channel)
        if channel_rules and channel_rules.daily_max_fen:
            rule = Reason.CHANNEL_DAILY.format(channel=channel)
            counters.append(Counter(f"d:{channel}", DAY_MS, 1, BEIJING_OFFSET_MS, 0,
                                    channel_rules.daily_max_fen, rule, rule))
            note(Step(rule, "ledger", f"approvals on {channel} today (Beijing) plus this "
                      f"one must stay <= {channel_rules.daily_max_fen} fen, else 61"))
        for rule in self.spec.velocity:
            in_scope = ((not rule.groups or mcc in self._union(rule.groups))
                        and (not rule.channels or channel in rule.channels))
            if not in_scope:
                note(Step(f"velocity:{rule.id}", "skip", "not this MCC group or channel"))
                continue
            bucket_ms = rule.window_s * 1000 // rule.buckets
            counters.append(Counter(
                f"v:{rule.id}:{bucket_ms}", bucket_ms, rule.buckets, 0, rule.count_max or 0,
                rule.amount_max_fen or 0, Reason.VELOCITY_COUNT.format(rule=rule.id),
                Reason.VELOCITY_AMOUNT.format(rule=rule.id)))
            limits_text = " and ".join(text for text in (
                rule.count_max and f"<= {rule.count_max} approvals (else 65)",
                rule.amount_max_fen and f"<= {rule.amount_max_fen} fen (else 61)") if text)
            note(Step(f"velocity:{rule.id}", "ledger", f"in the last {rule.window_s} s "
                      f"({rule.buckets} buckets of {bucket_ms} ms), with this one: "
                      + limits_text))
        return tuple(counters)

    def _beans(self, channel: str, mcc: str, note) -> int:
        rewards = self.spec.rewards
        if mcc in self.no_points:
            note(Step("rewards", "info", f"MCC {mcc} earns no beans"))
            return 0
        rate = rewards.beans_per_yuan_by_channel.get(channel, rewards.beans_per_yuan)
        note(Step("rewards", "info", f"{rate} JD beans per whole yuan posted on {channel}"))
        return rate
