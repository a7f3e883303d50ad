"""Every guard of the ISO 8583 channels (protocols/iso_channel.py), as tables of requests.

Each row is a request that breaks one rule, or sits at, below or above one limit, and the
exact answer: MTI, response code (F39) and reason (F44). Requests are built and answers read
by pyiso8583 (tests/test_pos_support.py), the codec sans I/O: no switch, no Redis.
"""

from __future__ import annotations

import dataclasses

import pytest

from protocols.channel import Decoded, KeyNeeded
from protocols.iso8583 import load_dialect
from protocols.iso_channel import (
    ECHOED,
    KEYS_UNAVAILABLE,
    IsoChannel,
    available_credit,
    response_mti,
)
from protocols.iso_mac import KeyRing, MacAlgorithm, MacKey
from protocols.iso_session import SessionAction, SessionChange
from protocols.messages import AuthResponse, MessageClass
from protocols.pos import PosCodec
from tests.test_pos_support import decode, encode, field_at, financial, mac_ok

C = MessageClass
PAN = "6253680000000018"
STAN, F7 = "000123", "1129120000"
KEY = bytes(range(16))
DIALECTS = ("iso87ascii", "iso87binary")
# F90 naming the sale STAN 000123 of acquirer 00010000: MTI, STAN, F7, acquirer, forwarder.
F90 = "0200" "000123" "1129120000" "00000010000" "00000000000"


def sale(**changes) -> dict:
    """A valid 0200 purchase; a change of None drops that field."""
    doc = financial("0200", PAN, "000000", 100, stan=STAN, f7=F7)
    doc.update(changes)
    return {key: value for key, value in doc.items() if value is not None}


def answered(doc: dict, codec: IsoChannel | None = None, dialect: str = "iso87ascii",
             key: bytes | None = None) -> dict:
    """The immediate answer the channel gives to `doc`; fails when it decodes a request."""
    out = (codec or PosCodec(dialect)).decode_request(encode(doc, dialect, key))
    assert isinstance(out, bytes), f"decoded as {out.request.message_class}, not answered"
    return decode(out, dialect)


def request(doc: dict, codec: IsoChannel | None = None, dialect: str = "iso87ascii",
            key: bytes | None = None):
    out = (codec or PosCodec(dialect)).decode_request(encode(doc, dialect, key))
    assert isinstance(out, Decoded), f"answered {decode(out, dialect)}"
    return out.request


# ---- refused at once: (request, answer MTI, F39, F44) ----------------------------------------

