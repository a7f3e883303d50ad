"""`switch saf show|replay`, run as processes on journals written by the real Journal."""

from __future__ import annotations

import json

from protocols.cardnumbers import mask_pan
from switch.journal import Journal
from tests.support import make_card, switch_cli
from tests.test_journal import advice, void
from tests.test_standin_forwarding import stand_in_advice

PAN = "6253990000000018"


async def write_journal(folder, records, name: str = "saf-0.journal") -> None:
    journal = Journal.open_locked(folder / name)
    await journal.append(records)
    journal.close()


async def test_show_lists_what_waits_per_journal_and_per_card_masked(tmp_path):
    await write_journal(tmp_path, [void(1), advice(2, amount=1200), advice(3, amount=300)])
    code, out, err = await switch_cli("saf", "show", "--dir", str(tmp_path))
    assert code == 0, err
    assert "3 records wait" in out and "no switch holds it" in out
    assert f"{mask_pan(PAN)}  2 advices 1500 fen  1 voids" in out
    assert "total: 2 advices 1500 fen, 1 voids waiting" in out
    assert PAN not in out
    code, out, _ = await switch_cli("saf", "show", "--dir", str(tmp_path), "--json")
    shown = json.loads(out)
    [journal] = shown["journals"]
    assert [r["kind"] for r in journal["waiting"]] == ["void", "advice", "advice"]
    assert shown["cards"][mask_pan(PAN)] == {"advices": 2, "advised_fen": 1500, "voids": 1}
    assert PAN not in out


async def test_show_counts_only_what_the_cursor_has_not_passed(tmp_path):
    journal = Journal.open_locked(tmp_path / "saf-0.journal")
    await journal.append([void(1), advice(2)])
    journal.advance(1)
    code, out, _ = await switch_cli("saf", "show", "--dir", str(tmp_path), "--json")
    [shown] = json.loads(out)["journals"]
    assert (len(shown["waiting"]), shown["forwarded_not_truncated"]) == (1, 1)
    assert shown["held_by_a_running_switch"]  # this test process holds it
    journal.close()


async def test_show_of_an_empty_or_missing_directory(tmp_path):
    code, out, _ = await switch_cli("saf", "show", "--dir", str(tmp_path))
    assert code == 0 and "nothing waits" in out
    code, _, err = await switch_cli("saf", "show", "--dir", str(tmp_path / "nowhere"))
    assert code == 2 and "no journal directory" in err and "--dir" in err


async def test_replay_leaves_a_journal_a_running_switch_holds(tmp_path, redis_url):
    journal = Journal.open_locked(tmp_path / "saf-0.journal")
    await journal.append([advice(1)])
    code, out, err = await switch_cli("saf", "replay", "--dir", str(tmp_path),
                                      "--redis", redis_url)
    journal.close()
    assert code == 0, err
    assert "held by a running switch" in out and "skipped" in out
    again = Journal.open_locked(tmp_path / "saf-0.journal")
    assert len(again.records) == 1
    again.close()


async def test_replay_without_redis_is_one_clear_error(tmp_path):
    await write_journal(tmp_path, [advice(1)])
    code, _, err = await switch_cli("saf", "replay", "--dir", str(tmp_path),
                                    "--redis", "redis://127.0.0.1:1/0")
    assert code == 2 and "does not answer" in err


async def test_replay_forwards_a_journal_no_switch_holds_and_reports_each_record(
        tmp_path, redis_url, ledger):
    pan = await make_card(ledger, limit_fen=100_000)
    await write_journal(tmp_path, [stand_in_advice(pan, 1, 1234), stand_in_advice(pan, 2, 66)])
    code, out, err = await switch_cli("saf", "replay", "--dir", str(tmp_path),
                                      "--redis", redis_url)
    assert code == 0, err
    assert "2 records replayed: advice:applied 2" in out
    assert (await ledger.card(pan)).posted == 1300
    code, out, _ = await switch_cli("saf", "replay", "--dir", str(tmp_path),
                                    "--redis", redis_url)
    assert "0 records replayed: nothing" in out  # drained: the file was started over
    assert (await ledger.card(pan)).posted == 1300
