"""The conformance kit's checks, sans-IO (protocols/conformance/): each rule and bound, the
flows' recognisers, the report. Messages are made by the client code adapters use."""

from __future__ import annotations

import datetime
import json
import xml.etree.ElementTree as ElementTree

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols import jd, wechat, xpay
from protocols.conformance import report
from protocols.conformance.flows import REQUIRED, all_passed, outcomes
from protocols.conformance.iso_rules import AMOUNT_MAX_FEN, PROFILE, IsoRules
from protocols.conformance.jd_rules import JdRules
from protocols.conformance.session import CLOCK_SKEW_MAX_S, UNKNOWN, Exchange, Session
from protocols.conformance.wechat_rules import WechatRules
from protocols.demo import (
    DEMO_ACQUIRER,
    DEMO_JD_KEY,
    DEMO_JD_MERCHANT,
    DEMO_POS_MAC,
    DEMO_WECHAT_APPID,
    DEMO_WECHAT_KEY,
    DEMO_WECHAT_MCH_ID,
)
from protocols.iso_client import IsoClient, correlation_id, request_message
from protocols.iso_mac import MacKey
from protocols.iso_session import SessionAction, network_request
from protocols.messages import AuthRequest, AuthResponse, MessageClass
from protocols.pos import PosCodec
from switch import limits
from switch.conform_cli import Kit

NOW = datetime.datetime(2026, 12, 7, 12, 0, 0, tzinfo=datetime.UTC)
F7 = NOW.strftime("%m%d%H%M%S")
PAN = "6253680000000018"
BATCH = "000042"
CLIENT = IsoClient(key=MacKey.parse(*DEMO_POS_MAC))
SERVER = PosCodec()  # no keys: its answers are unsigned
JD_KEY = DEMO_JD_KEY.encode()
JD_SERVER = jd.JdCodec({DEMO_JD_MERCHANT: JD_KEY})


# --- ISO 8583 (pos) ---------------------------------------------------------------------


def iso(kind: MessageClass, amount: int = 1000, stan: str = "000001", original: str = "",
        **changes) -> dict:
    request = AuthRequest(message_class=kind, channel="pos", card=PAN, amount_fen=amount,
                          mcc="5411" if kind in (MessageClass.SALE, MessageClass.AUTH) else "",
                          expiry="3012" if kind is MessageClass.INQUIRY else "")
    fields = request_message(request, stan=stan, transmitted=F7, terminal="TERM0001",
                             acquirer=DEMO_ACQUIRER, original=original)
    if kind in (MessageClass.AUTH, MessageClass.CAPTURE):
        fields["25"] = "06"
    fields |= changes
    return {k: v for k, v in fields.items() if v is not None}


def sign_on(stan: str = "000000", action: str = SessionAction.SIGN_ON) -> dict:
    return network_request(action, stan=stan, transmitted=F7, acquirer=DEMO_ACQUIRER,
                           terminal="TERM0001")


def signed_on(channel: str = "pos") -> IsoRules:
    """The rules after the terminal's sign-on was answered 00 (a terminal that has not
    signed on is a finding on each of its money messages)."""
    rules = IsoRules(channel)
    rules.answer(SERVER.answer(sign_on(), "00"))
    return rules


def ident(fields: dict) -> str:
    return correlation_id(fields["t"], fields["11"], fields["7"])


def settlement(stan: str, totals: str = "0" * 30, code: str = "201", **changes) -> dict:
    fields = {"t": "0500", "7": F7, "11": stan, "32": DEMO_ACQUIRER, "41": "TERM0001",
              "48": totals + "0" * 32, "60": f"00{BATCH}{code}"} | changes
    return {k: v for k, v in fields.items() if v is not None}


def upload(stan: str, **changes) -> dict:
    fields = {"t": "0320", "2": PAN, "3": "000000", "4": f"{1000:012d}", "11": stan,
              "32": DEMO_ACQUIRER, "41": "TERM0001", "60": f"00{BATCH}201"} | changes
    return {k: v for k, v in fields.items() if v is not None}


def sent(session: Session, fields: dict, code: str | None = "00") -> Exchange:
    """The message sent; answered `code` (None: not answered)."""
    exchange = session.request(CLIENT.encode(fields), NOW)
    if code is not None:
        session.answered(exchange, SERVER.answer(fields, code))
    return exchange