REFUSED = {
    "MTI of another version": (sale(t="1200"), "1210", "12", "mti_not_supported"),
    "MTI of an answer": (sale(t="0210"), "0210", "12", "mti_not_supported"),
    "MTI, last digit 2 (other than 0 or 1)": (sale(t="0202"), "0210", "12",
                                              "mti_not_supported"),
    "MTI of an unknown class": (sale(t="0300"), "0310", "12", "mti_not_supported"),
    "MTI 0440": (sale(t="0440"), "0450", "12", "mti_not_supported"),
    "MTI 0120 (advice)": (sale(t="0120"), "0130", "12", "mti_not_supported"),
    "F3 missing": (sale(**{"3": None}), "0210", "30", "field_3_missing"),
    "F3 of no class": (sale(**{"3": "010000"}), "0210", "12", "processing_not_supported"),
    "F3 refund on a 0100": (sale(t="0100", **{"3": "200000"}), "0110", "12",
                            "processing_not_supported"),
    "F3 inquiry on a 0220": (sale(t="0220", **{"3": "310000"}), "0230", "12",
                             "processing_not_supported"),
    "no F2, no F35": (sale(**{"2": None}), "0210", "30", "card_missing"),
    "F35 without a separator": (sale(**{"2": None, "35": PAN + "3012101"}), "0210", "30",
                                "card_missing"),
    "F7 missing": (sale(**{"7": None}), "0210", "30", "field_7_missing"),
    "F11 missing": (sale(**{"11": None}), "0210", "30", "field_11_missing"),
    "F41 missing": (sale(**{"41": None}), "0210", "30", "field_41_missing"),
    "F41 all spaces": (sale(**{"41": " " * 8}), "0210", "30", "field_41_missing"),
    "F4 missing on a sale": (sale(**{"4": None}), "0210", "30", "field_4_missing"),
    "F4 missing on a pre-authorization": (sale(t="0100", **{"4": None}), "0110", "30",
                                          "field_4_missing"),
    "F4 missing on a capture": (sale(t="0220", **{"4": None, "90": F90}), "0230", "30",
                                "field_4_missing"),
    "F4 missing on a refund": (sale(**{"3": "200000", "4": None, "90": F90}), "0210", "30",
                               "field_4_missing"),
    "F49 letters": (sale(**{"49": "CNY"}), "0210", "30", "currency_not_numeric"),
    "F49 with a space": (sale(**{"49": "15 "}), "0210", "30", "currency_not_numeric"),
    "capture without F90": (sale(t="0220"), "0230", "30", "original_data_missing"),
    "refund without F90": (sale(**{"3": "200000"}), "0210", "30", "original_data_missing"),
    "reversal without F90 or F37": (sale(t="0400", **{"37": None}), "0410", "30",
                                    "field_37_missing"),
    "0800 with an unknown F70": ({"t": "0800", "7": F7, "11": STAN, "70": "999"}, "0810",
                                 "12", "network_code_unsupported"),
    "0800 without F70": ({"t": "0800", "7": F7, "11": STAN}, "0810", "12",
                         "network_code_unsupported"),
}


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("label", REFUSED)
def test_refused_with_the_exact_code_and_reason(label, dialect):
    doc, mti, code, reason = REFUSED[label]
    answer = answered(doc, dialect=dialect)
    assert (answer["t"], answer["39"], answer["44"]) == (mti, code, reason)
    assert "38" not in answer and "54" not in answer
    for key in ("7", "11"):
        assert answer.get(key) == doc.get(key)  # echoed, so the terminal can match it


@pytest.mark.parametrize("code", ["001", "002", "301"])
def test_network_management_is_approved(code):
    answer = answered({"t": "0800", "7": F7, "11": STAN, "70": code})
    assert (answer["t"], answer["39"], answer["70"]) == ("0810", "00", code)
    assert "44" not in answer and "54" not in answer and "38" not in answer


# ---- accepted: the canonical request, field by field ------------------------------------


@pytest.mark.parametrize(("mti", "processing", "expected"), [
    ("0100", "000000", C.AUTH), ("0101", "000000", C.AUTH), ("0100", "310000", C.INQUIRY),
    ("0200", "000000", C.SALE), ("0201", "000000", C.SALE), ("0200", "200000", C.REFUND),
    ("0200", "310000", C.INQUIRY), ("0220", "000000", C.CAPTURE),
    ("0221", "200000", C.REFUND), ("0400", "000000", C.REVERSAL),
    ("0401", "000000", C.REVERSAL), ("0420", "990000", C.REVERSAL),  # F3 not read
    ("0421", "000000", C.REVERSAL),
])
def test_message_classes(mti, processing, expected):
    got = request(sale(t=mti, **{"3": processing, "90": F90}))
    assert got.message_class is expected


def test_a_sale_as_read():
    got = request(sale(**{"41": "T1      ", "42": f"{'M7':<15}", "14": "2712"}))
    assert (got.channel, got.card, got.amount_fen, got.currency) == ("pos", PAN, 100, 156)
    assert (got.mcc, got.expiry, got.merchant_id, got.terminal_id) == ("5411", "2712", "M7",
                                                                       "T1")
    assert (got.txn_ref, got.original_ref) == ("pos:10000:T1:000123", "")
    assert got.idempotency_key == "pos:txn:10000:T1:000123:1129120000"
    assert got.transmitted_at == F7


def test_optional_fields_default():
    got = request(sale(**{"18": None, "42": None, "49": None, "32": None}))
    assert (got.mcc, got.merchant_id, got.currency, got.expiry) == ("", "", 156, "")
    assert got.txn_ref == "pos:0:TERM0001:000123"  # no acquirer: institution 0
    assert request(sale(**{"49": "840"})).currency == 840


