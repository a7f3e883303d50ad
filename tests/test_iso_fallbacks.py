"""Fields a terminal leaves out and the switch reads from others (protocols/iso_fallbacks.py,
the dialects' [fallbacks]): the unionpay dialect reads F7 from F13 + F12 and F18 from F42's
characters 8-11; the iso87 dialects read nothing instead. Requests are built by pyiso8583
given UnionPay's layout by hand (tests/test_unionpay_dialect.py), answers read the same way;
the channel sans I/O (the same over TCP: tests/test_unionpay_fallback.py)."""

from __future__ import annotations

import copy
import datetime

import iso8583
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocols.channel import Decoded
from protocols.conformance.iso_rules import IsoRules
from protocols.conformance.session import Session
from protocols.iso8583 import DialectError, FallbackPart, load_dialect
from protocols.iso8583.dialect import dialect_from_dict
from protocols.iso_fallbacks import (
    FallbackError,
    fill,
    left_out,
    read_instead,
    rebuilt,
    with_fallbacks,
)
from protocols.iso_tools import validate
from protocols.pos import PosCodec
from tests.test_pos_support import encode
from tests.test_unionpay_dialect import PEER_SPEC, from_peer, to_peer

UNIONPAY = load_dialect("unionpay")
ISO87 = load_dialect("iso87ascii")
MERCHANT = "898310054110001"  # acquirer 898, area 3100, MCC 5411, serial 0001
# A UnionPay terminal's purchase: no F7, no F18.
SALE = {"t": "0200", "2": "6253680000000018", "3": "000000", "4": "000000012800",
        "11": "000123", "12": "120000", "13": "1129", "22": "051", "25": "00",
        "32": "00010000", "41": "TERM0001", "42": MERCHANT, "49": "156"}


def without(*keys: str, **changes: str) -> dict:
    return {key: value for key, value in SALE.items() if key not in keys} | changes


def peer_bytes(doc: dict) -> bytes:
    return bytes(iso8583.encode(copy.deepcopy(to_peer(doc)), PEER_SPEC)[0])


def decided(doc: dict):
    """The request the unionpay listener (MACs off) decides on, or its answer's fields."""
    out = PosCodec("unionpay").decode_request(peer_bytes(doc))
    if isinstance(out, Decoded):
        return out.request
    return from_peer(iso8583.decode(bytearray(out), PEER_SPEC)[0])


# ---- the shipped data -------------------------------------------------------------------------


def test_the_unionpay_dialect_reads_f7_from_f13_f12_and_f18_from_f42():
    """The bounds themselves: a part moved by one character reads another value."""
    assert [(f.field, f.parts, f.content) for f in UNIONPAY.fallbacks] == [
        ("7", (FallbackPart("13", 1, 4, True), FallbackPart("12", 1, 6, True)), "n"),
        ("18", (FallbackPart("42", 8, 4, False),), "n")]


def test_the_iso87_dialects_read_nothing_instead():
    for name in ("iso87ascii", "iso87binary"):
        assert load_dialect(name).fallbacks == ()
    message = without()
    assert with_fallbacks(ISO87, message) is message


# ---- what the switch reads --------------------------------------------------------------------


def test_a_unionpay_sale_without_f7_and_f18_is_named_by_f13_f12_and_its_mcc_read_from_f42():
    request = decided(SALE)
    assert request.transmitted_at == "1129120000"
    assert request.idempotency_key == "pos:txn:10000:TERM0001:000123:1129120000"
    assert request.mcc == "5411" and request.merchant_id == MERCHANT


def test_the_mcc_is_characters_8_to_11_exactly():
    """Neighbours that are not digits: a slice one character off would fail or differ."""
    assert decided(without(**{"42": "898310X5411Y001"})).mcc == "5411"
    assert decided(without(**{"42": "8983100123Z0001"}))["44"] == "format:field_42"


def test_fields_sent_win_over_what_they_would_be_read_from():
    request = decided(without(**{"7": "1130235959", "18": "5812"}))
    assert (request.transmitted_at, request.mcc) == ("1130235959", "5812")
    # F18 sent: F42 is the merchant id only, whatever it holds.
    assert decided(without(**{"18": "5812", "42": "NOT A UNIONPAY "})).mcc == "5812"