def read(fields: dict, rules: IsoRules | None = None) -> list[str]:
    reading = (rules or signed_on()).read(CLIENT.encode(fields), NOW)
    return [str(finding) for finding in reading.findings]


@pytest.mark.parametrize("kind", list(MessageClass))
def test_a_message_as_the_client_makes_it_has_no_finding(kind):
    original = "" if kind in (MessageClass.SALE, MessageClass.AUTH, MessageClass.INQUIRY) else (
        "0100-000009-" + F7)
    assert read(iso(kind, original=original)) == []


@pytest.mark.parametrize(("kind", "number"), [(k, n) for k, fields in PROFILE.items()
                                              for n in fields])
def test_each_field_of_the_profile_is_required(kind, number):
    original = "0100-000009-" + F7 if kind in (MessageClass.CAPTURE, MessageClass.REFUND,
                                                MessageClass.REVERSAL) else ""
    findings = read(iso(kind, original=original, **{number: None}))
    assert [f for f in findings if f.startswith(f"F{number} ")] == [
        f for f in findings if "expected present, got nothing" in f]
    assert len(findings) == 1


@pytest.mark.parametrize(("mode", "good"), [("052", True), ("072", True), ("012", True),
                                            ("032", False), ("053", False)])
def test_f22_is_an_entry_mode_and_a_pin_capability(mode, good):
    assert (read(iso(MessageClass.SALE, **{"22": mode})) == []) is good


def test_f25_of_a_pre_authorization_is_06():
    assert read(iso(MessageClass.AUTH, **{"25": "00"})) == [
        "F25: expected 06 (a pre-authorization or its completion), got '00'"]
    assert read(iso(MessageClass.SALE, **{"25": "00"})) == []


def test_f49_is_cny():
    assert read(iso(MessageClass.SALE, **{"49": "840"})) == ["F49: expected 156 (CNY), got '840'"]


@pytest.mark.parametrize(("amount", "good"), [(1, True), (AMOUNT_MAX_FEN, True),
                                              (AMOUNT_MAX_FEN + 1, False), (0, False)])
def test_an_amount_is_within_what_the_switch_takes(amount, good):
    findings = read(iso(MessageClass.SALE, amount=amount, **{"4": f"{amount:012d}"}))
    assert (findings == []) is good, findings


def test_a_balance_inquiry_proves_the_card():
    assert read(iso(MessageClass.INQUIRY, **{"14": None})) == [
        "F14: expected the card's expiry, or track 2 in F35 (a balance inquiry proves the "
        "card), got nothing"]
    assert read(iso(MessageClass.INQUIRY, **{"14": None, "35": f"{PAN}=30121010000"})) == []


@pytest.mark.parametrize(("offset_s", "good"), [(CLOCK_SKEW_MAX_S, True),
                                                (-CLOCK_SKEW_MAX_S, True),
                                                (CLOCK_SKEW_MAX_S + 1, False),
                                                (-CLOCK_SKEW_MAX_S - 1, False)])
def test_the_transmission_time_is_near_now(offset_s, good):
    moment = NOW + datetime.timedelta(seconds=offset_s)
    findings = read(iso(MessageClass.SALE, **{"7": moment.strftime("%m%d%H%M%S"),
                                              "12": None, "13": None}))
    assert (findings == []) is good, findings


def test_a_transmission_time_that_is_no_date_is_named():
    findings = read(iso(MessageClass.SALE, **{"7": "1340120000", "12": None, "13": None}))
    assert findings == ["F7: expected a time MMddHHmmss within 15 h of now, got '1340120000'"]


def test_an_xpay_inquiry_proves_the_card_by_its_cryptogram_and_reads_it_in_a_wallet():
    rules = IsoRules("xpay")
    cryptogram = xpay.icc_field(0, 156, 1, bytes(4), bytes(16), CLIENT.binary_mac)
    inquiry = iso(MessageClass.INQUIRY, 0, **{"14": None, "22": "072", "55": cryptogram})
    assert read(inquiry, rules) == []
    unproven = iso(MessageClass.INQUIRY, 0, "000002", **{"14": None, "22": "072"})
    assert "F55: expected the token's cryptogram data in F55 (a balance inquiry proves the " \
        "card), got nothing" in read(unproven, rules)
    assert read(iso(MessageClass.REFUND, original="0200-000009-" + F7, stan="000003",
                    **{"22": "052"}), rules) == [
        "F22: expected an entry mode (07/81) and a PIN capability (0/1/2), got '052'"]


