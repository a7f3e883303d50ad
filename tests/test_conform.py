"""`switch conform` over TCP against the example adapters (examples/conformance/): a clean
report for the well-behaved ones, a failing one naming each fault for the misbehaving ones."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import importlib
import re
import signal
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import NamedTuple

import iso8583
import pytest

from protocols import jd
from protocols.channel import KeyNeeded
from protocols.conformance.iso_rules import IsoRules
from protocols.conformance.jd_rules import JdRules
from protocols.demo import DEMO_JD_KEY, DEMO_JD_MERCHANT, DEMO_POS_MAC
from protocols.iso_client import IsoClient
from protocols.iso_mac import KeyRing, MacKey
from protocols.messages import AuthRequest, AuthResponse, MessageClass
from protocols.pos import PosCodec
from switch.conform_cli import Kit, Watched
from tests.support import CLI_WAIT_S, SWITCH, checked_output, new_pan, run_command
from tests.test_unionpay_dialect import PEER_SPEC

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "conformance"
LISTENING = re.compile(rb"listening on 127\.0\.0\.1:(\d+)")
FLOWS = {"sale", "pre_auth_completion", "reversal_after_timeout", "repeat", "refund",
         "balance_inquiry"}
POS_FLOWS = FLOWS | {"sign_on", "batch_settlement"}  # a UnionPay terminal's


class RunningKit(NamedTuple):
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
        yield RunningKit(process, int(found.group(1)), pan, expiry, junit, banner)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def adapter(script: str, running: RunningKit, *options: str) -> tuple[int, str, str]:
    return await run_command((sys.executable, str(EXAMPLES / script)), "--port",
                             str(running.port), "--pan", running.pan, "--expiry",
                             running.expiry, *options)


async def ending(running: RunningKit, interrupt: bool) -> tuple[int, str, str]:
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


async def well_behaved_run(channel: str, script: str, folder: Path, flows: set[str],
                           *dialect: str, adapter_options: tuple[str, ...] = ()
                           ) -> tuple[str, str]:
    """The kit's output and the adapter's. `dialect`: options the kit and the adapter both
    take (--dialect unionpay-pos); `adapter_options`: the adapter's own (--sm4)."""
    async with kit(channel, folder, "--until-complete", *dialect) as running:
        code, out, err = await adapter(script, running, *dialect, *adapter_options)
        assert code == 0, err
        steps = out
        assert "?" not in out and all(line.endswith("00") for line in out.splitlines()), out
        code, out, err = await ending(running, interrupt=False)  # it ends by itself
    assert code == 0, out + err
    assert f"{len(flows)} of {len(flows)} required flows passed" in out
    assert "result: PASS" in out and "FAIL" not in out
    assert flow_failures(running.junit) == dict.fromkeys(flows)
    return out, steps


async def test_a_well_behaved_pos_terminal_passes_every_flow(tmp_path):
    out, steps = await well_behaved_run("pos", "pos_terminal.py", tmp_path, POS_FLOWS)
    assert steps.startswith("sign-on, x9.19 master key: 00\n"), steps
    # It signed on first, and its batch balanced (at once, or after its upload).
    assert re.search(r"#1 0800 sign-on network code 001 -> 00 ", out), out
    assert re.search(r"0500 settlement batch \d{6} STAN \d{6} -> 00 ", out), out


async def test_a_unionpay_terminal_without_f7_and_f18_passes_every_flow(tmp_path):
    out, _ = await well_behaved_run("pos", "pos_terminal.py", tmp_path, POS_FLOWS,
                                    "--dialect", "unionpay-pos")
    assert "(unionpay, header binary2, envelope tpdu+header)" in out, out
    assert re.search(r"#1 0800 sign-on network code 001 -> 00 ", out), out


async def test_an_sm4_terminal_on_the_sm4_preset_passes_every_flow(tmp_path):
    """pos_terminal.py --sm4: the demo SM4 terminal signs on (SM4 working keys) and MACs its
    money with the SM4 MAC under its session MAK, on the unionpay-sm4-pos preset."""
    out, steps = await well_behaved_run("pos", "pos_terminal.py", tmp_path, POS_FLOWS,
                                        "--dialect", "unionpay-sm4-pos",
                                        adapter_options=("--sm4",))
    assert "(unionpay-sm4, header binary2, envelope tpdu+header)" in out, out
    assert re.search(r"#1 0800 sign-on network code 001 -> 00 ", out), out
    # Its keys checked under SM4 (KeysRejected otherwise: the run would stop).
    assert steps.startswith("sign-on, sm4 master key: 00\n"), steps


