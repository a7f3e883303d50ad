"""The issuer policy as data: one TOML file decoded into msgspec Structs, checked at start-up.

`load_policy(path)` returns a `PolicySpec` or raises `PolicyError` with one message that names
the key and the problem. The shipped default (switch/policy_default.toml) is the Baitiao card's
policy; docs/policy.md explains every key with it. switch/policy.py applies a spec.
"""

from __future__ import annotations

import re
import tomllib
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import msgspec

from protocols.codes import APPROVING, DECLINING
from protocols.messages import MessageClass
from switch import limits

DEFAULT_POLICY_NAME = "policy_default.toml"

# Rule and group ids end up in decline reasons and Redis field names: keep them plain.
NAME_PATTERN = r"^[a-z][a-z0-9_]{0,31}$"
Name = Annotated[str, msgspec.Meta(pattern=NAME_PATTERN)]
# A decline code is an ISO 8583 field 39 value that is not an approval.
DeclineCode = Annotated[str, msgspec.Meta(pattern=r"^[0-9A-Z]{2}$")]
Fen = Annotated[int, msgspec.Meta(ge=1, le=limits.amount_max_fen)]
Count = Annotated[int, msgspec.Meta(ge=1, le=1_000_000)]
BeansRate = Annotated[int, msgspec.Meta(ge=0, le=100)]  # JD beans per whole yuan posted
MCC_ENTRY = re.compile(r"(\d{4})(?:-(\d{4}))?")

# Longest velocity window: a month is the longest limit card programs usually set.
WINDOW_MAX_S = 31 * 24 * 3600
# Buckets per window: more is finer but costs a Redis field read per bucket per decision.
BUCKETS_MAX = 60


class PolicyError(ValueError):
    """The policy file cannot be used; the message names the key and the problem."""


