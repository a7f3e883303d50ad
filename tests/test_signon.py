"""Sign-on with key exchange over real TCP, a real switch and a real Redis.

pyiso8583 builds the requests and reads the answers; the working keys in F62 are unwrapped
here with the `cryptography` 3DES cipher from their definition in docs/channels/pos.md
(never protocols/iso_session.py), and the MACs are made by tests/test_pos_support.py's
reference MAC.
"""

from __future__ import annotations

import itertools

import pytest
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes

from protocols.iso_mac import MacAlgorithm, MacKey
from protocols.ledger_layout import session_key
from switch import limits
from switch.config import Terminal
from switch.terminal_keys import TerminalKeyStore
from tests.support import make_card, running_switch
from tests.test_pos_support import (
    ACQUIRER,
    Wire,
    ask,
    decode,
    encode,
    financial,
    iso_config,
    new_f7,
    new_stan,
)

MASTER = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
_terminals = itertools.count()


def new_terminal() -> str:
    return f"SO{next(_terminals):06d}"


def ecb(key: bytes, data: bytes, decrypt: bool = False) -> bytes:
    cipher = Cipher(TripleDES(key + key[:8]), modes.ECB())
    return (cipher.decryptor() if decrypt else cipher.encryptor()).update(data)


def working_keys(f62: str, master: bytes = MASTER, cipher=ecb, block: int = 8
                 ) -> dict[str, bytes]:
    """F62 as docs/channels/pos.md lays it out: PIK, MAK, TDK, each 16 bytes under the
    master key (`cipher`: 3DES ECB, or SM4's) then a 4-byte check value (the clear key
    encrypting one `block` of zero bytes)."""
    raw = bytes.fromhex(f62)
    assert len(raw) == 60
    keys = {}
    for name, at in zip(("pik", "mak", "tdk"), (0, 20, 40), strict=True):
        key = cipher(master, raw[at:at + 16], decrypt=True)
        assert cipher(key, bytes(block))[:4] == raw[at + 16:at + 20], f"{name} check value"
        keys[name] = key
    return keys


def network(terminal: str, code: str, via: str = "60") -> dict:
    doc = {"t": "0800", "7": new_f7(), "11": new_stan(), "32": ACQUIRER, "41": terminal}
    if via == "60":
        doc["60"] = f"00000001{code}"  # 60.1 00, 60.2 batch 000001, 60.3 the code
    else:
        doc["70"] = code
    return doc


@pytest.fixture
async def pos(redis_url):
    async with running_switch(redis_url, iso_config(channels=("pos",))) as (switch, ledger):
        yield switch.ports["pos"], ledger


async def add_terminal(ledger, terminal: str, sign_on: bool, key: bytes = MASTER,
                       algorithm: str = MacAlgorithm.X9_19) -> None:
    await TerminalKeyStore(ledger.client).add(ACQUIRER, terminal, MacKey(algorithm, key),
                                              sign_on=sign_on)


def sale(pan: str, terminal: str) -> dict:
    return financial("0200", pan, "000000", 1_000, terminal=terminal)


@pytest.mark.parametrize("via", ["60", "70"])
async def test_sign_on_then_money_under_the_session_mac_key(pos, via):
    port, ledger = pos
    terminal = new_terminal()
    await add_terminal(ledger, terminal, sign_on=True)
    pan = await make_card(ledger, 100_000)
    master = ("x9.19", MASTER)

    refused = await ask(port, sale(pan, terminal), mac_key=master)
    assert (refused["39"], refused["44"]) == ("A0", "not_signed_on")

    answer = await ask(port, network(terminal, "001", via), mac_key=None)
    assert (answer["t"], answer["39"]) == ("0810", "00")
    keys = working_keys(answer["62"])
    assert len(set(keys.values())) == 3  # three distinct fresh keys

    approved = await ask(port, sale(pan, terminal), mac_key=("x9.19", keys["mak"]))
    assert approved["39"] == "00"
    # The master key no longer signs money for this terminal.
    still = await ask(port, sale(pan, terminal), mac_key=master)
    assert (still["39"], still["44"]) == ("A0", "not_signed_on")
    # The session lives in Redis for its life, not longer.
    ttl = await ledger.client.ttl(session_key("10000", terminal))
    assert 0 < ttl <= limits.terminal_session_life_s


async def signed_on(port: int, ledger) -> tuple[str, str, dict[str, bytes]]:
    """A new terminal that must sign on, signed on: (terminal, a new card, its session
    keys)."""
    terminal = new_terminal()
    await add_terminal(ledger, terminal, sign_on=True)
    pan = await make_card(ledger, 100_000)
    keys = working_keys((await ask(port, network(terminal, "001"), mac_key=None))["62"])
    return terminal, pan, keys


