"""The offline ISO 8583 toolbox (protocols/iso_tools), as functions: parse, build, validate,
explain. Round trips and garbage are property-tested with hypothesis over both shipped
dialects; pyiso8583 is the independent peer for what a message holds."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import iso8583
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocols.cardnumbers import full_card_numbers_in
from protocols.codes import ADAPTER_ACTIONS, DECLINING, Code
from protocols.iso8583 import Codec, Iso8583Error, build_tlv, get_codec
from protocols.iso8583.dialect import dialect_from_dict
from protocols.iso_channel import required_fields
from protocols.iso_client import request_message
from protocols.iso_tools import build, codes_of_reason, explain, parse, validate
from protocols.iso_tools.hextext import dump_line_bytes_max, message_from_text
from protocols.iso_tools.meanings import mask_track, masked
from protocols.messages import REFERENCING_CLASSES, AuthRequest, MessageClass
from tests.test_iso8583_interop import PEER_SPECS, message_strategy, to_peer

DIALECTS = ("iso87ascii", "iso87binary")
PAN = "6253680000000018"
KEY = bytes.fromhex("00112233445566778899AABBCCDDEEFF")
SALE = {"mti": "0200", "2": PAN, "3": "000000", "4": 12800, "7": "1129120000", "11": "000123",
        "12": "120000", "13": "1129", "18": "5411", "22": "052", "25": "00", "32": "00010000",
        "37": "120000000123", "41": "TERM0001", "42": "898310048990001", "49": "156"}
F90 = "0200" "000123" "1129120000" "00000010000" "00000000000"
PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def as_json(fields: dict) -> dict:
    """A codec message dict as `switch iso build` takes it: "mti", binary data as hex."""
    out = {"mti": fields["t"]}
    return out | {k: v.hex() if isinstance(v, bytes) else v for k, v in fields.items()
                  if k != "t"}


def shown(parsed) -> str:
    return msgspec.json.encode(parsed).decode()


# --- parse -----------------------------------------------------------------------------------


def test_the_worked_example_of_docs_channels_pos_md():
    parsed = parse(build(SALE))
    assert parsed.ok and parsed.size_bytes == 139 and parsed.mti == "0200"
    assert parsed.bitmap.wire == "7238448108C08000" and not parsed.bitmap.secondary
    assert parsed.bitmap.fields == [2, 3, 4, 7, 11, 12, 13, 18, 22, 25, 32, 37, 41, 42, 49]
    by_field = {view.field: view for view in parsed.fields}
    assert [(v.offset, v.size_bytes) for v in parsed.fields][:3] == [(20, 18), (38, 6), (44, 12)]
    assert by_field["2"].value == "625368******0018"
    assert by_field["2"].wire == "3136" + "**" * 16  # the prefix, then the card masked
    assert by_field["4"].meaning == "12800 fen = 128.00 yuan"
    assert by_field["3"].meaning.endswith("the switch: sale")
    assert by_field["22"].meaning == "chip, no PIN"
    assert by_field["41"].wire == b"TERM0001".hex().upper()
    assert parsed.mac is None  # no MAC field, no key


@pytest.mark.parametrize("name", DIALECTS)
def test_build_then_parse_gives_every_field_back(name):
    @PROPERTY
    @given(message_strategy(name))
    def check(fields):
        wire = build(as_json(fields), name)
        assert wire == get_codec(name).encode(fields)
        parsed = parse(wire, name)
        assert parsed.error is None and parsed.mti == fields["t"]
        assert [int(view.field) for view in parsed.fields] == parsed.bitmap.fields
        back = {view.field: view.value for view in parsed.fields}
        for key, value in fields.items():
            if key != "t":
                text = value.hex().upper() if isinstance(value, bytes) else value
                assert back[key] == masked(key, text) or key == "55", key
        ends = [view.offset + view.size_bytes for view in parsed.fields]
        starts = [view.offset for view in parsed.fields[1:]]
        assert starts == ends[:-1] and (not ends or ends[-1] == len(wire))

    check()


@pytest.mark.parametrize("name", DIALECTS)
def test_a_message_pyiso8583_encodes_parses_the_same(name):
    @PROPERTY
    @given(message_strategy(name))
    def check(fields):
        peer_wire, _ = iso8583.encode(copy.deepcopy(to_peer(fields)), PEER_SPECS[name])
        peer_doc, _ = iso8583.decode(bytearray(peer_wire), PEER_SPECS[name])
        parsed = parse(bytes(peer_wire), name)
        assert parsed.error is None and parsed.mti == peer_doc["t"]
        assert parsed.bitmap.wire == (peer_doc["p"] + peer_doc.get("1", "")).upper()
        binary = {spec.key for spec in get_codec(name).dialect.fields if spec.content == "b"}
        for view in parsed.fields:
            theirs = peer_doc[view.field]
            expected = theirs.upper() if view.field in binary else theirs
            assert view.value == masked(view.field, expected) or view.field == "55"

    check()


@pytest.mark.parametrize("name", DIALECTS)
def test_garbage_never_raises_and_names_where_it_broke(name):
    @PROPERTY
    @given(st.binary(max_size=300), st.sampled_from(["", "binary2", "ascii4"]))
    def check(data, header):
        parsed = parse(data, name, header)
        shown(parsed)  # and it serialises
        if parsed.error is not None:
            assert parsed.error.field in ("header", "MTI", "bitmap", "trailing") \
                or parsed.error.field.isdigit()
            assert not parsed.ok
        for channel in ("pos", "xpay"):
            result = validate(data, channel, name, header)
            assert result.ok == (result.request is not None)

    check()


def test_a_broken_message_shows_what_was_read_then_the_defect():
    wire = build(SALE)
    parsed = parse(wire[:50])
    assert [view.field for view in parsed.fields] == ["2", "3"]
    assert (parsed.error.field, parsed.error.offset) == ("4", 44)
    assert parsed.error.name == "Amount, Transaction" and "truncated" in parsed.error.reason
    assert parse(wire + b"X").error.field == "trailing"
    assert parse(b"02X0").error.field == "MTI"
    assert parse(wire[:4] + b"7238448108C0800G").error.field == "bitmap"
    assert parse(wire[:10]).error.field == "bitmap"


@pytest.mark.parametrize(("header", "prefix", "field"), [
    ("binary2", (139).to_bytes(2, "big"), None),
    ("binary2", (138).to_bytes(2, "big"), "header"),  # one off either way
    ("binary2", (140).to_bytes(2, "big"), "header"),
    ("ascii4", b"0139", None),
    ("ascii4", b"01x9", "header"),
    ("binary4", (139).to_bytes(4, "big"), None),
])
def test_a_length_header_is_checked_then_skipped(header, prefix, field):
    parsed = parse(prefix + build(SALE), header=header)
    assert (parsed.error.field if parsed.error else None) == field
    assert parse(b"\x00", header="binary2").error.field == "header"
    assert parse(b"\x00\x00", header="binary2").error.field == "MTI"  # a header, no message
    assert "no header 'nope'" in parse(build(SALE), header="nope").error.reason


def test_the_mac_is_named_and_checked_only_with_a_key():
    signed = build(SALE, mac_key=KEY)
    assert signed[-16:] == b"D66EF67F40B9A0F5"  # docs/channels/pos.md, the same purchase
    assert parse(signed).mac.status == "not checked" and parse(signed).ok
    assert parse(signed, mac_key=KEY).mac.status == "ok"
    wrong = parse(signed, mac_key=bytes(16))
    assert wrong.mac.status == "wrong" and not wrong.ok
    assert wrong.mac.expected == build(SALE, mac_key=bytes(16))[-16:].decode()
    missing = parse(build(SALE), mac_key=KEY)
    assert (missing.mac.status, missing.mac.expected) == ("missing", "D66EF67F40B9A0F5")
    wide = parse(build(SALE | {"90": F90}, mac_key=KEY), mac_key=KEY)
    assert (wide.mac.field, wide.mac.status, wide.bitmap.secondary) == ("128", "ok", True)
    binary = parse(build(SALE, "iso87binary", KEY), "iso87binary", mac_key=KEY)
    assert binary.mac.status == "ok"
    no_mac = dialect_from_dict({"name": "tiny", "fields": {"2": {
        "kind": "llvar", "max_len": 19, "encoding": "ascii", "content": "n"}}})
    tiny = parse(b"0200" + b"4000000000000000" + b"0212", Codec(no_mac), mac_key=KEY)
    assert tiny.error is None and tiny.mac is None


def test_card_data_is_masked_everywhere_it_may_hide():
    icc = {"5A": PAN, "57": PAN + "D30121011234", "9F02": "000000012800", "5F2A": "0156"}
    for name in DIALECTS:
        doc = SALE | {"35": PAN + "=30121011234", "45": f"B{PAN}^ZHANG/SAN^3012101",
                      "48": f"note {PAN}", "55": icc}
        text = shown(parse(build(doc, name), name))
        assert PAN not in text and not full_card_numbers_in(text)
        assert "625368******0018=3012*******" in text  # track 2: the expiry stays
    assert mask_track(f"{PAN}D3012101") == "625368******0018D3012***"


@pytest.mark.parametrize(("field", "value", "meaning"), [
    ("3", "200000", "refund (return), from the default account, to the default account; "
                    "the switch: refund"),
    ("3", "010000", "cash withdrawal, from the default account, to the default account; "
                    "the switch answers 12 processing_not_supported"),
    ("22", "071", "contactless chip (qPBOC), PIN entered"),
    ("25", "06", "pre-authorization"),
    ("39", "51", "insufficient open-to-buy (over the credit limit)"),
    ("39", "Q1", "not a code this switch gives"),
    ("44", "mcc_blocked:7995", "mcc_blocked:{mcc}, comes with the code the policy names"),
    ("44", "field_7_missing", "field_{field}_missing, comes with 30"),
    ("44", "insufficient_open_to_buy", "comes with 51"),
    ("44", "no_such_reason", "not a reason this switch gives"),
    ("54", "3002156C000000987200", "credit account available balance: 9,872.00 yuan"),
    ("70", "301", "echo test; answered 00"),
    ("70", "101", "key change; the switch answers 12"),
    ("90", F90, "original MTI 0200, STAN 000123, F7 1129120000, acquirer 00000010000, "
                "forwarding institution 00000000000"),
    ("14", "3012", "2030-12 (YYMM)"),
])
def test_fields_are_explained_in_words(field, value, meaning):
    view = next(v for v in parse(build(SALE | {field: value})).fields if v.field == field)
    assert view.meaning == meaning


def test_icc_tags_are_named_and_read():
    tags = {"9F26": "1122334455667788", "9F27": "80", "9F36": "0007", "9F02": "000000012800",
            "5F2A": "0156", "9A": "261129", "9F37": "0A0B0C"}
    view = next(v for v in parse(build(SALE | {"55": tags})).fields if v.field == "55")
    by_tag = {tag.tag: tag for tag in view.tags}
    assert by_tag["9F26"].name == "Application Cryptogram (ARQC)"
    assert by_tag["9F27"].meaning == "ARQC (online authorization requested)"
    assert by_tag["9F36"].meaning == "7" and by_tag["9A"].meaning == "2026-11-29"
    assert by_tag["9F02"].meaning == "12800 fen = 128.00 yuan"
    assert by_tag["9F37"].meaning == "3 bytes: x-pay wants 4"  # protocols/xpay.py's size
    broken = next(v for v in parse(build(SALE | {"55": "9F2608AABB"})).fields if v.field == "55")
    assert broken.tags == [] and broken.meaning.startswith("not BER-TLV: at offset 3")


# --- build -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("change", "field", "words"), [
    ({"2": PAN + "0000"}, "2", "over the maximum 19"),
    ({"4": -1}, "4", "negative"),
    ({"4": "12.00"}, "4", "is not n"),
    ({"41": 1234}, "41", "must be a string"),
    ({"4": True}, "4", "must be a string"),
    ({"999": "x"}, "999", "not a field"),
    ({"1": "x"}, "1", "computed"),
    ({"55": {"9F26": "zz"}}, "55", "not hex"),
    ({"55": {"9F26": 7}}, "55", "must be hex text"),
    ({"t": "0200"}, "MTI", "once"),
    ({"mti": "200"}, "MTI", "not 4 digits"),
])
def test_build_refuses_what_the_dialect_refuses_naming_the_field(change, field, words):
    with pytest.raises(Iso8583Error) as caught:
        build(SALE | change)
    assert caught.value.field == field and words in str(caught.value)


def test_build_takes_whole_numbers_icc_tags_and_adds_the_mac():
    wire = build(SALE | {"55": {"9F36": "0001"}}, "iso87binary")
    assert get_codec("iso87binary").decode(wire)["55"] == build_tlv({"9F36": b"\x00\x01"})
    assert get_codec("iso87ascii").decode(build(SALE))["4"] == "000000012800"
    with pytest.raises(Iso8583Error, match="computed from --mac-key"):
        build(SALE | {"64": "00" * 8}, mac_key=KEY)
    with pytest.raises(Iso8583Error, match="JSON object"):
        build(["0200"])


# --- validate --------------------------------------------------------------------------------


def problems(doc: dict, channel: str = "pos", **options) -> list[tuple[str, str]]:
    """The problems of `doc` on a listener whose MACs are off, unless `options` say."""
    result = validate(build(doc), channel, **({"mac_off": True} | options))
    return [(problem.field, problem.reason) for problem in result.problems]


def without(*keys: str) -> dict:
    return {k: v for k, v in SALE.items() if k not in keys}


def test_a_good_request_is_valid_and_gives_the_request_the_switch_decides_on():
    result = validate(build(SALE), mac_off=True)
    assert result.ok and result.message_class == "sale"
    assert (result.request.card, result.request.amount_fen) == (PAN, 12800)


@pytest.mark.parametrize("message_class", list(MessageClass))
def test_what_switch_send_builds_is_valid_for_every_message_class(message_class):
    request = AuthRequest(message_class=message_class, channel="pos", card=PAN, mcc="5411",
                          amount_fen=0 if message_class is MessageClass.INQUIRY else 12800)
    original = "0100-000122-1129115900" if message_class in REFERENCING_CLASSES else ""
    fields = request_message(request, stan="000123", transmitted="1129120000",
                             terminal="TERM0001", acquirer="00010000", original=original)
    result = validate(get_codec("iso87ascii").encode(fields), mac_off=True)
    assert result.ok and result.message_class == message_class.value


def test_every_missing_field_is_named_at_once():
    assert problems(without("2", "11", "4")) == [
        ("2", "card_missing"), ("11", "field_11_missing"), ("4", "field_4_missing")]
    assert problems(without("7", "41")) == [("7", "field_7_missing"), ("41", "field_41_missing")]


@pytest.mark.parametrize(("doc", "expected"), [
    (without("37") | {"mti": "0400"}, [("37", "field_37_missing")]),  # F4 is not needed
    (SALE | {"mti": "0400", "90": F90}, []),
    (without("37") | {"mti": "0400", "90": F90}, []),
    (without("4") | {"mti": "0400", "90": F90}, []),
    (SALE | {"mti": "0220"}, [("answer", "the switch answers 30 original_data_missing: "
                                         "format error")]),
    (SALE | {"mti": "0210"}, [("answer", "the switch answers 12 mti_not_supported: "
                                         "invalid transaction (not supported, or not in this "
                                         "state)")]),
    (SALE | {"49": "CNY"}, [("answer", "the switch answers 30 currency_not_numeric: "
                                       "format error")]),
    (SALE | {"41": " " * 8}, [("answer", "the switch answers 30 field_41_missing: "
                                         "format error")]),
])
def test_what_each_class_needs_comes_from_the_channel(doc, expected):
    reversal_rrn = required_fields(MessageClass.REVERSAL, {})
    assert "37" in reversal_rrn and "4" not in reversal_rrn
    assert problems(doc) == expected


def test_network_management_needs_its_code():
    echo = {"mti": "0800", "7": "1129120000", "11": "000001", "70": "301"}
    assert validate(build(echo)).ok
    assert problems(echo | {"70": "999"}) == [
        ("answer", "the switch answers 12 network_code_unsupported: invalid transaction "
                   "(not supported, or not in this state)")]


def test_a_sign_on_is_valid_and_names_its_terminal_and_a_settlement_its_totals():
    sign_on = {"mti": "0800", "7": "1129120000", "11": "000001", "41": "TERM0001",
               "60": "00000001001"}
    result = validate(build(sign_on))
    assert result.ok and result.message_class == "sign-on"  # decided with the master key
    assert problems({k: v for k, v in sign_on.items() if k != "41"}) == [
        ("41", "field_41_missing")]
    assert problems(sign_on | {"60": "00000001"})[0] == ("70", "field_70_missing")
    settlement = {"mti": "0500", "11": "000002", "41": "TERM0001", "48": "0" * 62,
                  "60": "00000001201"}
    assert validate(build(settlement), mac_off=True).message_class == "settlement"
    assert problems(settlement) == []
    assert ("48", "field_48_missing") in problems(
        {k: v for k, v in settlement.items() if k != "48"})


def test_xpay_needs_the_wallet_s_chip_data_and_pos_does_not():
    assert problems(SALE, "xpay") == [
        ("answer", "the switch answers 30 entry_mode_not_wallet: format error")]
    assert problems(SALE | {"22": "072"}, "xpay") == [
        ("answer", "the switch answers 30 field_55_missing: format error")]
    assert problems(SALE | {"22": "072"}, "pos") == []


def test_the_mac_and_the_request_checks_are_the_switch_s():
    assert problems(SALE, mac_key=KEY) == [
        ("answer", "the switch answers A0 mac_missing: MAC failure")]
    assert validate(build(SALE, mac_key=KEY), mac_key=KEY).ok

    def no_mcc(request):
        return ("30", "mcc_missing") if not request.mcc else None

    refused = validate(build(without("18")), request_checks=no_mcc, mac_off=True)
    assert refused.problems[0].reason == "the switch answers 30 mcc_missing: format error"
    assert validate(build(SALE), request_checks=no_mcc, mac_off=True).ok


def test_without_a_key_a_missing_mac_is_a_problem_a_present_one_is_not_checked():
    missing = ("64", "mac_missing: the listener answers A0 (unless its mac is off: --mac-off)")
    assert problems(SALE, mac_off=False) == [missing]
    assert problems(SALE | {"90": F90}, mac_off=False) == [("128", missing[1])]
    assert problems(SALE | {"64": "00" * 8}, mac_off=False) == []  # there: not checked
    assert problems(SALE) == []  # the listener's mac is off
    echo = {"mti": "0800", "7": "1129120000", "11": "000001", "70": "301"}
    assert problems(echo, mac_off=False) == []  # network management may travel unsigned


def test_a_message_the_dialect_refuses_is_one_problem_at_its_offset():
    result = validate(build(SALE)[:50])
    assert [(p.field, p.offset) for p in result.problems] == [("4", 44)]


# --- explain ---------------------------------------------------------------------------------


def test_every_code_says_what_the_sender_does_next():
    assert set(ADAPTER_ACTIONS) == set(Code)
    page = (Path(__file__).resolve().parent.parent / "docs" / "codes.md").read_text()
    for code, action in ADAPTER_ACTIONS.items():
        assert f"| `{code}` | {action} |" in page, code
    assert "reverse" in explain("91").action and "reverse" in explain("96").action
    ok = explain("00")
    assert ok.approves and not explain("51").approves
    assert "insufficient_open_to_buy" in explain("51").reasons
    assert "mcc_blocked:{mcc}" in explain("57").policy_reasons
    assert explain("a0").code == "A0"


def test_a_reason_is_read_with_its_family_and_checked_against_the_code():
    known = explain("30", "field_11_missing")
    assert (known.reason_id, known.reason_detail, known.reason_note) == (
        "field_{field}_missing", "F11 System Trace Audit Number", "")
    assert explain("30", "format:field_7").reason_detail == "F7 Transmission Date and Time"
    assert explain("30", "tag_9F26_malformed").reason_detail == \
        "tag 9F26 Application Cryptogram (ARQC)"
    assert explain("57", "mcc_blocked:7995").reason_detail == "mcc 7995"
    assert explain("51", "card_lost").reason_note == "card_lost comes with 41, never with 51"
    assert codes_of_reason("card_lost") == ["41"]
    assert set(codes_of_reason("mcc_blocked:7995")) == DECLINING
    for bad in (lambda: explain("99"), lambda: explain("51", "no_such"),
                lambda: codes_of_reason("no_such")):
        with pytest.raises(ValueError):
            bad()


# --- hex text and hex dumps ------------------------------------------------------------------


def docs_dump(data: bytes) -> str:
    """The dump docs/channels/pos.md shows: offset, the bytes, their text."""
    return "\n".join(
        f"{at:04X}  {' '.join(f'{b:02X}' for b in data[at:at + 16])}  "
        + "".join(chr(b) if 32 <= b < 127 else "." for b in data[at:at + 16])
        for at in range(0, len(data), 16))


def hexdump_c(data: bytes) -> str:
    """`hexdump -C`: two groups of eight, |text|, and the length alone at the end."""
    lines = []
    for at in range(0, len(data), 16):
        row = data[at:at + 16]
        groups = " ".join(f"{b:02x}" for b in row[:8]) + "  " + " ".join(
            f"{b:02x}" for b in row[8:])
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in row)
        lines.append(f"{at:08x}  {groups:<48}  |{text}|")
    return "\n".join([*lines, f"{len(data):08x}"])


def test_the_dump_in_docs_channels_pos_md_is_the_worked_example():
    page = (Path(__file__).resolve().parent.parent / "docs" / "channels" / "pos.md").read_text()
    dump = page[page.index("--- 0200 request, framed"):]
    framed = message_from_text(dump[:dump.index("```")])
    assert framed == (139).to_bytes(2, "big") + build(SALE)


@PROPERTY
@given(st.binary(min_size=1, max_size=200))
def test_any_bytes_come_back_from_their_dump_or_their_hex(data):
    assert message_from_text(docs_dump(data)) == data
    assert message_from_text(hexdump_c(data)) == data
    assert message_from_text(data.hex(" ", 4)) == data


@pytest.mark.parametrize(("text", "words"), [
    ("3032G0", "not hex (character 5)"),
    ("303", "not hex (an odd number of digits)"),
    ("0000  30 31\n0003  32", "line 2: '0003  32' does not start with the offset 0002"),
    ("0000  zz", "line 1: no bytes after the offset"),
    ("0000  " + " ".join(["30"] * (dump_line_bytes_max + 1)), "line 1: no bytes"),
])
def test_text_that_is_not_a_message_says_where(text, words):
    with pytest.raises(ValueError, match=re.escape(words)):
        message_from_text(text)
    assert message_from_text("0000  " + " ".join(["30"] * dump_line_bytes_max)) == b"0" * 16


def test_a_star_repeats_the_line_before_until_the_next_offset():
    data = b"\x00" * 48 + b"AB"
    dump = "\n".join([hexdump_c(data).splitlines()[0], "*", *hexdump_c(data).splitlines()[3:]])
    assert "*" in dump and message_from_text(dump) == data
    with pytest.raises(ValueError, match="line 3"):  # 40 is not a whole number of lines on
        message_from_text(dump.replace("00000030  41", "00000028  41"))