@pytest.mark.parametrize("doc, reason", [
    (without("12", "13"), "field_7_missing"),  # neither F7 nor F13 + F12
    (without("12"), "field_12_missing"),  # F13 without F12
    (without("13"), "field_13_missing"),
    (without(**{"42": "8983100541 0001"}), "format:field_42"),  # a space in the MCC
    (without(**{"42": f"{'8983100':<15}"}), "format:field_42"),  # too short to carry one
    (without(**{"42": f"{'8983100541':<15}"}), "format:field_42"),  # padding in the MCC
], ids=["no F7 nor F13+F12", "no F12", "no F13", "space in MCC", "F42 short",
        "MCC cut by padding"])
def test_what_cannot_be_read_is_30_naming_the_field(doc, reason):
    answer = decided(doc)
    assert (answer["t"], answer["39"], answer["44"]) == ("0210", "30", reason)
    assert "7" not in answer and "18" not in answer  # the answer echoes what came


def test_without_f42_either_the_mcc_stays_absent_for_the_engine_to_refuse():
    assert decided(without("42")).mcc == ""  # switch/engine.py: 30 mcc_missing on a sale


def test_a_reversal_is_named_by_its_own_f13_f12_and_its_original_by_stan():
    reversal = without("3", **{"t": "0400", "12": "120030", "37": "120000000123"})
    request = decided(reversal)
    assert request.idempotency_key == "pos:reversal:10000:TERM0001:000123:1129120030"
    assert request.original_ref == "pos:10000:TERM0001:000123"


def test_fill_carries_on_past_what_it_cannot_read():
    filled, errors = fill(UNIONPAY, without("12", **{"42": "89831005A110001"}))
    assert "7" not in filled and "18" not in filled
    assert [(e.field, e.source, e.reason) for e in errors] == [
        ("7", "12", "field_12_missing"), ("18", "42", "format:field_42")]
    with pytest.raises(FallbackError, match="field_12_missing"):
        with_fallbacks(UNIONPAY, without("12"))


@pytest.mark.parametrize("sources, source", [
    ({"13": "112", "12": "120000"}, "13"),  # a whole field one character short
    ({"13": "1129", "12": "1200000"}, "12"),  # ... or long
    ({"42": "8983100"}, "42"),  # nothing where the MCC goes
    ({"42": "89831005"}, "42"),  # one character of it
])
def test_sources_of_another_width_are_refused(sources, source):
    """Messages from the codec have their fields' widths; a message from elsewhere may not."""
    with pytest.raises(FallbackError, match=f"^format:field_{source}$"):
        with_fallbacks(UNIONPAY, sources)


def test_read_instead_names_the_sources_for_people():
    assert read_instead(UNIONPAY, SALE) == {"7": "F13 + F12", "18": "F42 characters 8-11"}
    assert read_instead(UNIONPAY, without("42", **{"7": "1129120000"})) == {}


def test_a_client_leaves_out_what_the_switch_reads_the_same_from_others():
    sent = SALE | {"7": "1129120000", "18": "5411"}
    assert left_out(UNIONPAY, sent) == SALE
    other = SALE | {"7": "1129120001", "18": "5812"}  # they differ: both are sent
    assert left_out(UNIONPAY, other) == other
    unreadable = sent | {"42": "NOT A UNIONPAY "}  # no MCC there: F18 is sent
    assert left_out(UNIONPAY, unreadable) == without("7", **{"18": "5411",
                                                              "42": "NOT A UNIONPAY "})
    assert left_out(ISO87, sent) == sent


def test_a_message_with_nothing_to_add_is_read_as_it_came():
    """Not a copy: nothing is added to what the answer echoes, nothing is copied per request."""
    sent = without("42", **{"7": "1129120000"})  # F7 sent; no source of F18 either
    assert with_fallbacks(UNIONPAY, sent) is sent
    assert fill(UNIONPAY, sent) == (sent, [])
    for fallback in UNIONPAY.fallbacks:
        assert rebuilt(fallback, {}) == ""


# ---- switch iso validate and the conformance kit read the same -----------------------------

KIT_NOW = datetime.datetime(2026, 11, 29, 12, 0, tzinfo=datetime.UTC)  # SALE's F13 + F12
FRONT = bytes.fromhex("6000030000" "602200000000")  # TPDU, message header


