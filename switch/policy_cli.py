"""The policy's commands: `switch policy check` and `switch send --explain`.

switch/cli.py registers them; they live here to keep that module small.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from protocols.messages import AuthRequest
from switch.channels import CODECS
from switch.policy import Policy
from switch.policy_file import PolicySpec, load_policy


def add_commands(command) -> None:
    policy = command("policy", None, "check a policy file (docs/policy.md)")
    policy_commands = policy.add_subparsers(required=True, metavar="ACTION")
    check = policy_commands.add_parser(
        "check", help="validate a policy file and summarize what it does")
    check.set_defaults(func=cmd_policy_check)
    check.add_argument("file", nargs="?", type=Path,
                       help="the policy file (default: the shipped Baitiao default)")


def add_send_options(send_parser: argparse.ArgumentParser) -> None:
    send_parser.add_argument("--explain", action="store_true",
                             help="first show which policy rules run on this request and why")
    send_parser.add_argument("--policy", type=Path, help="policy the switch runs, for --explain "
                             "(default: the shipped default)")


def cmd_policy_check(args: argparse.Namespace) -> int:
    spec = load_policy(args.file)
    print(f"policy {args.file or '(shipped default)'} is valid")
    print(summary(spec))
    named = set(spec.channels) | {c for rule in spec.velocity for c in rule.channels} | set(
        spec.rewards.beans_per_yuan_by_channel)
    for name in sorted(named - set(CODECS)):
        print(f"  note: channel {name!r} is not a listener of this switch "
              f"({', '.join(sorted(CODECS))}); its rules never apply")
    return 0


def explanation(request: AuthRequest, policy_path: Path | None) -> str:
    policy = Policy(load_policy(policy_path))
    lines = [f"policy {policy_path or '(shipped default)'} on {request.message_class.value} of "
             f"{request.amount_fen} fen, MCC {request.mcc or '-'}, via {request.channel}:"]
    lines += [f"  {step.outcome:<8} {step.rule:<32} {step.detail}"
              for step in policy.explain(request)]
    lines.append("  (card checks come first and 'ledger' rules are counted in Redis with the "
                 "hold; the answer's reason is the switch's word)")
    return "\n".join(lines)


def summary(spec: PolicySpec) -> str:
    lines = [f"  {spec.name or '(unnamed)'}: {spec.description}".rstrip(": ")]
    for name, entries in spec.mcc_groups.items():
        lines.append(f"  group {name}: {', '.join(entries)}")
    for block in spec.mcc_block:
        lines.append(f"  block {block.id}: {', '.join(block.groups)} -> {block.code}")
    for cap in spec.mcc_cap:
        lines.append(f"  cap {cap.id}: {', '.join(cap.groups)} at most "
                     f"{cap.per_transaction_max_fen} fen per transaction -> 61")
    for name, channel in spec.channels.items():
        parts = [("classes " + ", ".join(c.value for c in channel.classes)
                  + f" (others {channel.class_decline_code})") if channel.classes is not None
                 else "every class"]
        if channel.per_transaction_max_fen:
            parts.append(f"at most {channel.per_transaction_max_fen} fen per transaction")
        if channel.daily_max_fen:
            parts.append(f"at most {channel.daily_max_fen} fen per card per day")
        lines.append(f"  channel {name}: {'; '.join(parts)}")
    for rule in spec.velocity:
        limit = " and ".join(text for text in (
            rule.count_max and f"{rule.count_max} approvals (65)",
            rule.amount_max_fen and f"{rule.amount_max_fen} fen (61)") if text)
        scope = ", ".join(filter(None, (
            rule.groups and "groups " + "/".join(rule.groups),
            rule.channels and "channels " + "/".join(rule.channels)))) or "every purchase"
        lines.append(f"  velocity {rule.id}: at most {limit} per card in {rule.window_s} s "
                     f"({rule.buckets} buckets), {scope}")
    holds, rewards = spec.holds, spec.rewards
    lines.append(f"  holds: pre-authorizations expire after {holds.expiry_days} days; a "
                 f"capture may exceed its hold by {holds.capture_tolerance_percent}%")
    by_channel = ", ".join(f"{name} {rate}" for name, rate in
                           rewards.beans_per_yuan_by_channel.items())
    lines.append(f"  rewards: {rewards.beans_per_yuan} JD beans per yuan"
                 + (f" ({by_channel})" if by_channel else "")
                 + (f"; none for {', '.join(rewards.no_points_groups)}"
                    if rewards.no_points_groups else ""))
    stand_in = spec.stand_in
    lines.append("  stand-in: " + (
        f"on: approves at most {stand_in.per_transaction_max_fen} fen per transaction and "
        f"{stand_in.per_card_max_fen} fen per card until forwarded (over: "
        f"{stand_in.decline_code})" if stand_in.enabled else "off (Redis unreachable: 91)"))
    return "\n".join(lines)
