"""The policy file: the shipped default, and one clear error per problem naming its key."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from switch.policy_file import (
    PolicyError,
    default_policy_text,
    load_policy,
    mcc_codes,
    parse_policy,
)
from tests.support import SWITCH, run_command_sync

VELOCITY = '[[velocity]]\nid = "v"\nwindow_s = 10\n'

# (policy text, the key the error must name, words of the problem)
BAD_POLICIES = [
    ("surprise = 1", "(top level)", "unknown field `surprise`"),
    ("name = 3", "name", "Expected `str`"),
    ("[holds]\nexpiry_days = 0", "holds.expiry_days", ">= 1"),
    ("[holds]\ncapture_tolerance_percent = 101", "holds.capture_tolerance_percent", "<= 100"),
    ("[mcc_groups]\ncash = [6010]", "mcc_groups.cash[0]", "Expected `str`"),
    ('[mcc_groups]\ncash = ["601"]', "mcc_groups.cash[0]", "is not an MCC"),
    ('[mcc_groups]\nwide = ["5199-5013"]', "mcc_groups.wide[0]", "ends before it starts"),
    ("[mcc_groups]\nempty = []", "mcc_groups.empty", "at least one MCC"),
    ('[mcc_groups]\nBad = ["6010"]', "mcc_groups.Bad", "group name must match"),
    ('[[mcc_block]]\nid = "b"\ngroups = ["nope"]', "mcc_block[0].groups[0]",
     "no MCC group 'nope'"),
    ('[[mcc_block]]\nid = "b"\ngroups = []', "mcc_block[0].groups", "at least one MCC group"),
    ('[mcc_groups]\ng = ["7995"]\n[[mcc_block]]\nid = "b"\ngroups = ["g"]\ncode = "00"',
     "mcc_block[0].code", "approval, not a decline"),
    ('[mcc_groups]\ng = ["7995"]\n[[mcc_block]]\nid = "b"\ngroups = ["g"]\ncode = "5"',
     "mcc_block[0].code", "matching regex"),
    ('[[mcc_cap]]\nid = "c"\ngroups = []\nper_transaction_max_fen = 0', "mcc_cap[0]"
     ".per_transaction_max_fen", ">= 1"),
    ('[channels.jd]\nclasses = ["sale", "bogus"]', "channels.jd.classes[1]",
     "Invalid enum value 'bogus'"),
    ("[channels.jd]\ndaily_cap = 5", "channels.jd", "unknown field `daily_cap`"),
    ('[channels.jd]\nclass_decline_code = "10"', "channels.jd.class_decline_code",
     "not a decline"),
    ("[channels.JD]", "channels.JD", "channel name must match"),
    (VELOCITY, "velocity[0]", "give count_max, amount_max_fen or both"),
    (VELOCITY + "count_max = 1\nbuckets = 3", "velocity[0].buckets", "do not divide"),
    (VELOCITY + "count_max = 1\nbuckets = 61", "velocity[0].buckets", "<= 60"),
    (VELOCITY.replace("10", "0") + "count_max = 1", "velocity[0].window_s", ">= 1"),
    (VELOCITY + "count_max = 1\n" + VELOCITY + "count_max = 2", "velocity[1].id",
     "already the id of velocity[0]"),
    (VELOCITY + 'count_max = 1\ngroups = ["x"]', "velocity[0].groups[0]", "no MCC group 'x'"),
    ('[[velocity]]\nid = "V"\nwindow_s = 1\ncount_max = 1', "velocity[0].id", "matching regex"),
    ("[rewards.beans_per_yuan_by_channel]\njd = -1",
     "rewards.beans_per_yuan_by_channel.jd", ">= 0"),
    ('[rewards]\nno_points_groups = ["gone"]', "rewards.no_points_groups[0]",
     "no MCC group 'gone'"),
    ("[holds", "not valid TOML", ""),
    ("[pin]\ntries_max = 0", "pin.tries_max", ">= 1"),
    ("[pin]\ntries_max = 10", "pin.tries_max", "<= 9"),
    ("[pin]\ntries = 3", "pin", "unknown field `tries`"),
    ('[pin.required_above_fen]\n"5" = 0', "pin.required_above_fen.5", "F22's first two"),
    ('[pin.required_above_fen]\n"0a" = 0', "pin.required_above_fen.0a", "F22's first two"),
    ('[pin.required_above_fen]\n"05" = -1', "pin.required_above_fen", ">= 0"),
    ('[pin]\nchannels = ["POS"]', "pin.channels[0]", "channel name must match"),
]


@pytest.mark.parametrize(("text", "key", "words"), BAD_POLICIES)
def test_bad_policy_is_one_error_naming_key_and_problem(text, key, words):
    with pytest.raises(PolicyError) as info:
        parse_policy(text, "policy p.toml")
    message = str(info.value)
    assert message.startswith(f"policy p.toml: {key}"), message
    assert words in message
    assert "\n" not in message


def test_shipped_default_is_the_baitiao_policy():
    spec = load_policy()
    assert spec == parse_policy(default_policy_text())
    blocked = {code for block in spec.mcc_block for g in block.groups
               for code in mcc_codes(spec.mcc_groups[g])}
    assert {"7995", "7800", "7801", "7802", "6051", "4829", "6010", "6011", "1520", "1771",
            "7013", "6211"} <= blocked
    assert all(block.code == "57" for block in spec.mcc_block)
    assert spec.channels["xpay"].daily_max_fen == 1_000_000
    assert spec.rewards.beans_per_yuan == 1 and spec.rewards.beans_per_yuan_by_channel == {
        "jd": 5}
    no_points = mcc_codes(spec.mcc_groups["no_points"])
    assert {"5013", "5199", "5998", "5511", "5599", "5933", "5960", "6012", "6300", "9211",
            "9400"} <= no_points
    assert "5411" not in no_points


def test_mcc_ranges_expand_inclusively():
    assert mcc_codes(["7800-7802", "0742"]) == {"7800", "7801", "7802", "0742"}


def test_unreadable_file_is_named(tmp_path):
    with pytest.raises(PolicyError, match=r"cannot read policy .*missing\.toml"):
        load_policy(tmp_path / "missing.toml")


def run_switch(*args: str) -> subprocess.CompletedProcess:
    return subprocess.CompletedProcess(args, *run_command_sync(SWITCH, *args, timeout_s=30))


def test_policy_check_summarizes_a_good_file_and_names_a_bad_key(tmp_path: Path):
    good = tmp_path / "good.toml"
    good.write_bytes(default_policy_text())
    done = run_switch("policy", "check", str(good))
    assert done.returncode == 0, done.stderr
    assert "is valid" in done.stdout
    assert "block gambling: gambling -> 57" in done.stdout
    assert "channel xpay: every class; at most 1000000 fen per card per day" in done.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text(default_policy_text().decode().replace("expiry_days = 30",
                                                         "expiry_days = -1"))
    done = run_switch("policy", "check", str(bad))
    assert done.returncode == 2
    assert done.stderr.strip() == f"switch: policy {bad}: holds.expiry_days: Expected `int` >= 1"


def test_serve_refuses_a_bad_policy_before_starting_anything(tmp_path: Path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[[velocity]]\nid = \"v\"\nwindow_s = 5\n")
    done = run_switch("serve", "--policy", str(bad), "--listen", "jd=127.0.0.1:0",
                      "--redis", "redis://127.0.0.1:1/0")
    assert done.returncode == 2
    assert done.stderr.strip() == (f"switch: policy {bad}: velocity[0]: give count_max, "
                                   "amount_max_fen or both")


def test_docs_show_the_shipped_default_word_for_word():
    doc = (Path(__file__).parent.parent / "docs" / "policy.md").read_text()
    assert "```toml\n" + default_policy_text().decode() + "```" in doc


def test_policy_check_notes_a_channel_no_listener_has(tmp_path: Path):
    typo = tmp_path / "typo.toml"
    typo.write_text("[channels.wechatpay]\ndaily_max_fen = 500\n")
    done = run_switch("policy", "check", str(typo))
    assert done.returncode == 0, done.stderr
    assert "note: channel 'wechatpay' is not a listener of this switch" in done.stdout


@pytest.mark.parametrize("tries", [1, 9])
def test_pin_tries_at_their_bounds_are_taken(tries):
    assert parse_policy(f"[pin]\ntries_max = {tries}").pin.tries_max == tries
