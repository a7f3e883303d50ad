"""The config file: what users write in TOML lands where the switch reads it."""

from __future__ import annotations

from switch import limits
from switch.config import load


def test_the_limits_section_sets_the_server_limits(tmp_path):
    path = tmp_path / "switch.toml"
    path.write_text("[limits]\nrequest_deadline_ms = 300\nidle_timeout_s = 7.5\n")
    server_limits = load(path).server_limits
    assert (server_limits.request_deadline_ms, server_limits.idle_timeout_s) == (300, 7.5)
    assert server_limits.frame_size_max_bytes == limits.frame_size_max_bytes  # not written
