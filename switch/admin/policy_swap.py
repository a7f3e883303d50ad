"""Reloading the policy while the switch runs (POST /policy/reload, SIGHUP).

The new file is read and checked in full first (switch/policy_file.py); a bad one raises
PolicyError with the checker's message and the policy in force stays. A good one is put in
place in one step of the event loop, between requests: a request already past its rules
keeps the verdict it had, every request started after the swap is judged by the new one.
"""

from __future__ import annotations

import time
from pathlib import Path

import msgspec

from switch.policy import Policy
from switch.policy_file import load_policy
from switch.server import Switch


class PolicySource:
    """The policy file a switch runs and the policy loaded from it."""

    def __init__(self, switch: Switch, path: str | Path | None) -> None:
        self.switch = switch
        self.path = str(path or "")
        self.loaded_at = time.time()
        self.reloads = 0
        # Called after a reload asked over HTTP: with --workers N, to have the supervisor
        # reload the other workers too (switch/workers.py).
        self.announce = lambda: None

    @property
    def origin(self) -> str:
        return self.path or "(shipped default)"

    def reload(self) -> Policy:
        """Read and check the file again, then swap it in; PolicyError leaves all as it was."""
        policy = Policy(load_policy(self.path))
        install(self.switch, policy)
        self.loaded_at = time.time()
        self.reloads += 1
        return policy

    def describe(self) -> dict:
        spec = self.switch.engine.policy.spec
        return {"source": self.origin, "name": spec.name, "reloads": self.reloads,
                "loaded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.loaded_at)),
                "policy": msgspec.to_builtins(spec)}


def install(switch: Switch, policy: Policy) -> None:
    """Every holder of the policy at once (no await between: nothing runs in between)."""
    switch.engine.policy = policy
    if switch.forwarder is not None:
        switch.forwarder.policy = policy
    stand_in = switch.stand_in
    if stand_in is not None:
        stand_in.policy = policy
        stand_in.spec = policy.spec.stand_in
        stand_in.enabled = stand_in.spec.enabled
    for listener in switch.listeners.values():
        listener.standing_in = stand_in is not None and stand_in.enabled
