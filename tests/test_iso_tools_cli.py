"""`switch iso parse | build | validate | explain` as processes: exit codes, output, errors.

The functions behind them are tested in tests/test_iso_tools.py; here, what a user sees.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

from protocols.iso_tools import build, parse
from switch import cli
from switch.iso_cli import VALUE_SHOWN_MAX_CHARS, WIRE_SHOWN_MAX_CHARS, parsed_lines
from tests.support import SWITCH, run_command_sync
from tests.test_iso_tools import KEY, PAN, SALE

SALE_HEX = ("30323030373233383434383130384330383030303136363235333638303030303030303031383030"
            "30303030303030303030303132383030313132393132303030303030303132333132303030303131"
            "3239353431313035323030303830303031303030303132303030303030303132335445524D303030"
            "31383938333130303438393930303031313536")  # docs/channels/pos.md's worked example


def iso(*args: str, stdin: str = "") -> tuple[int, str, str]:
    return run_command_sync(SWITCH, "iso", *args, stdin=stdin)


def test_build_prints_the_hex_parse_reads_back(tmp_path):
    source = tmp_path / "sale.json"
    source.write_text(json.dumps(SALE))
    code, out, err = iso("build", "--json", str(source))
    assert (code, out.strip(), err) == (0, SALE_HEX, "")
    code, out, err = iso("parse", "-", stdin=out)  # hex on stdin, spaces and newlines allowed
    assert code == 0 and err == ""
    assert "MTI     0200  financial, request, origin acquirer" in out
    assert "bitmap  7238448108C08000  primary only; fields 2 3 4 7 11 12 13 18 22 25 32" in out
    assert "625368******0018" in out and PAN not in out
    assert "Amount, Transaction: 12800 fen = 128.00 yuan" in out


def test_build_writes_bytes_with_a_header_and_parse_reads_the_file(tmp_path):
    out_file = tmp_path / "sale.bin"
    code, out, _ = iso("build", "--json", "-", "--header", "binary2", "--mac-key", KEY.hex(),
                       "--out", str(out_file), stdin=json.dumps(SALE))
    assert code == 0 and out.strip() == f"157 bytes written to {out_file}"
    assert out_file.read_bytes()[:2] == (155).to_bytes(2, "big")
    code, out, _ = iso("parse", "--file", str(out_file), "--header", "binary2", "--mac-key",
                       KEY.hex())
    assert code == 0 and "MAC     F64 ok (checked with the key)" in out
    code, out, _ = iso("parse", "--file", str(out_file), "--header", "binary2", "--mac-key",
                       "00" * 16)
    assert code == 1 and "MAC     F64 WRONG: the key gives " in out


def test_a_hex_dump_on_stdin_is_read_with_its_offsets_checked():
    page = GUIDE.parent.joinpath("pos.md").read_text()
    dump = page[page.index("--- 0200 request, framed"):]
    code, out, err = iso("parse", "--header", "binary2", "-", stdin=dump[:dump.index("```")])
    assert (code, err) == (0, "") and "bitmap  7238448108C08000" in out
    code, out, err = iso("parse", "-", stdin="0000  30 32\n0004  30 30\n")
    assert (code, out) == (2, "") and err == (
        "switch: hex dump line 2: '0004  30 30' does not start with the offset 0002 and two "
        "spaces; --file FILE reads raw bytes\n")


def test_a_broken_message_shows_what_was_read_then_the_defect_and_exits_1():
    code, out, err = iso("parse", SALE_HEX[:100])
    assert code == 1
    assert "F2 " in out and "F3 " in out and "F4 " not in out
    assert err.strip() == ("switch iso parse: F4 (Amount, Transaction) at offset 44: "
                           "truncated data: 6 of 12 bytes")


def test_usage_errors_are_one_line_and_exit_2(tmp_path):
    cases = [
        (("parse", SALE_HEX[:-1] + "G"), "switch: the message is not hex (character 278)"),
        (("parse",), "switch: no message: give it as HEX, `-` (hex on stdin) or --file FILE"),
        (("parse", "--dialect", "nosuch", SALE_HEX), "switch: no shipped dialect 'nosuch'"),
        (("parse", "--mac-key", "xyz", SALE_HEX), "switch: --mac-key must be hex"),
        (("build", "--json", str(tmp_path / "none.json")), "switch: cannot read"),
        (("explain", "99"), "switch: '99' is not a response code or a reason"),
    ]
    for args, start in cases:
        code, out, err = iso(*args)
        assert (code, out) == (2, ""), args
        assert err.startswith(start) and err.count("\n") == 1, (args, err)


def test_build_names_the_field_the_dialect_refuses():
    code, out, err = iso("build", "--json", "-", stdin=json.dumps(SALE | {"4": "12.00"}))
    assert (code, out) == (2, "")
    assert err == "switch: stdin: field 4: '12.00' is not n (digits)\n"


def test_validate_exits_0_for_a_good_request_and_1_with_a_line_per_problem():
    code, out, _ = iso("validate", SALE_HEX)  # unsigned: the listener requires a MAC
    assert (code, out) == (1, "F64 (MAC): mac_missing: the listener answers A0 (unless its "
                              "mac is off: --mac-off)\n")
    code, out, _ = iso("validate", "--mac-off", SALE_HEX)
    assert (code, out) == (0, "valid pos sale request: card 625368******0018, 12800 fen, "
                              "terminal TERM0001\n")
    broken = dict(SALE)
    del broken["11"], broken["18"]
    hex_text = iso("build", "--json", "-", stdin=json.dumps(broken))[1]
    code, out, _ = iso("validate", "--mac-off", hex_text)
    assert (code, out) == (1, "F11 (System Trace Audit Number): field_11_missing\n")
    hex_text = iso("build", "--json", "-", stdin=json.dumps(broken | {"11": "000124"}))[1]
    code, out, _ = iso("validate", "--mac-off", hex_text)  # the engine's: a sale needs an MCC
    assert (code, out) == (1, "answer: the switch answers 30 mcc_missing: format error\n")
    code, out, _ = iso("validate", "--mac-off", "--channel", "xpay", SALE_HEX)
    assert (code, out) == (1, "answer: the switch answers 30 entry_mode_not_wallet: "
                              "format error\n")


def test_explain_says_the_code_the_reason_and_what_to_do():
    code, out, _ = iso("explain", "91")
    assert code == 0
    assert out.splitlines()[:2] == [
        "91  issuer unavailable or timed out (declines)",
        "  next: the outcome is unknown: reverse it (0400/0420, JD REVERSE), then send a new "
        "transaction if still wanted"]
    code, out, _ = iso("explain", "51", "card_lost")
    assert code == 0 and "  note: card_lost comes with 41, never with 51" in out
    code, out, _ = iso("explain", "insufficient_open_to_buy")
    assert (code, out) == (0, "reason insufficient_open_to_buy comes with 51; `switch iso "
                              "explain CODE insufficient_open_to_buy` says more\n")
    code, out, _ = iso("explain", "57", "--json")
    assert code == 0 and json.loads(out)["action"].startswith("declined")


def test_validate_json_masks_the_card_of_the_request(capsys):
    assert cli.main(["iso", "validate", "--mac-off", "--json", SALE_HEX]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["problems"] == [] and shown["message_class"] == "sale"
    assert shown["request"]["card"] == "625368******0018"
    assert cli.main(["iso", "parse", "--json", SALE_HEX]) == 0
    assert json.loads(capsys.readouterr().out)["fields"][0]["value"] == "625368******0018"


def test_the_table_cuts_long_values_and_wire_bytes_at_their_bounds():
    name = "N" * VALUE_SHOWN_MAX_CHARS  # F43 is 40 characters: shown whole
    lines = parsed_lines(parse(build(SALE | {"43": name})))
    row = next(line for line in lines if line.startswith("F43"))
    assert f"  {name}  " in row
    longer = "X" * (VALUE_SHOWN_MAX_CHARS + 1)  # F48 (LLLVAR): cut, with "..."
    row = next(line for line in parsed_lines(parse(build(SALE | {"48": longer})))
               if line.startswith("F48"))
    assert f"  {'X' * (VALUE_SHOWN_MAX_CHARS - 3)}...  " in row and longer not in row
    full = ("041" + longer).encode().hex().upper()
    assert row.split()[3] == full[: WIRE_SHOWN_MAX_CHARS - 3] + "..."
    wire = parse(build({"mti": "0800", "11": "000001"})).fields[0].wire  # 12 hex: whole
    assert len(wire) <= WIRE_SHOWN_MAX_CHARS
    row = parsed_lines(parse(build({"mti": "0800", "11": "000001"})))[-1]
    assert row.split()[3] == wire


# --- the guide's examples are what the tool prints -------------------------------------------

GUIDE = Path(__file__).resolve().parent.parent / "docs" / "channels" / "iso-toolbox.md"
JSON_FILE = re.compile(r"`([\w.-]+\.json)`:\n\n```json\n(.*?)```", re.S)
EXAMPLE = re.compile(r"```console\n\$ (switch iso .*?)```", re.S)


def command_and_output(block: str) -> tuple[list[str], str]:
    """A console block: the command (its lines joined where they end in a backslash, as a
    shell joins them) and what it prints."""
    lines = block.split("\n")
    last = next(i for i, line in enumerate(lines) if not line.endswith("\\"))
    command = "\n".join(lines[: last + 1]).replace("\\\n", "")
    return shlex.split(command), "\n".join(lines[last + 1 :])


def test_the_guide_s_examples_print_what_it_shows(tmp_path, monkeypatch, capsys):
    page = GUIDE.read_text()
    for name, text in JSON_FILE.findall(page):
        (tmp_path / name).write_text(text)
    monkeypatch.chdir(tmp_path)
    blocks = EXAMPLE.findall(page)
    assert len(blocks) >= 10  # every command of the guide is run
    for block in blocks:
        args, shown = command_and_output(block)
        cli.main(args[1:])
        printed = capsys.readouterr()
        assert printed.out + printed.err == shown, args[:3]


def test_a_dialect_file_is_read_by_path(tmp_path, capsys):
    dialect = tmp_path / "tiny.toml"
    dialect.write_text('name = "tiny"\n[fields]\n2 = { kind = "llvar", max_len = 19, '
                       'encoding = "ascii", content = "n", desc = "Card" }\n')
    message = (b"0200" + b"4000000000000000" + b"0212").hex()
    assert cli.main(["iso", "parse", "--dialect", str(dialect), message]) == 0
    out = capsys.readouterr().out
    assert out.startswith("tiny message, 24 bytes\n") and "  **  Card\n" in out
