"""The pos listener over real TCP, a real switch and a real Redis; pyiso8583 is the peer.

Every test of the `pos` fixture runs in both dialects: pyiso8583's `default_ascii` against
a listener configured `iso87ascii`, and its binary `default` against `iso87binary`.
"""

from __future__ import annotations

from typing import NamedTuple

import pytest

from protocols.framing import ASCII_2, HEADER_FORMATS
from protocols.iso_channel import ECHOED
from switch.config import Terminal
from switch.ledger import Ledger
from tests.support import make_card, running_switch
from tests.test_pos_support import (
    ACQUIRER,
    TERMINAL,
    Wire,
    ask,
    decode,
    encode,
    f90,
    field_at,
    financial,
    iso_config,
    mac_ok,
    new_f7,
    new_stan,
)


class Pos(NamedTuple):
    port: int
    dialect: str
    ledger: Ledger

    async def ask(self, doc: dict) -> dict:
        return await ask(self.port, doc, self.dialect)


@pytest.fixture(params=["iso87ascii", "iso87binary"])
async def pos(redis_url, request):
    async with running_switch(redis_url, iso_config(request.param, channels=("pos",))) as (
            switch, ledger):
        yield Pos(switch.ports["pos"], request.param, ledger)


def assert_echoes(answer: dict, request: dict) -> None:
    for key in ECHOED:
        if key in request:
            assert answer[key] == request[key], f"field {key} not echoed"
    for key in ("35", "52", "55"):
        assert key not in answer
    assert answer.get("64") != request.get("64")  # the answer's own MAC, if any


async def otb(ledger: Ledger, pan: str) -> int:
    return (await ledger.card(pan)).open_to_buy


@pytest.mark.parametrize("code", ["001", "301", "002"])
async def test_network_management_answered_by_the_listener(pos, code):
    request = {"t": "0800", "7": new_f7(), "11": new_stan(), "32": ACQUIRER, "41": TERMINAL,
               "70": code}
    answer = await pos.ask(request)
    assert answer["t"] == "0810" and answer["39"] == "00" and "128" in answer
    assert (answer["7"], answer["11"], answer["70"]) == (request["7"], request["11"], code)
    # Unsigned, and from no terminal: answered, unsigned.
    bare = {"t": "0800", "7": new_f7(), "11": new_stan(), "70": code}
    answer = await ask(pos.port, bare, pos.dialect, mac_key=None)
    assert answer["39"] == "00" and "128" not in answer


async def test_network_code_unsupported(pos):
    answer = await pos.ask({"t": "0800", "7": new_f7(), "11": new_stan(), "32": ACQUIRER,
                            "41": TERMINAL, "70": "201"})
    assert (answer["t"], answer["39"]) == ("0810", "12")


async def test_preauthorization_then_completion(pos):
    pan = await make_card(pos.ledger, limit_fen=100_000)
    preauth = financial("0100", pan, "000000", 30_000, condition="06")
    answer = await pos.ask(preauth)
    assert (answer["t"], answer["39"]) == ("0110", "00")
    assert len(answer["38"]) == 6
    assert answer["54"] == f"3002156C{70_000:012d}"
    assert_echoes(answer, preauth)
    assert (await pos.ledger.card(pan)).held == 30_000

    completion = financial("0220", pan, "000000", 25_000, condition="06", original=f90(preauth))
    answer = await pos.ask(completion)
    assert (answer["t"], answer["39"]) == ("0230", "00")
    view = await pos.ledger.card(pan)
    assert (view.held, view.posted, view.open_to_buy) == (0, 25_000, 75_000)


async def test_plain_authorization_places_a_hold(pos):
    pan = await make_card(pos.ledger, limit_fen=100_000)
    answer = await pos.ask(financial("0100", pan, "000000", 12_345, condition="00"))
    assert answer["39"] == "00"
    view = await pos.ledger.card(pan)
    assert (view.held, view.posted) == (12_345, 0)


