"""One ISO 8583 request (pos, xpay) read strictly, for the conformance kit.

The listener's own check comes first and is the same code: `switch iso validate`
(protocols/iso_tools/checking.py) names every field the message class needs that is missing,
every field the dialect cannot read, a missing MAC, and any answer the switch would give at
once. Then the conformance profile: what docs/channels/pos.md marks mandatory or states as a
rule but the listener takes leniently (F18 of a purchase, a card proof on a balance inquiry,
F32 sent always or never by one terminal), what a UnionPay terminal sends on every financial
message (F22, F25, F49), and the values: entry mode, condition code, currency, times, amounts.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any, NamedTuple

from protocols.batch import AFTER_UPLOAD_CODE, batch_number
from protocols.batch import network_code as batch_code
from protocols.cardnumbers import mask_pan
from protocols.channel import FieldError
from protocols.codes import Reason
from protocols.conformance.session import (
    NETWORK,
    SETTLEMENT,
    SIGN_ON,
    UNKNOWN,
    UPLOAD,
    Answered,
    Finding,
    Reading,
    around,
    clock_finding,
)
from protocols.iso8583 import Codec, Iso8583Error, get_codec
from protocols.iso_channel import card_of, id_kind, institution, request_class, request_mti
from protocols.iso_envelope import ENVELOPES, EnvelopeError
from protocols.iso_fallbacks import fill
from protocols.iso_mac import mac_field
from protocols.iso_session import SessionAction, network_code, session_action
from protocols.iso_tools.checking import SETTLEMENT_CLASS, UPLOAD_CLASS, validate
from protocols.iso_tools.parsing import Problem
from protocols.messages import MessageClass

# Fields the kit requires of each message class besides the listener's required ones.
PROFILE: dict[MessageClass, tuple[str, ...]] = {
    MessageClass.AUTH: ("18", "22", "25", "49"),
    MessageClass.SALE: ("18", "22", "25", "49"),
    MessageClass.INQUIRY: ("22", "25", "49"),
    MessageClass.CAPTURE: ("22", "25", "49"),
    MessageClass.REFUND: ("22", "25", "49"),
    MessageClass.REVERSAL: ("22", "25", "49"),
}
# F22 POS entry mode, n3: how the PAN was read (digits 1-2), PIN capability (digit 3).
ENTRY_MODES = {"01": "manual", "02": "magnetic stripe", "05": "chip", "07": "contactless chip",
               "90": "full magnetic stripe", "91": "contactless magnetic stripe",
               "95": "chip, unreliable CVV", "96": "stored"}
# x-pay (docs/channels/xpay.md): a wallet reads the token contactless or in the app.
WALLET_ENTRY_MODES = {"07": "contactless", "81": "in-app / e-commerce"}
PIN_CAPABILITIES = "012"  # unknown, can accept a PIN, cannot
PRE_AUTH_CONDITION = "06"  # F25 of a pre-authorization and its completion
CURRENCY = "156"  # the card's currency, CNY: the only one the switch takes
AMOUNT_MAX_FEN = 10_000_000  # 100,000 yuan: above it the switch answers 13
MAC_REFUSALS = frozenset({Reason.MAC_MISMATCH, Reason.MAC_MISSING})

class Profile(NamedTuple):
    """What differs between the ISO 8583 channels."""

    entry_modes: dict[str, str]  # F22 digits 1-2
    proofs: tuple[str, ...]  # fields of which a balance inquiry carries one
    proof_words: str
    signs_on: bool  # a terminal signs on before money (an x-pay wallet does not)


PROFILES = {
    "pos": Profile(ENTRY_MODES, ("14", "35"), "the card's expiry, or track 2 in F35",
                   True),
    "xpay": Profile(WALLET_ENTRY_MODES, ("55",), "the token's cryptogram data in F55",
                    False),
}
AMOUNT_CLASSES = (MessageClass.AUTH, MessageClass.SALE, MessageClass.CAPTURE,
                  MessageClass.REFUND)


class IsoRules:
    """The reading of one listener's requests: its channel (pos, xpay) and dialect."""

    def __init__(self, channel: str = "pos", dialect: str | Codec = "iso87ascii",
                 mac_off: bool = False, envelope: str = "none") -> None:
        """`envelope`: what comes before the MTI (protocols/iso_envelope.py ENVELOPES)."""
        self.channel = channel
        self.codec = dialect if isinstance(dialect, Codec) else get_codec(dialect)
        self.mac_off = mac_off
        self.envelope = ENVELOPES[envelope]
        self.profile = PROFILES[channel]
        self.sends_acquirer: dict[str, tuple[bool, str]] = {}  # F41 -> (sends F32, label)
        self.sessions: set[str] = set()  # ACQUIRER:TERMINAL signed on (0810 00)
        self.uploaded: set[str] = set()  # ACQUIRER:TERMINAL:BATCH with a 0320 seen

    def read(self, body: bytes, now: datetime.datetime) -> Reading:
        validation = validate(body, self.channel, self.codec, mac_off=self.mac_off,
                              envelope=self.envelope.name)
        findings = [problem_finding(problem) for problem in validation.problems]
        try:
            message = self.codec.decode(self.envelope.split(body)[1])
        except EnvelopeError:  # named by the validation
            return Reading(UNKNOWN, "message without its TPDU or header", findings)
        except Iso8583Error as error:  # what was read before the defect may say its kind
            return self._partly(error.decoded, findings)
        mti = message["t"]
        if mti[1:3] == "80":
            return Reading(NETWORK, f"{mti} {validation.message_class} network code "
                           f"{network_code(message) or '-'}", findings,
                           content=content_of(message), exact=mti[3] == "0",
                           action=validation.message_class)
        if validation.message_class in (SETTLEMENT_CLASS, UPLOAD_CLASS):
            reading = self._batch(message, validation.message_class, findings)
        elif not validation.message_class:
            return Reading(UNKNOWN, f"{mti} not taken", findings)
        else:
            kind = MessageClass(validation.message_class)
            # Named as the switch names it: F7 from F13 + F12 where the dialect reads it so
            # (the validation named any source at fault); a repeat carries what came.
            read, _ = fill(self.codec.dialect, message)
            reading = identify(read, kind, findings)
            reading.content = content_of(message)
            self._profile(message, kind, reading, now)
        self._session(message, reading)
        return reading

    def _batch(self, message: dict, kind: str, findings: list[Finding]) -> Reading:
        """A settlement or an upload: its batch; a settlement after upload needs an upload."""
        batch = batch_number(self.codec.dialect, message)
        scope = f"{terminal_of(message)}:{batch}"
        reading = Reading(SETTLEMENT if kind == SETTLEMENT_CLASS else UPLOAD,
                          f"{message['t']} {kind} batch {batch or '-'} STAN "
                          f"{message.get('11') or '-'}", findings, content=content_of(message))
        if reading.kind == UPLOAD:
            self.uploaded.add(scope)
        elif batch_code(self.codec.dialect, message) == AFTER_UPLOAD_CODE and (
                scope not in self.uploaded):
            findings.append(Finding("F60.3", "201 (a settlement), or 202 after the batch's "
                                    "uploads (0320)", f"202 with no upload of batch {batch}"))
        return reading

    def _session(self, message: dict, reading: Reading) -> None:
        """docs/channels/pos.md: a UnionPay terminal signs on before money, then MACs it
        under the session MAK (a refusal of the master key is the answer's finding)."""
        terminal = terminal_of(message)
        reading.signed_on = terminal in self.sessions
        if not reading.signed_on and self.profile.signs_on and not self.mac_off:
            reading.findings.append(Finding(
                SIGN_ON, "an 0800 sign-on (network code 001) answered 00 before money",
                f"terminal {terminal} before its sign-on"))

    def _partly(self, message: dict, findings: list[Finding]) -> Reading:
        """A message the dialect cannot read to its end: its kind and ids, when the fields
        read before the defect say them."""
        try:
            kind = request_class(message)
        except (FieldError, KeyError, IndexError):
            return Reading(UNKNOWN, f"{message.get('t', 'undecodable')} message", findings)
        return identify(message, kind, findings)

    def answer(self, body: bytes) -> Answered:
        try:
            message = self.codec.decode(self.envelope.split(body)[1])
        except EnvelopeError as error:
            return Answered("", f"answer without its TPDU or header: {error}", {})
        except Iso8583Error as error:
            return Answered("", f"answer undecodable: {error}", {})
        reason = message.get("44", "")
        if message.get("t", "")[1:3] == "81":
            self._session_answered(message)
        return Answered(message.get("39", ""), reason,
                        {k: v for k, v in message.items() if k not in ("t", "64", "128")},
                        *fault_of(message, reason))

    def _session_answered(self, answer: dict) -> None:
        action = session_action(answer)
        if answer.get("39") != "00" or action is None:
            return
        if action is SessionAction.SIGN_OFF:
            self.sessions.discard(terminal_of(answer))
        else:
            self.sessions.add(terminal_of(answer))

    def _profile(self, message: dict, kind: MessageClass, reading: Reading,
                 now: datetime.datetime) -> None:
        findings = reading.findings
        named = {finding.field.split()[0] for finding in findings}
        # A field the dialect reads from others (F18 from F42 on unionpay) is there when
        # they are; when they are at fault, the validation named them.
        read, errors = fill(self.codec.dialect, message)
        named |= {f"F{error.field}" for error in errors}
        for number in PROFILE[kind]:
            if read.get(number, "") == "" and f"F{number}" not in named:
                findings.append(field_finding(self.codec, number, "present", "nothing"))
        for check in (entry_mode, condition, currency, amount, card_proof):
            finding = check(message, kind, self.profile)
            if finding is not None:
                findings.append(finding)
        findings.extend(times(message, now))
        finding = self._acquirer_always_or_never(message, reading)
        if finding is not None:
            findings.append(finding)

    def _acquirer_always_or_never(self, message: dict, reading: Reading) -> Finding | None:
        """docs/channels/pos.md: a terminal sends F32 always, or never."""
        terminal = message.get("41", "").rstrip()
        sends = "32" in message
        first = self.sends_acquirer.setdefault(terminal, (sends, reading.label))
        if first[0] == sends:
            return None
        return Finding("F32", f"F32 {'sent' if first[0] else 'absent'} as in {first[1]} "
                       f"(terminal {terminal!r} sends it always or never)",
                       "sent" if sends else "absent")


