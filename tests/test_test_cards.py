"""The ready-made test cards (protocols/demo.py TEST_CARDS): loaded by `switch serve --demo`
with the switch's one forced-outcome mechanism, each declining with its code on every
channel, whatever a tester did to it before the next load."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from protocols.cardnumbers import luhn_check_digit
from protocols.demo import NO_ANSWER_OUTCOME, TEST_CARD_LIMIT_FEN, TEST_CARDS
from switch import send, testing
from switch.app import force_test_cards
from switch.cards import pan_of_test_card, showcase_cards
from switch.cli_common import resolve_pan
from switch.ledger import NO_ANSWER
from tests.test_cli import run, serve, stop

CHANNELS = ("jd", "wechat", "pos", "xpay")


def test_no_other_test_writes_a_test_card_s_number():
    """The suite shares its Redis: a test that made a card under a test card's number would
    change the card the test cards' tests read (its limit, its balances)."""
    here = Path(__file__)
    for path in here.parent.glob("test_*.py"):
        if path != here:
            text = path.read_text()
            assert not [pan for pan, _, _ in TEST_CARDS if pan in text], path.name


def test_the_numbers_are_card_numbers_of_their_own():
    pans = [pan for pan, _, _ in TEST_CARDS]
    assert all(pan[-1] == luhn_check_digit(pan[:-1]) and len(pan) == 16 for pan in pans)
    assert len(set(pans)) == len(pans)
    assert not set(pans) & {card.pan for card in showcase_cards()}
    for pan, outcome, _ in TEST_CARDS:
        alias = "testNA" if outcome == NO_ANSWER_OUTCOME else f"test{outcome}"
        assert resolve_pan(alias) == pan == pan_of_test_card(outcome)
    assert pan_of_test_card("00") is None and pan_of_test_card("test00") is None


@pytest.mark.parametrize("channel", CHANNELS)
async def test_each_declines_with_its_code_and_changes_nothing(redis_url, channel, monkeypatch):
    monkeypatch.setattr(send, "ANSWER_WAIT_S", 1.0)  # the no-answer card's wait
    async with testing.start(redis_url=redis_url) as switch:
        await force_test_cards(switch.ledger)
        for pan, outcome, _ in TEST_CARDS:
            if outcome == NO_ANSWER_OUTCOME:
                with pytest.raises(TimeoutError):
                    await switch.send(channel, pan, amount=100, mcc="5411")
                continue
            answer = await switch.send(channel, pan, amount=100, mcc="5411")
            assert (answer.response.response_code, answer.response.reason) == (
                outcome, "forced"), pan[-4:]
            view = await switch.card(pan)
            assert (view.posted, view.held, view.limit) == (0, 0, TEST_CARD_LIMIT_FEN)


async def test_loading_again_restores_what_a_tester_changed(redis_url):
    async with testing.start(redis_url=redis_url) as switch:
        await force_test_cards(switch.ledger)
        pan = pan_of_test_card("51")
        await switch.force(pan, None)
        assert (await switch.send("jd", pan, amount=100, mcc="5411")).response.response_code \
            == "00"
        await force_test_cards(switch.ledger, [pan])
        assert (await switch.card(pan)).force == "51||"
        assert (await switch.card(pan_of_test_card(NO_ANSWER_OUTCOME))).force == f"{NO_ANSWER}||"


def test_serve_demo_loads_them_and_send_names_them(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env["SWITCH_RUN_DIR"] = str(tmp_path / "run")
    process, banner, port = serve(env, ["--ephemeral"])
    try:
        check_served(banner, port, env)
    finally:
        stop(process)


def check_served(banner: str, port: int, env: dict) -> None:
    assert "Test cards, each always declining with its code: test05 test14" in banner
    answer = json.loads(run(["send", "--port", str(port), "--pan", "test51", "--amount", "100",
                             "--mcc", "5411", "--json"], env).stdout)
    assert (answer["response_code"], answer["reason"]) == ("51", "forced")