class Struct(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


class MccBlock(Struct):
    id: Name
    groups: list[str]
    code: DeclineCode = "57"
    why: str = ""


class MccCap(Struct):
    id: Name
    groups: list[str]
    per_transaction_max_fen: Fen
    why: str = ""


class ChannelRules(Struct):
    # Message classes the channel may send; None: all of them.
    classes: list[MessageClass] | None = None
    class_decline_code: DeclineCode = "12"
    per_transaction_max_fen: Fen | None = None
    # Per card and Beijing calendar day (UTC+8), approvals on this channel only.
    daily_max_fen: Fen | None = None


class Velocity(Struct):
    id: Name
    window_s: Annotated[int, msgspec.Meta(ge=1, le=WINDOW_MAX_S)]
    buckets: Annotated[int, msgspec.Meta(ge=1, le=BUCKETS_MAX)] = 10
    count_max: Count | None = None
    amount_max_fen: Fen | None = None
    groups: list[str] = []  # empty: every MCC
    channels: list[Name] = []  # empty: every channel
    why: str = ""


class Holds(Struct):
    # UnionPay pre-authorizations stay valid 30 days; the hold then lapses by itself.
    expiry_days: Annotated[int, msgspec.Meta(ge=1, le=90)] = 30
    # A completion may exceed its pre-authorization by this much (hotels, car rental).
    capture_tolerance_percent: Annotated[int, msgspec.Meta(ge=0, le=100)] = 0


class Rewards(Struct):
    beans_per_yuan: BeansRate = 1
    beans_per_yuan_by_channel: dict[str, BeansRate] = {}
    no_points_groups: list[str] = []


class StandIn(Struct):
    """What the switch may decide alone while Redis is unreachable (switch/standin.py)."""

    enabled: bool = False  # off: such requests are answered 91, as an issuer down would be
    per_transaction_max_fen: Fen = 50_000  # 500 yuan: approved in stand-in at most
    # Per card, approvals in stand-in not yet forwarded to the ledger (the journal's).
    per_card_max_fen: Fen = 200_000
    decline_code: DeclineCode = "61"  # over either limit


class Pin(Struct):
    """When a PIN is required and how many wrong ones a card takes (switch/pins.py)."""

    # Wrong PINs in a row that block the card's PIN (75) until a new PIN is set.
    tries_max: Annotated[int, msgspec.Meta(ge=1, le=9)] = 3
    # Where the entry modes below ask for a PIN (x-pay wallets verify the holder on the
    # device; JD and WeChat carry no entry mode).
    channels: list[str] = msgspec.field(default_factory=lambda: ["pos"])
    # POS entry mode (F22's first two digits) -> a PIN is required above this amount (fen);
    # 0: for every amount. Entry modes not listed never require one.
    required_above_fen: dict[str, Annotated[int, msgspec.Meta(
        ge=0, le=limits.amount_max_fen)]] = {}


class PolicySpec(Struct):
    name: str = ""
    description: str = ""
    mcc_groups: dict[str, list[str]] = {}
    mcc_block: list[MccBlock] = []
    mcc_cap: list[MccCap] = []
    channels: dict[str, ChannelRules] = {}
    velocity: list[Velocity] = []
    holds: Holds = msgspec.field(default_factory=Holds)
    rewards: Rewards = msgspec.field(default_factory=Rewards)
    stand_in: StandIn = msgspec.field(default_factory=StandIn)
    pin: Pin = msgspec.field(default_factory=Pin)


def default_policy_text() -> bytes:
    return (resources.files("switch") / DEFAULT_POLICY_NAME).read_bytes()


def load_policy(path: str | Path | None = None) -> PolicySpec:
    """The policy in `path` (None or "": the shipped default), decoded and checked."""
    if not path:
        return parse_policy(default_policy_text(), f"default policy ({DEFAULT_POLICY_NAME})")
    try:
        text = Path(path).read_bytes()
    except OSError as error:
        raise PolicyError(f"cannot read policy {path}: {error.strerror}") from None
    return parse_policy(text, f"policy {path}")


def parse_policy(text: bytes | str, origin: str = "policy") -> PolicySpec:
    try:
        raw = tomllib.loads(text.decode() if isinstance(text, bytes) else text)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise PolicyError(f"{origin}: not valid TOML: {error}") from None
    return from_dict(raw, origin)


def from_dict(raw: dict[str, Any], origin: str = "policy") -> PolicySpec:
    """A policy from plain data (the decoded TOML), typed and checked."""
    try:
        spec = msgspec.convert(raw, PolicySpec)
    except msgspec.ValidationError as error:
        key, problem = _located(raw, str(error))
        raise PolicyError(f"{origin}: {key}: {problem}") from None
    return checked(spec, origin)


# Tables keyed by a name of the user's: msgspec says `$.channels[...]` for them, so an error
# there is located again by converting each entry alone.
_NAMED_TABLES: dict[str, Any] = {"channels": ChannelRules, "mcc_groups": list[str],
                                  "rewards.beans_per_yuan_by_channel": BeansRate}


def _located(raw: dict[str, Any], message: str) -> tuple[str, str]:
    problem, _, path = message.partition(" - at `")
    path = path.rstrip("`")
    table = path[2:].partition("[...]")[0]
    entries: Any = raw
    for part in table.split("."):
        entries = entries.get(part) if isinstance(entries, dict) else None
    if table in _NAMED_TABLES and isinstance(entries, dict):
        for name, value in entries.items():
            try:
                msgspec.convert(value, _NAMED_TABLES[table])
            except msgspec.ValidationError as error:
                inner_problem, _, inner = str(error).partition(" - at `")
                return f"{table}.{name}{inner.rstrip('`')[1:]}", inner_problem
    # A problem with the whole file has no path ("$" is the top level).
    return (path[2:] or "(top level)"), problem


def checked(spec: PolicySpec, origin: str = "policy") -> PolicySpec:
    """What the types cannot say: references resolve, ids are unique, ranges are ordered."""
    problems = list(_problems(spec))
    if problems:
        key, problem = problems[0]
        raise PolicyError(f"{origin}: {key}: {problem}")
    return spec


def mcc_codes(entries: list[str]) -> frozenset[str]:
    """'5411' and '5013-5199' entries as the set of 4-digit codes (entries already checked)."""
    codes: set[str] = set()
    for entry in entries:
        low, _, high = entry.partition("-")
        codes.update(f"{code:04d}" for code in range(int(low), int(high or low) + 1))
    return frozenset(codes)


def _problems(spec: PolicySpec):
    """(key, problem) pairs, in file order."""
    for name, entries in spec.mcc_groups.items():
        key = f"mcc_groups.{name}"
        if not re.fullmatch(NAME_PATTERN, name):
            yield key, f"a group name must match {NAME_PATTERN}"
        if not entries:
            yield key, "a group needs at least one MCC"
        for index, entry in enumerate(entries):
            yield from _mcc_entry_problems(f"{key}[{index}]", entry)
    seen_ids: dict[str, str] = {}
    for table in ("mcc_block", "mcc_cap", "velocity"):
        for index, rule in enumerate(getattr(spec, table)):
            key = f"{table}[{index}]"
            if rule.id in seen_ids:
                yield f"{key}.id", f"{rule.id!r} is already the id of {seen_ids[rule.id]}"
            seen_ids[rule.id] = key
            yield from _group_problems(spec, f"{key}.groups", rule.groups,
                                       required=table != "velocity")
    for block_index, block in enumerate(spec.mcc_block):
        yield from _decline_code_problems(f"mcc_block[{block_index}].code", block.code)
    for index, rule in enumerate(spec.velocity):
        key = f"velocity[{index}]"
        if rule.count_max is None and rule.amount_max_fen is None:
            yield key, "give count_max, amount_max_fen or both"
        if rule.window_s % rule.buckets:
            yield f"{key}.buckets", (f"{rule.buckets} buckets do not divide window_s "
                                     f"{rule.window_s} into whole seconds")
    for name, channel in spec.channels.items():
        key = f"channels.{name}"
        if not re.fullmatch(NAME_PATTERN, name):
            yield key, f"a channel name must match {NAME_PATTERN}"
        yield from _decline_code_problems(f"{key}.class_decline_code",
                                          channel.class_decline_code)
    for name in spec.rewards.beans_per_yuan_by_channel:
        if not re.fullmatch(NAME_PATTERN, name):
            yield (f"rewards.beans_per_yuan_by_channel.{name}",
                   f"a channel name must match {NAME_PATTERN}")
    yield from _group_problems(spec, "rewards.no_points_groups", spec.rewards.no_points_groups,
                               required=False)
    stand_in = spec.stand_in
    yield from _decline_code_problems("stand_in.decline_code", stand_in.decline_code)
    if stand_in.per_card_max_fen < stand_in.per_transaction_max_fen:
        yield "stand_in.per_card_max_fen", (
            f"{stand_in.per_card_max_fen} is below per_transaction_max_fen "
            f"{stand_in.per_transaction_max_fen}: no card could reach the per-transaction limit")
    yield from _pin_problems(spec.pin)


def _pin_problems(pin: Pin):
    for index, name in enumerate(pin.channels):
        if not re.fullmatch(NAME_PATTERN, name):
            yield f"pin.channels[{index}]", f"a channel name must match {NAME_PATTERN}"
    for mode in pin.required_above_fen:
        if not (len(mode) == 2 and mode.isascii() and mode.isdigit()):
            yield (f"pin.required_above_fen.{mode}",
                   "an entry mode is F22's first two digits, e.g. \"05\" (contact chip)")


def _decline_code_problems(key: str, code: str):
    if code in APPROVING:
        yield key, f"{code} is an approval, not a decline"
    elif code not in DECLINING:
        yield key, (f"{code} is not a response code this switch gives; use one of "
                    f"{', '.join(sorted(DECLINING))}")


def _mcc_entry_problems(key: str, entry: str):
    match = MCC_ENTRY.fullmatch(entry)
    if not match:
        yield key, f"{entry!r} is not an MCC (4 digits) or a range like '5013-5199'"
    elif match.group(2) and match.group(2) < match.group(1):
        yield key, f"range {entry!r} ends before it starts"


def _group_problems(spec: PolicySpec, key: str, groups: list[str], required: bool):
    if required and not groups:
        yield key, "name at least one MCC group"
    for index, group in enumerate(groups):
        if group not in spec.mcc_groups:
            known = ", ".join(sorted(spec.mcc_groups)) or "none defined"
            yield f"{key}[{index}]", f"no MCC group {group!r} in [mcc_groups] ({known})"