async def test_purchase_inquiry_refund_and_refund_advice(pos):
    pan = await make_card(pos.ledger, limit_fen=100_000)
    sale = financial("0200", pan, "000000", 12_800)
    answer = await pos.ask(sale)
    assert (answer["t"], answer["39"]) == ("0210", "00")
    assert (await pos.ledger.card(pan)).posted == 12_800

    inquiry = financial("0200", pan, "310000", None) | {"14": "3012"}  # the card's expiry
    answer = await pos.ask(inquiry)
    assert answer["39"] == "00" and answer["54"] == f"3002156C{100_000 - 12_800:012d}"

    refund = financial("0200", pan, "200000", 5_000, original=f90(sale))
    assert (await pos.ask(refund))["39"] == "00"
    advice = financial("0220", pan, "200000", 2_000, original=f90(sale))
    answer = await pos.ask(advice)
    assert (answer["t"], answer["39"]) == ("0230", "00")
    view = await pos.ledger.card(pan)
    assert view.pending_credit == 7_000 and view.transactions[0].refunded == 7_000


async def test_reversal_by_original_data_elements_restores_open_to_buy(pos):
    pan = await make_card(pos.ledger, limit_fen=100_000)
    sale = financial("0200", pan, "000000", 45_678)
    assert (await pos.ask(sale))["39"] == "00"
    assert await otb(pos.ledger, pan) == 100_000 - 45_678
    reversal = financial("0400", pan, "000000", 45_678, original=f90(sale))
    answer = await pos.ask(reversal)
    assert (answer["t"], answer["39"]) == ("0410", "00")
    assert answer["54"] == f"3002156C{100_000:012d}"
    view = await pos.ledger.card(pan)
    assert (view.posted, view.held, view.open_to_buy) == (0, 0, 100_000)
    assert view.transactions[0].state == "reversed"


async def test_reversal_advice_by_stan_terminal_and_rrn_restores_open_to_buy(pos):
    pan = await make_card(pos.ledger, limit_fen=100_000)
    preauth = financial("0100", pan, "000000", 9_999, condition="06")
    assert (await pos.ask(preauth))["39"] == "00"
    # No F90: the advice repeats the original's STAN, terminal and RRN, at its own time.
    advice = financial("0420", pan, "000000", 9_999, stan=preauth["11"], rrn=preauth["37"])
    assert advice["7"] != preauth["7"]
    answer = await pos.ask(advice)
    assert (answer["t"], answer["39"]) == ("0430", "00")
    view = await pos.ledger.card(pan)
    assert (view.held, view.open_to_buy) == (0, 100_000)


async def test_reversal_of_an_unknown_original(pos):
    pan = await make_card(pos.ledger)
    ghost = financial("0200", pan, "000000", 100)
    answer = await pos.ask(financial("0400", pan, "000000", 100, original=f90(ghost)))
    assert answer["39"] == "25"


async def test_repeated_transmission_gets_the_first_answer(pos):
    pan = await make_card(pos.ledger, limit_fen=100_000)
    sale = financial("0200", pan, "000000", 3_000)
    wire = await Wire.connect(pos.port)
    try:
        first = await wire.exchange(encode(sale, pos.dialect))
        again = await wire.exchange(encode(sale, pos.dialect))
        repeat = await wire.exchange(encode(sale | {"t": "0201"}, pos.dialect))
    finally:
        await wire.close()
    assert first == again
    assert decode(repeat, pos.dialect) == decode(first, pos.dialect)
    assert decode(first, pos.dialect)["39"] == "00"
    view = await pos.ledger.card(pan)
    assert view.posted == 3_000 and len(view.transactions) == 1


async def test_same_stan_at_another_time_is_a_duplicate(pos):
    pan = await make_card(pos.ledger, limit_fen=100_000)
    sale = financial("0200", pan, "000000", 3_000)
    assert (await pos.ask(sale))["39"] == "00"
    answer = await pos.ask(sale | {"7": new_f7()})
    assert answer["39"] == "94"
    assert (await pos.ledger.card(pan)).posted == 3_000


async def test_card_from_track_2(pos):
    pan = await make_card(pos.ledger, limit_fen=100_000, expiry="3012")
    answer = await pos.ask(financial("0200", pan, "000000", 500, track2=True))
    assert answer["39"] == "00" and "2" not in answer and "35" not in answer
    other = await make_card(pos.ledger, limit_fen=100_000, expiry="2911")
    answer = await pos.ask(financial("0200", other, "000000", 500, track2=True))
    assert answer["39"] == "54"  # track 2 says 3012, the card 2911


