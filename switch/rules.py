"""Card and merchant rules: pure functions of the request and the policy.

The only state they need (balances, counters) lives in the ledger scripts.
"""

from __future__ import annotations

from protocols.messages import AuthRequest, MessageClass
from switch.config import Rules

# Rules judge new spending; releasing or crediting money is never blocked by a rule.
SPENDING_CLASSES = frozenset({MessageClass.AUTH, MessageClass.SALE})


class Policy:
    def __init__(self, rules: Rules) -> None:
        self.mcc_blocked = frozenset(rules.mcc_blocked)
        self.beans_default = rules.beans_per_yuan
        self.beans_by_channel = dict(rules.beans_per_yuan_by_channel)

    def decline(self, request: AuthRequest) -> tuple[str, str] | None:
        """(response code, rule id) of the first rule that declines, or None."""
        if request.message_class in SPENDING_CLASSES and request.mcc in self.mcc_blocked:
            return "57", f"mcc_blocked:{request.mcc}"
        return None

    def beans_per_yuan(self, request: AuthRequest) -> int:
        return self.beans_by_channel.get(request.channel, self.beans_default)
