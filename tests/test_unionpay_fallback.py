"""A real UnionPay terminal, which sends no F7 and no F18, over real TCP against a real switch
on the unionpay-pos preset and a real Redis: the transmission time is F13 + F12, the MCC the
merchant id's (F42) characters 8-11 (docs/channels/pos.md, "When F7 or F18 is absent").
Requests are made and answers read by pyiso8583 given UnionPay's layout by hand."""

from __future__ import annotations

import iso8583
import pytest

from switch.config import Config, Iso8583, Listener
from tests.support import SWITCH, make_card, run_command_sync, running_switch, until_true
from tests.test_pos_support import ACQUIRER, DEMO_KEY, TERMINAL, ask, financial, reference_mac
from tests.test_unionpay_dialect import PEER_SPEC, from_peer
from tests.test_unionpay_pos import (  # noqa: F401 (the fixture)
    DOC_CARD,
    HEADER,
    TPDU,
    doc_dump,
    sale,
    signed,
    terminal,
)

MERCHANT = "898310054110001"  # acquirer 898, area 3100, MCC 5411 (supermarket), serial 0001


def unionpay_sale(card: str, amount_fen: int, stan: str = "", **changes: str) -> dict:
    """What a UnionPay terminal sends for a purchase: F12 and F13, no F7, no F18."""
    doc = sale(card, amount_fen, stan=stan)
    del doc["7"], doc["18"]
    return doc | {"42": MERCHANT} | changes


def f90(original: dict) -> str:
    """F90 naming `original`, whose time (no F7 sent) is its F13 + F12."""
    return f"{original['t']}{original['11']}{original['13']}{original['12']}{ACQUIRER:0>11}" \
           f"{'0' * 11}"


async def open_to_buy(terminal, card: str) -> int:  # noqa: F811
    return (await terminal.ledger.card(card)).open_to_buy


async def test_a_sale_without_f7_and_f18_is_approved_and_the_answer_echoes_what_came(
        terminal):  # noqa: F811
    card = await make_card(terminal.ledger, limit_fen=100_000)
    doc = unionpay_sale(card, 12_800)
    _, answer = await terminal.ask(doc)
    assert (answer["t"], answer["39"], answer["4"]) == ("0210", "00", "000000012800")
    assert "7" not in answer and "18" not in answer
    assert (answer["12"], answer["13"], answer["42"]) == (doc["12"], doc["13"], MERCHANT)
    assert await open_to_buy(terminal, card) == 87_200


@pytest.mark.parametrize("names_original", ["F90", "STAN and RRN"])
async def test_a_reversal_after_a_timeout_is_matched_and_named_by_f13_f12(
        terminal, names_original):  # noqa: F811
    """The terminal's timer runs out before it reads the sale's answer: it reverses the sale
    (no F7 on either), then sends the reversal again (0401): one release."""
    card = await make_card(terminal.ledger, limit_fen=100_000)
    original = unionpay_sale(card, 12_800)
    wire = terminal.wire
    wire.writer.write(wire.framer.frame(TPDU + HEADER + signed(original)))
    await until_true(lambda: held(terminal, card), "the sale placed on the card")
    reversal = original | {"t": "0400", "12": later(original["12"]),
                           "37": f"{original['12']}{original['11']}"}
    if names_original == "F90":
        reversal |= {"11": f"{(int(original['11']) + 1) % 1_000_000:06d}",
                     "90": f90(original)}
    wire.writer.write(wire.framer.frame(TPDU + HEADER + signed(reversal)))
    answers = {answer["t"]: answer for answer in [
        fields_of(await wire.next_answer()), fields_of(await wire.next_answer())]}
    assert answers["0210"]["39"] == "00"  # the sale's answer, read too late
    answer = answers["0410"]
    assert answer["39"] == "00" and "7" not in answer, answer
    assert await open_to_buy(terminal, card) == 100_000
    _, again = await terminal.ask(reversal | {"t": "0401"})
    assert (again["t"], again["39"], again["54"]) == ("0410", "00", answer["54"])
    assert await open_to_buy(terminal, card) == 100_000


