"""The `switch` command as a user runs it: a real `switch serve` process, its private Redis,
`switch send` and `switch card` from other processes, and SIGTERM."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from protocols.cardnumbers import luhn_valid
from switch.redis_runner import free_port, reachable
from tests.support import SWITCH, run_command_sync, shows_no_card_number

WAIT_S = 20.0


def run(args: list[str], env: dict, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.CompletedProcess(args, *run_command_sync(SWITCH, *args, env=env,
                                                                timeout_s=WAIT_S))
    if check:
        assert done.returncode == 0, done.stderr
    return done


def read_banner(process: subprocess.Popen) -> str:
    """Lines of stdout up to the banner's last line (bounded wait)."""
    deadline = time.monotonic() + WAIT_S
    lines = []
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if "Ctrl-C stops" in line:
            return shows_no_card_number("".join(lines), "the banner")
    raise AssertionError("no banner: " + "".join(lines) + process.stderr.read())


def serve(env: dict, extra: list[str]) -> tuple[subprocess.Popen, str, int]:
    """`switch serve --demo` on a free JD port: (process, banner, port)."""
    process = subprocess.Popen([*SWITCH, "serve", "--demo", "--listen", "jd=127.0.0.1:0", *extra],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        banner = read_banner(process)
    except BaseException:
        process.kill()
        process.wait()
        raise
    port = int(re.search(r"jd\s+listening on 127\.0\.0\.1:(\d+)", banner).group(1))
    return process, banner, port


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=WAIT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def run_env(tmp_path: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env["SWITCH_RUN_DIR"] = str(tmp_path / "run")
    return env


@pytest.fixture
def served(run_env, request):
    process, banner, port = serve(run_env, getattr(request, "param", []))
    try:
        yield process, banner, port, run_env
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_serve_send_show_and_stop(served):
    process, banner, port, env = served
    assert "demo1" in banner and "private" in banner
    assert not re.search(r"\d{16}", banner), "the banner must not show full card numbers"
    redis_url = (Path(env["SWITCH_RUN_DIR"]) / "redis.url").read_text().strip()

    sale = json.loads(run(["send", "--port", str(port), "--pan", "demo1", "--amount", "12800",
                           "--mcc", "5411", "--json"], env).stdout)
    assert (sale["response_code"], sale["wire"]["code"]) == ("00", "000000")
    card = json.loads(run(["card", "show", "demo1", "--json"], env).stdout)
    assert card["open_to_buy"] == card["limit"] - 12800
    assert "*" in card["pan"]

    reverse = json.loads(run(["send", "--port", str(port), "--pan", "demo1", "--type",
                              "reverse", "--original", sale["id"], "--json"], env).stdout)
    assert reverse["open_to_buy_fen"] == card["limit"]
    text = run(["send", "--port", str(port), "--pan", "demo1", "--amount", "100", "--mcc",
                "7995"], env).stdout
    assert "DECLINED 57" in text and "mcc_blocked:7995" in text

    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=WAIT_S) == 0
    assert not reachable(redis_url), "the private Redis must stop with the switch"
    counters = dict(pair.split("=") for pair in re.search(
        r"counters: (.*)", process.stdout.read()).group(1).split())
    # Sale, reverse, 57; each its id's claim and its card's call.
    assert int(counters["answered"]) == int(counters["redis_calls"]) // 2 == 3
    times = [float(counters[f"decision_{name}_ms"]) for name in ("p50", "p99", "p99.9", "max")]
    assert 0 < times[0] <= times[1] <= times[2] <= times[3]  # the switch's own view


@pytest.mark.parametrize("served", [["--workers", "2"]], indirect=True)
def test_worker_processes_share_the_port_and_the_ledger(served):
    process, banner, port, env = served
    assert "2 worker processes" in banner
    send = ["send", "--port", str(port), "--pan", "demo2", "--amount", "1000", "--mcc", "5411",
            "--json"]
    answers = [json.loads(run(send, env).stdout) for _ in range(6)]
    assert [a["response_code"] for a in answers] == ["00"] * 6
    assert [a["open_to_buy_fen"] for a in answers] == [
        answers[0]["open_to_buy_fen"] - 1000 * i for i in range(6)]
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=WAIT_S) == 0


