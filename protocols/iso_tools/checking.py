"""Is this request one the pos (or xpay) listener takes? `switch iso validate`, as data.

One source: the dialect decides the format (protocols/iso8583), the channel's own code
decides the rest. The required fields of the message class are the list the channel checks
(protocols/iso_channel.py required_fields), so every missing one is named at once; then the
channel's server side reads the request exactly as the switch would (`decode_request`) and
any answer it would give at once (30, 12, 34, A0, ...) is one more problem.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import msgspec

from protocols.batch import SETTLEMENT_KIND, UPLOAD_KIND, BatchWork
from protocols.channel import Decoded, FieldError
from protocols.codes import MEANINGS, Code, Reason
from protocols.framing import FramingError
from protocols.iso8583 import Codec, Iso8583Error, get_codec
from protocols.iso_channel import (
    IsoChannel,
    card_of,
    must_be_signed,
    request_class,
    required_fields,
)
from protocols.iso_envelope import EnvelopeError
from protocols.iso_fallbacks import FallbackError, fill, read_instead, sources_words
from protocols.iso_mac import AnyTerminal, MacKey, as_key, mac_field
from protocols.iso_session import SessionAction, network_code, session_action
from protocols.iso_tools.parsing import Problem, unwrap
from protocols.messages import AuthRequest
from protocols.pos import PosCodec
from protocols.xpay import XpayCodec

CHANNELS: dict[str, type[IsoChannel]] = {"pos": PosCodec, "xpay": XpayCodec}
# Classes that are not money (docs/channels/pos.md): their names and required fields. A sign-on,
# key change or sign-off also needs its network code (F70, or F60.3 after 60.1 `00`).
SESSION_CLASSES = {SessionAction.SIGN_ON: "sign-on", SessionAction.KEY_CHANGE: "key change",
                   SessionAction.SIGN_OFF: "sign-off"}
NETWORK_CLASS = "network"  # another 0800: an echo test
SETTLEMENT_CLASS, UPLOAD_CLASS = "settlement", "batch upload"
NETWORK_REQUIRED = ("7", "11")
SESSION_REQUIRED = (*NETWORK_REQUIRED, "41")  # the terminal whose session it is
BATCH_REQUIRED = {SETTLEMENT_KIND: ("11", "41", "48", "60"),
                  UPLOAD_KIND: ("2", "3", "4", "11", "41", "60")}
RequestChecks = Callable[[AuthRequest], tuple[str, str] | None]  # (code, reason) or None


class Validation(msgspec.Struct):
    channel: str
    message_class: str = ""  # auth, sale, ... ("" when the MTI or F3 is not taken)
    problems: list[Problem] = []
    request: AuthRequest | None = None  # what the switch would decide on, when no problem
    # Absent fields the switch reads from others, and from which: {"7": "F13 + F12"}.
    read_instead: dict[str, str] = {}

    @property
    def ok(self) -> bool:
        return not self.problems


def validate(data: bytes, channel: str = "pos", dialect: str | Codec = "iso87ascii",
             header: str = "", mac_key: MacKey | bytes | None = None,
             request_checks: RequestChecks | None = None, mac_off: bool = False,
             envelope: str = "none") -> Validation:
    """Every problem the listener of `channel` would find in `data`, the request it would
    decide on when there is none. `request_checks` adds the decision's own checks of the
    canonical request (the switch's engine passes its format and amount checks).

    With `mac_key` the MAC is checked with it (as the terminal's key); without, a MAC is
    not checked, but a request the listener refuses for carrying none is a problem, unless
    `mac_off` (the listener's `mac = "off"`)."""
    codec = dialect if isinstance(dialect, Codec) else get_codec(dialect)
    key = as_key(mac_key)
    server = CHANNELS[channel](codec.dialect, keys=AnyTerminal(key) if key else None)
    out = Validation(channel)
    try:
        body, _ = unwrap(data, header, envelope)
        message = codec.decode(body)
    except FramingError as error:
        return Validation(channel, problems=[Problem("header", 0, str(error))])
    except EnvelopeError as error:
        return Validation(channel, problems=[Problem(error.part, 0, error.reason)])
    except Iso8583Error as error:
        spec = codec.dialect.field(int(error.field)) if error.field.isdigit() else None
        out.problems.append(Problem(error.field, error.offset, error.reason,
                                    spec.desc if spec else ""))
        return out
    out.message_class, out.problems = requirements(codec, message)
    out.read_instead = read_instead(codec.dialect, message)
    if out.message_class in SESSION_CLASSES.values():
        return out  # decided with the terminal's master key: 00 with F62, or 58
    unsigned = must_be_signed(message) and server.mac.given(message) is None
    if key is None and not mac_off and unsigned:
        out.problems.append(Problem(mac_field(message), None, f"{Reason.MAC_MISSING}: the "
                                    f"listener answers {Code.MAC_FAILURE} (unless its mac is "
                                    "off: --mac-off)", "MAC"))
    verdict = server.decode_request(body)
    if isinstance(verdict, Decoded):
        refused = request_checks(verdict.request) if request_checks else None
        if refused:
            out.problems.append(answered(*refused))
        else:
            out.request = verdict.request
        return out
    if isinstance(verdict, BatchWork):  # a settlement or upload: decided with the batch
        out.message_class = SETTLEMENT_CLASS if verdict.kind == SETTLEMENT_KIND else UPLOAD_CLASS
        return out
    answer = codec.decode(verdict)  # the answer the switch would send at once
    code, reason = answer.get("39", ""), answer.get("44", "")
    if code != Code.APPROVED and reason not in {problem.reason for problem in out.problems}:
        out.problems.append(answered(code, reason))
    return out


def answered(code: str, reason: str) -> Problem:
    words = MEANINGS.get(code, "")
    return Problem("answer", None, f"the switch answers {code} {reason}: {words}")


def requirements(codec: Codec, message: dict) -> tuple[str, list[Problem]]:
    """The message class, and a problem for each field the class needs that is missing."""
    kind = message["t"][1:3]
    if kind == "80":
        action = session_action(message)
        # The switch names no transaction by an 0800's time: a field the dialect's terminals
        # leave out (F7 on unionpay) is not asked of one.
        left_out = {fallback.field for fallback in codec.dialect.fallbacks}
        needed = [field for field in (SESSION_REQUIRED if action else NETWORK_REQUIRED)
                  if field not in left_out]
        problems = missing(codec, message, needed)
        if not network_code(message):
            problems.append(Problem("70", None, Reason.FIELD_MISSING.format(field=70),
                                    "network code (F70, or F60.3)"))
        return (SESSION_CLASSES[action] if action else NETWORK_CLASS), problems
    if kind in BATCH_REQUIRED:
        name = SETTLEMENT_CLASS if kind == SETTLEMENT_KIND else UPLOAD_CLASS
        return name, missing(codec, message, BATCH_REQUIRED[kind])
    try:
        message_class = request_class(message)
    except FieldError:  # not taken: the channel's answer says
        return "", []
    # Money is read as the switch reads it: a field the dialect reads from others (F7 from
    # F13 + F12 on unionpay) is there when they are; when they are there only in part, or
    # do not make a value, the source at fault is the problem.
    read, errors = fill(codec.dialect, message)
    problems = [fallback_problem(codec, error) for error in errors]
    try:
        card_of(message)
    except FieldError as error:
        problems.append(Problem("2", None, error.reason, "PAN, or track 2 in F35"))
    problems += missing(codec, read, required_fields(message_class, read),
                        {error.field for error in errors})
    return message_class.value, problems


def fallback_problem(codec: Codec, error: FallbackError) -> Problem:
    """F12 or F42 at fault where the switch reads an absent F7 or F18 from it."""
    spec = codec.dialect.field(int(error.source))
    name = f"{spec.desc}; " if spec else ""
    return Problem(error.source, None, error.reason,
                   f"{name}the absent F{error.field} is read from {error.sources}")


def missing(codec: Codec, message: Mapping, fields, unreadable: set[str] = frozenset()
            ) -> list[Problem]:
    """A problem for each of `fields` the message lacks (but those it has sources of that
    are already a problem: `unreadable`)."""
    instead = {fallback.field: sources_words(fallback) for fallback in codec.dialect.fallbacks}
    problems = []
    for field in fields:
        if message.get(field, "") == "" and field not in unreadable:
            spec = codec.dialect.field(int(field))
            name = spec.desc if spec else ""
            if field in instead:
                name += f"; or {instead[field]}"
            problems.append(Problem(field, None, Reason.FIELD_MISSING.format(field=field),
                                    name))
    return problems
