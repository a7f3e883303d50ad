"""The x-pay token vault against a real Redis: provisioning, statuses, and the checks of
each wallet message (cryptogram, ATC, repeats) as the engine's card resolver runs them."""

from __future__ import annotations

import asyncio
import itertools
import os

import pytest

from protocols.cardnumbers import luhn_valid
from protocols.messages import AuthRequest, AuthResponse, MessageClass
from protocols.xpay import XpayRequest, cryptogram, cryptogram_data
from switch.clock import months_later
from switch.tokens import TOKEN_BIN, TokenVault
from tests.support import FakeClock, make_card

_keys = itertools.count(1)


@pytest.fixture
async def vault(ledger) -> TokenVault:
    vault = TokenVault(ledger.client)
    await vault.start()
    return vault


def payment(token: str, key: bytes, atc: int, amount_fen: int = 1_000, idem: str = "",
            kind: MessageClass = MessageClass.SALE) -> XpayRequest:
    data = cryptogram_data(amount_fen, 156, atc, os.urandom(4))
    ref = idem or f"k{next(_keys)}x{os.getpid()}"
    return XpayRequest(message_class=kind, channel="xpay", card=token, amount_fen=amount_fen,
                       mcc="5411", txn_ref=ref, idempotency_key=ref,
                       cryptogram=cryptogram(key, data), cryptogram_data=data, atc=atc)


async def new_token(vault: TokenVault, ledger, **fields):
    pan = await make_card(ledger, limit_fen=100_000)
    view = await vault.provision(pan, "apple", **fields)
    return pan, view.token, bytes.fromhex(view.key)


async def test_provision_makes_an_active_token_for_a_known_card(vault, ledger):
    pan = await make_card(ledger)
    view = await vault.provision(pan, "huawei", device="phone-1")
    assert view.token.startswith(TOKEN_BIN) and luhn_valid(view.token) and view.token != pan
    assert (view.pan, view.wallet, view.device, view.status, view.atc) == (
        pan, "huawei", "phone-1", "active", 0)
    assert len(bytes.fromhex(view.key)) == 16
    assert await vault.show(view.token) == view
    other = await vault.provision(pan, "mi")
    assert other.token != view.token and other.key != view.key


async def test_provision_refuses_bad_input_and_changes_nothing(vault, ledger):
    with pytest.raises(ValueError, match="no such card"):
        await vault.provision("6253990000000000006", "apple")
    pan = await make_card(ledger)
    with pytest.raises(ValueError, match="wallet must be"):
        await vault.provision(pan, "samsung")
    with pytest.raises(ValueError, match="YYMM"):
        await vault.provision(pan, "apple", expiry="2913")


async def test_status_lifecycle(vault, ledger):
    _, token, _ = await new_token(vault, ledger)
    assert await vault.set_status(token, "suspended") == "suspended"
    assert (await vault.show(token)).status == "suspended"
    assert await vault.set_status(token, "active") == "active"
    assert await vault.set_status(token, "deleted") == "deleted"
    with pytest.raises(ValueError, match="deleted"):
        await vault.set_status(token, "active")
    assert (await vault.show(token)).status == "deleted"
    with pytest.raises(ValueError, match="no such token"):
        await vault.set_status("6288880000000000", "active")
    with pytest.raises(ValueError, match="status must be"):
        await vault.set_status(token, "frozen")
    assert await vault.show("6288880000000000") is None


async def test_a_payment_resolves_to_the_card_and_moves_the_atc(vault, ledger):
    pan, token, key = await new_token(vault, ledger)
    resolved = await vault.resolve(payment(token, key, atc=5))
    assert isinstance(resolved, XpayRequest) and resolved.card == pan
    assert (await vault.show(token)).atc == 5


async def test_wrong_cryptogram_is_declined_and_changes_nothing(vault, ledger):
    _, token, key = await new_token(vault, ledger)
    wrong = payment(token, bytes(16), atc=1)
    answer = await vault.resolve(wrong)
    assert (answer.response_code, answer.reason) == ("34", "cryptogram_mismatch")
    assert (await vault.show(token)).atc == 0
    # Tampering with the amount after the cryptogram was made breaks it as well.
    tampered = payment(token, key, atc=1, amount_fen=100)
    tampered.cryptogram_data = cryptogram_data(9_999, 156, 1, tampered.cryptogram_data[-4:])
    assert (await vault.resolve(tampered)).response_code == "34"
    assert isinstance(await vault.resolve(payment(token, key, atc=1)), AuthRequest)


