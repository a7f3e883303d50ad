"""`switch conform` over TCP against the example adapters (examples/conformance/): a clean
report for the well-behaved ones, a failing one naming each fault for the misbehaving ones."""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import NamedTuple

from tests.support import CLI_WAIT_S, SWITCH, checked_output, run_command

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "conformance"
LISTENING = re.compile(rb"listening on 127\.0\.0\.1:(\d+)")
FLOWS = {"sale", "pre_auth_completion", "reversal_after_timeout", "repeat", "refund",
         "balance_inquiry"}


class Kit(NamedTuple):
    process: asyncio.subprocess.Process
    port: int
    pan: str
    expiry: str
    junit: Path
    banner: bytes


@contextlib.asynccontextmanager
async def kit(channel: str, folder: Path, *options: str):
    cards, junit = folder / "cards.csv", folder / "report.xml"
    process = await asyncio.create_subprocess_exec(
        *SWITCH, "conform", "--channel", channel, "--listen", "127.0.0.1:0", "--cards-out",
        str(cards), "--junit", str(junit), *options, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    try:
        banner = b""
        async with asyncio.timeout(CLI_WAIT_S):
            while not (found := LISTENING.search(banner)):
                line = await process.stdout.readline()
                assert line, f"the kit ended before listening: {await process.stderr.read()}"
                banner += line
        _, pan, expiry, _ = cards.read_text().splitlines()[0].split(",")
        yield Kit(process, int(found.group(1)), pan, expiry, junit, banner)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def adapter(script: str, running: Kit) -> tuple[int, str, str]:
    return await run_command((sys.executable, str(EXAMPLES / script)), "--port",
                             str(running.port), "--pan", running.pan, "--expiry",
                             running.expiry)


async def ending(running: Kit, interrupt: bool) -> tuple[int, str, str]:
    """The kit's exit code and output, after Ctrl-C when `interrupt`."""
    if interrupt:
        running.process.send_signal(signal.SIGINT)
    async with asyncio.timeout(CLI_WAIT_S):
        out, err = await running.process.communicate()
    return checked_output(SWITCH, ("conform",), running.process.returncode,
                          running.banner + out, err)


def flow_failures(junit: Path) -> dict[str, str | None]:
    """testcase name -> its failure message (None: passed)."""
    suite = ElementTree.parse(junit).getroot()
    return {case.get("name"): (case.find("failure").get("message")
                               if case.find("failure") is not None else None)
            for case in suite.iter("testcase")}


async def well_behaved_run(channel: str, script: str, folder: Path) -> None:
    async with kit(channel, folder, "--until-complete") as running:
        code, out, err = await adapter(script, running)
        assert code == 0, err
        assert "?" not in out and all(line.endswith("00") for line in out.splitlines()), out
        code, out, err = await ending(running, interrupt=False)  # it ends by itself
    assert code == 0, out + err
    assert "6 of 6 required flows passed" in out and "result: PASS" in out
    assert "FAIL" not in out
    assert flow_failures(running.junit) == dict.fromkeys(FLOWS)


async def test_a_well_behaved_pos_terminal_passes_every_flow(tmp_path):
    await well_behaved_run("pos", "pos_terminal.py", tmp_path)


async def test_a_well_behaved_jd_merchant_passes_every_flow(tmp_path):
    await well_behaved_run("jd", "jd_merchant.py", tmp_path)


async def misbehaving_run(channel: str, script: str, folder: Path) -> tuple[str, dict]:
    async with kit(channel, folder) as running:
        code, out, err = await adapter(script, running)
        assert code == 0, err
        code, out, err = await ending(running, interrupt=True)
    assert code == 1, out + err
    assert "result: FAIL" in out
    return out, flow_failures(running.junit)


async def test_a_misbehaving_pos_terminal_fails_with_each_fault_named(tmp_path):
    out, cases = await misbehaving_run("pos", "pos_terminal_misbehaving.py", tmp_path)
    assert "F64 (MAC)" in cases["sale"] and "A0 mac_mismatch" in cases["sale"]
    assert "F22 (Point-of-Service Entry Mode): expected present" in cases[
        "pre_auth_completion"]
    assert "F90: expected a transaction this adapter sent" in cases["reversal_after_timeout"]
    assert "never sent" in cases["reversal_after_timeout"]
    assert "F4 changed" in cases["repeat"]
    assert "F4 (Amount, Transaction)" in cases["refund"] and "00000002000" in cases["refund"]
    assert cases["balance_inquiry"] is None  # the one flow it does right
    assert "1 of 6 required flows passed" in out
    assert re.search(r"#1 0200 sale STAN \d{6} card 625368\*{6}\d{4} -> A0  FAIL", out), out


async def test_a_misbehaving_jd_merchant_fails_with_each_fault_named(tmp_path):
    out, cases = await misbehaving_run("jd", "jd_merchant_misbehaving.py", tmp_path)
    assert "sign: expected HMAC-SHA256" in cases["sale"]
    assert "industryCategoryCode: expected present" in cases["pre_auth_completion"]
    assert "originalTradeNum: expected a transaction" in cases["reversal_after_timeout"]
    assert "amount, sign changed" in cases["repeat"]
    assert "amount: expected fen as digits only" in cases["refund"] and "' 2000'" in cases[
        "refund"]
    assert cases["balance_inquiry"] is None
    assert "1 of 6 required flows passed" in out


async def test_duration_ends_the_run_with_every_flow_missing(tmp_path):
    async with kit("jd", tmp_path, "--duration", "0.5") as running:
        code, out, err = await ending(running, interrupt=False)
    assert code == 1
    assert "0 of 6 required flows passed (0 messages" in out
    assert all("not exercised" in message for message in flow_failures(running.junit).values())


async def test_a_bad_duration_is_one_line_and_exit_2():
    code, out, err = await run_command(SWITCH, "conform", "--channel", "jd", "--duration", "0")
    assert code == 2
    assert err.strip() == "switch: --duration: a number of seconds above 0"