@pytest.mark.parametrize(("acquirer", "named"), [
    ("00010000", "10000"), ("10000", "10000"), ("0", "0"), ("00000000000", "0"), ("7", "7"),
])
def test_acquirer_institution(acquirer, named):
    assert request(sale(**{"32": acquirer})).txn_ref == f"pos:{named}:TERM0001:000123"


@pytest.mark.parametrize(("track", "card", "expiry"), [
    (f"{PAN}=30121010000", PAN, "3012"),
    (f"{PAN}D30121010000", PAN, "3012"),  # D: the other separator
    (f"{PAN}=3012", PAN, "3012"),  # exactly the four expiry digits
    (f"{PAN}=301", PAN, ""),  # one short of an expiry
    (f"{PAN}=", PAN, ""),
    (f"{PAN}=30121", PAN, "3012"),
])
def test_track_2(track, card, expiry):
    got = request(sale(**{"2": None, "35": track}))
    assert (got.card, got.expiry) == (card, expiry)


def test_f2_wins_over_track_2_and_f14_over_its_expiry():
    assert (request(sale(**{"35": "6200000000000000=2912"})).card,
            request(sale(**{"35": "6200000000000000=2912"})).expiry) == (PAN, "")
    got = request(sale(**{"2": None, "35": f"{PAN}=2912", "14": "3101"}))
    assert (got.card, got.expiry) == (PAN, "3101")


@pytest.mark.parametrize(("mti", "processing", "amount", "expected"), [
    ("0200", "000000", 100, 100), ("0100", "000000", 1, 1), ("0220", "000000", 0, 0),
    ("0200", "200000", 99, 99),
    ("0200", "310000", None, 0), ("0200", "310000", 500, 500),  # an inquiry may say one
    ("0400", "000000", 500, 0), ("0420", "000000", None, 0),  # a reversal: the whole rest
])
def test_amounts_by_class(mti, processing, amount, expected):
    doc = sale(t=mti, **{"3": processing, "90": F90})
    if amount is None:
        del doc["4"]
    else:
        doc["4"] = f"{amount:012d}"
    assert request(doc).amount_fen == expected


@pytest.mark.parametrize(("mti", "processing", "f90", "original"), [
    ("0400", "000000", F90, "pos:10000:TERM0001:000123"),
    ("0400", "000000", "0200" "654321" "1129120000" "00000010000" + "0" * 11,
     "pos:10000:TERM0001:654321"),
    ("0400", "000000", "0200" "654321" "1129120000" + "0" * 22,  # zero acquirer: ours
     "pos:10000:TERM0001:654321"),
    ("0220", "000000", "0100" "000777" "1129120000" "00000010000" + "0" * 11,
     "pos:10000:TERM0001:000777"),
    ("0200", "200000", F90, "pos:10000:TERM0001:000123"),
    ("0400", "000000", None, "pos:10000:TERM0001:000999"),  # no F90: this STAN
    ("0200", "000000", F90, ""),  # a sale names no original, F90 or not
    ("0100", "000000", F90, ""),
    ("0200", "310000", F90, ""),
])
def test_originals(mti, processing, f90, original):
    doc = sale(t=mti, **{"3": processing, "11": "000999", "90": f90})
    assert request(doc).original_ref == original


@pytest.mark.parametrize(("acquirer", "f90_acquirer", "original"), [
    ("70000", "00000070000", "pos:70000:TERM0001:654321"),
    ("12345678901", "12345678901", "pos:12345678901:TERM0001:654321"),  # all 11 digits
    ("0070000", "00000070000", "pos:70000:TERM0001:654321"),  # leading zeros differ only
])
def test_an_original_is_of_the_message_s_own_acquirer(acquirer, f90_acquirer, original):
    f90 = "0200" "654321" "1129120000" + f90_acquirer + "0" * 11
    doc = sale(t="0400", **{"32": acquirer, "90": f90})
    assert request(doc).original_ref == original
    for other in ("00000070001", "00000000001", "10000000000"):
        refused = answered(sale(t="0400", **{"32": acquirer, "90": f90[:20] + other + "0" * 11}))
        assert (refused["39"], refused["44"]) == ("25", "original_acquirer_differs")