def test_an_expiry_is_yymm():
    assert read(iso(MessageClass.SALE, **{"14": "3013"})) == ["F14: expected YYMM, got '3013'"]


def test_a_terminal_sends_f32_always_or_never():
    rules = signed_on()
    assert read(iso(MessageClass.SALE), rules) == []
    # Without F32 it is another terminal to the switch (its session too): signed on as such.
    rules.answer(SERVER.answer(sign_on() | {"32": ""}, "00"))
    findings = read(iso(MessageClass.SALE, stan="000002", **{"32": None}), rules)
    assert len(findings) == 1 and findings[0].startswith("F32: expected F32 sent as in")


def test_an_unsigned_message_is_named_by_the_validator():
    reading = signed_on().read(IsoClient().encode(iso(MessageClass.SALE)), NOW)
    assert [f.field for f in reading.findings] == ["F64 (MAC)"]


def test_a_message_the_dialect_cannot_read_keeps_its_kind_when_it_can():
    body = CLIENT.encode(iso(MessageClass.REFUND, original="0200-000009-" + F7))
    broken = body.replace(b"000000001000", b" 00000001000", 1)
    reading = signed_on().read(broken, NOW)
    assert reading.kind == MessageClass.REFUND
    assert [f.field for f in reading.findings] == ["F4 (Amount, Transaction)"]


@given(st.binary(max_size=300))
def test_garbage_is_read_as_a_message_with_findings_never_an_error(data):
    reading = IsoRules().read(data, NOW)
    assert reading.kind == UNKNOWN or reading.kind in set(MessageClass) | {"network"}


# --- the session ------------------------------------------------------------------------


def test_an_exact_repeat_is_a_repeat_without_findings():
    session = Session(signed_on())
    sale = iso(MessageClass.SALE)
    first, again = sent(session, sale), sent(session, sale)
    assert again.repeat_of is first and again.findings == []


def test_a_repeat_under_the_repeat_mti_is_a_repeat_too():
    session = Session(signed_on())
    sale = iso(MessageClass.SALE)
    sent(session, sale)
    assert sent(session, sale | {"t": "0201"}).findings == []


def test_a_changed_repeat_names_the_field():
    session = Session(signed_on())
    sent(session, iso(MessageClass.SALE))
    again = sent(session, iso(MessageClass.SALE, amount=1001), code="94")
    assert [str(f) for f in again.findings] == [
        "repeat: expected #1 again unchanged (or a new id for a new message), got F4 changed"]


def test_a_repeat_answered_otherwise_is_named():
    session = Session(signed_on())
    sale = iso(MessageClass.SALE)
    sent(session, sale)
    again = sent(session, sale, code="51")
    assert [str(f) for f in again.findings] == [
        "answer: expected #1's answer again, got F39 changed"]


def test_a_stan_reused_for_another_transaction_is_named():
    session = Session(signed_on())
    sent(session, iso(MessageClass.SALE))
    later = (NOW + datetime.timedelta(seconds=1)).strftime("%m%d%H%M%S")
    again = sent(session, iso(MessageClass.SALE) | {"7": later})
    assert [f.field for f in again.findings] == ["id"]


def test_a_reversal_without_f90_names_its_original_by_its_stan():
    session = Session(signed_on())
    sale = sent(session, iso(MessageClass.SALE, stan="000005"))
    later = (NOW + datetime.timedelta(seconds=1)).strftime("%m%d%H%M%S")
    reversal = sent(session, iso(MessageClass.REVERSAL, stan="000005") | {"7": later})
    assert reversal.original is sale and reversal.findings == []


def test_an_original_never_sent_is_named():
    session = Session(signed_on())
    reversal = sent(session, iso(MessageClass.REVERSAL, original="0200-000777-" + F7), "25")
    assert [str(f) for f in reversal.findings] == [
        "F90: expected a transaction this adapter sent in this run, got STAN 000777, never sent"]


def test_a_completion_names_a_pre_authorization():
    session = Session(signed_on())
    sale = iso(MessageClass.SALE, stan="000001")
    sent(session, sale)
    capture = sent(session, iso(MessageClass.CAPTURE, stan="000002", original=ident(sale)))
    assert [str(f) for f in capture.findings] == [
        "F90: expected the auth this capture is for, got #1, a sale"]


