"""SM4 terminals over real TCP, a real switch and a real Redis: sign-on with SM4 working
keys, the SM4 MAC under the session MAK, 16-byte SM4 PIN blocks, key change and sign-off.

pyiso8583 builds the requests and reads the answers; the working keys in F62 are unwrapped
and checked here with the `cryptography` library's SM4 from their definition in
docs/channels/pos.md (never protocols/iso_session.py), the PIN blocks are built here from
their definition (never protocols/iso_pin.py), and the MACs are made by
tests/test_pos_support.py's reference MAC.
"""

from __future__ import annotations

import itertools

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from protocols.iso_mac import MacAlgorithm
from protocols.ledger_layout import session_key
from switch.terminal_sessions import session_mac_key
from tests.support import make_card, running_switch
from tests.test_pos_support import ask, financial, iso_config
from tests.test_signon import add_terminal, network, working_keys

SM4_MASTER = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
WIDE_DIALECT = "iso87ascii-sm4"  # iso87ascii with a 16-byte F52 (docs/channels/pos.md, "PIN")
PIN = "918273"
_terminals = itertools.count()


def new_terminal() -> str:
    return f"SM{next(_terminals):06d}"


def sm4_ecb(key: bytes, data: bytes, decrypt: bool = False) -> bytes:
    cipher = Cipher(algorithms.SM4(key), modes.ECB())
    return (cipher.decryptor() if decrypt else cipher.encryptor()).update(data)


def sm4_working_keys(f62: str) -> dict[str, bytes]:
    """F62 for an SM4 master key: the same layout, SM4 ECB, check values over 16 zero bytes."""
    return working_keys(f62, SM4_MASTER, sm4_ecb, block=16)


def sm4_pin_block(pin: str, pan: str, pik: bytes) -> str:
    """F52 for an SM4 PIK as hex: (0, length, digits, F padding to 32 hex digits) XOR
    (zeros, then the 12 PAN digits before the check digit, 32 hex digits), SM4 ECB."""
    field = bytes.fromhex(f"0{len(pin):X}{pin}".ljust(32, "F"))
    account = bytes.fromhex(pan[:-1][-12:].rjust(32, "0"))
    return sm4_ecb(pik, bytes(a ^ b for a, b in zip(field, account, strict=True))).hex().upper()


@pytest.fixture
async def pos(redis_url):
    async with running_switch(redis_url, iso_config(channels=("pos",))) as (switch, ledger):
        yield switch.ports["pos"], ledger


@pytest.fixture
async def wide_pos(redis_url):
    config = iso_config(dialect=WIDE_DIALECT, channels=("pos",))
    async with running_switch(redis_url, config) as (switch, ledger):
        yield switch.ports["pos"], ledger, WIDE_DIALECT


async def add_sm4_terminal(ledger, sign_on: bool = True) -> str:
    terminal = new_terminal()
    await add_terminal(ledger, terminal, sign_on=sign_on, key=SM4_MASTER,
                       algorithm=MacAlgorithm.SM4)
    return terminal


def sale(pan: str, terminal: str) -> dict:
    return financial("0200", pan, "000000", 1_000, terminal=terminal)


async def test_sm4_sign_on_then_money_under_the_session_mac_key(pos):
    port, ledger = pos
    terminal = await add_sm4_terminal(ledger)
    pan = await make_card(ledger, 100_000)
    master = ("sm4", SM4_MASTER)

    refused = await ask(port, sale(pan, terminal), mac_key=master)
    assert (refused["39"], refused["44"]) == ("A0", "not_signed_on")

    answer = await ask(port, network(terminal, "001"), mac_key=None)
    assert (answer["t"], answer["39"]) == ("0810", "00")
    keys = sm4_working_keys(answer["62"])  # each check value checked under SM4
    assert len(set(keys.values())) == 3
    session = await ledger.client.hgetall(session_key("10000", terminal))
    assert session["algorithm"] == "sm4" and session["mak"] == keys["mak"].hex().upper()

    approved = await ask(port, sale(pan, terminal), mac_key=("sm4", keys["mak"]))
    assert approved["39"] == "00"
    still = await ask(port, sale(pan, terminal), mac_key=master)
    assert (still["39"], still["44"]) == ("A0", "not_signed_on")
    # The MAK's bytes as an X9.19 key: not the session's MAC.
    wrong = await ask(port, sale(pan, terminal), mac_key=("x9.19", keys["mak"]))
    assert (wrong["39"], wrong["44"]) == ("A0", "mac_mismatch")