async def test_an_atc_not_above_the_last_is_a_replay(vault, ledger):
    _, token, key = await new_token(vault, ledger)
    assert isinstance(await vault.resolve(payment(token, key, atc=7)), XpayRequest)
    for atc in (7, 6):
        answer = await vault.resolve(payment(token, key, atc=atc))
        assert (answer.response_code, answer.reason) == ("63", "atc_replay")
    assert (await vault.show(token)).atc == 7


async def test_a_repeat_of_the_same_message_is_no_replay(vault, ledger):
    pan, token, key = await new_token(vault, ledger)
    first = payment(token, key, atc=3)
    assert (await vault.resolve(first)).card == pan
    again = await vault.resolve(first)
    assert isinstance(again, XpayRequest) and again.card == pan
    changed = payment(token, key, atc=4, idem=first.idempotency_key)  # same key, other content
    answer = await vault.resolve(changed)
    assert (answer.response_code, answer.reason) == ("94", "duplicate_key_mismatch")
    assert (await vault.show(token)).atc == 3


async def test_concurrent_replays_pass_once(vault, ledger):
    _, token, key = await new_token(vault, ledger)
    results = await asyncio.gather(*(vault.resolve(payment(token, key, atc=9))
                                     for _ in range(30)))
    passed = [r for r in results if isinstance(r, XpayRequest)]
    assert len(passed) == 1
    assert {(r.response_code, r.reason) for r in results if isinstance(r, AuthResponse)} == {
        ("63", "atc_replay")}


@pytest.mark.parametrize(("status", "code", "reason"), [
    ("suspended", "62", "token_suspended"),
    ("deleted", "14", "token_deleted"),
])
async def test_suspended_and_deleted_tokens_are_declined(vault, ledger, status, code, reason):
    _, token, key = await new_token(vault, ledger)
    await vault.set_status(token, status)
    message = payment(token, key, atc=1)
    answer = await vault.resolve(message)
    assert (answer.response_code, answer.reason, answer.repeat) == (code, reason, False)
    if status == "suspended":
        await vault.set_status(token, "active")
        repeat = await vault.resolve(message)  # the same message: its first answer
        assert (repeat.response_code, repeat.repeat) == (code, True)
        assert isinstance(await vault.resolve(payment(token, key, atc=1)), XpayRequest)


async def test_unknown_and_malformed_tokens(vault):
    answer = await vault.resolve(payment("6288880000000000", bytes(16), atc=1))
    assert (answer.response_code, answer.reason) == ("14", "token_unknown")
    answer = await vault.resolve(payment("62888800000x", bytes(16), atc=1))
    assert (answer.response_code, answer.reason) == ("14", "token_malformed")


async def test_acquirer_messages_name_the_card_whatever_the_status(vault, ledger):
    pan, token, _ = await new_token(vault, ledger)
    await vault.set_status(token, "deleted")
    reversal = XpayRequest(message_class=MessageClass.REVERSAL, channel="xpay", card=token,
                           amount_fen=0, txn_ref="r1", original_ref="o1", idempotency_key="r1")
    assert (await vault.resolve(reversal)).card == pan


async def test_an_expired_token_is_declined(ledger):
    clock = FakeClock()
    vault = TokenVault(ledger.client, clock)
    await vault.start()
    _, token, key = await new_token(vault, ledger)
    assert (await vault.show(token)).expiry == months_later(clock.now_ms(), 36)
    clock.advance(37 * 31 * 24 * 3600)
    answer = await vault.resolve(payment(token, key, atc=1))
    assert (answer.response_code, answer.reason) == ("54", "token_expired")


def test_months_later_wraps_years():
    november_2026_ms = 1_796_000_000_000  # 2026-11-30 (UTC)
    assert months_later(november_2026_ms, 0) == "2611"
    assert months_later(november_2026_ms, 2) == "2701"
    assert months_later(november_2026_ms, 36) == "2911"