@pytest.mark.parametrize(("amount", "good"), [(1000, True), (1001, False)])
def test_a_completion_stays_within_its_authorization(amount, good):
    session = Session(signed_on())
    auth = iso(MessageClass.AUTH, amount=1000, stan="000001")
    sent(session, auth)
    capture = sent(session, iso(MessageClass.CAPTURE, amount, "000002", ident(auth)))
    assert (capture.findings == []) is good


@pytest.mark.parametrize(("amount", "good"), [(1000, True), (999, False)])
def test_a_whole_reversal_repeats_the_original_amount(amount, good):
    session = Session(signed_on())
    sale = iso(MessageClass.SALE, amount=1000, stan="000001")
    sent(session, sale)
    reversal = sent(session, iso(MessageClass.REVERSAL, amount, "000002", ident(sale)))
    assert (reversal.findings == []) is good


def test_a_refusal_of_a_message_without_findings_is_a_finding():
    session = Session(signed_on())
    assert [str(f) for f in sent(session, iso(MessageClass.SALE), "30").findings] == [
        "answer: expected a message the switch accepts, got 30 (format error)"]
    assert sent(session, iso(MessageClass.SALE, stan="000002"), "51").findings == []


def test_not_found_is_right_for_a_reversal_of_an_original_never_answered():
    session = Session(signed_on())
    sale = iso(MessageClass.SALE, stan="000001")
    sent(session, sale, code=None)
    reversal = sent(session, iso(MessageClass.REVERSAL, stan="000002", original=ident(sale)),
                    "25")
    assert reversal.findings == [] and reversal.original_unanswered


# --- the flows --------------------------------------------------------------------------


def reversal_after(original_code: str | None, answered_first: bool) -> Exchange:
    session = Session(signed_on())
    sale = iso(MessageClass.SALE, stan="000001")
    first = session.request(CLIENT.encode(sale), NOW)
    if answered_first and original_code is not None:
        session.answered(first, SERVER.answer(sale, original_code))
    reversal = sent(session, iso(MessageClass.REVERSAL, stan="000002", original=ident(sale)))
    if not answered_first and original_code is not None:
        session.answered(first, SERVER.answer(sale, original_code))
    return reversal


@pytest.mark.parametrize(("original_code", "answered_first", "recognised"), [
    ("00", False, True),  # the answer came after the reversal: late
    (None, False, True),  # never answered
    ("91", True, True),  # answered: no decision in time
    ("00", True, False),  # answered before: a plain reversal, not after a timeout
])
def test_a_reversal_after_a_timeout_is_recognised(original_code, answered_first, recognised):
    exchange = reversal_after(original_code, answered_first)
    timeout = next(f for f in REQUIRED["pos"] if f.name == "reversal_after_timeout")
    assert timeout.completes(exchange) is recognised


def test_a_flow_fails_on_any_faulty_member_though_another_completed_it():
    session = Session(signed_on())
    sent(session, iso(MessageClass.SALE, stan="000001"))
    sent(session, iso(MessageClass.SALE, stan="000002", **{"22": None}))
    sale = next(o for o in outcomes("pos", session.exchanges) if o.flow.name == "sale")
    assert len(sale.completed) == 1 and not sale.passed
    assert sale.reasons() == ["#2 0200 sale STAN 000002: F22 (Point-of-Service Entry Mode): "
                              "expected present, got nothing"]


def test_every_flow_passed_is_complete_and_the_junit_report_says_so():
    session = Session(IsoRules())
    sent(session, sign_on())
    sale, auth = iso(MessageClass.SALE, stan="000001"), iso(MessageClass.AUTH, stan="000002")
    for fields in (sale, auth, iso(MessageClass.CAPTURE, 800, "000003", ident(auth))):
        sent(session, fields)
    assert not all_passed("pos", session.exchanges)
    late = iso(MessageClass.SALE, stan="000004")
    first = session.request(CLIENT.encode(late), NOW)
    sent(session, iso(MessageClass.REVERSAL, stan="000005", original=ident(late)))
    session.answered(first, SERVER.answer(late, "00"))
    sent(session, sale)
    sent(session, iso(MessageClass.REFUND, 500, "000006", ident(sale)))
    assert not all_passed("pos", session.exchanges)
    sent(session, iso(MessageClass.INQUIRY, stan="000007"))
    assert not all_passed("pos", session.exchanges)  # the batch is not settled
    sent(session, settlement("000010"))
    assert all_passed("pos", session.exchanges)
    suite = ElementTree.fromstring(report.junit(report.build("pos", session.exchanges)))
    assert (suite.get("tests"), suite.get("failures")) == ("8", "0")


