"""`switch iso parse | build | validate | explain`: the offline ISO 8583 toolbox.

The work is done by protocols/iso_tools (pure functions returning data); this module reads
the input, formats the answers and picks the exit code: 0 good, 1 the message has problems
(parse, validate), 2 a usage error (bad hex, a file that cannot be read, a field the dialect
refuses in `build`). Guide: docs/channels/iso-toolbox.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import msgspec

from protocols.cardnumbers import mask_pan
from protocols.codes import DECLINING, Code
from protocols.framing import HEADER_FORMATS
from protocols.iso8583 import Iso8583Error, shipped_dialects
from protocols.iso_envelope import ENVELOPES
from protocols.iso_mac import MacAlgorithm, MacKey
from protocols.iso_presets import PRESETS, preset
from protocols.iso_tools import (
    CHANNELS,
    Explanation,
    Parsed,
    Problem,
    Validation,
    build,
    codes_of_reason,
    explain,
    parse,
    validate,
)
from protocols.iso_tools.hextext import message_from_text
from protocols.iso_tools.parsing import FieldView
from protocols.messages import AuthRequest
from switch import engine
from switch.cli_common import UserError

VALUE_SHOWN_MAX_CHARS = 40  # longer values are cut in the table (--json has them whole)
WIRE_SHOWN_MAX_CHARS = 24  # hex characters of a field's wire bytes in the table


# --- input ---------------------------------------------------------------------------------


def message_bytes(args: argparse.Namespace) -> bytes:
    """The message: hex (or a hex dump) from the argument or stdin (`-`), or the bytes of
    --file."""
    if args.file is not None:
        if args.message:
            raise UserError("give the message as HEX, `-` or --file FILE, not two of them")
        try:
            return args.file.read_bytes()
        except OSError as error:
            raise UserError(f"cannot read {args.file}: {error.strerror}") from None
    if not args.message:
        raise UserError("no message: give it as HEX, `-` (hex on stdin) or --file FILE")
    text = sys.stdin.read() if args.message == ["-"] else " ".join(args.message)
    try:
        return message_from_text(text)
    except ValueError as error:
        raise UserError(f"{error}; --file FILE reads raw bytes") from None


def mac_key(args: argparse.Namespace) -> MacKey | None:
    key = key_bytes(args.mac_key)
    if key is None:
        return None
    try:
        return MacKey(args.mac_algorithm, key)
    except ValueError as error:
        raise UserError(f"--mac-key: {error}") from None


def key_bytes(value: str | None) -> bytes | None:
    if value is None:
        return None
    try:
        key = bytes.fromhex(value)
    except ValueError:
        raise UserError("--mac-key must be hex (e.g. 00112233445566778899AABBCCDDEEFF)") from None
    if not key:
        raise UserError("--mac-key is empty")
    return key


def wire(args: argparse.Namespace) -> tuple[str, str, str]:
    """(dialect, length header or "", envelope) of --dialect (a dialect or a preset) and
    --header (which wins over the preset's)."""
    chosen = preset(args.dialect)
    return chosen.dialect, args.header or chosen.header or "", chosen.envelope or "none"


# --- parse ---------------------------------------------------------------------------------


def cmd_parse(args: argparse.Namespace) -> int:
    dialect, header, envelope = wire(args)
    parsed = parse(message_bytes(args), dialect, header, mac_key(args), envelope)
    if args.json:
        print(msgspec.json.encode(parsed).decode())
    else:
        print("\n".join(parsed_lines(parsed)))
    if parsed.error is not None:
        print(f"switch iso parse: {problem_line(parsed.error)}", file=sys.stderr)
    return 0 if parsed.ok else 1


def parsed_lines(parsed: Parsed) -> list[str]:
    lines = [f"{parsed.dialect} message, {parsed.size_bytes} bytes"]
    if parsed.front:
        lines.append("front   " + ", ".join(f"{name} {value}"
                                           for name, value in parsed.front.items()))
    if parsed.mti:
        lines.append(f"MTI     {parsed.mti}  {parsed.mti_meaning}")
    if parsed.bitmap is not None:
        bitmap = parsed.bitmap
        which = "primary and secondary (bit 1 set)" if bitmap.secondary else "primary only"
        fields = " ".join(str(number) for number in bitmap.fields)
        lines.append(f"bitmap  {bitmap.wire}  {which}; fields {fields}")
    if parsed.fields:
        width = min(VALUE_SHOWN_MAX_CHARS, max(len(view.value) for view in parsed.fields))
        lines.append(f"{'field':<6} {'at':>4} {'bytes':>5}  {'raw (hex)':<{WIRE_SHOWN_MAX_CHARS}}"
                     f"  {'value':<{width}}  name: meaning")
        for view in parsed.fields:
            lines += field_lines(view, width)
    if parsed.mac is not None:
        mac = parsed.mac
        status = {"not checked": "not checked (no key; --mac-key HEX checks it)",
                  "ok": "ok (checked with the key)",
                  "wrong": f"WRONG: the key gives {mac.expected}",
                  "missing": f"MISSING: the key gives {mac.expected}"}[mac.status]
        lines.append(f"MAC     F{mac.field} {status}")
    return lines


def field_lines(view: FieldView, width: int) -> list[str]:
    wire = cut(view.wire, WIRE_SHOWN_MAX_CHARS)
    about = f"{view.name}: {view.meaning}" if view.meaning else view.name
    lines = [f"F{view.field:<5} {view.offset:>4} {view.size_bytes:>5}  "
             f"{wire:<{WIRE_SHOWN_MAX_CHARS}}  {cut(view.value, width):<{width}}  {about}"]
    tag_width = min(VALUE_SHOWN_MAX_CHARS, max((len(tag.value) for tag in view.tags), default=0))
    for tag in view.tags:
        meaning = f": {tag.meaning}" if tag.meaning else ""
        value = cut(tag.value, tag_width)
        lines.append(f"{'':<20}{tag.tag:<6}{value:<{tag_width}}  {tag.name}{meaning}")
    for name, value in view.subfields.items():
        lines.append(f"{'':<20}{value:<12}  {name}")
    return lines


def cut(text: str, size: int) -> str:
    return text if len(text) <= size else text[: size - 3] + "..."


def problem_line(problem: Problem) -> str:
    where = {"header": "length header", "tpdu": "TPDU", "message_header": "message header",
             "MTI": "MTI", "bitmap": "bitmap",
             "trailing": "after the last field", "answer": "answer"}.get(problem.field,
                                                                        f"F{problem.field}")
    if problem.name:
        where += f" ({problem.name})"
    if problem.offset is not None:
        where += f" at offset {problem.offset}"
    return f"{where}: {problem.reason}"


# --- build ---------------------------------------------------------------------------------


def cmd_build(args: argparse.Namespace) -> int:
    source = "stdin" if args.json == "-" else args.json
    try:
        text = sys.stdin.read() if args.json == "-" else Path(args.json).read_text()
        document = json.loads(text)
    except OSError as error:
        raise UserError(f"cannot read {source}: {error.strerror}") from None
    except json.JSONDecodeError as error:
        raise UserError(f"{source} is not JSON: {error}") from None
    dialect, header, envelope = wire(args)
    try:
        body = build(document, dialect, mac_key(args), ENVELOPES[envelope].client_front())
    except Iso8583Error as error:
        raise UserError(f"{source}: {error}") from None
    if header:
        body = HEADER_FORMATS[header].encode(len(body)) + body
    if args.out:
        args.out.write_bytes(body)
        print(f"{len(body)} bytes written to {args.out}")
    else:
        print(body.hex().upper())
    return 0


# --- validate ------------------------------------------------------------------------------


def engine_checks(request: AuthRequest) -> tuple[str, str] | None:
    """The decision's own checks of a request, before any card or balance (switch/engine.py)."""
    declined = engine.malformed(request)
    if declined is not None:
        return declined.response_code, declined.reason
    return engine.refusal(request)


def cmd_validate(args: argparse.Namespace) -> int:
    dialect, header, envelope = wire(args)
    result = validate(message_bytes(args), args.channel, dialect, header, mac_key(args),
                      engine_checks, args.mac_off, envelope)
    if args.json:
        print(msgspec.json.encode(shown_validation(result)).decode())
    elif result.ok:
        request = result.request
        print(f"valid {args.channel} {result.message_class or 'network management'} request"
              + (f": card {mask_pan(request.card)}, {request.amount_fen} fen, terminal "
                 f"{request.terminal_id}" if request else ""))
    else:
        for problem in result.problems:
            print(problem_line(problem))
    for field, sources in result.read_instead.items():  # not sent: the switch reads others
        print(f"F{field} absent: read from {sources} ({dialect})")
    return 0 if result.ok else 1


def shown_validation(result: Validation) -> Validation:
    if result.request is None:
        return result
    request = msgspec.structs.replace(result.request, card=mask_pan(result.request.card))
    return msgspec.structs.replace(result, request=request)


# --- explain -------------------------------------------------------------------------------


def cmd_explain(args: argparse.Namespace) -> int:
    code, reason = args.code, args.reason or ""
    if not reason and code.upper() not in set(Code):
        codes = codes_of_reason(code)  # one argument, a reason: the codes it comes with
        which = ("whichever declining code the policy file names" if set(codes) == DECLINING
                 else " ".join(codes))
        print(f"reason {code} comes with {which}; `switch iso explain CODE {code}` says more")
        return 0
    result = explain(code, reason)
    if args.json:
        print(msgspec.json.encode(result).decode())
    else:
        print("\n".join(explanation_lines(result)))
    return 0


def explanation_lines(result: Explanation) -> list[str]:
    verdict = "approves" if result.approves else "declines"
    lines = [f"{result.code}  {result.meaning} ({verdict})", f"  next: {result.action}"]
    if result.reason:
        detail = f" ({result.reason_detail})" if result.reason_detail else ""
        family = f", of the family {result.reason_id}" if result.reason_id != result.reason else ""
        lines.append(f"  reason {result.reason}{family}{detail}")
        if result.reason_note:
            lines.append(f"  note: {result.reason_note}")
    else:
        if result.reasons:
            lines.append(f"  reasons it comes with: {', '.join(result.reasons)}")
        if result.policy_reasons:
            lines.append("  and, when the policy file or a forced outcome names this code: "
                         + ", ".join(result.policy_reasons))
    return lines


# --- registration ----------------------------------------------------------------------------


def add_commands(command) -> None:
    iso = command("iso", None, "offline ISO 8583 toolbox (pos, xpay): parse, build, validate, "
                  "explain; docs/channels/iso-toolbox.md")
    actions = iso.add_subparsers(required=True, metavar="ACTION")

    def action(name: str, func, help: str) -> argparse.ArgumentParser:
        sub = actions.add_parser(name, help=help, description=help)
        sub.set_defaults(func=func)
        return sub

    parse_cmd = action("parse", cmd_parse, "decode one message into a table: each field's "
                       "offset, raw bytes, value and meaning; card data masked. Exit 1 when "
                       "it does not decode (what was read is shown, then the defect) or its "
                       "MAC is wrong")
    message_options(parse_cmd)
    parse_cmd.add_argument("--json", action="store_true", help="one JSON object")

    build_cmd = action("build", cmd_build, "encode a message from a JSON object of fields "
                       '({"mti": "0200", "2": "...", "4": 12800, ...}); printed as hex')
    build_cmd.add_argument("--json", required=True, metavar="FILE",
                           help="the JSON object, `-` for stdin")
    dialect_options(build_cmd, "add a length header before the message")
    build_cmd.add_argument("--out", type=Path, metavar="FILE",
                           help="write the bytes here instead of printing hex")

    validate_cmd = action("validate", cmd_validate, "check a request as the channel's "
                          "listener would: the dialect, the fields its message class needs, "
                          "the channel's checks. Exit 0 valid, 1 with a line per problem")
    message_options(validate_cmd)
    validate_cmd.add_argument("--channel", choices=sorted(CHANNELS), default="pos",
                              help="the listener to check against (default pos)")
    validate_cmd.add_argument("--mac-off", action="store_true",
                              help="the listener's mac is off: a missing MAC is no problem "
                              "(without --mac-key a MAC is not checked, but one is required)")
    validate_cmd.add_argument("--json", action="store_true", help="one JSON object")

    explain_cmd = action("explain", cmd_explain, "a response code (F39) and a reason (F44) in "
                         "words, and what the sender does next")
    explain_cmd.add_argument("code", metavar="CODE", help="e.g. 51, 91, A0 (or a reason alone)")
    explain_cmd.add_argument("reason", metavar="REASON", nargs="?",
                             help="e.g. insufficient_open_to_buy, field_11_missing")
    explain_cmd.add_argument("--json", action="store_true", help="one JSON object")


def message_options(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("message", metavar="HEX", nargs="*",
                     help="the message in hex, in one piece or several (30 32 30 30 ...); "
                     "`-` reads hex from stdin")
    sub.add_argument("--file", type=Path, metavar="FILE", help="read the raw bytes from FILE")
    dialect_options(sub, "the input starts with this length header (checked, then skipped)")


def dialect_options(sub: argparse.ArgumentParser, header_help: str) -> None:
    sub.add_argument("--dialect", default="iso87ascii", metavar="NAME|FILE",
                     help=f"{', '.join(shipped_dialects())} (default iso87ascii), a dialect "
                     f"file, or a preset ({', '.join(PRESETS)}: dialect, length header, TPDU "
                     "and message header together)")
    sub.add_argument("--header", choices=sorted(HEADER_FORMATS),
                     help=header_help + " (default: the preset's)")
    sub.add_argument("--mac-key", metavar="HEX", help="the terminal's MAC key: check (parse, "
                     "validate) or add (build) F64/F128")
    sub.add_argument("--mac-algorithm", choices=list(MacAlgorithm),
                     default=MacAlgorithm.HMAC_SHA256,
                     help="the --mac-key's algorithm (default hmac-sha256; the demo "
                     "terminals' are x9.19 and sm4: docs/channels/pos.md)")
