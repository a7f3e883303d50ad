"""No full card number in a log line or in anything a test prints: the detector, the masking
of the switch's log lines, the suite-wide guard of tests/conftest.py, and the ledger's one
error that names a card."""

from __future__ import annotations

import json
import logging
import string
import sys
import types

import redis
from hypothesis import given
from hypothesis import strategies as st

from protocols.cardnumbers import (
    SWITCH_TOKEN_BIN,
    full_card_numbers_in,
    luhn_check_digit,
    mask_card_numbers_in,
    mask_pan,
)
from protocols.ledger_layout import card_key
from protocols.messages import MessageClass
from switch.logs import CardMaskingFormatter, JsonFormatter
from tests import conftest
from tests.support import JdClient, jd_request, make_card, running_switch

# Around a card number: anything but ASCII letters and digits (those would make it part of a
# longer word, as in a hex signature).
not_digits = st.text(st.characters(blacklist_categories=("Nd",),
                                   blacklist_characters=string.ascii_letters), max_size=20)


@st.composite
def card_numbers(draw) -> str:
    length = draw(st.integers(13, 19))
    body = draw(st.sampled_from("3456")) + draw(st.text("0123456789", min_size=length - 2,
                                                         max_size=length - 2))
    number = body + luhn_check_digit(body)
    return number if not number.startswith(SWITCH_TOKEN_BIN) else "6253680000000018"


@given(card_numbers(), not_digits, not_digits)
def test_a_card_number_anywhere_in_text_is_found_and_masking_hides_it(number, before, after):
    text = before + number + after
    assert full_card_numbers_in(text) == [number]
    masked = mask_card_numbers_in(text)
    assert full_card_numbers_in(masked) == []
    assert masked == before + mask_pan(number) + after


def test_timestamps_tokens_and_near_misses_are_not_card_numbers():
    pan = "6253680000000018"
    token = SWITCH_TOKEN_BIN + "000000000"
    token += luhn_check_digit(token)
    assert full_card_numbers_in("at 20261207120000 (1733572800000 ms)") == []
    assert full_card_numbers_in(f"token {token}") == []
    assert full_card_numbers_in(pan[:-1] + "9") == []  # not Luhn-valid
    assert full_card_numbers_in(pan + "0") == []  # part of a longer run of digits
    assert full_card_numbers_in(pan[:12]) == []  # too short to be a card number
    assert full_card_numbers_in(f"{{c:{pan}}}:t:x") == [pan]
    # A hex signature's digits are part of a longer word, not a card number.
    assert full_card_numbers_in(f"sign a{pan}f and {pan}e9") == []
    assert full_card_numbers_in(f'"cardNo":"{pan}", card_{pan}') == [pan, pan]


def record_naming_a_card(pan: str) -> logging.LogRecord:
    """An error record whose message and traceback both name the card in full."""
    try:
        raise ValueError(f"no such card {pan}")
    except ValueError:
        return logging.LogRecord("switch.server", logging.ERROR, __file__, 1, "failed on %s",
                                 (pan,), sys.exc_info())


def test_the_switch_log_formatter_masks_messages_and_tracebacks():
    record = record_naming_a_card("6253680000000018")
    line = CardMaskingFormatter().format(record)
    assert "625368******0018" in line and "ValueError" in line
    assert full_card_numbers_in(line) == []


def test_the_guard_sees_every_record_of_the_project_loggers_at_every_level():
    for name in conftest.PROJECT_LOGGERS:
        logger = logging.getLogger(name)
        assert conftest.WATCH in logger.handlers and logger.level == logging.DEBUG
    before = list(conftest.WATCH.found)
    # Handed to the watch directly: logged, it would also reach this test's captured log
    # (which the report guard below rightly fails).
    conftest.WATCH.handle(logging.LogRecord("switch.anything", logging.DEBUG, __file__, 1,
                                            "card %s", ("6253680000000018",), None))
    caught = conftest.WATCH.found[len(before):]
    conftest.WATCH.found[:] = before  # this test's own record is not a finding
    assert len(caught) == 1 and "625368******0018" in caught[0]


def test_the_guard_fails_a_test_whose_output_shows_a_card_number():
    def teardown_report(sections):
        report = types.SimpleNamespace(when="teardown", failed=False, outcome="passed",
                                       sections=sections, longrepr=None)
        hook = conftest.pytest_runtest_makereport(None, None)
        next(hook)
        try:
            hook.send(types.SimpleNamespace(get_result=lambda: report))
        except StopIteration:
            pass
        return report

    assert teardown_report([("Captured stdout call", "card 6253680000000018")]
                           ).outcome == "failed"
    assert teardown_report([("Captured stdout call", "card 625368******0018")]).outcome == "passed"


async def test_a_broken_invariant_is_answered_96_and_its_error_names_the_card_masked(
        redis_url, caplog):
    async with running_switch(redis_url) as (switch, ledger):
        pan = await make_card(ledger, limit_fen=10_000)
        client = redis.Redis.from_url(redis_url)
        try:
            client.hset(card_key(pan), "posted", -5_000)  # a bug of ours, simulated
        finally:
            client.close()
        jd = await JdClient.connect(switch.ports["jd"])
        try:
            answer = await jd.send(jd_request(pan, MessageClass.SALE, 100))
        finally:
            await jd.close()
    assert answer.response.response_code == "96"
    logged = "\n".join(caplog.text.splitlines())
    assert "ledger invariant broken on {c:" + pan[:6] in logged
    assert full_card_numbers_in(logged) == []


def test_json_log_lines_are_one_object_each_and_masked():
    record = record_naming_a_card("6253680000000018")
    line = JsonFormatter().format(record)
    assert "\n" not in line and full_card_numbers_in(line) == []
    fields = json.loads(line)
    assert fields["level"] == "ERROR" and fields["logger"] == "switch.server"
    assert fields["message"] == "failed on 625368******0018"
    assert "ValueError: no such card 625368******0018" in fields["error"]
    assert fields["time"].endswith("Z") and fields["pid"] > 0