def test_findings_outside_every_flow_fail_the_run_as_other_messages():
    session = Session(signed_on())
    exchange = session.request(b"garbage", NOW)
    session.answered(exchange, SERVER.answer({"t": "0000"}, "30"))
    built = report.build("pos", session.exchanges)
    assert not built.passed and built.other_findings
    names = [case.get("name") for case in ElementTree.fromstring(report.junit(built))]
    assert names[-1] == report.OTHER_MESSAGES and len(names) == len(REQUIRED["pos"]) + 1


def test_a_line_masks_the_card():
    session = Session(signed_on())
    line = report.message_line(sent(session, iso(MessageClass.SALE)))
    assert line == "#1 0200 sale STAN 000001 card 625368******0018 -> 00  OK"


# --- JD ---------------------------------------------------------------------------------


def jd_fields(kind: MessageClass = MessageClass.SALE, amount: int = 1000, trade: str = "T1",
              original: str = "", **extra: str) -> dict:
    request = AuthRequest(message_class=kind, channel="jd", card=PAN, amount_fen=amount,
                          mcc="5411", expiry="3012", merchant_id=DEMO_JD_MERCHANT,
                          txn_ref=trade, original_ref=original,
                          transmitted_at=NOW.strftime("%Y%m%d%H%M%S"))
    return json.loads(jd.encode_request(request, JD_KEY, **extra))


def jd_read(fields: dict, key: bytes = JD_KEY) -> list[str]:
    body = json.dumps(signed(fields, key)).encode()
    return [str(f) for f in JdRules({DEMO_JD_MERCHANT: JD_KEY}).read(body, NOW).findings]


def signed(fields: dict, key: bytes) -> dict:
    return jd.signed({k: v for k, v in fields.items() if k != "sign"}, key)


def test_a_jd_trade_as_the_client_makes_it_has_no_finding():
    assert jd_read(jd_fields()) == []


@pytest.mark.parametrize(("kind", "name"), [
    (MessageClass.SALE, "industryCategoryCode"), (MessageClass.SALE, "amount"),
    (MessageClass.AUTH, "tradeTime"), (MessageClass.REFUND, "originalTradeNum"),
    (MessageClass.INQUIRY, "cardExpiry")])
def test_each_field_a_trade_type_needs_is_required(kind, name):
    fields = jd_fields(kind, original="T0" if kind is MessageClass.REFUND else "")
    fields.pop(name)
    assert jd_read(fields) == [f"{name}: expected present, got nothing"]


@pytest.mark.parametrize(("field", "value", "expected"), [
    ("amount", " 1000", "fen as digits only, 1..10000000"),
    ("amount", "0", "fen as digits only, 1..10000000"),
    ("amount", str(AMOUNT_MAX_FEN + 1), "fen as digits only, 1..10000000"),
    ("tradeNum", "T 1", "1-32 of A-Z a-z 0-9 _ -"),
    ("cardExpiry", "3013", "YYMM"),
    ("currency", "USD", "CNY or 156"),
    ("partialApproval", "2", "1 or 0, or the field left out"),
])
def test_each_jd_format_is_checked(field, value, expected):
    assert jd_read(jd_fields() | {field: value}) == [f"{field}: expected {expected}, got "
                                                    f"{value!r}"]


def test_a_card_number_without_its_check_digit_is_named_masked():
    assert jd_read(jd_fields() | {"cardNo": "6253680000000017"}) == [
        "cardNo: expected 12-19 digits with a right check digit (Luhn), got 625368******0017"]


def test_a_jd_amount_at_the_maximum_is_taken():
    assert jd_read(jd_fields() | {"amount": str(AMOUNT_MAX_FEN)}) == []


@pytest.mark.parametrize(("offset_s", "good"), [(CLOCK_SKEW_MAX_S, True),
                                                (CLOCK_SKEW_MAX_S + 1, False)])
def test_a_jd_trade_time_is_near_now(offset_s, good):
    moment = NOW - datetime.timedelta(seconds=offset_s)
    assert (jd_read(jd_fields() | {"tradeTime": moment.strftime("%Y%m%d%H%M%S")}) == []) is good


def test_a_jd_signature_under_another_key_is_named():
    assert jd_read(jd_fields(), key=b"another") == [
        "sign: expected HMAC-SHA256 of the sorted non-empty fields under the merchant's key, "
        "got another signature"]