async def test_declines_name_their_reason_in_field_44(pos):
    pan = await make_card(pos.ledger, limit_fen=1_000)
    answer = await pos.ask(financial("0200", pan, "000000", 5_000))
    assert (answer["39"], answer["44"]) == ("51", "insufficient_open_to_buy")
    assert "38" not in answer and "54" not in answer
    answer = await pos.ask(financial("0200", pan, "000000", 500, mcc="7995"))
    assert answer["39"] == "57"
    answer = await pos.ask(financial("0200", "6253990000000000006", "000000", 500))
    assert answer["39"] == "14"


@pytest.mark.parametrize(("mti", "processing", "answer_mti", "code", "reason"), [
    ("0200", "010000", "0210", "12", "processing_not_supported"),
    ("0300", "000000", "0310", "12", "mti_not_supported"),
])
async def test_functions_not_supported(pos, mti, processing, answer_mti, code, reason):
    pan = await make_card(pos.ledger)
    answer = await pos.ask(financial(mti, pan, processing, 100))
    assert (answer["t"], answer["39"], answer["44"]) == (answer_mti, code, reason)


async def test_refund_without_original_data_is_a_format_error(pos):
    pan = await make_card(pos.ledger)
    answer = await pos.ask(financial("0200", pan, "200000", 100))
    assert (answer["39"], answer["44"]) == ("30", "original_data_missing")


async def test_format_errors_answer_30_and_keep_the_connection(redis_url):
    config = iso_config(channels=("pos",))
    async with running_switch(redis_url, config) as (switch, ledger):
        pan = await make_card(ledger, limit_fen=100_000)
        sale = financial("0200", pan, "000000", 700)
        body = encode(sale)
        wire = await Wire.connect(switch.ports["pos"])
        try:
            answer = decode(await wire.exchange(b"hello"))
            assert (answer["t"], answer["39"], answer["44"]) == ("0000", "30", "format:mti")

            truncated = decode(await wire.exchange(body[: field_at(body, "7") + 5]))
            assert (truncated["t"], truncated["39"]) == ("0210", "30")
            assert truncated["44"] == "format:field_7"
            assert (truncated["2"], truncated["3"], truncated["4"]) == (pan, "000000",
                                                                       "000000000700")

            mcc = field_at(body, "18")
            assert body[mcc : mcc + 4] == b"5411"
            bad_mcc = decode(await wire.exchange(body[: mcc + 2] + b"X" + body[mcc + 3 :]))
            assert (bad_mcc["39"], bad_mcc["44"]) == ("30", "format:field_18")
            assert bad_mcc["11"] == sale["11"]

            assert decode(await wire.exchange(body))["39"] == "00"
        finally:
            await wire.close()
        assert (await ledger.card(pan)).posted == 700


async def test_broken_framing_closes_that_connection_only(redis_url):
    config = iso_config(channels=("pos",))
    config.server_limits.frame_size_max_bytes = 1024
    async with running_switch(redis_url, config) as (switch, ledger):
        pan = await make_card(ledger, limit_fen=100_000)
        port = switch.ports["pos"]
        good, bad = await Wire.connect(port), await Wire.connect(port)
        try:
            bad.writer.write(b"\xff\xff" + b"x" * 100)  # announces 65535 bytes: over the max
            assert await bad.closed_by_peer()
            answer = decode(await good.exchange(encode(financial("0200", pan, "000000", 1))))
            assert answer["39"] == "00"
        finally:
            await good.close()
            await bad.close()


@pytest.mark.parametrize("header", ["ascii4", "binary2self", "ascii4self", "binary4"])
async def test_length_header_presets(redis_url, header):
    config = iso_config(header=header, channels=("pos",))
    async with running_switch(redis_url, config) as (switch, ledger):
        pan = await make_card(ledger, limit_fen=100_000)
        wire = await Wire.connect(switch.ports["pos"], HEADER_FORMATS[header])
        try:
            body = await wire.exchange(encode(financial("0200", pan, "000000", 250)))
            again = await wire.exchange(encode(financial("0200", pan, "000000", 750)))
        finally:
            await wire.close()
        assert decode(body)["39"] == decode(again)["39"] == "00"
        assert (await ledger.card(pan)).posted == 1_000