def terminal_of(message: dict) -> str:
    """ACQUIRER:TERMINAL, as the switch keys a terminal's session and batches."""
    return f"{institution(message.get('32', ''))}:{message.get('41', '').rstrip()}"


def identify(message: Mapping[str, Any], kind: MessageClass, findings: list[Finding]) -> Reading:
    """The message's ids: acquirer + terminal + STAN (the transaction), + F7 (the message)."""
    acquirer = institution(message.get("32", ""))
    terminal = message.get("41", "").rstrip()
    stan, transmitted = message.get("11", ""), message.get("7", "")
    txn = f"{acquirer}:{terminal}:{stan}"
    reading = Reading(kind.value, f"{message['t']} {kind.value} STAN {stan or '-'}", findings,
                      id=f"{id_kind(kind)}:{txn}:{transmitted}" if stan and transmitted
                      else "", txn=txn if stan else "", content=content_of(message),
                      exact=message["t"][3] == "0", balance=kind is MessageClass.INQUIRY)
    try:
        reading.card = mask_pan(card_of(message)[0])
    except FieldError:
        pass
    original = message.get("90", "")
    if original:
        reading.original = f"{acquirer}:{terminal}:{original[4:10]}"
        reading.original_label, reading.original_field = f"STAN {original[4:10]}", "F90"
    elif kind is MessageClass.REVERSAL and stan:
        reading.original = txn
        reading.original_label, reading.original_field = f"STAN {stan}", "F11 (no F90)"
    text = message.get("4", "")
    if text.isdigit():
        reading.amount_fen, reading.amount_field = int(text), "F4"
    reading.whole_reversal = kind is MessageClass.REVERSAL and not message.get("95")
    return reading