def kit_reading(doc: dict, rules: IsoRules | None = None):
    """The kit's reading of `doc` sent framed by a UnionPay terminal (MACs off)."""
    rules = rules or IsoRules("pos", "unionpay", mac_off=True, envelope="tpdu+header")
    return rules.read(FRONT + peer_bytes(doc), KIT_NOW)


def test_the_kit_names_a_unionpay_sale_by_f13_f12_and_finds_its_mcc_in_f42():
    reading = kit_reading(SALE)
    assert reading.findings == []  # F18 (required of a purchase) is there: in F42
    assert reading.id == "txn:10000:TERM0001:000123:1129120000"
    assert "7" not in reading.content and "18" not in reading.content  # what came


def test_the_kit_names_a_source_at_fault_once_on_itself():
    findings = [str(f) for f in kit_reading(without(**{"42": "8983100SHOP0001"})).findings]
    assert findings == ["F42 (Card Acceptor Identification Code; the absent F18 is read from "
                        "F42 characters 8-11): expected a value the spec allows, got "
                        "format:field_42"]  # not F18 missing besides
    findings = [str(f) for f in kit_reading(without("12")).findings]
    assert findings == ["F12 (Time, Local Transaction; the absent F7 is read from F13 + F12): "
                        "expected present, got nothing"]


def test_an_exact_repeat_without_f7_is_a_repeat_and_another_f12_another_message():
    session = Session(IsoRules("pos", "unionpay", mac_off=True, envelope="tpdu+header"))
    first = session.request(FRONT + peer_bytes(SALE), KIT_NOW)
    again = session.request(FRONT + peer_bytes(SALE), KIT_NOW)
    other = session.request(FRONT + peer_bytes(without(**{"12": "120001"})), KIT_NOW)
    assert again.repeat_of is first and not again.findings
    assert other.repeat_of is None and [f.field for f in other.findings] == ["id"]


def test_a_unionpay_sign_on_needs_no_time_an_iso87_one_needs_f7():
    sign_on = {"t": "0800", "11": "000001", "32": "00010000", "41": "TERM0001",
               "60": "00000001001"}
    assert validate(peer_bytes(sign_on), "pos", "unionpay", mac_off=True).problems == []
    iso87 = validate(encode(sign_on, mac_key=None), "pos", "iso87ascii", mac_off=True)
    assert [(p.field, p.reason) for p in iso87.problems] == [("7", "field_7_missing")]


def test_the_kit_takes_off_the_tpdu_and_names_one_that_is_not():
    reading = kit_reading(SALE, IsoRules("pos", "unionpay", mac_off=True, envelope="tpdu"))
    assert reading.findings  # a TPDU then no header: the header's bytes read as the MTI
    rules = IsoRules("pos", "unionpay", mac_off=True, envelope="tpdu+header")
    bad = rules.read(b"\x61" + FRONT[1:] + peer_bytes(SALE), KIT_NOW)
    assert (bad.kind, [f.field for f in bad.findings]) == ("unknown", ["tpdu"])


# ---- garbage in, a clean 30 out ---------------------------------------------------------------


def expected_refusal(doc: dict) -> str:
    """What the listener must answer `doc`, worked out here from docs/channels/pos.md: ""
    when it reads it. The first unreadable fallback (F7's, then F18's) comes first; then a
    transmission time missing altogether."""
    errors = []
    if "7" not in doc and ("13" in doc) != ("12" in doc):
        errors.append(f"field_{'13' if '13' not in doc else '12'}_missing")
    mcc = doc.get("42", "")[7:11]
    if "18" not in doc and "42" in doc and not (len(mcc) == 4 and mcc.isdigit()):
        errors.append("format:field_42")
    if errors:
        return errors[0]
    if not {"7", "12", "13"} & doc.keys():
        return "field_7_missing"
    return ""


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sets(st.sampled_from(["7", "12", "13", "18", "42"])),
       st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=15,
               max_size=15),
       st.text("0123456789", min_size=4, max_size=4),
       st.text("0123456789", min_size=6, max_size=6))