async def test_a_two_digit_ascii_length_frames_what_fits_99_bytes(redis_url):
    config = iso_config(header="ascii2", mac="off", channels=("pos",))
    async with running_switch(redis_url, config) as (switch, ledger):
        pan = await make_card(ledger, limit_fen=100_000)
        wire = await Wire.connect(switch.ports["pos"], ASCII_2)
        try:
            echo = {"t": "0800", "7": new_f7(), "11": new_stan(), "70": "301"}
            answer = decode(await wire.exchange(encode(echo, mac_key=None)))
            assert (answer["t"], answer["39"], answer["11"]) == ("0810", "00", echo["11"])
            # A purchase of 86 bytes fits; its answer (+ F38, F39, F54: 117 bytes) does not.
            sale = {"t": "0200", "2": pan, "3": "000000", "4": f"{250:012d}", "7": new_f7(),
                    "11": new_stan(), "18": "5411", "41": TERMINAL}
            assert len(encode(sale, mac_key=None)) <= 99
            with pytest.raises(ConnectionError):
                await wire.exchange(encode(sale, mac_key=None))  # closed: no answer to send
        finally:
            await wire.close()
        # Decided but unanswered, as after a lost answer: the terminal reverses it.
        assert (await ledger.card(pan)).posted == 250


MAC_KEY = bytes.fromhex("00112233445566778899AABBCCDDEEFF")


@pytest.mark.parametrize("dialect", ["iso87ascii", "iso87binary"])
async def test_mac_right_wrong_and_missing(redis_url, dialect):
    config = iso_config(dialect, channels=("pos",), terminals=[Terminal(
        acquirer=ACQUIRER, terminal=TERMINAL, algorithm="hmac-sha256", key=MAC_KEY.hex())])
    async with running_switch(redis_url, config) as (switch, ledger):
        pan = await make_card(ledger, limit_fen=100_000)
        wire = await Wire.connect(switch.ports["pos"])
        try:
            sale = financial("0200", pan, "000000", 1_000)
            body = await wire.exchange(encode(sale, dialect, MAC_KEY))
            answer = decode(body, dialect)
            assert answer["39"] == "00" and mac_ok(body, answer, MAC_KEY, dialect)

            for key in (bytes(16), None):  # a wrong MAC, then none at all
                other = financial("0200", pan, "000000", 2_000)
                body = await wire.exchange(encode(other, dialect, key))
                answer = decode(body, dialect)
                assert answer["39"] == "A0" and "64" not in answer  # not signed: who sent it?
                assert answer["44"] in ("mac_mismatch", "mac_missing")

            # F128 when the message has a secondary bitmap (here F90 of a reversal).
            reversal = financial("0400", pan, "000000", 1_000, original=f90(sale))
            body = await wire.exchange(encode(reversal, dialect, MAC_KEY))
            answer = decode(body, dialect)
            assert answer["39"] == "00" and "128" in answer
            assert mac_ok(body, answer, MAC_KEY, dialect)

            echo = {"t": "0800", "7": new_f7(), "11": new_stan(), "70": "301"}
            assert decode(await wire.exchange(encode(echo, dialect, None)), dialect)["39"] == "00"
        finally:
            await wire.close()
        view = await ledger.card(pan)
        assert (view.posted, view.open_to_buy, len(view.transactions)) == (0, 100_000, 1)


# --- partial approval (F60.6) and partial reversal (F95) -------------------------------------

PARTIAL_OK_F60 = "22000001000501"  # 60.1 22, 60.2 batch 000001, 60.3 000, 60.4 5, 60.5 0, 60.6 1


async def test_partial_approval_when_the_terminal_accepts_it(pos):
    pan = await make_card(pos.ledger, limit_fen=10_000)
    sale = financial("0200", pan, "000000", 15_000) | {"60": PARTIAL_OK_F60}
    answer = await pos.ask(sale)
    assert (answer["39"], answer["4"]) == ("10", f"{10_000:012d}")  # F4: what was approved
    assert answer["60"] == PARTIAL_OK_F60 and answer["54"] == f"3002156C{0:012d}"
    assert (await pos.ledger.card(pan)).posted == 10_000