def test_reversal_and_original_never_share_an_idempotency_key():
    assert (request(sale()).idempotency_key
            != request(sale(t="0400", **{"90": F90})).idempotency_key)


# ---- the MAC --------------------------------------------------------------------------


TERMINAL_KEY = MacKey(MacAlgorithm.HMAC_SHA256, KEY)  # of sale()'s acquirer and terminal


def keyed(dialect: str, keys=None) -> PosCodec:
    return PosCodec(dialect, keys=keys or KeyRing({("10000", "TERM0001"): TERMINAL_KEY}))


@pytest.mark.parametrize("dialect", DIALECTS)
def test_mac_guards(dialect):
    codec = keyed(dialect)
    assert request(sale(), codec, dialect, KEY).card == PAN
    reversal = sale(t="0400", **{"90": F90})
    assert request(reversal, codec, dialect, KEY).message_class is C.REVERSAL  # F128
    for doc, key, code, reason in [
            (sale(), None, "A0", "mac_missing"),
            (sale(), bytes(16), "A0", "mac_mismatch"),
            (reversal, bytes(16), "A0", "mac_mismatch"),
            ({"t": "0800", "7": F7, "11": STAN, "70": "301"}, KEY, "58", "terminal_unknown"),
            ({"t": "0800", "7": F7, "11": STAN, "32": "00010000", "41": "TERM0001",
              "70": "301"}, bytes(16), "A0", "mac_mismatch"),
            (sale(**{"41": "TERM0002"}), KEY, "58", "terminal_unknown"),  # not its key
            (sale(**{"32": "00010001"}), KEY, "58", "terminal_unknown"),  # another acquirer
            (sale(**{"32": None}), KEY, "58", "terminal_unknown")]:
        answer = answered(doc, codec, dialect, key)
        assert (answer["39"], answer["44"]) == (code, reason)
        assert "64" not in answer and "128" not in answer  # unsigned: who sent it?
    echo = {"t": "0800", "7": F7, "11": STAN, "70": "301"}
    assert answered(echo, codec, dialect, None)["39"] == "00"  # network management unsigned
    own = {**echo, "32": "00010000", "41": "TERM0001"}
    assert answered(own, codec, dialect, KEY)["39"] == "00"
    # Without keys (mac = "off") nothing is checked, even a wrong MAC.
    assert request(sale(), PosCodec(dialect), dialect, bytes(16)).card == PAN


@pytest.mark.parametrize("dialect", DIALECTS)
def test_an_acquirer_key_signs_for_its_terminals_without_one(dialect):
    acquirer_key = MacKey(MacAlgorithm.HMAC_SHA256, bytes(range(1, 17)))
    codec = keyed(dialect, KeyRing({("10000", "*"): acquirer_key,
                                    ("10000", "TERM0001"): TERMINAL_KEY}))
    other = sale(**{"41": "TERM0002"})
    assert request(other, codec, dialect, acquirer_key.key).terminal_id == "TERM0002"
    # A terminal with a key of its own is not signed for by the acquirer's.
    answer = answered(sale(), codec, dialect, acquirer_key.key)
    assert (answer["39"], answer["44"]) == ("A0", "mac_mismatch")


@pytest.mark.parametrize("dialect", DIALECTS)
def test_answers_carry_the_mac_of_the_key_that_verified_the_request(dialect):
    codec = keyed(dialect)
    body = codec.decode_request(encode(sale(**{"2": None}), dialect, KEY))  # 30: no card
    assert decode(body, dialect)["39"] == "30" and mac_ok(body, decode(body, dialect), KEY,
                                                           dialect)
    plain = PosCodec(dialect).decode_request(encode(sale(**{"2": None}), dialect, None))
    assert "64" not in decode(plain, dialect)


class Rotated:
    """A lookup whose cached keys are stale once: the codec asks for them afresh."""

    def __init__(self, stale: tuple, doubts: bool) -> None:
        self.stale, self.doubts, self.doubted = stale, doubts, 0

    def keys_for(self, acquirer: str, terminal: str):
        return self.stale

    def doubt(self, acquirer: str, terminal: str) -> bool:
        self.doubted += 1
        return self.doubts