def demo1_line(banner: str) -> str:
    return next(line for line in banner.splitlines() if line.strip().startswith("demo1"))


def sale_on_demo1(port: int, env: dict) -> None:
    sale = json.loads(run(["send", "--port", str(port), "--pan", "demo1", "--amount", "12800",
                           "--mcc", "5411", "--json"], env).stdout)
    assert sale["response_code"] == "00", sale


def test_a_switch_killed_and_started_again_finds_its_cards_as_they_were(run_env):
    """`make run` killed with SIGKILL leaves its private Redis running; the next start stops
    that one (cleanly) and serves the same data: the demo cards are kept, not reloaded."""
    first, banner, port = serve(run_env, [])
    try:
        assert "data kept in" in banner and "AOF appendfsync everysec" in banner
        assert demo1_line(banner).endswith("created")
        sale_on_demo1(port, run_env)
        first.kill()
        first.wait()
        second, banner, port = serve(run_env, [])
    finally:
        first.kill()
        first.wait()
    try:
        assert "stopped redis-server pid" in banner
        assert demo1_line(banner).endswith("kept") and "open-to-buy    987200" in banner
        taken = run(["serve", "--listen", "jd=127.0.0.1:0"], run_env, check=False)
        assert taken.returncode == 2 and "in use by another running switch" in taken.stderr
    finally:
        stop(second)
    assert second.returncode == 0


def test_an_ephemeral_switch_starts_afresh_every_time(run_env):
    for _ in range(2):
        process, banner, port = serve(run_env, ["--ephemeral"])
        try:
            assert "ephemeral: nothing kept on disk" in banner
            assert demo1_line(banner).endswith("created")
            assert "open-to-buy   1000000" in demo1_line(banner)
            sale_on_demo1(port, run_env)
        finally:
            stop(process)


def test_serve_and_send_agree_on_a_header_preset(run_env):
    process, banner, _ = serve(run_env, ["--ephemeral", "--listen", "pos=127.0.0.1:0",
                                         "--header", "pos=ascii4self"])
    try:
        port = re.search(r"pos\s+listening on 127\.0\.0\.1:(\d+)", banner).group(1)
        send = ["send", "--channel", "pos", "--port", port, "--pan", "demo1", "--amount", "100",
                "--mcc", "5411", "--json"]
        sale = json.loads(run([*send, "--header", "ascii4self"], run_env).stdout)
        assert sale["response_code"] == "00", sale
        # The default header (binary2) is not what this listener reads: no answer.
        assert run(send, run_env, check=False).returncode == 2
    finally:
        stop(process)


