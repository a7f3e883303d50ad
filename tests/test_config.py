"""The config file: what users write in TOML lands where the switch reads it."""

from __future__ import annotations

import pytest

from switch import limits
from switch.config import ConfigError, load


def test_the_limits_section_sets_the_server_limits(tmp_path):
    path = tmp_path / "switch.toml"
    path.write_text("[limits]\nrequest_deadline_ms = 300\nidle_timeout_s = 7.5\n")
    server_limits = load(path).server_limits
    assert (server_limits.request_deadline_ms, server_limits.idle_timeout_s) == (300, 7.5)
    assert server_limits.frame_size_max_bytes == limits.frame_size_max_bytes  # not written


def test_the_output_and_frame_bounds_are_set_in_the_limits_section(tmp_path):
    path = tmp_path / "switch.toml"
    path.write_text("[limits]\nframe_deadline_s = 1.5\nwrite_paused_max_s = 4.0\n"
                    "write_buffer_high_water_bytes = 8192\nwrite_buffer_low_water_bytes = 8192\n")
    server_limits = load(path).server_limits
    assert (server_limits.frame_deadline_s, server_limits.write_paused_max_s) == (1.5, 4.0)
    assert (server_limits.write_buffer_high_water_bytes,
            server_limits.write_buffer_low_water_bytes) == (8192, 8192)  # equal is allowed


def test_a_low_water_mark_above_the_high_one_is_refused(tmp_path):
    path = tmp_path / "switch.toml"
    path.write_text("[limits]\nwrite_buffer_high_water_bytes = 8192\n"
                    "write_buffer_low_water_bytes = 8193\n")
    with pytest.raises(ConfigError, match=r"write_buffer_low_water_bytes \(8193\) must not "
                       r"exceed write_buffer_high_water_bytes \(8192\)"):
        load(path)


def test_terminals_and_the_mac_switch_are_read_and_checked(tmp_path):
    path = tmp_path / "switch.toml"
    path.write_text('[pos]\nmac = "off"\n\n[[xpay.terminals]]\nacquirer = "00020000"\n'
                    'terminal = "*"\nalgorithm = "sm4"\n'
                    'key = "0123456789ABCDEFFEDCBA9876543210"\n')
    config = load(path)
    assert config.pos.mac == "off" and config.xpay.mac == "required"
    assert [(t.acquirer, t.terminal) for t in config.xpay.terminals] == [("00020000", "*")]
    assert [t.terminal for t in config.pos.terminals] == ["TERM0001", "XPAY0001"]  # the demo
    assert config.xpay.terminals[0].mac_key().kcv() == "2677F4"
    for text, named in [
            ('[pos]\nmac = "maybe"\n', "pos.mac"),
            ('[[pos.terminals]]\nacquirer = "1"\nterminal = "T"\nalgorithm = "x9.19"\n'
             'key = "00"\n', "16 bytes"),
            ('[[pos.terminals]]\nacquirer = "1"\nterminal = "T"\nalgorithm = "des"\n'
             'key = "00"\n', "one of"),
            ('[[pos.terminals]]\nacquirer = "A1"\nterminal = "T"\nalgorithm = "sm4"\n'
             'key = "' + "00" * 16 + '"\n', "acquirer"),
            ('[[pos.terminals]]\nacquirer = "1"\nterminal = "TOOLONG12"\nalgorithm = "sm4"\n'
             'key = "' + "00" * 16 + '"\n', "terminal")]:
        path.write_text(text)
        with pytest.raises(ConfigError, match=named):
            load(path)