async def test_sm4_key_change_stops_the_old_keys_then_sign_off(pos):
    port, ledger = pos
    terminal = await add_sm4_terminal(ledger)
    pan = await make_card(ledger, 100_000)
    old = sm4_working_keys((await ask(port, network(terminal, "001"), mac_key=None))["62"])
    changed = await ask(port, network(terminal, "101"), mac_key=("sm4", old["mak"]))
    assert changed["39"] == "00"  # no longer 12 key_exchange_unsupported
    new = sm4_working_keys(changed["62"])
    assert new["mak"] != old["mak"] and new["pik"] != old["pik"]

    refused = await ask(port, sale(pan, terminal), mac_key=("sm4", old["mak"]))
    assert (refused["39"], refused["44"]) == ("A0", "mac_mismatch")
    assert (await ask(port, sale(pan, terminal), mac_key=("sm4", new["mak"])))["39"] == "00"

    off = await ask(port, network(terminal, "002"), mac_key=("sm4", new["mak"]))
    assert off["39"] == "00" and "62" not in off
    assert not await ledger.client.exists(session_key("10000", terminal))
    after = await ask(port, sale(pan, terminal), mac_key=("sm4", new["mak"]))
    assert after["39"] == "A0"


async def test_sm4_pin_right_wrong_and_tries(wide_pos):
    port, ledger, dialect = wide_pos
    terminal = await add_sm4_terminal(ledger)
    answer = await ask(port, network(terminal, "001"), dialect=dialect, mac_key=None)
    keys = sm4_working_keys(answer["62"])
    pan = await make_card(ledger, 100_000)
    await ledger.set_pin(pan, PIN)

    async def with_pin(pin: str, card: str = pan) -> tuple[str, str]:
        doc = financial("0200", pan, "000000", 1_000, terminal=terminal, entry="051")
        doc["52"] = sm4_pin_block(pin, card, keys["pik"])
        got = await ask(port, doc, dialect=dialect, mac_key=("sm4", keys["mak"]))
        return got["39"], got.get("44", "")

    assert await with_pin(PIN) == ("00", "")
    assert (await ledger.card(pan)).posted == 1_000
    # A block for another card does not decrypt to a format 0 block for this one.
    assert await with_pin(PIN, "6259000000000000007") == ("55", "pin_block_malformed")
    assert await with_pin("000000") == ("55", "pin_wrong")
    assert await with_pin("111111") == ("55", "pin_wrong")
    assert (await ledger.card(pan)).pin_tries == 2
    assert await with_pin("222222") == ("75", "pin_tries_exceeded")
    assert await with_pin(PIN) == ("75", "pin_tries_exceeded")
    assert (await ledger.card(pan)).posted == 1_000


async def test_a_3des_terminal_on_the_wide_dialect_is_told_its_block_is_8_bytes(wide_pos):
    """Each session's PIN block is one block of its cipher: a 3DES session's F52 on a listener
    whose F52 is 16 bytes cannot be read (55), it is never taken for a PIN."""
    port, ledger, dialect = wide_pos
    terminal = new_terminal()
    await add_terminal(ledger, terminal, sign_on=True)
    answer = await ask(port, network(terminal, "001"), dialect=dialect, mac_key=None)
    keys = working_keys(answer["62"])
    pan = await make_card(ledger, 100_000)
    await ledger.set_pin(pan, PIN)
    doc = financial("0200", pan, "000000", 1_000, terminal=terminal, entry="051")
    doc["52"] = sm4_pin_block(PIN, pan, keys["pik"])  # 16 bytes, not 3DES's 8
    got = await ask(port, doc, dialect=dialect, mac_key=("x9.19", keys["mak"]))
    assert (got["39"], got["44"]) == ("55", "pin_block_malformed")
    assert (await ledger.card(pan)).pin_tries == 0


def test_a_session_hash_names_its_algorithm_and_an_older_one_is_3des():
    fields = {"pik": "11" * 16, "mak": "22" * 16}
    assert session_mac_key(fields).algorithm is MacAlgorithm.X9_19  # written before SM4
    sm4 = session_mac_key({**fields, "algorithm": "sm4"})
    assert (sm4.algorithm, sm4.key, sm4.pin_key) == (MacAlgorithm.SM4, bytes([0x22]) * 16,
                                                     bytes([0x11]) * 16)
    assert session_mac_key({}) is None


async def test_a_3des_terminal_s_8_byte_block_on_the_wide_dialect_is_not_read(wide_pos):
    """An F52 of 8 bytes where the listener's is 16: the rest of the message is read 8 bytes
    off, a format error (30); no PIN is checked, nothing is held."""
    port, ledger, dialect = wide_pos
    terminal = new_terminal()
    await add_terminal(ledger, terminal, sign_on=True)
    keys = working_keys((await ask(port, network(terminal, "001"), dialect=dialect,
                                   mac_key=None))["62"])
    pan = await make_card(ledger, 100_000)
    await ledger.set_pin(pan, PIN)
    doc = financial("0200", pan, "000000", 1_000, terminal=terminal, entry="051")
    doc["52"] = "0" * 16  # 8 bytes as hex, as iso87ascii carries it
    got = await ask(port, doc, dialect="iso87ascii", mac_key=("x9.19", keys["mak"]))
    assert (got["39"], got["44"]) == ("30", "format:field_64")  # F64 found 8 bytes short
    card = await ledger.card(pan)
    assert (card.open_to_buy, card.pin_tries) == (100_000, 0)