def test_errors_are_one_line_and_exit_2(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env["SWITCH_RUN_DIR"] = str(tmp_path)
    for args, message in [
        (["card", "show", "demo1"], "no Redis to use"),
        (["card", "show", "12"], "not a card number"),
        (["send", "--pan", "demo1", "--port", "1"], "no answer from 127.0.0.1:1"),
        (["serve", "--listen", "jd=localhost"], "expected CHANNEL=HOST:PORT"),
        (["serve", "--listen", "nope=1"], "no such channel: nope"),
        (["serve", "--header", "pos=ascii9"], "HEADER one of binary2, binary4, ascii4, ascii2"),
        (["serve", "--header", "jd=ascii2"], "CHANNEL one of pos, xpay"),
        (["serve", "--ephemeral", "--redis", "redis://127.0.0.1:1/0"], "does not go with"),
    ]:
        done = run(args, env, check=False)
        assert done.returncode == 2, (args, done.stderr)
        assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_bad_config_names_the_key(tmp_path):
    config = tmp_path / "switch.toml"
    config.write_text("[limits]\nrequest_deadline_ms = -5\n")
    done = run(["serve", "--config", str(config)], dict(os.environ), check=False)
    assert done.returncode == 2
    assert "request_deadline_ms" in done.stderr


def test_seed_is_deterministic_and_card_set_changes_a_card(redis_url, tmp_path):
    env = dict(os.environ, REDIS_URL=redis_url)
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    out = run(["seed", "--cards", "5", "--seed", "7", "--out", str(first)], env).stdout
    run(["seed", "--cards", "5", "--seed", "7", "--out", str(second)], env)
    assert first.read_text() == second.read_text()
    assert first.stat().st_mode & 0o777 == 0o600
    pans = [line.split(",")[0] for line in first.read_text().splitlines()]
    assert len(set(pans)) == 5 and all(luhn_valid(p) and p.startswith("62") for p in pans)
    assert not any(pan in out for pan in pans), "seed must print masked numbers only"

    run(["card", "set", pans[0], "--limit", "777", "--status", "frozen"], env)
    card = json.loads(run(["card", "show", pans[0], "--json"], env).stdout)
    assert (card["limit"], card["status"], card["open_to_buy"]) == (777, "frozen", 777)
    bad = run(["card", "set", pans[0], "--expiry", "2613"], env, check=False)
    assert bad.returncode == 2 and "YYMM" in bad.stderr


def test_a_taken_port_is_one_line_naming_the_channel_and_the_way_out(run_env):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run(["serve", "--ephemeral", "--listen", "jd=127.0.0.1:0", "--port",
                    f"jd={port}"], run_env, check=False)
    assert done.returncode == 2
    assert done.stderr.startswith(f"switch: jd cannot listen on 127.0.0.1:{port}")
    assert "--port jd=PORT" in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_port_moves_one_channel_and_keeps_the_others(run_env):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    process, banner, port = serve(run_env, ["--ephemeral", "--port", f"jd={free}"])
    try:
        assert port == free
    finally:
        stop(process)
    refused = run(["serve", "--ephemeral", "--port", "fax=1"], run_env, check=False)
    assert refused.returncode == 2 and "CHANNEL one of jd, wechat, pos, xpay" in refused.stderr
    absent = run(["serve", "--ephemeral", "--listen", "jd=127.0.0.1:0", "--port", "pos=1"],
                 run_env, check=False)
    assert absent.returncode == 2 and "pos is not served (serving jd)" in absent.stderr


@pytest.fixture
def cluster_node(tmp_path: Path):
    """A Redis Cluster node that serves no slots: every key command is refused."""
    for attempt in range(5):  # another process may take the free port before it binds
        port = free_port()
        folder = tmp_path / str(attempt)
        folder.mkdir()
        process = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled",
             "yes", "--cluster-config-file", str(folder / "nodes.conf"), "--dir", str(folder),
             "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL)
        url = f"redis://127.0.0.1:{port}/0"
        deadline = time.monotonic() + WAIT_S
        while process.poll() is None and time.monotonic() < deadline:
            if reachable(url, timeout_s=0.2):
                try:
                    yield url
                finally:
                    process.kill()
                    process.wait()
                return
            time.sleep(0.02)
        process.kill()
        process.wait()
    raise AssertionError("no cluster node started in 5 attempts")


def test_a_redis_cluster_node_is_one_line_not_a_traceback(cluster_node, run_env):
    for command in (["card", "show", "6253680000000018"],
                    ["serve", "--demo", "--listen", "jd=127.0.0.1:0"]):
        done = run([*command, "--redis", cluster_node], run_env, check=False)
        assert done.returncode == 2, done.stderr
        last = done.stderr.strip().splitlines()[-1]  # serve warns about persistence first
        assert "Traceback" not in done.stderr and last.startswith("switch: Redis answered")
        assert "a node of a Redis Cluster" in last


@pytest.mark.parametrize("workers", ["1", "2"])
def test_json_logs_are_one_object_a_line_in_every_worker(run_env, workers):
    process, _, port = serve(run_env, ["--ephemeral", "--log-format", "json",
                                       "--workers", workers])
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=WAIT_S) as peer:
            peer.sendall(b"\xff\xff\xff\xff")  # a frame longer than any: cut, and logged
            peer.settimeout(WAIT_S)
            assert peer.recv(1) == b""  # the switch closed the connection
    finally:
        stop(process)
    lines = [json.loads(line) for line in process.stderr.read().splitlines()
             if line.startswith("{")]
    cut = [line for line in lines if line["logger"] == "switch.server"]
    assert cut and cut[0]["level"] == "WARNING" and "closing" in cut[0]["message"]