async def held(terminal, card: str) -> bool:  # noqa: F811
    return await open_to_buy(terminal, card) == 87_200


def later(hhmmss: str) -> str:
    """A local time (F12) a second after `hhmmss` (at 23:59:59, a second before)."""
    seconds = int(hhmmss[:2]) * 3600 + int(hhmmss[2:4]) * 60 + int(hhmmss[4:])
    seconds = seconds + 1 if seconds < 86_399 else seconds - 1
    return f"{seconds // 3600:02d}{seconds // 60 % 60:02d}{seconds % 60:02d}"


def fields_of(body: bytes) -> dict:
    """An answer's fields after its TPDU and header, its MAC checked."""
    fields = from_peer(iso8583.decode(bytearray(body[11:]), PEER_SPEC)[0])
    assert fields.get("128", fields.get("64")) == reference_mac(DEMO_KEY, body[11:-8])
    return fields


async def test_an_exact_repeat_gets_the_first_answer_and_changes_nothing(terminal):  # noqa: F811
    card = await make_card(terminal.ledger, limit_fen=100_000)
    body = TPDU + HEADER + signed(unionpay_sale(card, 5_000))
    first = await terminal.wire.exchange(body)
    again = await terminal.wire.exchange(body)
    assert again == first  # byte for byte: the auth id, F54 and MAC of the first answer
    assert fields_of(first)["39"] == "00"
    assert await open_to_buy(terminal, card) == 95_000


async def test_stan_and_time_reused_for_other_content_is_94_and_changes_nothing(
        terminal):  # noqa: F811
    card = await make_card(terminal.ledger, limit_fen=100_000)
    first = unionpay_sale(card, 5_000)
    assert (await terminal.ask(first))[1]["39"] == "00"
    _, other = await terminal.ask(first | {"4": "000000005100"})
    assert (other["39"], other["44"]) == ("94", "duplicate_key_mismatch")
    # Another F12 is another message (its own id), with the STAN of a transaction: 94 too,
    # not the first answer again, which it would be if the time were not in the id.
    _, another = await terminal.ask(first | {"12": later(first["12"])})
    assert another["39"] == "94"
    assert await open_to_buy(terminal, card) == 95_000


async def test_a_blocked_mcc_in_f42_is_declined_for_its_category(terminal):  # noqa: F811
    card = await make_card(terminal.ledger, limit_fen=100_000)
    _, answer = await terminal.ask(unionpay_sale(card, 5_000, **{"42": "898310079950001"}))
    assert (answer["39"], answer["44"]) == ("57", "mcc_blocked:7995")
    # F18 sent wins over F42: the supermarket's purchase at the same merchant id is approved.
    _, sent = await terminal.ask(unionpay_sale(card, 5_000, **{"42": "898310079950001",
                                                                "18": "5411"}))
    assert sent["39"] == "00"
    assert await open_to_buy(terminal, card) == 95_000


@pytest.mark.parametrize("dropped, changes, reason", [
    (("12", "13"), {}, "field_7_missing"),
    (("12",), {}, "field_12_missing"),
    ((), {"42": "8983100SHOP0001"}, "format:field_42"),
])
async def test_what_cannot_be_read_is_30_naming_the_field_and_changes_nothing(
        terminal, dropped, changes, reason):  # noqa: F811
    card = await make_card(terminal.ledger, limit_fen=100_000)
    doc = unionpay_sale(card, 5_000, **changes)
    _, answer = await terminal.ask({k: v for k, v in doc.items() if k not in dropped})
    assert (answer["t"], answer["39"], answer["44"]) == ("0210", "30", reason)
    assert await open_to_buy(terminal, card) == 100_000


async def test_an_iso87ascii_listener_still_requires_f7_and_f18(redis_url):
    config = Config(listeners={"pos": Listener(port=0)}, pos=Iso8583(dialect="iso87ascii"))
    async with running_switch(redis_url, config) as (switch, ledger):
        card = await make_card(ledger, limit_fen=100_000)
        doc = financial("0200", card, "000000", 5_000) | {"42": MERCHANT}
        answer = await ask(switch.ports["pos"], {k: v for k, v in doc.items() if k != "7"})
        assert (answer["39"], answer["44"]) == ("30", "field_7_missing")
        answer = await ask(switch.ports["pos"], {k: v for k, v in doc.items() if k != "18"})
        assert (answer["39"], answer["44"]) == ("30", "mcc_missing")  # F42 is not read
        assert (await ledger.card(card)).open_to_buy == 100_000