def test_any_mix_of_sources_is_read_or_refused_30_naming_the_field(dropped, merchant, date,
                                                                   time_of_day):
    doc = SALE | {"7": date + time_of_day, "12": time_of_day, "13": date, "18": "5999",
                  "42": merchant}
    doc = {key: value for key, value in doc.items() if key not in dropped}
    out, refusal = decided(doc), expected_refusal(doc)
    if refusal:
        assert (out["39"], out["44"]) == ("30", refusal)
        return
    assert out.transmitted_at == doc.get("7", date + time_of_day)
    assert out.mcc == doc.get("18", merchant[7:11] if "42" in doc else "")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(min_size=1, max_size=120))
def test_garbage_after_a_sale_s_mti_is_answered_never_raised(tail):
    out = PosCodec("unionpay").decode_request(b"\x02\x00" + tail)
    if not isinstance(out, Decoded):
        answer = from_peer(iso8583.decode(bytearray(out), PEER_SPEC)[0])
        assert answer["t"] == "0210" and len(answer["39"]) == 2


# ---- the dialect file: every guard ------------------------------------------------------------


def dialect_with(fallbacks: dict) -> dict:
    fields = {"7": {"kind": "fixed", "max_len": 10, "encoding": "ascii", "content": "n"},
              "12": {"kind": "fixed", "max_len": 6, "encoding": "ascii", "content": "n"},
              "13": {"kind": "fixed", "max_len": 4, "encoding": "ascii", "content": "n"},
              "42": {"kind": "fixed", "max_len": 15, "encoding": "ascii", "content": "ans"},
              "44": {"kind": "llvar", "max_len": 25, "encoding": "ascii", "content": "ans"},
              "64": {"kind": "fixed", "max_len": 8, "encoding": "binary", "content": "b"}}
    return {"name": "x", "fields": fields, "fallbacks": fallbacks}


F7_PARTS = [{"field": 13}, {"field": 12}]


def test_well_formed_fallbacks_load():
    whole = dialect_from_dict(dialect_with({"7": F7_PARTS})).fallbacks
    assert whole[0].parts == (FallbackPart("13", 1, 4, True), FallbackPart("12", 1, 6, True))
    part = dialect_from_dict(dialect_with({"12": [{"field": 42, "at": 10, "size": 6}]}))
    assert part.fallbacks[0].parts == (FallbackPart("42", 10, 6, False),)


@pytest.mark.parametrize("fallbacks, problem", [
    ({"7": [{"field": 13}, {"field": 12}, {"field": 13}]}, "make 14 characters, the field is 10"),
    ({"7": [{"field": 13}]}, "make 4 characters, the field is 10"),
    ({"44": F7_PARTS}, "not a fixed text or bcd field"),
    ({"64": [{"field": 42, "at": 1, "size": 8}]}, "not a fixed text or bcd field"),
    ({"8": F7_PARTS}, "not a fixed text or bcd field"),
    ({"7": []}, "list of"),
    ({"7": "13+12"}, "list of"),
    ({"7": [13, 12]}, "list of"),
    (["7"], "must be a table"),
    ({"7": [{"field": 7, "at": 1, "size": 10}]}, "another text or bcd field"),
    ({"7": [{"field": 99, "at": 1, "size": 10}]}, "another text or bcd field"),
    ({"7": [{"field": 64, "at": 1, "size": 8}, {"field": 12, "at": 1, "size": 2}]},
     "another text or bcd field"),
    ({"7": [{"field": 44}, {"field": 12, "at": 1, "size": 2}]}, "variable: give 'at'"),
    ({"7": [{"field": 42, "at": 7, "size": 10}]}, "characters 7..16 are past"),
    ({"7": [{"field": 42, "at": 6, "size": 10}]}, None),  # 6..15: the last character fits
    ({"7": [{"field": 42, "at": 0, "size": 10}]}, "positive integers"),
    ({"7": [{"field": 42, "at": 1, "size": 0}, {"field": 42, "at": 1, "size": 10}]},
     "positive integers"),
    ({"7": [{"field": 42, "size": 10}]}, "positive integers"),
    ({"7": [{"field": 42, "at": 1, "size": 10, "width": 1}]}, "unknown keys"),
    ({"7": F7_PARTS, "13": [{"field": 42, "at": 1, "size": 4}]}, "has a fallback of its own"),
])
def test_fallback_mistakes_are_named(fallbacks, problem):
    if problem is None:
        dialect_from_dict(dialect_with(fallbacks))
        return
    with pytest.raises(DialectError, match=problem):
        dialect_from_dict(dialect_with(fallbacks))