@pytest.mark.parametrize("f60", [
    None,  # no F60
    "22000001000500",  # 60.6 = 0
    "2200000100051",  # the 1 one place early (60.5)
])
async def test_no_partial_approval_unless_60_6_says_so(pos, f60):
    pan = await make_card(pos.ledger, limit_fen=10_000)
    sale = financial("0200", pan, "000000", 15_000)
    answer = await pos.ask(sale if f60 is None else sale | {"60": f60})
    assert (answer["39"], answer["4"]) == ("51", f"{15_000:012d}")
    assert (await pos.ledger.card(pan)).posted == 0


async def test_partial_approval_of_a_preauthorization(pos):
    pan = await make_card(pos.ledger, limit_fen=10_000)
    preauth = financial("0100", pan, "000000", 12_000, condition="06") | {"60": PARTIAL_OK_F60}
    answer = await pos.ask(preauth)
    assert (answer["t"], answer["39"], answer["4"]) == ("0110", "10", f"{10_000:012d}")
    assert (await pos.ledger.card(pan)).held == 10_000


def f95(remaining_fen: int) -> str:
    """Replacement amounts: what remains (transaction, settlement), fees of zero."""
    return f"{remaining_fen:012d}{remaining_fen:012d}C00000000C00000000"


async def test_partial_reversal_releases_f4_minus_f95(pos):
    pan = await make_card(pos.ledger, limit_fen=100_000)
    sale = financial("0200", pan, "000000", 10_000)
    assert (await pos.ask(sale))["39"] == "00"
    reversal = financial("0400", pan, "000000", 10_000, original=f90(sale)) | {"95": f95(4_000)}
    answer = await pos.ask(reversal)
    assert (answer["t"], answer["39"], answer["95"]) == ("0410", "00", f95(4_000))
    assert answer["54"] == f"3002156C{96_000:012d}"
    view = await pos.ledger.card(pan)
    assert (view.posted, view.open_to_buy) == (4_000, 96_000)
    assert view.transactions[0].state != "reversed"
    # The rest, later: F4 is the amount as it stands, and nothing is to remain.
    rest = financial("0400", pan, "000000", 4_000, original=f90(sale)) | {"95": f95(0)}
    assert (await pos.ask(rest))["39"] == "00"
    view = await pos.ledger.card(pan)
    assert (view.posted, view.transactions[0].state) == (0, "reversed")


async def test_partial_reversal_of_a_hold_by_one_fen(pos):
    pan = await make_card(pos.ledger, limit_fen=100_000)
    preauth = financial("0100", pan, "000000", 10_000, condition="06")
    assert (await pos.ask(preauth))["39"] == "00"
    reversal = financial("0400", pan, "000000", 10_000, original=f90(preauth))
    assert (await pos.ask(reversal | {"95": f95(9_999)}))["39"] == "00"
    assert (await pos.ledger.card(pan)).held == 9_999


@pytest.mark.parametrize(("remaining", "code", "reason"), [
    (10_000, "13", "replacement_too_large"),  # nothing would be released
    (10_001, "13", "replacement_too_large"),
    (None, "30", "format:field_95"),
])
async def test_partial_reversal_that_releases_nothing_is_refused(pos, remaining, code, reason):
    pan = await make_card(pos.ledger, limit_fen=100_000)
    sale = financial("0200", pan, "000000", 10_000)
    assert (await pos.ask(sale))["39"] == "00"
    replacement = f95(remaining) if remaining is not None else "00000000400X" + "0" * 30
    reversal = financial("0400", pan, "000000", 10_000, original=f90(sale))
    answer = await pos.ask(reversal | {"95": replacement})
    assert (answer["39"], answer["44"]) == (code, reason)
    assert (await pos.ledger.card(pan)).posted == 10_000


async def test_partial_reversal_needs_f4(pos):
    pan = await make_card(pos.ledger, limit_fen=100_000)
    sale = financial("0200", pan, "000000", 10_000)
    assert (await pos.ask(sale))["39"] == "00"
    reversal = financial("0400", pan, "000000", None, original=f90(sale)) | {"95": f95(1)}
    answer = await pos.ask(reversal)
    assert (answer["39"], answer["44"]) == ("30", "field_4_missing")
    assert (await pos.ledger.card(pan)).posted == 10_000