def content_of(message: dict) -> dict[str, Any]:
    """What a repeat carries unchanged: every field but the MAC, the MTI as its original's
    (a repeat may say 0201 for 0200)."""
    content = {k: v for k, v in message.items() if k not in ("64", "128")}
    content["t"] = request_mti(message["t"])
    return content


def problem_finding(problem: Problem) -> Finding:
    """A problem `switch iso validate` names, as a finding."""
    where = f"F{problem.field}" if problem.field.isdigit() else problem.field
    if problem.name:
        where += f" ({problem.name})"
    if problem.reason.startswith("field_") and problem.reason.endswith("_missing"):
        return Finding(where, "present", "nothing")
    if problem.field == "answer":
        return Finding(where, "a message the switch accepts", problem.reason)
    return Finding(where, "a value the spec allows", problem.reason)


def field_finding(codec: Codec, number: str, expected: str, got: str) -> Finding:
    spec = codec.dialect.field(int(number))
    return Finding(f"F{number} ({spec.desc})" if spec else f"F{number}", expected, got)


def entry_mode(message: dict, kind: MessageClass, profile: Profile) -> Finding | None:
    value = message.get("22", "")
    if not value or (value[:2] in profile.entry_modes and value[2:] in tuple(PIN_CAPABILITIES)):
        return None
    return Finding("F22", f"an entry mode ({'/'.join(profile.entry_modes)}) and a PIN "
                   f"capability ({'/'.join(PIN_CAPABILITIES)})", repr(value))