def test_the_example_terminal_on_unionpay_sends_no_f7_or_f18(monkeypatch):
    """What pos_terminal.py --dialect unionpay-pos writes, read by pyiso8583: F13 + F12 and
    the merchant id (MCC 5411 in characters 8-11), no F7, no F18."""
    monkeypatch.syspath_prepend(str(EXAMPLES))
    example = importlib.import_module("pos_terminal")
    args = argparse.Namespace(dialect="unionpay", envelope="tpdu+header", pan=new_pan(),
                              expiry="3012", first_totals_off=0, sm4=False)
    terminal = example.Terminal(None, args)
    for fields in (terminal.fields(MessageClass.SALE, 100), terminal.fields(MessageClass.AUTH,
                   100), terminal.settlement(terminal.totals())):
        body = terminal.encode(fields)
        assert body[:11] == bytes.fromhex("6000030000" "602200000000")  # TPDU, header
        sent = iso8583.decode(bytearray(body[11:]), PEER_SPEC)[0]
        assert "7" not in sent and "18" not in sent and {"12", "13"} <= sent.keys()
        assert "42" not in sent or sent["42"][7:11] == "5411"


async def test_a_terminal_answered_95_that_uploads_and_settles_again_passes(tmp_path):
    async with kit("pos", tmp_path, "--until-complete") as running:
        code, out, err = await adapter("pos_terminal.py", running, "--first-totals-off", "1")
        assert code == 0, err
        assert re.search(r"batch settlement: 95( 00)+$", out, re.MULTILINE), out
        code, out, err = await ending(running, interrupt=False)
    assert code == 0 and "8 of 8 required flows passed" in out, out + err
    settlements = re.findall(r"0500 settlement batch \d{6} STAN \d{6} -> (\d\d)", out)
    assert settlements == ["95", "00"] and "0320 batch upload" in out, out


async def test_a_well_behaved_jd_merchant_passes_every_flow(tmp_path):
    await well_behaved_run("jd", "jd_merchant.py", tmp_path, FLOWS)


async def misbehaving_run(channel: str, script: str, folder: Path, *dialect: str
                          ) -> tuple[str, dict]:
    async with kit(channel, folder, *dialect) as running:
        code, out, err = await adapter(script, running, *dialect)
        assert code == 0, err
        code, out, err = await ending(running, interrupt=True)
    assert code == 1, out + err
    assert "result: FAIL" in out
    return out, flow_failures(running.junit)


async def test_a_misbehaving_pos_terminal_fails_with_each_fault_named(tmp_path):
    out, cases = await misbehaving_run("pos", "pos_terminal_misbehaving.py", tmp_path)
    # Money before the sign-on, and under the master key after it: the sign-on flow's faults
    # (and the sale flow's, whose messages they are).
    before = re.compile(r"#1 0200 sale STAN \d{6}: sign-on: expected an 0800 sign-on "
                        r"\(network code 001\) answered 00 before money, got terminal "
                        r"10000:TERM0001 before its sign-on")
    master = re.compile(r"#3 0200 sale STAN \d{6}: sign-on: expected money MAC'd under the "
                        r"session MAK .* got A0 not_signed_on")
    assert before.search(cases["sign_on"]) and master.search(cases["sign_on"]), cases
    assert before.search(cases["sale"]) and master.search(cases["sale"])
    assert "F64 (MAC)" in cases["sale"] and "A0 mac_mismatch" in cases["sale"]
    assert "F22 (Point-of-Service Entry Mode): expected present" in cases[
        "pre_auth_completion"]
    assert "F90: expected a transaction this adapter sent" in cases["reversal_after_timeout"]
    assert "never sent" in cases["reversal_after_timeout"]
    assert "F4 changed" in cases["repeat"]
    assert "F4 (Amount, Transaction)" in cases["refund"] and "00000002000" in cases["refund"]
    assert re.search(r"#\d+ 0500 settlement batch \d{6} STAN \d{6}: answered 95 "
                     r"batch_totals_differ, and no upload \(0320\)", cases["batch_settlement"])
    assert "not exercised: settle a batch" in cases["batch_settlement"]
    assert cases["balance_inquiry"] is None  # the one flow it does right
    assert "1 of 8 required flows passed" in out
    assert re.search(r"#1 0200 sale STAN \d{6} card 625368\*{6}\d{4} -> 00  FAIL", out), out
    assert re.search(r"#4 0200 sale STAN \d{6} card 625368\*{6}\d{4} -> A0  FAIL", out), out


