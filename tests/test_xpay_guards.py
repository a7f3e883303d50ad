"""Every guard of the x-pay channel (protocols/xpay.py), as tables of requests.

Each row breaks one rule of a wallet payment (entry mode, F55 and its cryptogram tags, the
amount and currency they bind) or sits at, below or above a tag's size, with the exact
answer: response code (F39) and reason (F44). F55 is built here by hand from its definition
in docs/channels/xpay.md; requests and answers go through pyiso8583. No switch, no Redis.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from pathlib import Path

import pytest

from protocols.channel import Decoded
from protocols.messages import MessageClass
from protocols.xpay import (
    WALLETS,
    XpayCodec,
    XpayRequest,
    bcd,
    cryptogram,
    cryptogram_data,
    icc_field,
)
from tests.test_pos_support import decode, encode, financial

C = MessageClass
TOKEN = "6288880000000018"
KEY = bytes(range(16))
DIALECTS = ("iso87ascii", "iso87binary")
F90 = "0200" "000123" "1129120000" "00000010000" "00000000000"
UNPREDICTABLE = bytes.fromhex("0A0B0C0D")


def tlv(tags: dict[str, bytes]) -> bytes:
    """BER-TLV with one-byte lengths, tags in the given order."""
    return b"".join(bytes.fromhex(tag) + bytes([len(value)]) + value
                    for tag, value in tags.items())


def tags(amount_fen: int = 100, currency: int = 156, atc: int = 7, **changes) -> dict:
    """The cryptogram tags of a payment; a change of None drops that tag."""
    data = (bytes.fromhex(f"{amount_fen:012d}") + bytes.fromhex(f"{currency:04d}")
            + atc.to_bytes(2, "big") + UNPREDICTABLE)
    made = {"9F26": hmac.new(KEY, data, hashlib.sha256).digest()[:8], "9F27": b"\x80",
            "9F36": data[8:10], "9F37": UNPREDICTABLE, "9F02": data[:6], "5F2A": data[6:8]}
    made.update(changes)
    return {tag: value for tag, value in made.items() if value is not None}


def payment(f55: bytes | str | None = None, *, mti: str = "0200", processing: str = "000000",
            amount_fen: int | None = 100, entry: str = "072", **fields) -> dict:
    doc = financial(mti, TOKEN, processing, amount_fen, entry=entry, **fields)
    if f55 is None:
        f55 = tlv(tags(amount_fen or 0))
    if f55 != "":
        doc["55"] = f55.hex().upper() if isinstance(f55, bytes) else f55
    return doc


def answered(doc: dict, dialect: str = "iso87ascii") -> dict:
    out = XpayCodec(dialect).decode_request(encode(doc, dialect))
    assert isinstance(out, bytes), f"decoded as {out.request}, not answered"
    return decode(out, dialect)


def request(doc: dict, dialect: str = "iso87ascii") -> XpayRequest:
    out = XpayCodec(dialect).decode_request(encode(doc, dialect))
    assert isinstance(out, Decoded), f"answered {decode(out, dialect)}"
    return out.request


REFUSED = {
    "entry mode 05 (chip)": (payment(entry="051"), "30", "entry_mode_not_wallet"),
    "entry mode 08": (payment(entry="082"), "30", "entry_mode_not_wallet"),
    "entry mode 80": (payment(entry="802"), "30", "entry_mode_not_wallet"),
    "entry mode 70 (digits swapped)": (payment(entry="702"), "30", "entry_mode_not_wallet"),
    "no entry mode": (payment() | {"22": None}, "30",
                      "entry_mode_not_wallet"),
    "no F55": (payment(""), "30", "field_55_missing"),
    "F55 not TLV": (payment(b"\x9f\x26\x09" + bytes(8)), "30", "field_55_not_tlv"),
    "F55 empty TLV": (payment(b"\x9f\x27\x01\x80"), "30", "tag_9F26_malformed"),
    "9F26 missing": (payment(tlv(tags(**{"9F26": None}))), "30", "tag_9F26_malformed"),
    "9F26 7 bytes": (payment(tlv(tags(**{"9F26": bytes(7)}))), "30", "tag_9F26_malformed"),
    "9F26 9 bytes": (payment(tlv(tags(**{"9F26": bytes(9)}))), "30", "tag_9F26_malformed"),
    "9F36 missing": (payment(tlv(tags(**{"9F36": None}))), "30", "tag_9F36_malformed"),
    "9F36 1 byte": (payment(tlv(tags(**{"9F36": b"\x07"}))), "30", "tag_9F36_malformed"),
    "9F36 3 bytes": (payment(tlv(tags(**{"9F36": bytes(3)}))), "30", "tag_9F36_malformed"),
    "9F37 missing": (payment(tlv(tags(**{"9F37": None}))), "30", "tag_9F37_malformed"),
    "9F37 3 bytes": (payment(tlv(tags(**{"9F37": bytes(3)}))), "30", "tag_9F37_malformed"),
    "9F37 5 bytes": (payment(tlv(tags(**{"9F37": bytes(5)}))), "30", "tag_9F37_malformed"),
    "9F02 missing": (payment(tlv(tags(**{"9F02": None}))), "30", "tag_9F02_malformed"),
    "9F02 5 bytes": (payment(tlv(tags(**{"9F02": bytes(5)}))), "30", "tag_9F02_malformed"),
    "9F02 7 bytes": (payment(tlv(tags(**{"9F02": bytes(7)}))), "30", "tag_9F02_malformed"),
    "5F2A missing": (payment(tlv(tags(**{"5F2A": None}))), "30", "tag_5F2A_malformed"),
    "5F2A 1 byte": (payment(tlv(tags(**{"5F2A": b"\x01"}))), "30", "tag_5F2A_malformed"),
    "5F2A 3 bytes": (payment(tlv(tags(**{"5F2A": bytes(3)}))), "30", "tag_5F2A_malformed"),
    "9F02 not BCD": (payment(tlv(tags(**{"9F02": bytes.fromhex("00000000010A")}))), "30",
                     "tag_9F02_not_bcd"),
    "5F2A not BCD": (payment(tlv(tags(**{"5F2A": bytes.fromhex("015F")}))), "30",
                     "tag_5F2A_not_bcd"),
    "9F02 over F4": (payment(tlv(tags(101))), "34", "icc_amount_mismatch"),
    "9F02 under F4": (payment(tlv(tags(99))), "34", "icc_amount_mismatch"),
    "5F2A not F49": (payment(tlv(tags(currency=840))), "34", "icc_currency_mismatch"),
    "inquiry, 9F02 not zero": (payment(tlv(tags(1)), processing="310000", amount_fen=None),
                               "34", "icc_amount_mismatch"),
    "pre-authorization, no F55": (payment("", mti="0100", condition="06"), "30",
                                  "field_55_missing"),
    "both tags wrong: size first": (payment(tlv(tags(**{"9F26": bytes(7), "9F02": b"\xff"}))),
                                    "30", "tag_9F26_malformed"),
    "amount and currency wrong: amount first": (payment(tlv(tags(5, currency=840))), "34",
                                                "icc_amount_mismatch"),
    "not BCD and mismatched: BCD first": (
        payment(tlv(tags(7, **{"5F2A": bytes.fromhex("0A0A")}))), "30", "tag_5F2A_not_bcd"),
}


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("label", REFUSED)
def test_refused_with_the_exact_code_and_reason(label, dialect):
    doc, code, reason = REFUSED[label]
    doc = {key: value for key, value in doc.items() if value is not None}
    answer = answered(doc, dialect)
    assert (answer["t"], answer["39"], answer["44"]) == (
        f"{doc['t'][:2]}{int(doc['t'][2]) + 1}0", code, reason)
    assert "38" not in answer and "54" not in answer and "55" not in answer


def test_odd_hex_digits_in_the_ascii_dialect_are_not_tlv():
    answer = answered(payment("9F2601A"))  # hex text; the binary dialect cannot carry it
    assert (answer["39"], answer["44"]) == ("30", "field_55_not_tlv")


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize(("mti", "processing", "entry", "amount", "expected"), [
    ("0200", "000000", "072", 100, C.SALE),
    ("0200", "000000", "071", 100, C.SALE),
    ("0100", "000000", "812", 100, C.AUTH),  # in-app
    ("0200", "310000", "072", None, C.INQUIRY),
    ("0200", "310000", "072", 0, C.INQUIRY),
])
def test_wallet_payments_carry_their_cryptogram(dialect, mti, processing, entry, amount,
                                                expected):
    doc = payment(mti=mti, processing=processing, entry=entry, amount_fen=amount)
    got = request(doc, dialect)
    made = tags(amount or 0)
    assert (got.message_class, got.card, got.channel) == (expected, TOKEN, "xpay")
    assert got.cryptogram == made["9F26"]
    assert got.cryptogram_data == made["9F02"] + made["5F2A"] + made["9F36"] + made["9F37"]
    assert got.atc == 7


def test_the_atc_is_read_big_endian():
    doc = payment(tlv(tags(**{"9F36": b"\x01\x02"})))
    assert request(doc).atc == 0x0102


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize(("mti", "processing", "expected"), [
    ("0220", "000000", C.CAPTURE), ("0200", "200000", C.REFUND), ("0400", "000000", C.REVERSAL),
])
def test_acquirer_messages_need_no_cryptogram(dialect, mti, processing, expected):
    doc = payment("", mti=mti, processing=processing, entry="051", original=F90)
    got = request(doc, dialect)
    assert isinstance(got, XpayRequest)
    assert (got.message_class, got.cryptogram, got.cryptogram_data, got.atc) == (
        expected, b"", b"", -1)


def test_the_card_checks_of_every_iso_channel_come_first():
    doc = payment(entry="051")
    del doc["11"]
    assert (answered(doc)["39"], answered(doc)["44"]) == ("30", "field_11_missing")


# ---- the client side: what a wallet sends ------------------------------------------------


def test_the_cryptogram_is_hmac_sha256_over_amount_currency_atc_unpredictable():
    data = cryptogram_data(12_800, 156, 0x0102, UNPREDICTABLE)
    assert data == bytes.fromhex("000000012800" "0156" "0102" "0A0B0C0D")
    assert cryptogram(KEY, data) == hmac.new(KEY, data, hashlib.sha256).digest()[:8]
    assert bcd("0156") == b"\x01\x56"


@pytest.mark.parametrize("binary", [True, False])
def test_icc_field_is_what_the_definition_makes(binary):
    field = icc_field(100, 156, 7, UNPREDICTABLE, KEY, binary)
    expected = tlv(tags(100))
    assert field == (expected if binary else expected.hex().upper())


@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_client_made_payment_is_read_back(dialect):
    doc = payment(amount_fen=4_200)
    binary = dialect == "iso87binary"
    made = icc_field(4_200, 156, 9, UNPREDICTABLE, KEY, binary)
    doc["55"] = made.hex().upper() if binary else made
    got = request(doc, dialect)
    assert got.atc == 9 and got.cryptogram == cryptogram(KEY, got.cryptogram_data)


def test_a_wallet_request_takes_keywords_only():
    with pytest.raises(TypeError):
        XpayRequest(b"\x00" * 8, message_class=C.SALE, channel="xpay", card=TOKEN,
                    amount_fen=1)
    assert XpayRequest(message_class=C.SALE, channel="xpay", card=TOKEN, amount_fen=1).atc == -1


def test_the_wallets_are_those_the_channel_page_names():
    page = (Path(__file__).parent.parent / "docs" / "channels" / "xpay.md").read_text()
    named = re.search(r"the wallet \(([^)]*)\)", page).group(1)
    assert tuple(re.findall(r"`(\w+)`", named)) == WALLETS == ("apple", "huawei", "mi")
