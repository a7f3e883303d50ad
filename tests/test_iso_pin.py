"""PIN blocks and sessions' keys, sans-IO: known-answer vectors, round trips, garbage."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols.channel import FieldError
from protocols.iso_mac import MacAlgorithm, MacKey
from protocols.iso_pin import (
    PinError,
    check_pin,
    clear_block,
    decrypt_pin,
    encrypt_pin,
    pin_of_block,
)
from protocols.iso_session import (
    KeysRejected,
    SessionAction,
    SessionKey,
    WorkingKeys,
    check_value,
    entered_pin,
    f62_of,
    keys_of_f62,
    network_code,
    session_action,
)

KEY = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")

# ISO 9564-1 format 0 clear blocks as published: (PAN, PIN, block). The first is ID TECH's
# worked example, the second the ANSI X9.8 "format 01" example of Thales' manual.
FORMAT_0 = [
    ("43219876543210987", "1234", "0412AC89ABCDEF67"),
    ("4000001234562", "92389", "0592789FFFEDCBA9"),
]


@pytest.mark.parametrize(("pan", "pin", "block"), FORMAT_0)
def test_format_0_known_answers(pan, pin, block):
    assert clear_block(pin, pan).hex().upper() == block
    assert pin_of_block(bytes.fromhex(block), pan) == pin


@pytest.mark.parametrize(("key", "kcv"), [
    # The check value every HSM vendor prints for this test key (3 bytes shown: 08D7B4).
    ("0123456789ABCDEFFEDCBA9876543210", "08D7B4FB"),
    # K1 = K2: single DES, whose encryption of zeros under 0123456789ABCDEF is the classic
    # D5D44FF720683D0D.
    ("0123456789ABCDEF0123456789ABCDEF", "D5D44FF7"),
])
def test_check_values(key, kcv):
    assert check_value(bytes.fromhex(key)).hex().upper() == kcv


def test_pin_lengths_at_their_bounds():
    for pin in ("1234", "1" * 12):
        assert check_pin(pin) == pin
    for pin in ("123", "1" * 13, "12a4", "１２３４"):  # fullwidth digits are not ASCII
        with pytest.raises(PinError):
            check_pin(pin)


pans = st.from_regex(r"\A[0-9]{13,19}\Z")
pins = st.from_regex(r"\A[0-9]{4,12}\Z")


@given(pans, pins, st.binary(min_size=16, max_size=16))
def test_pin_round_trip(pan, pin, key):
    assert decrypt_pin(key, encrypt_pin(key, pin, pan), pan) == pin


@given(pans, st.binary(min_size=8, max_size=8), st.binary(min_size=16, max_size=16))
def test_garbage_is_a_clean_error_or_a_pin(pan, garbage, key):
    try:
        pin = decrypt_pin(key, garbage, pan)
    except PinError:
        return
    assert 4 <= len(pin) <= 12 and pin.isdigit()


@pytest.mark.parametrize("block", ["1412AC89ABCDEF67",  # format 1, not 0
                                   "0312AC89ABCDEF67",  # length 3
                                   "0D12AC89ABCDEF67",  # length 13
                                   "0412AC89ABCDEF66",  # padding not F
                                   "041A"])  # not 8 bytes
def test_blocks_that_are_not_format_0(block):
    with pytest.raises(PinError):
        pin_of_block(bytes.fromhex(block), "43219876543210987")


def test_f62_round_trip_and_what_a_terminal_refuses():
    keys = WorkingKeys(bytes(range(16)), bytes(range(16, 32)), bytes(range(32, 48)))
    f62 = f62_of(KEY, keys)
    assert len(f62) == 120 and f62 == f62.upper()
    assert f62[32:40] == check_value(keys.pik).hex().upper()
    assert keys_of_f62(KEY, f62) == keys
    with pytest.raises(KeysRejected, match="PIK does not match"):
        keys_of_f62(bytes(reversed(KEY)), f62)  # another master key
    tampered = f62[:39] + ("0" if f62[39] != "0" else "1") + f62[40:]
    with pytest.raises(KeysRejected):
        keys_of_f62(KEY, tampered)
    for bad in (f62[:-2], "ZZ" + f62[2:]):
        with pytest.raises(KeysRejected):
            keys_of_f62(KEY, bad)


@pytest.mark.parametrize(("message", "code"), [
    ({"70": "001"}, "001"),
    ({"60": "00000001001"}, "001"),
    ({"60": "00000001101"}, "101"),
    ({"60": "22000001001"}, ""),  # 60.1 22 is a sale's: no network code in it
    ({"70": "301", "60": "00000001001"}, "301"),  # F70 first
    ({}, ""),
])
def test_network_code(message, code):
    assert network_code(message) == code


def test_session_actions():
    assert session_action({"70": "101"}) is SessionAction.KEY_CHANGE
    assert session_action({"70": "301"}) is None


def test_entered_pin_needs_the_session_pin_key():
    pan, pik = "43219876543210987", bytes(range(16))
    block = encrypt_pin(pik, "1234", pan).hex().upper()
    session = SessionKey(bytes(range(16, 32)), pik)
    assert entered_pin({"52": block}, pan, session) == "1234"
    assert entered_pin({}, pan, session) == ""
    for signer, reason in ((MacKey(MacAlgorithm.X9_19, KEY), "pin_key_missing"),
                           (None, "pin_key_missing"),
                           (SessionKey(KEY, KEY), "pin_block_malformed")):
        with pytest.raises(FieldError) as raised:
            entered_pin({"52": block}, pan, signer)
        assert (raised.value.code, raised.value.reason) == ("55", reason)
    with pytest.raises(FieldError):
        entered_pin({"52": "XX" * 8}, pan, session)
