"""Batch settlement of a UnionPay terminal over TCP (unionpay-pos preset), a real switch and
a real Redis: the switch counts each approval of a batch as it is decided, and a 0500 with
the terminal's totals in F48 is answered 00 when they agree, 95 when not; the terminal then
uploads the batch (0320) and settles again after upload."""

from __future__ import annotations

import json
import secrets

import pytest

from protocols.batch import BatchTotals
from protocols.ledger_layout import batch_keys
from switch import limits
from tests.support import SWITCH, make_card, run_command
from tests.test_pos_support import ACQUIRER, TERMINAL, new_f7, new_stan
from tests.test_unionpay_pos import sale, terminal  # noqa: F401 (the fixture)


@pytest.fixture
def batch() -> str:
    """A batch of its own: the tests share one Redis, where batches live a week."""
    return f"{secrets.randbelow(10**6):06d}"


def settlement(totals: BatchTotals, batch: str, code: str = "201") -> dict:
    return {"t": "0500", "11": new_stan(), "32": ACQUIRER, "41": TERMINAL,
            "42": "898310054110001", "48": totals.wire() + "0" + "0" * 31,
            "60": f"00{batch}{code}"}


def upload(original: dict) -> dict:
    """The 0320 that uploads one transaction of the batch: its F2, F3, F4, F11."""
    return {"t": "0320", "2": original["2"], "3": original["3"], "4": original["4"],
            "11": original["11"], "32": ACQUIRER, "41": TERMINAL,
            "60": f"00{original['60'][2:8]}201"}


def f90(original: dict) -> str:
    return f"{original['t']}{original['11']}{original['7']}{ACQUIRER:0>11}{'0' * 11}"


def refund(original: dict, amount_fen: int) -> dict:
    batch = original["60"][2:8]
    return sale(original["2"], amount_fen, batch) | {"3": "200000", "60": f"25{batch}",
                                                     "90": f90(original)}


def reversal(original: dict) -> dict:
    batch = original["60"][2:8]
    f7 = new_f7()
    return {"t": "0400", "2": original["2"], "3": original["3"], "4": original["4"],
            "7": f7, "11": new_stan(), "32": ACQUIRER, "41": TERMINAL, "49": "156",
            "60": f"22{batch}", "90": f90(original)}


async def settle(terminal, totals: BatchTotals, batch: str, code: str = "201"  # noqa: F811
                 ) -> dict:
    _, answer = await terminal.ask(settlement(totals, batch, code))
    assert answer["t"] == "0510"
    return answer


async def approved(terminal, doc: dict) -> dict:  # noqa: F811
    _, answer = await terminal.ask(doc)
    assert answer["39"] == "00", answer
    return doc


async def a_day_of_sales(terminal, batch: str  # noqa: F811
                         ) -> tuple[list[dict], BatchTotals]:
    """Two sales and a refund stand; a third sale reversed; a pre-authorization (no
    count); a decline (no count); a repeat of the first sale (counted once)."""
    card = await make_card(terminal.ledger, limit_fen=100_000)
    first = await approved(terminal, sale(card, 12_800, batch))
    second = await approved(terminal, sale(card, 5_000, batch))
    await approved(terminal, refund(first, 2_000))
    reversed_sale = await approved(terminal, sale(card, 3_000, batch))
    await approved(terminal, reversal(reversed_sale))
    await approved(terminal, sale(card, 700, batch) | {"t": "0100", "25": "06",
                                                       "60": f"10{batch}"})
    _, declined = await terminal.ask(sale(card, 999_999, batch))
    assert declined["39"] == "51"
    _, again = await terminal.ask(first)
    assert again["39"] == "00"
    return [first, second], BatchTotals(debit_count=2, debit_fen=17_800, credit_count=1,
                                        credit_fen=2_000)


async def test_a_balanced_batch_is_answered_00(terminal, batch):  # noqa: F811
    _, totals = await a_day_of_sales(terminal, batch)
    answer = await settle(terminal, totals, batch)
    assert answer["39"] == "00"
    assert answer["48"][:30] == totals.wire() and answer["48"][30] == "1"  # balanced


@pytest.mark.parametrize("off_by", [
    BatchTotals(1, 0, 0, 0), BatchTotals(0, 1, 0, 0), BatchTotals(0, 0, 1, 0),
    BatchTotals(0, 0, 0, 1)])
async def test_totals_off_by_one_anywhere_are_answered_95(terminal, batch, off_by):  # noqa: F811
    _, totals = await a_day_of_sales(terminal, batch)
    wrong = BatchTotals(*(a + b for a, b in zip(totals, off_by, strict=True)))
    answer = await settle(terminal, wrong, batch)
    assert (answer["39"], answer["44"]) == ("95", "batch_totals_differ")
    assert answer["48"][30] == "2"  # not balanced