def test_a_lightning_refund_flag_is_for_refunds():
    assert jd_read(jd_fields() | {"lightningRefund": "1"}) == [
        "lightningRefund: expected only on a REFUND, got SALE"]


def test_a_jd_repeat_in_other_bytes_is_named():
    session = Session(JdRules({DEMO_JD_MERCHANT: JD_KEY}))
    fields = jd_fields()
    session.request(json.dumps(fields).encode(), NOW)
    again = session.request(json.dumps(dict(reversed(fields.items()))).encode(), NOW)
    assert [str(f) for f in again.findings] == [
        "repeat: expected #1's bytes again, got the same fields in other bytes"]


def test_a_jd_refusal_names_the_signature():
    rules = JdRules({DEMO_JD_MERCHANT: JD_KEY})
    refusal = JD_SERVER.decode_request(jd.encode_request(
        AuthRequest(message_class=MessageClass.SALE, channel="jd", card=PAN, amount_fen=1,
                    merchant_id=DEMO_JD_MERCHANT, txn_ref="T1", transmitted_at="x"), b"k"))
    answered = rules.answer(refusal)
    assert (answered.code, answered.fault_field) == ("63", "sign")
    good = JD_SERVER.encode_response(jd_fields(), AuthResponse(response_code="00"))
    assert rules.answer(good).fault_field == "answer"


@given(st.binary(max_size=200))
def test_jd_garbage_is_read_as_a_message_with_findings(data):
    reading = JdRules({}).read(data, NOW)
    assert reading.findings or reading.kind != UNKNOWN


# --- the kit's bound --------------------------------------------------------------------


def test_the_kit_checks_at_most_its_bound_and_says_so_once(monkeypatch):
    monkeypatch.setattr(limits, "conform_messages_max", 2)
    lines: list[str] = []
    kit = Kit("pos", signed_on(), lines.append)
    body = CLIENT.encode(iso(MessageClass.SALE))
    assert kit.request(body) is not None and kit.request(body) is not None
    assert kit.request(body) is None and kit.request(body) is None
    assert lines == ["kit: 2 messages checked; the switch answers the rest unchecked"]
    assert kit.unchecked == 2


# --- WeChat Pay ---------------------------------------------------------------------------


WX_KEY = DEMO_WECHAT_KEY.encode()


def wx_fields(kind: MessageClass = MessageClass.SALE, **extra: str) -> dict:
    request = AuthRequest(message_class=kind, channel="wechat", card=PAN, amount_fen=1000,
                          mcc="5411", merchant_id=DEMO_WECHAT_MCH_ID, txn_ref="W1",
                          original_ref="W0")
    return wechat.request_fields(request, DEMO_WECHAT_APPID, **extra)


def wx_read(fields: dict, key: bytes = WX_KEY) -> list[str]:
    body = wechat.to_xml(wechat.signed(fields, key, "HMAC-SHA256"))
    reading = WechatRules({DEMO_WECHAT_MCH_ID: WX_KEY}).read(body, NOW)
    return [str(f) for f in reading.findings]


@pytest.mark.parametrize("kind", [MessageClass.SALE, MessageClass.REFUND,
                                  MessageClass.REVERSAL, MessageClass.INQUIRY])
def test_a_wechat_request_as_the_client_makes_it_has_no_finding(kind):
    assert wx_read(wx_fields(kind)) == []


@pytest.mark.parametrize(("field", "value", "expected"), [
    ("total_fee", " 1000", "fen as digits, no leading zero"),
    ("total_fee", "01000", "fen as digits, no leading zero"),
    ("auth_code", "194567890123456789", "18 digits starting 10-15"),
    ("fee_type", "USD", "CNY"),
    ("sign_type", "SHA1", "MD5 or HMAC-SHA256"),
])
def test_each_wechat_format_is_checked(field, value, expected):
    assert wx_read(wx_fields() | {field: value}) == [f"{field}: expected {expected}, got "
                                                    f"{value!r}"]


def test_a_wechat_micropay_needs_its_body_and_a_payment_code():
    fields = wx_fields()
    del fields["body"], fields["auth_code"]
    assert wx_read(fields) == ["body: expected present, got nothing",
                               "auth_code: expected the payment code (or openid), got neither"]


