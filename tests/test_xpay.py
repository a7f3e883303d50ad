"""The xpay listener over real TCP with a real switch, Redis and token vault.

Requests are built by pyiso8583 in both dialects; F55 and the cryptogram are made here
from their definition in docs/channels/xpay.md (BER-TLV by hand, HMAC-SHA256 truncated to
8 bytes), independently of protocols/xpay.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
from typing import NamedTuple

import pytest

from switch.ledger import Ledger
from switch.tokens import TokenVault
from tests.support import make_card, running_switch
from tests.test_pos_support import Wire, ask, decode, encode, f90, financial, iso_config


class Xpay(NamedTuple):
    port: int
    pos_port: int
    dialect: str
    ledger: Ledger
    vault: TokenVault

    async def ask(self, doc: dict) -> dict:
        return await ask(self.port, doc, self.dialect)


@pytest.fixture(params=["iso87ascii", "iso87binary"])
async def xpay(redis_url, request):
    async with running_switch(redis_url, iso_config(request.param)) as (switch, ledger):
        vault = TokenVault(ledger.client)
        await vault.start()
        yield Xpay(switch.ports["xpay"], switch.ports["pos"], request.param, ledger, vault)


def icc(key: bytes, amount_fen: int, atc: int, unpredictable: bytes | None = None,
        currency: int = 156, cryptogram_amount: int | None = None) -> str:
    """F55 as hex text (pyiso8583 takes binary fields as hex in both specs)."""
    amount = bytes.fromhex(f"{amount_fen:012d}")
    signed = bytes.fromhex(f"{amount_fen if cryptogram_amount is None else cryptogram_amount:012d}")
    unpredictable = unpredictable or os.urandom(4)
    data = signed + bytes.fromhex(f"{currency:04d}") + atc.to_bytes(2, "big") + unpredictable
    arqc = hmac.new(key, data, hashlib.sha256).digest()[:8]
    tlv = (b"\x9f\x26\x08" + arqc + b"\x9f\x27\x01\x80" + b"\x9f\x36\x02" + data[8:10]
           + b"\x9f\x37\x04" + unpredictable + b"\x9f\x02\x06" + amount
           + b"\x5f\x2a\x02" + data[6:8])
    return tlv.hex().upper()


def wallet(mti: str, token: str, key: bytes, amount_fen: int, atc: int, *,
           processing: str = "000000", entry: str = "072", **fields) -> dict:
    doc = financial(mti, token, processing, amount_fen, entry=entry, **fields)
    doc["55"] = icc(key, amount_fen or 0, atc)
    return doc


async def card_and_token(xpay: Xpay, limit_fen: int = 100_000):
    pan = await make_card(xpay.ledger, limit_fen=limit_fen)
    view = await xpay.vault.provision(pan, "apple")
    return pan, view.token, bytes.fromhex(view.key)


async def test_wallet_and_plastic_share_one_open_to_buy(xpay):
    pan, token, key = await card_and_token(xpay)
    answer = await xpay.ask(wallet("0200", token, key, 30_000, atc=1))
    assert (answer["t"], answer["39"], answer["2"]) == ("0210", "00", token)
    assert answer["54"] == f"3002156C{70_000:012d}" and len(answer["38"]) == 6
    plastic = await ask(xpay.pos_port, financial("0200", pan, "000000", 80_000), xpay.dialect)
    assert plastic["39"] == "51"
    view = await xpay.ledger.card(pan)
    assert (view.posted, view.open_to_buy) == (30_000, 70_000)
    assert (await xpay.vault.show(token)).atc == 1


async def test_preauthorization_reversed_by_the_acquirer(xpay):
    pan, token, key = await card_and_token(xpay)
    preauth = wallet("0100", token, key, 12_000, atc=4, condition="06", entry="812")
    assert (await xpay.ask(preauth))["39"] == "00"
    assert (await xpay.ledger.card(pan)).held == 12_000
    reversal = financial("0400", token, "000000", 12_000, original=f90(preauth))  # no F55
    answer = await xpay.ask(reversal)
    assert (answer["t"], answer["39"]) == ("0410", "00")
    view = await xpay.ledger.card(pan)
    assert (view.held, view.open_to_buy) == (0, 100_000)


async def test_balance_inquiry_from_the_wallet(xpay):
    pan, token, key = await card_and_token(xpay)
    answer = await xpay.ask(wallet("0200", token, key, 0, atc=1, processing="310000"))
    assert answer["39"] == "00" and answer["54"] == f"3002156C{100_000:012d}"


async def test_entry_mode_must_be_a_wallet_one(xpay):
    _, token, key = await card_and_token(xpay)
    answer = await xpay.ask(wallet("0200", token, key, 100, atc=1, entry="051"))
    assert (answer["39"], answer["44"]) == ("30", "entry_mode_not_wallet")
    no_icc = financial("0200", token, "000000", 100, entry="072")
    assert (await xpay.ask(no_icc))["44"] == "field_55_missing"


@pytest.mark.parametrize(("status", "code"), [("suspended", "62"), ("deleted", "14")])
async def test_token_status_declines(xpay, status, code):
    pan, token, key = await card_and_token(xpay)
    await xpay.vault.set_status(token, status)
    answer = await xpay.ask(wallet("0200", token, key, 100, atc=1))
    assert answer["39"] == code and "38" not in answer
    assert (await xpay.ledger.card(pan)).posted == 0


async def test_unknown_token(xpay):
    answer = await xpay.ask(wallet("0200", "6288880000000000", bytes(16), 100, atc=1))
    assert (answer["39"], answer["44"]) == ("14", "token_unknown")


async def test_wrong_cryptogram_changes_nothing(xpay):
    pan, token, _ = await card_and_token(xpay)
    answer = await xpay.ask(wallet("0200", token, os.urandom(16), 100, atc=1))
    assert (answer["39"], answer["44"]) == ("34", "cryptogram_mismatch")
    assert (await xpay.vault.show(token)).atc == 0
    assert (await xpay.ledger.card(pan)).open_to_buy == 100_000


async def test_amount_outside_the_cryptogram_is_refused(xpay):
    _, token, key = await card_and_token(xpay)
    doc = financial("0200", token, "000000", 90_000, entry="072")
    doc["55"] = icc(key, 100, atc=1)  # the device agreed to 1 yuan, F4 says 900
    answer = await xpay.ask(doc)
    assert (answer["39"], answer["44"]) == ("34", "icc_amount_mismatch")


async def test_replayed_atc_is_declined(xpay):
    pan, token, key = await card_and_token(xpay)
    assert (await xpay.ask(wallet("0200", token, key, 100, atc=8)))["39"] == "00"
    answer = await xpay.ask(wallet("0200", token, key, 100, atc=8))
    assert (answer["39"], answer["44"]) == ("63", "atc_replay")
    assert (await xpay.ask(wallet("0200", token, key, 100, atc=9)))["39"] == "00"
    assert (await xpay.ledger.card(pan)).posted == 200


async def test_a_repeated_transmission_gets_the_first_answer(xpay):
    pan, token, key = await card_and_token(xpay)
    body = encode(wallet("0200", token, key, 2_500, atc=1), xpay.dialect)
    wire = await Wire.connect(xpay.port)
    try:
        first = await wire.exchange(body)
        again = await wire.exchange(body)
    finally:
        await wire.close()
    assert decode(first, xpay.dialect)["39"] == "00"
    assert first == again
    assert (await xpay.ledger.card(pan)).posted == 2_500


async def test_concurrent_replays_on_many_connections_pass_once(xpay):
    pan, token, key = await card_and_token(xpay)
    unpredictable = os.urandom(4)

    async def one() -> str:
        doc = financial("0200", token, "000000", 1_000, entry="072")  # each its own STAN
        doc["55"] = icc(key, 1_000, atc=5, unpredictable=unpredictable)
        return (await xpay.ask(doc))["39"]

    codes = await asyncio.gather(*(one() for _ in range(12)))
    assert sorted(codes) == ["00"] + ["63"] * 11
    assert (await xpay.ledger.card(pan)).posted == 1_000


async def test_partial_approval_and_partial_reversal_through_a_wallet(xpay):
    pan, token, key = await card_and_token(xpay, limit_fen=10_000)
    sale = wallet("0200", token, key, 15_000, atc=1) | {"60": "00000000000001"}  # 60.6 = 1
    answer = await xpay.ask(sale)
    assert (answer["39"], answer["4"], answer["2"]) == ("10", f"{10_000:012d}", token)
    reversal = financial("0400", token, "000000", 10_000, original=f90(sale)) | {
        "95": f"{4_000:012d}{4_000:012d}C00000000C00000000"}
    assert (await xpay.ask(reversal))["39"] == "00"
    view = await xpay.ledger.card(pan)
    assert (view.posted, view.open_to_buy) == (4_000, 6_000)