@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_mac_failing_under_cached_keys_asks_for_them_afresh_once(dialect):
    stale = (MacKey(MacAlgorithm.HMAC_SHA256, bytes(16)),)
    body = encode(sale(), dialect, KEY)
    lookup = Rotated(stale, doubts=True)
    codec = PosCodec(dialect, keys=lookup)
    assert codec.decode_request(body) == KeyNeeded("10000", "TERM0001")
    assert codec.decode_request(body, (TERMINAL_KEY,)).request.card == PAN  # the fresh keys
    again = decode(codec.decode_request(body, stale), dialect)  # fresh, and still wrong: A0
    assert (again["39"], lookup.doubted) == ("A0", 1)
    recent = PosCodec(dialect, keys=Rotated(stale, doubts=False))  # fetched a moment ago
    assert decode(recent.decode_request(body), dialect)["39"] == "A0"
    missing = PosCodec(dialect, keys=Rotated(None, doubts=False))
    assert missing.decode_request(body) == KeyNeeded("10000", "TERM0001")
    # No key when cached: asked afresh too (a terminal given one since), else 58.
    assert PosCodec(dialect, keys=Rotated((), doubts=True)).decode_request(body) == KeyNeeded(
        "10000", "TERM0001")
    unknown = decode(PosCodec(dialect, keys=Rotated((), doubts=False)).decode_request(body),
                     dialect)
    assert unknown["39"] == "58"
    assert decode(codec.decode_request(body, ()), dialect)["39"] == "58"  # fetched: final
    down = decode(codec.decode_request(body, KEYS_UNAVAILABLE), dialect)
    assert (down["39"], down["44"]) == ("91", "issuer_unavailable")


# ---- answers to decisions ---------------------------------------------------------------


def decided(response: AuthResponse, doc: dict | None = None) -> dict:
    codec = PosCodec()
    decoded = codec.decode_request(encode(doc or sale()))
    return decode(codec.encode_response(decoded.context, response))


def test_an_approval():
    answer = decided(AuthResponse(response_code="00", approved_fen=100, auth_id="A1B2C3",
                                  open_to_buy_fen=9_900, reason="ignored"))
    assert (answer["t"], answer["39"], answer["38"]) == ("0210", "00", "A1B2C3")
    assert answer["54"] == "3002156C000000009900" == available_credit(9_900, "156")
    assert "44" not in answer


def test_a_partial_approval_is_an_approval():
    answer = decided(AuthResponse(response_code="10", approved_fen=50, auth_id="X",
                                  open_to_buy_fen=0))
    assert (answer["39"], answer["38"].rstrip(), answer["54"]) == (
        "10", "X", "3002156C000000000000")


def test_an_approval_without_auth_id_or_currency():
    answer = decided(AuthResponse(response_code="00", open_to_buy_fen=5),
                     sale(**{"49": None}))
    assert "38" not in answer and answer["54"] == "3002156C000000000005"
    answer = decided(AuthResponse(response_code="00", open_to_buy_fen=5),
                     sale(**{"49": "840"}))
    assert answer["54"] == "3002840C000000000005"


def test_a_decline():
    answer = decided(AuthResponse(response_code="51", auth_id="A1B2C3", open_to_buy_fen=7,
                                  reason="insufficient_credit"))
    assert (answer["39"], answer["44"]) == ("51", "insufficient_credit")
    assert "38" not in answer and "54" not in answer
    assert "44" not in decided(AuthResponse(response_code="05"))


@pytest.mark.parametrize(("reason", "sent"), [
    ("r" * 24, "r" * 24), ("r" * 25, "r" * 25), ("r" * 26, "r" * 25),  # F44 is ..25
    ("tab\there", "tab?here"), ("caf\u00e9~", "caf?~"), (" x", " x"),
])
def test_the_reason_is_printable_and_fits_f44(reason, sent):
    assert decided(AuthResponse(response_code="05", reason=reason))["44"] == sent