async def test_another_batch_number_is_another_batch(terminal, batch):  # noqa: F811
    _, totals = await a_day_of_sales(terminal, batch)
    other = f"{(int(batch) + 1) % 10**6:06d}"
    assert (await settle(terminal, totals, other))["39"] == "95"
    assert (await settle(terminal, BatchTotals(0, 0, 0, 0), other))["39"] == "00"


async def test_a_partial_reversal_leaves_what_remains_in_the_batch(terminal, batch):  # noqa: F811
    card = await make_card(terminal.ledger, limit_fen=100_000)
    original = await approved(terminal, sale(card, 12_800, batch))
    partial = reversal(original) | {"95": f"{2_800:012d}{2_800:012d}C00000000C00000000"}
    await approved(terminal, partial)
    assert (await settle(terminal, BatchTotals(1, 2_800, 0, 0), batch))["39"] == "00"
    # Kept a week from its last write, no longer (a terminal that never settles).
    for key in batch_keys(f"{ACQUIRER.lstrip('0')}:{TERMINAL}:{batch}")[::2]:
        assert limits.batch_ttl_s - 60 < await terminal.ledger.client.ttl(key) <= (
            limits.batch_ttl_s)


async def test_upload_then_settle_after_upload_is_00(terminal, batch, redis_url):  # noqa: F811
    sales, _ = await a_day_of_sales(terminal, batch)
    # The terminal believes in a third sale the switch never approved: 95, so it uploads.
    card = sales[0]["2"]
    phantom = sale(card, 1_000, batch)
    terminal_totals = BatchTotals(3, 18_800, 0, 0)
    assert (await settle(terminal, terminal_totals, batch))["39"] == "95"
    for doc in (*sales, phantom):
        _, answer = await terminal.ask(upload(doc))
        assert (answer["t"], answer["39"]) == ("0330", "00")
    _, ended = await terminal.ask(upload(sales[0]) | {"60": f"00{batch}202", "48": "0003"})
    assert (ended["t"], ended["39"]) == ("0330", "00")
    after = await settle(terminal, terminal_totals, batch, code="202")
    assert (after["39"], after["48"][30]) == ("00", "1")
    # The uploads must add up to what the terminal says, after upload too.
    wrong = await settle(terminal, BatchTotals(3, 18_801, 0, 0), batch, code="202")
    assert wrong["39"] == "95"
    # The operator sees both sides, and the transaction only the terminal had.
    code, out, err = await run_command(SWITCH, "batch", "show", ACQUIRER, TERMINAL, batch,
                                       "--json", "--redis", redis_url)
    assert code == 0, err
    view = json.loads(out)
    assert view["switch_totals"] == [2, 17_800, 1, 2_000]
    assert view["uploaded_totals"] == [3, 18_800, 0, 0]
    assert view["differences"][phantom["11"]] == ["", "D|1000"]
    assert view["settlement"]["outcome"] == "unbalanced"  # the last one, after upload


async def test_a_settlement_without_a_batch_number_is_a_format_error(terminal, batch):  # noqa: F811
    doc = settlement(BatchTotals(0, 0, 0, 0), batch)
    doc["60"] = "00"
    _, answer = await terminal.ask(doc)
    assert (answer["t"], answer["39"], answer["44"]) == ("0510", "30", "batch_number_missing")


async def test_totals_not_digits_are_a_format_error(terminal, batch):  # noqa: F811
    doc = settlement(BatchTotals(0, 0, 0, 0), batch)
    doc["48"] = "1" * 29
    _, answer = await terminal.ask(doc)
    assert (answer["39"], answer["44"]) == ("30", "format:field_48")


async def test_another_network_code_is_not_taken(terminal, batch):  # noqa: F811
    _, answer = await terminal.ask(settlement(BatchTotals(0, 0, 0, 0), batch, code="301"))
    assert (answer["39"], answer["44"]) == ("12", "network_code_unsupported")


@pytest.mark.parametrize("sales, outcome", [(2, ("00", "")),
                                            (3, ("95", "batch_entries_over_limit"))])
async def test_a_batch_holds_at_most_its_entries(terminal, batch, monkeypatch,  # noqa: F811
                                                 sales, outcome):
    monkeypatch.setattr(limits, "batch_entries_max", 2)
    card = await make_card(terminal.ledger, limit_fen=100_000)
    for _ in range(sales):
        await approved(terminal, sale(card, 100, batch))
    answer = await settle(terminal, BatchTotals(sales, 100 * sales, 0, 0), batch)
    assert (answer["39"], answer.get("44", "")) == outcome


async def test_batch_show_names_what_it_cannot_find(redis_url, batch):
    code, _, err = await run_command(SWITCH, "batch", "show", ACQUIRER, TERMINAL, batch,
                                     "--redis", redis_url)
    assert code == 2 and f"no batch {batch} of terminal {TERMINAL}" in err
    code, _, err = await run_command(SWITCH, "batch", "show", ACQUIRER, TERMINAL, "42",
                                     "--redis", redis_url)
    assert code == 2 and "six digits" in err