async def test_a_misbehaving_unionpay_terminal_s_f42_without_an_mcc_is_named(tmp_path):
    """On unionpay-pos the switch reads the MCC from F42 (no F18): letters there are 30
    format:field_42, named on F42; the terminal's other faults are named as on iso87ascii."""
    out, cases = await misbehaving_run("pos", "pos_terminal_misbehaving.py", tmp_path,
                                       "--dialect", "unionpay-pos")
    assert re.search(r"#\d+ 0200 sale STAN \d{6}: F42 \(Card Acceptor Identification Code; "
                     r"the absent F18 is read from F42 characters 8-11\): expected a value the "
                     r"spec allows, got format:field_42", cases["sale"]), cases["sale"]
    assert "F22 (Point-of-Service Entry Mode): expected present" in cases[
        "pre_auth_completion"]
    assert "'A00000002000' is not n (digits)" in cases["refund"]
    assert "F4 changed" in cases["repeat"] and "never sent" in cases["reversal_after_timeout"]
    assert "1 of 8 required flows passed" in out


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


@pytest.mark.parametrize("channel, dialect, error", [
    ("jd", "unionpay-pos", "switch: --dialect is for an ISO 8583 channel (pos, xpay)"),
    ("pos", "nosuch", "switch: --dialect: no shipped dialect 'nosuch' (shipped: iso87ascii, "
     "iso87ascii-sm4, iso87binary, unionpay, unionpay-sm4); or give a path"),
])
async def test_a_bad_dialect_is_one_line_and_exit_2(channel, dialect, error):
    code, out, err = await run_command(SWITCH, "conform", "--channel", channel, "--dialect",
                                       dialect)
    assert (code, err.strip()) == (2, error)


async def test_a_bad_duration_is_one_line_and_exit_2():
    code, out, err = await run_command(SWITCH, "conform", "--channel", "jd", "--duration", "0")
    assert code == 2
    assert err.strip() == "switch: --duration: a number of seconds above 0"


# --- the kit watches the codec and changes nothing ---------------------------------------


def jd_body(trade: str, key: bytes = DEMO_JD_KEY.encode()) -> bytes:
    request = AuthRequest(message_class=MessageClass.SALE, channel="jd", card=new_pan(),
                          amount_fen=1000, mcc="5411", merchant_id=DEMO_JD_MERCHANT,
                          txn_ref=trade, transmitted_at=datetime.datetime.now(
                              datetime.UTC).strftime("%Y%m%d%H%M%S"))
    return jd.encode_request(request, key)


def test_the_watched_codec_answers_as_the_codec_and_records_each_exchange():
    codec = jd.JdCodec({DEMO_JD_MERCHANT: DEMO_JD_KEY.encode()})
    lines: list[str] = []
    kit_ = Kit("jd", JdRules({DEMO_JD_MERCHANT: DEMO_JD_KEY.encode()}), lines.append)
    watched = Watched(codec, kit_)
    assert watched.header is codec.header and watched.name == "jd"
    refused = jd_body("T1", key=b"another")
    assert watched.decode_request(refused) == codec.decode_request(refused)
    good = jd_body("T2")
    decoded, plain = watched.decode_request(good), codec.decode_request(good)
    assert decoded.request == plain.request
    response = AuthResponse(response_code="00", approved_fen=1000, auth_id="123456")
    assert watched.encode_response(decoded.context, response) == codec.encode_response(
        plain.context, response)
    assert [e.answer.code for e in kit_.session.exchanges] == ["63", "00"]
    assert len(lines) == 2 and lines[1].endswith("-> 00  OK")


def test_a_request_waiting_for_its_keys_is_recorded_once_it_is_read():
    codec = PosCodec(keys=KeyRing())  # no key cached: every signed request asks for its keys
    codec.keys.keys_for = lambda acquirer, terminal: None
    kit_ = Kit("pos", IsoRules(), [].append)
    watched = Watched(codec, kit_)
    body = IsoClient(key=MacKey.parse(*DEMO_POS_MAC)).encode({
        "t": "0800", "7": "1207120000", "11": "000001", "32": "00010000", "41": "TERM0001",
        "70": "301"})
    assert isinstance(watched.decode_request(body), KeyNeeded)
    assert kit_.session.exchanges == []
    answer = watched.decode_request(body, (MacKey.parse(*DEMO_POS_MAC),))
    assert isinstance(answer, bytes) and kit_.session.exchanges[0].answer.code == "00"