def test_a_wechat_signature_is_upper_case_hex_under_the_key():
    fields = wechat.signed(wx_fields(), WX_KEY)
    body = wechat.to_xml(fields | {"sign": fields["sign"].lower()})
    findings = WechatRules({DEMO_WECHAT_MCH_ID: WX_KEY}).read(body, NOW).findings
    assert [f.expected for f in findings] == ["64 upper-case hex digits (HMAC-SHA256)"]
    assert wx_read(wx_fields(), key=b"another") == [
        "sign: expected HMAC-SHA256 of the sorted non-empty fields and &key= under the "
        "merchant's key, got another signature"]
    md5 = {k: v for k, v in wx_fields().items() if k != "sign_type"}  # v2's default: MD5
    body = wechat.to_xml(wechat.signed(md5, WX_KEY, "MD5"))
    assert WechatRules({DEMO_WECHAT_MCH_ID: WX_KEY}).read(body, NOW).findings == []


def test_a_wechat_refund_names_its_order_and_a_reverse_is_its_orders_one_reversal():
    session = Session(WechatRules({DEMO_WECHAT_MCH_ID: WX_KEY}))
    sale = wechat.request_fields(AuthRequest(
        message_class=MessageClass.SALE, channel="wechat", card=PAN, amount_fen=1000,
        mcc="5411", merchant_id=DEMO_WECHAT_MCH_ID, txn_ref="W0"), DEMO_WECHAT_APPID)
    session.request(wechat.to_xml(wechat.signed(sale, WX_KEY)), NOW)
    refund = session.request(wechat.to_xml(wechat.signed(wx_fields(MessageClass.REFUND),
                                                         WX_KEY)), NOW)
    reverse = session.request(wechat.to_xml(wechat.signed(wx_fields(MessageClass.REVERSAL),
                                                          WX_KEY)), NOW)
    assert refund.original is session.exchanges[0] and refund.findings == []
    assert reverse.original is session.exchanges[0] and reverse.reading.id == (
        f"{DEMO_WECHAT_MCH_ID}:v:W0")
    assert [flow.name for flow in REQUIRED["wechat"]] == [
        "sale", "reversal_after_timeout", "repeat", "refund"]


def test_not_xml_is_a_finding_on_the_body():
    reading = WechatRules({}).read(b"<!DOCTYPE x><xml/>", NOW)
    assert reading.kind == UNKNOWN and [f.field for f in reading.findings] == ["body"]


def test_a_local_date_and_time_far_from_now_are_named():
    findings = read(iso(MessageClass.SALE, **{"13": "0101", "12": "120000"}))
    assert findings == ["F13 F12: expected a time MMddHHmmss within 15 h of now, got "
                        "0101120000 (600 h away)"]


def test_a_reversal_names_a_purchase_or_a_pre_authorization():
    session = Session(signed_on())
    auth = iso(MessageClass.AUTH, stan="000001")
    sent(session, auth)
    capture = iso(MessageClass.CAPTURE, 800, "000002", ident(auth))
    sent(session, capture)
    reversal = sent(session, iso(MessageClass.REVERSAL, 800, "000003", ident(capture)))
    assert [str(f) for f in reversal.findings] == [
        "F90: expected the auth or sale this reversal is for, got #2, a capture"]


def test_a_jd_signature_is_64_lower_case_hex_digits():
    fields = jd.signed({k: v for k, v in jd_fields().items() if k != "sign"}, JD_KEY)
    body = json.dumps(fields | {"sign": fields["sign"].upper()}).encode()
    findings = JdRules({DEMO_JD_MERCHANT: JD_KEY}).read(body, NOW).findings
    assert [f.expected for f in findings] == ["64 lower-case hex digits"]


# --- sign-on and batch settlement (pos) -----------------------------------------------------


def flow(name: str, session: Session):
    return next(o for o in outcomes("pos", session.exchanges) if o.flow.name == name)


@pytest.mark.parametrize(("fields", "number"), [
    (sign_on(), "7"), (sign_on(), "11"), (sign_on(), "41"), (sign_on(), "60"),
    (settlement("000001"), "11"), (settlement("000001"), "41"), (settlement("000001"), "48"),
    (settlement("000001"), "60"), (upload("000001"), "2"), (upload("000001"), "3"),
    (upload("000001"), "4"), (upload("000001"), "11"), (upload("000001"), "41"),
    (upload("000001"), "60")])
