"""`switch serve --record` and `switch replay` as a user runs them: real processes, two
workers recording, a replay with --restore against the switch started again."""

from __future__ import annotations

import json
import re
import signal
from pathlib import Path

from protocols.recording import file_order
from tests.support import SWITCH, run_command_sync
from tests.test_cli import WAIT_S, run, run_env, serve, stop  # noqa: F401 (run_env: a fixture)


def record_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("rec-*.rec"))


def test_two_workers_record_their_own_series_and_a_restored_replay_differs_nowhere(
        run_env, tmp_path):  # noqa: F811
    folder = tmp_path / "rec"
    process, banner, port = serve(run_env, ["--workers", "2", "--record", str(folder)])
    try:
        assert "Recording into" in banner and "snapshot of" in banner
        sale = ["send", "--port", str(port), "--amount", "1000", "--mcc", "5411", "--json"]
        answers = [json.loads(run([*sale, "--pan", pan], run_env).stdout)
                   for pan in ("demo1", "demo2", "demo1", "demo2")]
        assert [a["response_code"] for a in answers] == ["00"] * 4
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=WAIT_S) == 0
        counted = re.findall(r"recorded=(\d+) record_dropped=(\d+)", process.stdout.read())
        assert len(counted) == 2 and sum(int(r) for r, _ in counted) == 4
        assert all(dropped == "0" for _, dropped in counted)
    finally:
        stop(process)
    processes = {file_order(path.name)[0] for path in record_files(folder)}
    assert len(processes) == 2  # one series per worker

    again, _, port = serve(run_env, [])  # the same durable private Redis, the books moved on
    try:
        report = tmp_path / "diff.json"
        page = tmp_path / "diff.html"
        done = run(["replay", str(folder), "--target", f"jd=127.0.0.1:{port}", "--restore",
                    "--json", str(report), "--html", str(page)], run_env)
        assert "matching 4, different 0" in done.stdout
        assert "restored" in done.stderr
        diff = json.loads(report.read_text())
        assert (diff["exchanges"], diff["matching"], diff["differences"]) == (4, 4, [])
        assert "no differences" in page.read_text()
        refused = run(["serve", "--record", str(folder), "--listen", "jd=127.0.0.1:0"],
                      run_env, check=False)
        assert refused.returncode == 2 and "holds a recording already" in refused.stderr
    finally:
        stop(again)


def test_replay_errors_are_one_line(tmp_path):
    code, _, err = run_command_sync(SWITCH, "replay", str(tmp_path / "none"))
    assert code == 2 and err.count("\n") == 1 and "no such folder" in err
    code, _, err = run_command_sync(SWITCH, "replay", str(tmp_path))
    assert code == 2 and "no recording files" in err
    for bad in (("--connections", "0"), ("--timeout", "0")):
        code, _, err = run_command_sync(SWITCH, "replay", str(tmp_path), *bad)
        assert code == 2 and "--connections must be 1 or more" in err
    code, _, err = run_command_sync(SWITCH, "replay", str(tmp_path), "--connections", "1")
    assert code == 2 and "no recording files" in err  # 1 passes the check
    code, _, err = run_command_sync(SWITCH, "serve", "--record-max-mb", "5")
    assert code == 2 and "go with --record DIR" in err
