"""The ledger's Redis layout (protocols/ledger_layout.py) is the one the switch and the load
generator's seeding both write: a card seeded by the generator is the card the ledger makes,
a token the generator seeds has the fields the vault provisions."""

from __future__ import annotations

import msgspec
import redis

from loadtest.generator.adapters.iso import load_test_token
from loadtest.generator.cards import seed_cards, seed_tokens
from loadtest.generator.workload import CARD_EXPIRY, CARD_LIMIT_FEN, load_test_pans
from protocols.ledger_layout import TokenRecord, card_key, card_keys, token_key
from switch.redis_client import connect
from switch.tokens import TokenVault


async def test_a_seeded_card_is_the_card_the_ledger_resets(redis_url, ledger):
    by_generator, by_ledger = load_test_pans(2, seed=61)
    seed_cards(redis_url, [by_generator])
    await ledger.reset_card(by_ledger, limit_fen=CARD_LIMIT_FEN, expiry=CARD_EXPIRY)
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        assert client.hgetall(card_key(by_generator)) == client.hgetall(card_key(by_ledger))
        assert client.hgetall(card_key(by_generator))["limit"] == str(CARD_LIMIT_FEN)
    finally:
        client.close()


def test_a_seeded_token_has_the_fields_the_vault_provisions(redis_url):
    pan = load_test_pans(1, seed=62)[0]
    seed_cards(redis_url, [pan])
    seed_tokens(redis_url, [pan], workers=1)
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        token = client.hgetall(token_key(load_test_token(0, 0)))
    finally:
        client.close()
    assert token["pan"] == pan and token["atc"] == "0"
    assert set(token) == {f.name for f in msgspec.structs.fields(TokenRecord)}
    assert TokenRecord.from_fields(token).atc == 0


async def test_the_vault_shows_a_seeded_token(redis_url):
    pan = load_test_pans(1, seed=63)[0]
    seed_cards(redis_url, [pan])
    seed_tokens(redis_url, [pan], workers=1)
    vault = TokenVault(connect(redis_url))
    await vault.start()
    try:
        view = await vault.show(load_test_token(0, 0))
    finally:
        await vault.aclose()
    assert view is not None and view.pan == pan and view.wallet == "apple"
    assert view.atc == 0 and view.status == "active" and view.token == load_test_token(0, 0)


def test_every_key_of_a_card_is_under_its_hash_tag():
    key = card_key("6253800000000005")
    assert key == "{c:6253800000000005}"
    assert all(k.startswith(key) for k in card_keys(key, "idem", "ref"))
    assert len(set(card_keys(key, "idem", "ref"))) == 6