def test_echoed_and_withheld_fields():
    doc = sale(**{"14": "3012", "35": f"{PAN}=3012101", "55": "9F2701" "80"})
    answer = decided(AuthResponse(response_code="05"), doc)
    withheld_too(doc, answer)
    # A PIN block with no session PIN key to read it (MACs off here): 55 at once, and F52
    # is not echoed either.
    doc["52"] = "00" * 8
    answer = decode(PosCodec().decode_request(encode(doc)))
    assert (answer["39"], answer["44"]) == ("55", "pin_key_missing")
    withheld_too(doc, answer)


def withheld_too(doc: dict, answer: dict) -> None:
    assert {key: answer[key] for key in ECHOED if key in doc} == {
        key: doc[key] for key in ECHOED if key in doc}
    for withheld in ("14", "35", "52", "55", "64", "43"):
        assert withheld not in answer


def test_an_unreadable_mti_is_answered_0000():
    answer = decode(PosCodec().decode_request(b"02x0" + encode(sale())[4:]))
    assert (answer["t"], answer["39"], answer["44"]) == ("0000", "30", "format:mti")
    assert set(answer) == {"t", "39", "44"}


def test_a_broken_field_is_answered_with_the_fields_before_it():
    body = encode(sale())
    at = field_at(body, "18")
    answer = decode(PosCodec().decode_request(body[:at] + b"X" + body[at + 1:]))
    assert (answer["t"], answer["39"], answer["44"]) == ("0210", "30", "format:field_18")
    assert [key for key in answer if key not in ("39", "44")] == [
        "t", "2", "3", "4", "7", "11", "12", "13"]


@pytest.mark.parametrize(("mti", "answer"), [
    ("0100", "0110"), ("0101", "0110"), ("0200", "0210"), ("0220", "0230"),
    ("0400", "0410"), ("0421", "0430"), ("0800", "0810"), ("0110", "0110"),
])
def test_answer_mti(mti, answer):
    assert response_mti(mti) == answer


def test_a_dialect_with_a_bcd_mti_is_served_and_answered_in_bcd():
    """UnionPay terminals send a BCD MTI (the unionpay dialect): the channel reads the
    message the same, and its answer's MTI is BCD too."""
    ascii_dialect = load_dialect("iso87ascii")
    bcd = dataclasses.replace(ascii_dialect, name="bcdmti", mti_encoding="bcd")
    codec = PosCodec(bcd)
    body = codec.codec.encode(sale())
    assert body[:2] == b"\x02\x00"
    answer = codec.answer(codec.codec.decode(body), "00")
    assert answer[:2] == b"\x02\x10"
    # Codecs are cached by the dialect's value: an earlier test may have made this one.
    assert PosCodec(ascii_dialect).codec.dialect == ascii_dialect


def test_the_base_channel_names_itself_iso():
    decoded = IsoChannel().decode_request(encode(sale()))
    assert decoded.request.channel == "iso"
    assert decoded.request.txn_ref == "iso:10000:TERM0001:000123"


def test_refusals_of_the_sender_are_logged_with_the_card_masked(caplog):
    codec = keyed("iso87ascii")
    with caplog.at_level("WARNING", logger="protocols.iso_channel"):
        answered(sale(), codec, "iso87ascii", bytes(16))
        answered(sale(**{"41": "TERM0009"}), codec, "iso87ascii", KEY)
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == 2 and PAN not in " ".join(lines)
    assert "A0 mac_mismatch: acquirer 10000 terminal 'TERM0001'" in lines[0]
    assert "58 terminal_unknown" in lines[1] and "625368******0018" in lines[1]


@pytest.mark.parametrize("dialect, f62", [("iso87ascii", "0123ABCD"),
                                          ("unionpay", bytes.fromhex("0123ABCD"))])
def test_a_sign_on_answer_carries_its_keys_in_f62_as_the_dialect_holds_it(dialect, f62):
    """Hex text where F62 is text (iso87), raw bytes where the dialect has it binary."""
    codec = PosCodec(dialect)
    message = codec.codec.decode(codec.codec.encode({"t": "0800", "11": STAN, "41": "TERM0001",
                                                     "70": "001"}))
    change = SessionChange(SessionAction.SIGN_ON, "10000", "TERM0001", message)
    answer = codec.codec.decode(codec.session_answer(change, "00", f62="0123ABCD"))
    assert (answer["t"], answer["39"], answer["62"]) == ("0810", "00", f62)