def test_each_field_a_sign_on_settlement_or_upload_needs_is_required(fields, number):
    """`switch iso validate`'s checks, which the kit reads: F60 of an 0800 carries its
    network code (no F70 here)."""
    assert read(fields) == []
    findings = read({k: v for k, v in fields.items() if k != number})
    named = "F70" if (fields["t"], number) == ("0800", "60") else f"F{number}"
    assert any(finding.startswith(f"{named} ") and "expected present" in finding
               for finding in findings), findings


def test_money_before_the_sign_on_is_named_and_after_it_is_not():
    session = Session(IsoRules())
    before = sent(session, iso(MessageClass.SALE, stan="000001"))
    sent(session, sign_on("000002"))
    after = sent(session, iso(MessageClass.SALE, stan="000003"))
    assert [str(f) for f in before.findings] == [
        "sign-on: expected an 0800 sign-on (network code 001) answered 00 before money, got "
        "terminal 10000:TERM0001 before its sign-on"]
    assert after.findings == [] and after.reading.signed_on
    signing_on = flow("sign_on", session)
    assert signing_on.completed == [after] and signing_on.faulty == [before]


def test_a_sign_on_refused_signs_nothing_on_and_a_sign_off_ends_the_session():
    rules = IsoRules()
    rules.answer(SERVER.answer(sign_on(), "58"))
    assert read(iso(MessageClass.SALE), rules)  # still before a sign-on
    rules.answer(SERVER.answer(sign_on(), "00"))
    assert read(iso(MessageClass.SALE), rules) == []
    rules.answer(SERVER.answer(sign_on(action=SessionAction.SIGN_OFF), "00"))
    assert read(iso(MessageClass.SALE), rules)


def test_an_xpay_wallet_and_a_listener_without_macs_need_no_sign_on():
    assert read(iso(MessageClass.SALE), IsoRules(mac_off=True)) == []
    assert not any(f.startswith("sign-on") for f in read(iso(MessageClass.SALE),
                                                          IsoRules("xpay")))


def test_money_under_the_master_key_after_the_sign_on_fails_the_sign_on_flow():
    session = Session(signed_on())
    fields = iso(MessageClass.SALE)
    refused = sent(session, fields, code=None)
    session.answered(refused, SERVER.answer(fields, "A0", "not_signed_on"))
    assert [str(f) for f in refused.findings] == [
        "sign-on: expected money MAC'd under the session MAK (F62 of the sign-on's 0810), got "
        "A0 not_signed_on (MAC failure)"]
    assert flow("sign_on", session).faulty == [refused] and not flow("sign_on", session).passed


def test_a_settlement_answered_00_settles_the_batch():
    session = Session(signed_on())
    settled = sent(session, settlement("000001"))
    assert settled.findings == [] and flow("batch_settlement", session).passed


def test_a_95_is_unfinished_until_an_upload_and_a_settlement_after_upload_answered_00():
    session = Session(signed_on())
    sent(session, settlement("000001"), code="95")
    unbalanced = flow("batch_settlement", session)
    assert not unbalanced.passed and unbalanced.reasons()[0].startswith(
        f"#1 0500 settlement batch {BATCH} STAN 000001: answered 95")
    sent(session, upload("000002"))
    after = sent(session, settlement("000003", code="202"))
    assert after.findings == [] and flow("batch_settlement", session).passed
    assert flow("batch_settlement", session).unfinished == []  # said only while unsettled


def test_a_settlement_after_upload_without_an_upload_is_named():
    session = Session(signed_on())
    after = sent(session, settlement("000001", code="202"))
    assert [str(f) for f in after.findings] == [
        "F60.3: expected 201 (a settlement), or 202 after the batch's uploads (0320), got 202 "
        "with no upload of batch 000042"]
    assert not flow("batch_settlement", session).passed


def test_an_answer_whose_tpdu_is_not_one_is_named_so_not_decoded_past_it():
    """Answers are read past their envelope as requests are (the envelope's split): a front
    that is no TPDU is named, where skipping its bytes would decode whatever follows."""
    rules = IsoRules("pos", envelope="tpdu")
    body = SERVER.answer(sign_on(), "00")
    good = rules.answer(bytes([0x60, 0, 0, 0, 0]) + body)
    assert good.code == "00"
    bad = rules.answer(bytes([0x61, 0, 0, 0, 0]) + body)
    assert (bad.code, bad.reason) == ("", "answer without its TPDU or header: tpdu: id 61, "
                                          "not 60")