# ---- the worked example of docs/channels/pos.md --------------------------------------------

DOC_SALE = {"t": "0200", "2": DOC_CARD, "3": "000000", "4": "000000012800", "11": "000123",
            "12": "120000", "13": "1129", "22": "051", "25": "00", "32": ACQUIRER,
            "41": TERMINAL, "42": MERCHANT, "49": "156", "60": "22000001"}
DOC_HEADING = "--- a sale without F7 or F18, framed"


async def test_the_sale_without_f7_or_f18_in_the_docs_is_what_the_switch_reads(
        terminal):  # noqa: F811
    """The page's request is pyiso8583's bytes for DOC_SALE; the real switch answers it as
    the page shows, but for the auth id (random) and the MAC that covers it."""
    request = doc_dump(DOC_HEADING)
    body = TPDU + HEADER[:2] + b"\x00" + HEADER[3:] + signed(DOC_SALE)
    assert request == len(body).to_bytes(2, "big") + body
    await terminal.ledger.reset_card(DOC_CARD, limit_fen=1_000_000, expiry="3012")
    answer = await terminal.wire.exchange(body)
    shown = doc_dump("--- its answer, framed")
    assert shown[:2] == len(answer).to_bytes(2, "big") and answer[:11] == shown[2:13]
    ours = from_peer(iso8583.decode(bytearray(answer[11:]), PEER_SPEC)[0])
    theirs = from_peer(iso8583.decode(bytearray(shown[13:]), PEER_SPEC)[0])
    assert ours["64"] == reference_mac(DEMO_KEY, answer[11:-8])
    for key in ("38", "64"):
        del ours[key], theirs[key]
    assert ours == theirs and "7" not in ours and "18" not in ours
    assert ours["39"] == "00" and ours["54"] == "3002156C000000987200"


# ---- switch iso validate --------------------------------------------------------------------

DEMO_MAC = ("--mac-key", DEMO_KEY[1].hex(), "--mac-algorithm", DEMO_KEY[0])


def validate(*args: str, stdin: str) -> tuple[int, str, str]:
    return run_command_sync(SWITCH, "iso", "validate", "--dialect", "unionpay-pos", *DEMO_MAC,
                            *args, "-", stdin=stdin)


def test_validate_reads_the_docs_sale_as_the_listener_does_and_says_what_it_read_instead():
    code, out, err = validate(stdin=doc_dump(DOC_HEADING).hex())
    assert (code, err) == (0, ""), out + err
    assert out.splitlines() == [
        "valid pos sale request: card 625368******0026, 12800 fen, terminal TERM0001",
        "F7 absent: read from F13 + F12 (unionpay)",
        "F18 absent: read from F42 characters 8-11 (unionpay)"]


@pytest.mark.parametrize("dropped, changes, line", [
    ((), {"42": "8983100SHOP0001"}, "F42 (Card Acceptor Identification Code; the absent F18 "
     "is read from F42 characters 8-11): format:field_42"),
    (("12",), {}, "F12 (Time, Local Transaction; the absent F7 is read from F13 + F12): "
     "field_12_missing"),
    (("12", "13"), {}, "F7 (Transmission Date and Time; or F13 + F12): field_7_missing"),
])
def test_validate_names_what_cannot_be_read_and_exits_1(dropped, changes, line):
    doc = {key: value for key, value in DOC_SALE.items() if key not in dropped} | changes
    code, out, _ = validate(stdin=framed(signed(doc)))
    assert code == 1 and line in out.splitlines(), out


def framed(message: bytes) -> str:
    body = TPDU + HEADER[:2] + b"\x00" + HEADER[3:] + message
    return (len(body).to_bytes(2, "big") + body).hex()
