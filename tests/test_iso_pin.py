"""PIN blocks and sessions' keys, sans-IO: known-answer vectors, round trips, garbage."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given
from hypothesis import strategies as st

from protocols.channel import FieldError
from protocols.iso_mac import MacAlgorithm, MacKey
from protocols.iso_pin import (
    PinError,
    account_field,
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
    can_exchange_keys,
    check_value,
    entered_pin,
    f62_of,
    keys_of_f62,
    network_code,
    network_f60,
    network_request,
    session_action,
    unwrap,
    wrap,
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


ciphers = st.sampled_from([MacAlgorithm.X9_19, MacAlgorithm.SM4])


@given(pans, pins, st.binary(min_size=16, max_size=16), ciphers)
def test_pin_round_trip(pan, pin, key, algorithm):
    assert decrypt_pin(key, encrypt_pin(key, pin, pan, algorithm), pan, algorithm) == pin


@given(pans, st.binary(min_size=16, max_size=16), ciphers, st.data())
def test_garbage_is_a_clean_error_or_a_pin(pan, key, algorithm, data):
    size = 8 if algorithm is MacAlgorithm.X9_19 else 16
    garbage = data.draw(st.binary(min_size=size, max_size=size))
    try:
        pin = decrypt_pin(key, garbage, pan, algorithm)
    except PinError:
        return
    assert 4 <= len(pin) <= 12 and pin.isdigit()


@pytest.mark.parametrize("block", ["1412AC89ABCDEF67",  # format 1, not 0
                                   "0312AC89ABCDEF67",  # length 3
                                   "0D12AC89ABCDEF67",  # length 13
                                   "0412AC89ABCDEF66",  # padding not F
                                   "0412AC79ABCDEF67",  # the first padding nibble 0, not F
                                   "0F12AC89ABCDEF67",  # length F (15)
                                   "0E12AC89ABCDEF67",  # length E (14)
                                   "041A"])  # not 8 bytes
def test_blocks_that_are_not_format_0(block):
    with pytest.raises(PinError):
        pin_of_block(bytes.fromhex(block), "43219876543210987")


def test_a_card_number_that_is_not_ascii_digits_has_no_account_field():
    assert account_field("43219876543210987") == bytes.fromhex("0000987654321098")
    # A letter; fullwidth digits (digits, yet not ASCII); a check digit alone.
    for pan in ("4321987654321098X7", "４３２１９８７６５４３２１０９８７", "1"):
        with pytest.raises(PinError, match="not digits"):
            account_field(pan)
    with pytest.raises(PinError, match="not digits"):
        clear_block("1234", "43219876543210９87")


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


# --- SM4 (national-cryptography terminals) ---------------------------------------------------

# A public SM4 sign-on and PIN example (blog.csdn.net/M_Kerry/article/details/104625499,
# "SM4 ECB + ANSI X9.8"): the test master key, a PIK under it as the sign-on returned it, its
# check value (the clear key encrypting 16 zero bytes), and the 16-byte PIN block of PIN
# 123654 on card 6230606601007726888.
SM4_TMK = bytes.fromhex("1234567890ABCDEFABCDEF0987654321")
SM4_WRAPPED_PIK = bytes.fromhex("3D66234C49E4296FF9C78D8BACBD6A76")
SM4_PIK = bytes.fromhex("F351D490994603795C6EBEE8FAEBB481")
SM4_PIK_CHECK = "861E83E31FAEBF10"  # the example prints 8 bytes; F62 carries the first 4
SM4_PAN, SM4_PIN, SM4_CLEAR = "6230606601007726888", "123654", "06123654FFFFFFFFFFFF99FEFF88D977"


def sm4_ecb(key: bytes, data: bytes, decrypt: bool = False) -> bytes:
    """SM4 ECB straight from the `cryptography` library (the reference, not iso_pin's)."""
    cipher = Cipher(algorithms.SM4(key), modes.ECB())
    return (cipher.decryptor() if decrypt else cipher.encryptor()).update(data)


def test_sm4_working_key_and_check_value_of_the_public_example():
    assert unwrap(SM4_TMK, SM4_WRAPPED_PIK, MacAlgorithm.SM4) == SM4_PIK
    assert wrap(SM4_TMK, SM4_PIK, MacAlgorithm.SM4) == SM4_WRAPPED_PIK
    assert check_value(SM4_PIK, MacAlgorithm.SM4).hex().upper() == SM4_PIK_CHECK[:8]
    # Under 3DES the same bytes give another check value: the algorithm is not ignored.
    assert check_value(SM4_PIK).hex().upper() != SM4_PIK_CHECK[:8]


def test_sm4_pin_block_of_the_public_example():
    assert clear_block(SM4_PIN, SM4_PAN, 16).hex().upper() == SM4_CLEAR
    assert pin_of_block(bytes.fromhex(SM4_CLEAR), SM4_PAN) == SM4_PIN
    encrypted = encrypt_pin(SM4_PIK, SM4_PIN, SM4_PAN, MacAlgorithm.SM4)
    assert encrypted == sm4_ecb(SM4_PIK, bytes.fromhex(SM4_CLEAR))
    assert decrypt_pin(SM4_PIK, encrypted, SM4_PAN, MacAlgorithm.SM4) == SM4_PIN


def test_a_pin_block_is_one_block_of_the_key_s_cipher():
    sm4_block = sm4_ecb(SM4_PIK, bytes.fromhex(SM4_CLEAR))
    with pytest.raises(PinError, match="16 bytes, not 8"):
        decrypt_pin(SM4_PIK, sm4_block[:8], SM4_PAN, MacAlgorithm.SM4)
    with pytest.raises(PinError, match="8 bytes, not 16"):
        decrypt_pin(SM4_PIK, sm4_block, SM4_PAN, MacAlgorithm.X9_19)
    for size in (7, 9, 15, 17, 32):
        with pytest.raises(PinError, match="8 or 16 bytes"):
            pin_of_block(bytes(size), SM4_PAN)


@pytest.mark.parametrize("block", [
    "16123654FFFFFFFFFFFF99FEFF88D977",  # format 1, not 0
    "06123654FFFFFFFFFFFF99FEFF88D976",  # the last padding nibble is not F
    "0612365FFFFFFFFFFFFF99FEFF88D977",  # a non-digit among the 6 digits
])
def test_16_byte_blocks_that_are_not_format_0(block):
    with pytest.raises(PinError):
        pin_of_block(bytes.fromhex(block), SM4_PAN)


def test_sm4_f62_round_trip_and_what_a_terminal_refuses():
    keys = WorkingKeys(bytes(range(16)), bytes(range(16, 32)), bytes(range(32, 48)))
    f62 = f62_of(SM4_TMK, keys, MacAlgorithm.SM4)
    raw = bytes.fromhex(f62)
    assert len(raw) == 60
    for index, key in enumerate(keys):  # each key under SM4 ECB, then 4 bytes of SM4(0^16)
        part = raw[20 * index:20 * index + 20]
        assert sm4_ecb(SM4_TMK, part[:16], decrypt=True) == key
        assert part[16:] == sm4_ecb(key, bytes(16))[:4]
    assert keys_of_f62(SM4_TMK, f62, MacAlgorithm.SM4) == keys
    with pytest.raises(KeysRejected, match="PIK does not match"):
        keys_of_f62(SM4_TMK, f62)  # read as 3DES: the check values do not hold


def test_block_ciphers_exist_for_3des_and_sm4_keys_only():
    with pytest.raises(ValueError, match="no block cipher"):
        wrap(bytes(16), bytes(16), MacAlgorithm.HMAC_SHA256)
    with pytest.raises(ValueError, match="16 bytes, not 15"):
        check_value(bytes(15), MacAlgorithm.SM4)
    assert can_exchange_keys(MacKey(MacAlgorithm.SM4, SM4_TMK))
    assert can_exchange_keys(MacKey(MacAlgorithm.X9_19, KEY))
    assert not can_exchange_keys(MacKey(MacAlgorithm.HMAC_SHA256, KEY))


def test_entered_pin_under_an_sm4_session():
    session = SessionKey(bytes(range(16, 32)), SM4_PIK, MacAlgorithm.SM4)
    assert session.algorithm is MacAlgorithm.SM4
    block = sm4_ecb(SM4_PIK, bytes.fromhex(SM4_CLEAR))
    assert entered_pin({"52": block.hex().upper()}, SM4_PAN, session) == SM4_PIN
    assert entered_pin({"52": block}, SM4_PAN, session) == SM4_PIN  # binary dialects
    for wrong in (block[:8], encrypt_pin(SM4_PIK, SM4_PIN, SM4_PAN)):  # 8 bytes: 3DES-sized
        with pytest.raises(FieldError) as raised:
            entered_pin({"52": wrong}, SM4_PAN, session)
        assert (raised.value.code, raised.value.reason) == ("55", "pin_block_malformed")


# --- sign-on messages and F62 ----------------------------------------------------------------


def test_a_terminal_s_network_request():
    assert network_f60("101") == "00000001101"
    assert network_f60("002", "42") == "00000042002"
    assert network_request(SessionAction.SIGN_ON, stan="000123", transmitted="1129120000",
                           acquirer="00010000", terminal="TERM0001") == {
        "t": "0800", "7": "1129120000", "11": "000123", "32": "00010000", "41": "TERM0001",
        "60": "00000001001"}


def test_network_code_with_f60_s_later_subfields():
    # 60.4 (terminal read capability) and 60.5 (IC condition) may follow 60.3.
    assert network_code({"60": "00000001003" "5" "0"}) == "003"
    assert session_action({"60": "00000001002" "6" "0"}) is SessionAction.SIGN_OFF


@pytest.mark.parametrize("algorithm", [MacAlgorithm.X9_19, MacAlgorithm.SM4])
def test_each_working_key_is_checked_and_named(algorithm):
    master = KEY if algorithm is MacAlgorithm.X9_19 else SM4_TMK
    keys = WorkingKeys(bytes(range(16)), bytes(range(16, 32)), bytes(range(32, 48)))
    raw = bytes.fromhex(f62_of(master, keys, algorithm))
    for name, check_at in (("PIK", 16), ("MAK", 36), ("TDK", 56)):
        tampered = raw[:check_at] + bytes([raw[check_at] ^ 1]) + raw[check_at + 1:]
        with pytest.raises(KeysRejected, match=f"the {name} does not match"):
            keys_of_f62(master, tampered, algorithm)
    # One byte short or one byte more is refused before any key is read.
    for wrong in (raw[:-1], raw + b"\x00"):
        with pytest.raises(KeysRejected, match=f"F62 is 60 bytes, not {len(wrong)}"):
            keys_of_f62(master, wrong, algorithm)


@pytest.mark.parametrize("algorithm", [MacAlgorithm.X9_19, MacAlgorithm.SM4])
def test_working_and_pin_keys_are_16_bytes(algorithm):
    master = KEY if algorithm is MacAlgorithm.X9_19 else SM4_TMK
    for size in (8, 15, 17, 32):  # under SM4 a 15-byte key would wrap to nothing at all
        with pytest.raises(ValueError, match="a working key is 16 bytes"):
            wrap(master, bytes(size), algorithm)
        with pytest.raises(ValueError, match="a PIN key is 16 bytes"):
            SessionKey(bytes(16), bytes(size), algorithm)
    assert SessionKey(bytes(16), SM4_PIK, algorithm).pin_key == SM4_PIK
