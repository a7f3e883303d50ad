"""The ISO 8583 channel codecs (pos, xpay) without I/O: tables of bytes in, requests or
answers out. pyiso8583 builds the requests and reads the answers."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.channel import Decoded
from protocols.iso_channel import request_mti, response_mti
from protocols.iso_client import IsoClient, parse_correlation_id, request_message
from protocols.iso_mac import KeyRing, MacAlgorithm, MacKey
from protocols.messages import AuthRequest, AuthResponse, MessageClass
from protocols.pos import PosCodec
from protocols.xpay import XpayCodec, XpayRequest, cryptogram, icc_field
from tests.test_pos_support import decode, encode, f90, financial, reference_mac

PAN = "6253680000000018"
C = MessageClass


@pytest.mark.parametrize(("mti", "processing", "condition", "expected"), [
    ("0100", "000000", "06", C.AUTH),
    ("0100", "000000", "00", C.AUTH),
    ("0101", "000000", "06", C.AUTH),
    ("0100", "310000", "00", C.INQUIRY),
    ("0200", "000000", "00", C.SALE),
    ("0200", "200000", "00", C.REFUND),
    ("0200", "310000", "00", C.INQUIRY),
    ("0220", "000000", "06", C.CAPTURE),
    ("0220", "200000", "00", C.REFUND),
    ("0400", "000000", "00", C.REVERSAL),
    ("0421", "000000", "00", C.REVERSAL),
])
def test_message_classes(mti, processing, condition, expected):
    original = f90(financial("0100", PAN, "000000", 100)) if expected in (
        C.CAPTURE, C.REFUND) else ""
    doc = financial(mti, PAN, processing, 100, condition=condition, original=original)
    decoded = PosCodec().decode_request(encode(doc))
    assert isinstance(decoded, Decoded)
    assert decoded.request.message_class is expected
    assert decoded.request.channel == "pos" and decoded.request.card == PAN


def test_a_sale_in_canonical_form():
    doc = financial("0200", PAN, "000000", 12_800, stan="000123", f7="1129120000")
    request = PosCodec().decode_request(encode(doc)).request
    assert (request.amount_fen, request.currency, request.mcc) == (12_800, 156, "5411")
    assert (request.terminal_id, request.merchant_id) == ("TERM0001", "898310048990001")
    assert request.txn_ref == "pos:10000:TERM0001:000123"
    assert request.idempotency_key == "pos:txn:10000:TERM0001:000123:1129120000"
    assert request.transmitted_at == "1129120000"


def test_originals_are_named_alike_by_f90_and_by_stan_terminal():
    codec = PosCodec()
    sale = financial("0200", PAN, "000000", 500)
    own = codec.decode_request(encode(sale)).request.txn_ref
    by_f90 = financial("0400", PAN, "000000", 500, original=f90(sale))
    by_stan = financial("0420", PAN, "000000", 500, stan=sale["11"], rrn=sale["37"])
    zero_acquirer = financial("0400", PAN, "000000", 500,
                              original=f90(sale)[:20] + "0" * 22)
    refund = financial("0220", PAN, "200000", 500, original=f90(sale))
    for message in (by_f90, by_stan, zero_acquirer, refund):
        assert codec.decode_request(encode(message)).request.original_ref == own
    # A reversal and its original share STAN and terminal, yet never an idempotency key.
    assert (codec.decode_request(encode(by_stan)).request.idempotency_key
            != codec.decode_request(encode(sale)).request.idempotency_key)


def test_amounts_by_class():
    codec = PosCodec()
    reversal = financial("0400", PAN, "000000", 500, original="0200" + "0" * 38)
    assert codec.decode_request(encode(reversal)).request.amount_fen == 0  # the whole rest
    inquiry = financial("0200", PAN, "310000", None)
    assert codec.decode_request(encode(inquiry)).request.amount_fen == 0


def test_track_2_gives_card_and_expiry():
    doc = financial("0200", PAN, "000000", 100, track2=True)
    request = PosCodec().decode_request(encode(doc)).request
    assert (request.card, request.expiry) == (PAN, "3012")


@pytest.mark.parametrize(("mti", "answer"), [
    ("0100", "0110"), ("0101", "0110"), ("0200", "0210"), ("0220", "0230"),
    ("0400", "0410"), ("0421", "0430"), ("0800", "0810"), ("0110", "0110"),
])
def test_answer_mti(mti, answer):
    assert response_mti(mti) == answer


@pytest.mark.parametrize(("answer", "mti"), [("0110", "0100"), ("0230", "0220"),
                                             ("0430", "0420"), ("0810", "0800")])
def test_request_mti_of_an_answer(answer, mti):
    assert request_mti(answer) == mti


@pytest.mark.parametrize(("drop", "reason"), [
    ("11", "field_11_missing"), ("7", "field_7_missing"), ("41", "field_41_missing"),
    ("3", "field_3_missing"), ("4", "field_4_missing"),
])
def test_missing_fields_are_format_errors(drop, reason):
    doc = financial("0200", PAN, "000000", 100)
    del doc[drop]
    answer = decode(PosCodec().decode_request(encode(doc)))
    assert (answer["t"], answer["39"], answer["44"]) == ("0210", "30", reason)


def test_no_card_at_all():
    doc = financial("0200", PAN, "000000", 100)
    del doc["2"]
    answer = decode(PosCodec().decode_request(encode(doc)))
    assert (answer["39"], answer["44"]) == ("30", "card_missing")


@pytest.mark.parametrize("dialect", ["iso87ascii", "iso87binary"])
@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=300))
def test_any_bytes_get_an_answer_pyiso8583_can_read(dialect, data):
    answer = PosCodec(dialect).decode_request(data)
    if isinstance(answer, Decoded):
        return
    assert decode(answer, dialect)["39"] in ("30", "12", "00")  # 00: a lucky 0800


@pytest.mark.parametrize("dialect", ["iso87ascii", "iso87binary"])
@settings(max_examples=200, deadline=None)
@given(cut=st.integers(min_value=0, max_value=400), flip=st.integers(0, 400),
       byte=st.integers(0, 255))
def test_damaged_messages_answer_30_or_decode(dialect, cut, flip, byte):
    body = bytearray(encode(financial("0200", PAN, "000000", 100, original="0" * 42), dialect))
    if flip < len(body):
        body[flip] = byte
    answer = PosCodec(dialect).decode_request(bytes(body[: max(cut, 1)]))
    if not isinstance(answer, Decoded):
        assert "39" in decode(answer, dialect)


def test_client_and_server_agree_on_the_mac():
    key = MacKey(MacAlgorithm.X9_19, bytes(range(16)))
    server = PosCodec(keys=KeyRing({("1", "T1"): key}))
    client = IsoClient(key=key)
    request = AuthRequest(message_class=C.SALE, channel="pos", card=PAN, amount_fen=100,
                          mcc="5411")
    fields = request_message(request, stan="000001", transmitted="1129120000",
                             terminal="T1", acquirer="1")
    body = client.encode(fields)
    expected = reference_mac(("x9.19", key.key), body[:-16]).hex().upper()
    assert body[-16:].decode() == expected
    decoded = server.decode_request(body)
    assert isinstance(decoded, Decoded)
    answer = client.answer(server.encode_response(decoded.context, AuthResponse(
        response_code="00", approved_fen=100, auth_id="123456", open_to_buy_fen=9_900)))
    assert (answer.response.response_code, answer.response.open_to_buy_fen) == ("00", 9_900)
    assert answer.correlation_id == "0200-000001-1129120000"
    with pytest.raises(ValueError, match="MAC"):
        IsoClient(key=MacKey(MacAlgorithm.X9_19, bytes(16))).answer(server.encode_response(
            decoded.context, AuthResponse(response_code="05")))


def test_correlation_ids():
    assert parse_correlation_id("0200-000123-1129120000") == ("0200", "000123", "1129120000")
    for bad in ("0200-123-1129120000", "x", "0200-000123-112912000A"):
        with pytest.raises(ValueError):
            parse_correlation_id(bad)


def test_unsupported_dialect_shape_is_refused():
    with pytest.raises(ValueError):
        PosCodec("no-such-dialect")


# --- x-pay ----------------------------------------------------------------------------------

KEY = bytes(range(16))
TOKEN = "6288880000000013"


@pytest.mark.parametrize("dialect", ["iso87ascii", "iso87binary"])
def test_xpay_reads_the_cryptogram_data(dialect):
    doc = financial("0200", TOKEN, "000000", 12_800, entry="072")
    unpredictable = bytes.fromhex("1A2B3C4D")
    value = icc_field(12_800, 156, 7, unpredictable, KEY, binary=False)
    doc["55"] = value  # pyiso8583 takes binary fields as hex text in both specs
    request = XpayCodec(dialect).decode_request(encode(doc, dialect)).request
    assert isinstance(request, XpayRequest) and request.card == TOKEN
    assert request.atc == 7
    assert request.cryptogram_data == bytes.fromhex("000000012800" "0156" "0007" "1A2B3C4D")
    assert request.cryptogram == cryptogram(KEY, request.cryptogram_data)


@pytest.mark.parametrize(("tlv", "reason"), [
    ("9F2608" + "00" * 8, "tag_9F36_malformed"),
    ("9F26", "field_55_not_tlv"),
])
def test_xpay_malformed_icc(tlv, reason):
    doc = financial("0200", TOKEN, "000000", 100, entry="072") | {"55": tlv}
    answer = decode(XpayCodec().decode_request(encode(doc)))
    assert (answer["39"], answer["44"]) == ("30", reason)


def test_xpay_acquirer_messages_need_no_cryptogram():
    doc = financial("0400", TOKEN, "000000", 100, original="0200" + "0" * 38)
    request = XpayCodec().decode_request(encode(doc)).request
    assert isinstance(request, XpayRequest) and request.atc == -1



@given(amount=st.integers(1, 10**12 - 1), data=st.data(), partial=st.booleans())
def test_a_partial_reversal_releases_what_the_client_asked_and_says_so(amount, data, partial):
    """Client F4/F95 -> server's amount to release -> answer -> the client's released amount;
    and the partial-approval flag (F60.6) arrives as it was sent."""
    remaining = data.draw(st.integers(0, amount - 1))
    client, server = IsoClient(), PosCodec()
    reversal = AuthRequest(message_class=C.REVERSAL, channel="pos", card=PAN,
                           amount_fen=amount, partial_ok=partial)
    fields = request_message(reversal, stan="000002", transmitted="1129120500", terminal="T1",
                             acquirer="1", original="0200-000001-1129120000",
                             remaining_fen=remaining)
    decoded = server.decode_request(client.encode(fields))
    assert isinstance(decoded, Decoded)
    assert decoded.request.amount_fen == amount - remaining
    assert decoded.request.partial_ok is partial
    answer = client.answer(server.encode_response(decoded.context, AuthResponse(
        response_code="00", approved_fen=amount - remaining)))
    assert answer.response.approved_fen == amount - remaining


@pytest.mark.parametrize("remaining", [100, 101, -1])
def test_a_client_refuses_a_partial_reversal_of_nothing(remaining):
    reversal = AuthRequest(message_class=C.REVERSAL, channel="pos", card=PAN, amount_fen=100)
    with pytest.raises(ValueError, match="above the amount to remain"):
        request_message(reversal, stan="000002", transmitted="1129120500", terminal="T1",
                        acquirer="1", remaining_fen=remaining)
    sale = AuthRequest(message_class=C.SALE, channel="pos", card=PAN, amount_fen=100)
    with pytest.raises(ValueError, match="for a reversal only"):
        request_message(sale, stan="000002", transmitted="1129120500", terminal="T1",
                        acquirer="1", remaining_fen=50)


def test_a_partial_approval_answer_carries_the_approved_amount_in_f4():
    client, server = IsoClient(), PosCodec()
    sale = AuthRequest(message_class=C.SALE, channel="pos", card=PAN, amount_fen=15_000,
                       mcc="5411", partial_ok=True)
    fields = request_message(sale, stan="000003", transmitted="1129120600", terminal="T1",
                             acquirer="1")
    assert fields["60"] == "00000000000001"
    decoded = server.decode_request(client.encode(fields))
    body = server.encode_response(decoded.context, AuthResponse(
        response_code="10", approved_fen=10_000, auth_id="123456"))
    answer = client.answer(body)
    assert (answer.fields["4"], answer.response.approved_fen) == (f"{10_000:012d}", 10_000)
    full = client.answer(server.encode_response(decoded.context, AuthResponse(
        response_code="00", approved_fen=15_000, auth_id="123456")))
    assert full.fields["4"] == f"{15_000:012d}"  # F4 is replaced only in a partial approval
