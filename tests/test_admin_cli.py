"""`switch serve --admin` as a user runs it: the banner's dashboard URL and token, SIGHUP
reloading the policy (a bad file refused, the old policy kept), and clear errors."""

from __future__ import annotations

import json
import os
import re
import select
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support import SWITCH
from tests.test_admin import policy_text
from tests.test_cli import read_banner, run, stop

WAIT_S = 20.0


@pytest.fixture
def run_env(tmp_path: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env["SWITCH_RUN_DIR"] = str(tmp_path / "run")
    return env


def get_json(url: str, token: str | None = None) -> dict:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5) as r:
        return json.loads(r.read())


def policy_name_becomes(url: str, name: str) -> bool:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if get_json(url + "/policy")["name"] == name:
            return True
        time.sleep(0.05)
    return False


def test_sighup_reloads_the_policy_and_refuses_a_bad_one(run_env, tmp_path):
    policy = tmp_path / "policy.toml"
    policy.write_text(policy_text("first"))
    process = subprocess.Popen(
        [*SWITCH, "serve", "--ephemeral", "--demo", "--listen", "jd=127.0.0.1:0",
         "--admin", "127.0.0.1:0", "--policy", str(policy)],
        env=run_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        banner = read_banner(process)
        url = re.search(r"dashboard (http://127\.0\.0\.1:\d+)/", banner).group(1)
        token = re.search(r"token for card and policy endpoints: (\S+)", banner).group(1)
        assert get_json(url + "/cards/demo1", token)["pan"].startswith("625368******")
        assert get_json(url + "/policy")["name"] == "first"

        policy.write_text(policy_text("second", block_grocery=True))
        process.send_signal(signal.SIGHUP)
        assert policy_name_becomes(url, "second")

        policy.write_text(policy_text("third", broken=True))
        process.send_signal(signal.SIGHUP)
        refusal = line_with(process.stderr, "policy reload refused")
        assert "the policy in force stays" in refusal and "is an approval" in refusal
        assert get_json(url + "/policy")["name"] == "second"
        assert process.poll() is None
    finally:
        stop(process)


def line_with(stream, text: str) -> str:
    """The first line of `stream` that holds `text` (bounded wait; read unbuffered)."""
    deadline, seen = time.monotonic() + WAIT_S, ""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([stream], [], [], max(0.0, deadline - time.monotonic()))
        if ready:
            seen += os.read(stream.fileno(), 65536).decode()
        for line in seen.splitlines():
            if text in line:
                return line
    raise AssertionError(f"no line with {text!r} within {WAIT_S} s: {seen}")


def test_admin_address_errors_are_one_line(run_env):
    done = run(["serve", "--ephemeral", "--listen", "jd=127.0.0.1:0", "--admin", "8680"],
               run_env, check=False)
    assert done.returncode == 2
    assert done.stderr.strip() == ("switch: admin address '8680': expected HOST:PORT, e.g. "
                                   "127.0.0.1:8680, or off")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run(["serve", "--ephemeral", "--listen", "jd=127.0.0.1:0", "--admin",
                    f"127.0.0.1:{port}"], run_env, check=False)
    assert done.returncode == 2, done.stderr
    assert f"the admin API cannot listen on 127.0.0.1:{port}" in done.stderr
    assert "Traceback" not in done.stderr


def test_admin_off_serves_none(run_env, tmp_path):
    config = tmp_path / "switch.toml"
    config.write_text('[admin]\nlisten = "127.0.0.1:0"\n')
    process = subprocess.Popen(
        [*SWITCH, "serve", "--ephemeral", "--config", str(config), "--listen",
         "jd=127.0.0.1:0", "--admin", "off"],
        env=run_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        banner = read_banner(process)
    finally:
        stop(process)
    assert "Admin" not in banner and "jd      listening" in banner


def send_jd(port: int, env: dict, mcc: str) -> str:
    done = run(["send", "--channel", "jd", "--port", str(port), "--pan", "demo1",
                "--amount", "100", "--mcc", mcc, "--json"], env)
    return json.loads(done.stdout)["response_code"]


def test_workers_one_scrape_counts_all_and_a_reload_reaches_all(run_env, tmp_path):
    policy = tmp_path / "policy.toml"
    policy.write_text(policy_text("first"))
    process = subprocess.Popen(
        [*SWITCH, "serve", "--ephemeral", "--demo", "--workers", "2", "--listen",
         "jd=127.0.0.1:0", "--admin", "127.0.0.1:0", "--policy", str(policy)],
        env=run_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        banner = read_banner(process)
        url = re.search(r"dashboard (http://127\.0\.0\.1:\d+)/", banner).group(1)
        token = re.search(r"token for card and policy endpoints: (\S+)", banner).group(1)
        port = int(re.search(r"jd\s+listening on 127\.0\.0\.1:(\d+)", banner).group(1))
        sent = 12  # each on a new connection: the kernel spreads them over the workers
        assert {send_jd(port, run_env, "5411") for _ in range(sent)} == {"00"}
        deadline = time.monotonic() + WAIT_S  # the other worker's share: within a second
        while time.monotonic() < deadline:
            text = urllib.request.urlopen(url + "/metrics", timeout=5).read().decode()
            samples = {s.name + str(sorted(s.labels.items())): s.value
                       for f in text_string_to_metric_families(text) for s in f.samples}
            if samples.get("switch_requests_total[('channel', 'jd'), ('message_class', "
                           "'sale'), ('response_code', '00')]") == sent:
                break
            time.sleep(0.1)
        else:
            raise AssertionError(f"/metrics never counted {sent} sales: {text}")
        assert samples["switch_workers[]"] == 2

        policy.write_text(policy_text("second", block_grocery=True))
        request = urllib.request.Request(url + "/policy/reload", method="POST",
                                         headers={"Authorization": f"Bearer {token}"})
        assert json.loads(urllib.request.urlopen(request, timeout=5).read())["reloaded"]
        deadline = time.monotonic() + WAIT_S
        codes = set()
        while time.monotonic() < deadline:  # the supervisor passes the reload on
            codes = {send_jd(port, run_env, "5411") for _ in range(sent)}
            if codes == {"57"}:
                break
        assert codes == {"57"}
    finally:
        stop(process)