async def test_a_key_change_stops_the_old_keys_at_once(pos):
    port, ledger = pos
    terminal, pan, old = await signed_on(port, ledger)
    # A key change signed with the session MAK, as a terminal in session sends it.
    changed = await ask(port, network(terminal, "101"), mac_key=("x9.19", old["mak"]))
    assert changed["39"] == "00"
    new = working_keys(changed["62"])
    assert new["mak"] != old["mak"] and new["pik"] != old["pik"]

    refused = await ask(port, sale(pan, terminal), mac_key=("x9.19", old["mak"]))
    assert (refused["39"], refused["44"]) == ("A0", "mac_mismatch")
    assert (await ask(port, sale(pan, terminal), mac_key=("x9.19", new["mak"])))["39"] == "00"


async def test_sign_off_ends_the_session(pos):
    port, ledger = pos
    terminal, pan, keys = await signed_on(port, ledger)
    off = await ask(port, network(terminal, "002"), mac_key=("x9.19", keys["mak"]))
    assert off["39"] == "00" and "62" not in off
    assert not await ledger.client.exists(session_key("10000", terminal))
    refused = await ask(port, sale(pan, terminal), mac_key=("x9.19", keys["mak"]))
    assert refused["39"] == "A0"
    master = await ask(port, sale(pan, terminal), mac_key=("x9.19", MASTER))
    assert (master["39"], master["44"]) == ("A0", "not_signed_on")


async def test_a_terminal_free_to_skip_sign_on_uses_its_key_until_it_signs_on(pos):
    port, ledger = pos
    terminal = new_terminal()
    await add_terminal(ledger, terminal, sign_on=False)
    pan = await make_card(ledger, 100_000)
    assert (await ask(port, sale(pan, terminal), mac_key=("x9.19", MASTER)))["39"] == "00"
    keys = working_keys((await ask(port, network(terminal, "001"), mac_key=None))["62"])
    refused = await ask(port, sale(pan, terminal), mac_key=("x9.19", MASTER))
    assert (refused["39"], refused["44"]) == ("A0", "not_signed_on")
    assert (await ask(port, sale(pan, terminal), mac_key=("x9.19", keys["mak"])))["39"] == "00"


async def test_a_master_key_that_cannot_carry_keys_signs_on_without_them(pos):
    port, ledger = pos
    terminal = new_terminal()
    hmac_key = bytes(range(32))
    await add_terminal(ledger, terminal, sign_on=False, key=hmac_key,
                       algorithm=MacAlgorithm.HMAC_SHA256)
    answer = await ask(port, network(terminal, "001"), mac_key=None)
    assert answer["39"] == "00" and "62" not in answer
    change = await ask(port, network(terminal, "101"), mac_key=None)
    assert (change["39"], change["44"]) == ("12", "key_exchange_unsupported")
    pan = await make_card(ledger, 100_000)
    assert (await ask(port, sale(pan, terminal), mac_key=hmac_key))["39"] == "00"


async def test_a_terminal_without_a_key_cannot_sign_on(pos):
    port, _ = pos
    answer = await ask(port, network(new_terminal(), "001"), mac_key=None)
    assert (answer["39"], answer["44"]) == ("58", "terminal_unknown")
    assert "62" not in answer


async def test_a_terminal_of_the_config_signs_on_too(redis_url):
    terminal = new_terminal()
    config = iso_config(channels=("pos",), terminals=[
        Terminal(acquirer=ACQUIRER, terminal=terminal, algorithm="x9.19", key=MASTER.hex())])
    async with running_switch(redis_url, config) as (switch, ledger):
        port = switch.ports["pos"]
        pan = await make_card(ledger, 100_000)
        assert (await ask(port, sale(pan, terminal), mac_key=("x9.19", MASTER)))["39"] == "00"
        keys = working_keys((await ask(port, network(terminal, "001"), mac_key=None))["62"])
        assert (await ask(port, sale(pan, terminal), mac_key=("x9.19", keys["mak"])))[
            "39"] == "00"
        refused = await ask(port, sale(pan, terminal), mac_key=("x9.19", MASTER))
        assert (refused["39"], refused["44"]) == ("A0", "not_signed_on")


async def test_a_sign_on_that_cannot_be_made_is_answered_91(pos):
    """The change fails (here a record in Redis that is not a key): 91, and the connection
    goes on answering."""
    port, ledger = pos
    terminal = new_terminal()
    await ledger.client.hset(f"{{k:10000}}:{terminal}", mapping={
        "algorithm": "x9.19", "key": "not hex", "created_ms": 1})
    wire = await Wire.connect(port)
    try:
        for _ in range(2):  # one connection: the first failure does not stall it
            answer = decode(await wire.exchange(encode(network(terminal, "001"), mac_key=None)))
            assert (answer["t"], answer["39"], answer["44"]) == ("0810", "91",
                                                                 "issuer_unavailable")
            assert "62" not in answer
    finally:
        await wire.close()
