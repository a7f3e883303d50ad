"""`loadtest run`'s choice of channels: --mix, else the channels --target names, else all."""

from __future__ import annotations

import argparse

import pytest

from loadtest.cli import mix_from, parse_targets
from loadtest.generator import adapters


def args(mix: str = "", targets: tuple[str, ...] = ()) -> argparse.Namespace:
    return argparse.Namespace(mix=mix, target=list(targets))


def test_targets_without_a_mix_send_to_the_targeted_channels_only():
    default = adapters.default_mix()
    mix = mix_from(args(targets=("jd=127.0.0.1:9001", "pos=9002")))
    assert mix == {"jd": default["jd"], "pos": default["pos"]}
    targets = parse_targets(["jd=127.0.0.1:9001", "pos=9002"], mix)
    assert {ch: t.port for ch, t in targets.items()} == {"jd": 9001, "pos": 9002}


def test_no_targets_and_no_mix_is_every_channel_and_a_mix_wins():
    assert mix_from(args()) == adapters.default_mix()
    assert mix_from(args(mix="wechat=3", targets=("jd=9001",))) == {"wechat": 3}


def test_a_target_for_no_channel_is_refused():
    with pytest.raises(ValueError, match="--target: no channel fax"):
        mix_from(args(targets=("fax=9001",)))
