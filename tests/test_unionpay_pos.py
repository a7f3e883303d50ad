"""The pos listener with the unionpay-pos preset, over real TCP and a real Redis: a UnionPay
terminal's frame (2-byte length, TPDU, 6-byte message header, BCD message) built by
pyiso8583 with UnionPay's layout, and the answer read back the same way."""

from __future__ import annotations

import copy
from pathlib import Path

import iso8583
import pytest

from protocols.iso_tools import message_from_text
from switch.config import Config, Iso8583, Listener
from tests.support import make_card, running_switch
from tests.test_pos_support import (
    ACQUIRER,
    DEMO_KEY,
    TERMINAL,
    Wire,
    new_f7,
    new_stan,
    reference_mac,
)
from tests.test_unionpay_dialect import PEER_SPEC, from_peer, to_peer

TPDU = bytes.fromhex("6000030000")  # to host 0003 from terminal 0000
HEADER = bytes.fromhex("602213000000")  # application 60, version 22, status 1, requirement 3
ANSWER_FRONT = bytes.fromhex("6000000003") + bytes.fromhex("602210000000")


def unionpay_config() -> Config:
    return Config(listeners={"pos": Listener(port=0)}, pos=Iso8583(dialect="unionpay-pos"))


@pytest.fixture
async def terminal(redis_url):
    async with running_switch(redis_url, unionpay_config()) as (switch, ledger):
        wire = await Wire.connect(switch.ports["pos"])
        try:
            yield Terminal(wire, ledger)
        finally:
            await wire.close()


class Terminal:
    def __init__(self, wire: Wire, ledger) -> None:
        self.wire, self.ledger = wire, ledger

    async def ask(self, doc: dict, front: bytes = TPDU + HEADER) -> tuple[bytes, dict]:
        """(the answer's front, its fields), its MAC checked."""
        body = await self.wire.exchange(front + signed(doc))
        answer_front, message = body[:11], body[11:]
        fields = from_peer(iso8583.decode(bytearray(message), PEER_SPEC)[0])
        mac = fields.get("128", fields.get("64"))
        if mac is not None:
            assert mac == reference_mac(DEMO_KEY, message[:-8])
        return answer_front, fields


def signed(doc: dict) -> bytes:
    """pyiso8583's bytes of `doc` with its MAC (F64, or F128 with a secondary bitmap) the
    X9.19 MAC of the demo terminal's key."""
    field = "128" if any(key.isdigit() and int(key) > 64 for key in doc) else "64"
    peer = copy.deepcopy(to_peer(doc | {field: bytes(8)}))
    body = bytes(iso8583.encode(peer, PEER_SPEC)[0])
    return body[:-8] + reference_mac(DEMO_KEY, body[:-8])


def sale(card: str, amount_fen: int, batch: str = "000001", stan: str = "") -> dict:
    f7 = new_f7()
    return {"t": "0200", "2": card, "3": "000000", "4": f"{amount_fen:012d}", "7": f7,
            "11": stan or new_stan(), "12": f7[4:], "13": f7[:4], "18": "5411", "22": "051",
            "25": "00", "32": ACQUIRER, "41": TERMINAL, "42": "898310054110001",
            "49": "156", "60": f"22{batch}"}


async def test_a_sale_is_answered_with_the_tpdu_swapped(terminal):
    card = await make_card(terminal.ledger, limit_fen=100_000)
    front, answer = await terminal.ask(sale(card, 12_800))
    assert front == ANSWER_FRONT  # addresses swapped; processing requirement 0
    assert (answer["t"], answer["39"], answer["4"]) == ("0210", "00", "000000012800")
    assert answer["54"] == "3002156C000000087200"
    assert answer["60"] == "22000001"  # echoed
    assert (await terminal.ledger.card(card)).open_to_buy == 87_200


async def test_a_frame_without_a_tpdu_is_a_format_error_and_changes_nothing(terminal):
    card = await make_card(terminal.ledger, limit_fen=100_000)
    front, answer = await terminal.ask(sale(card, 12_800), front=b"\x61" + TPDU[1:] + HEADER)
    assert front == bytes.fromhex("6000000003") + HEADER[:2] + b"\x10" + HEADER[3:]
    assert (answer["t"], answer["39"], answer["44"]) == ("0000", "30", "format:tpdu")
    assert (await terminal.ledger.card(card)).open_to_buy == 100_000
    # The connection stays open: the next frame is decided.
    _, answer = await terminal.ask(sale(card, 100))
    assert answer["39"] == "00"


DOC_CARD = "6253680000000026"  # the card of docs/channels/pos.md's unionpay-pos example


def doc_dump(heading: str) -> bytes:
    page = (Path(__file__).resolve().parent.parent / "docs" / "channels" / "pos.md").read_text()
    dump = page[page.index(heading):]
    return message_from_text(dump[dump.index("\n"):dump.index("```")])


async def test_the_unionpay_pos_example_in_the_docs_is_what_the_switch_does(terminal):
    """The request dump of docs/channels/pos.md is the sale pyiso8583 makes from its fields;
    a real switch answers it as the answer dump shows, but for the auth id (random) and the
    MAC that covers it."""
    request = doc_dump("--- request framed (104 bytes")
    f7 = "1129120000"
    doc = {"t": "0200", "2": DOC_CARD, "3": "000000", "4": "000000012800", "7": f7,
           "11": "000123", "12": "120000", "13": "1129", "18": "5411", "22": "051",
           "25": "00", "32": ACQUIRER, "41": TERMINAL, "42": "898310054110001", "49": "156",
           "60": "22000001"}
    body = TPDU + HEADER[:2] + b"\x00" + HEADER[3:] + signed(doc)
    assert request == len(body).to_bytes(2, "big") + body
    await terminal.ledger.reset_card(DOC_CARD, limit_fen=1_000_000, expiry="3012")
    answer = await terminal.wire.exchange(body)
    shown = doc_dump("--- answer framed (134 bytes)")
    assert shown[:2] == len(answer).to_bytes(2, "big")
    assert answer[:11] == shown[2:13]  # TPDU swapped, header echoed
    ours = from_peer(iso8583.decode(bytearray(answer[11:]), PEER_SPEC)[0])
    theirs = from_peer(iso8583.decode(bytearray(shown[13:]), PEER_SPEC)[0])
    assert ours["64"] == reference_mac(DEMO_KEY, answer[11:-8])
    assert len(ours["38"]) == 6
    for key in ("38", "64"):
        del ours[key], theirs[key]
    assert ours == theirs