def condition(message: dict, kind: MessageClass, profile: Profile) -> Finding | None:
    value = message.get("25", "")
    if not value or kind not in (MessageClass.AUTH, MessageClass.CAPTURE) or (
            value == PRE_AUTH_CONDITION):
        return None
    return Finding("F25", f"{PRE_AUTH_CONDITION} (a pre-authorization or its completion)",
                   repr(value))


def currency(message: dict, kind: MessageClass, profile: Profile) -> Finding | None:
    value = message.get("49", "")
    if not value or value == CURRENCY:
        return None
    return Finding("F49", f"{CURRENCY} (CNY)", repr(value))


def amount(message: dict, kind: MessageClass, profile: Profile) -> Finding | None:
    value = message.get("4", "")
    if kind not in AMOUNT_CLASSES or not value.isdigit() or 0 < int(value) <= AMOUNT_MAX_FEN:
        return None
    return Finding("F4 (amount)", f"1..{AMOUNT_MAX_FEN} fen", value)


def card_proof(message: dict, kind: MessageClass, profile: Profile) -> Finding | None:
    if kind is not MessageClass.INQUIRY or any(message.get(f) for f in profile.proofs):
        return None
    return Finding(f"F{profile.proofs[0]}", f"{profile.proof_words} (a balance inquiry proves "
                   "the card)", "nothing")


def times(message: dict, now: datetime.datetime) -> list[Finding]:
    found = []
    if message.get("7"):
        found.append(clock_finding("F7", message["7"], "%m%d%H%M%S", now, around(now)))
    if message.get("13"):
        date = message["13"] + message.get("12", "000000")
        found.append(clock_finding("F13 F12", date, "%m%d%H%M%S", now, around(now)))
    if message.get("14"):
        expiry = message["14"]
        if not (len(expiry) == 4 and expiry.isdigit() and 1 <= int(expiry[2:]) <= 12):
            found.append(Finding("F14", "YYMM", repr(expiry)))
    return [finding for finding in found if finding is not None]


def fault_of(answer: dict, reason: str) -> tuple[str, str]:
    """Where a refusal puts the fault, and what was expected there."""
    if reason in MAC_REFUSALS:
        return f"F{mac_field(answer)} (MAC)", "the MAC under the terminal's key (F32 + F41)"
    if reason == Reason.NOT_SIGNED_ON:
        return SIGN_ON, "money MAC'd under the session MAK (F62 of the sign-on's 0810)"
    if reason == Reason.TERMINAL_UNKNOWN:
        return "F32 F41 (terminal)", "a terminal the switch has a MAC key for"
    return "answer", "a message the switch accepts"
