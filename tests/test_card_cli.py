"""The card commands as a user runs them (`switch card upgrade`, `repay`, the statement in
`show`; set and show otherwise: test_cli.py)."""

from __future__ import annotations

import json
import os
import re

from protocols.cardnumbers import luhn_valid, mask_pan
from switch import limits, testing
from tests.support import new_pan, switch_cli


async def test_card_upgrade_shows_the_masked_number_and_writes_the_full_one(redis_url,
                                                                            tmp_path):
    env = dict(os.environ, REDIS_URL=redis_url)
    out_file = tmp_path / "card.txt"
    code, out, err = await switch_cli("card", "upgrade", "cli_user_1", "--limit", "800000",
                                      "--out", str(out_file), env=env)
    assert code == 0, err
    pan = out_file.read_text().strip()
    assert luhn_valid(pan) and pan.startswith("62")
    assert out_file.stat().st_mode & 0o777 == 0o600
    assert pan not in out and mask_pan(pan) in out and "upgraded" in out
    code, out, _ = await switch_cli("card", "upgrade", "cli_user_1", "--limit", "5", env=env)
    assert code == 0 and "already has card" in out and "limit 800000" in out
    code, out, _ = await switch_cli("card", "show", pan, "--json", env=env)
    card = json.loads(out)
    assert (card["account"], card["limit"], card["pan"]) == ("cli_user_1", 800000, mask_pan(pan))
    code, _, err = await switch_cli("card", "upgrade", "bad account", "--limit", "5", env=env)
    assert code == 2 and "account must be" in err


async def test_card_set_binds_a_jd_user_and_card_show_names_it(redis_url):
    env = dict(os.environ, REDIS_URL=redis_url)
    pan = "6253680000000521"
    code, out, err = await switch_cli("card", "set", pan, "--limit", "5000", "--jd-user",
                                      "jd_user_42", env=env)
    assert code == 0, err
    assert "JD user jd_user_42" in out
    code, out, _ = await switch_cli("card", "show", pan, "--json", env=env)
    assert json.loads(out)["jd_user"] == "jd_user_42"
    code, _, err = await switch_cli("card", "set", pan, "--jd-user", "a b", env=env)
    assert code != 0 and "a JD user id is 1-64 letters" in err and "Traceback" not in err
    code, out, _ = await switch_cli("card", "show", pan, "--json", env=env)
    assert json.loads(out)["jd_user"] == "jd_user_42"  # the refused id changed nothing
    code, out, _ = await switch_cli("card", "set", pan, "--jd-user", "", env=env)
    assert code == 0 and "JD user" not in out
    code, out, _ = await switch_cli("card", "show", pan, "--json", env=env)
    assert json.loads(out)["jd_user"] == ""

async def test_the_card_s_month_from_the_command_line():
    """`switch card set --statement-day`, `switch clock advance 40d`, `switch card show` and
    `switch card repay`, against a switch that follows the test clock."""
    async with testing.start() as switch:  # a private Redis: the clock is the whole switch's
        env = dict(os.environ, REDIS_URL=switch.redis_url)
        await switch.clock.set("2031-01-03T10:00")
        pan = await switch.new_card(limit_fen=100_000, expiry="3512")
        code, out, err = await switch_cli("card", "set", pan, "--statement-day", "5", env=env)
        assert code == 0, err
        assert "cycle 2030-12-06 .. 2031-01-05 (statement day 5; next statement 2031-01-05)" \
            in out
        assert "no statement yet" in out
        sale = await switch.send("jd", pan, amount=10_000, mcc="5411")
        assert sale.response.response_code == "00"
        code, out, err = await switch_cli("clock", "advance", "40d", env=env)
        assert code == 0, err
        code, out, err = await switch_cli("card", "show", pan, env=env)
        assert code == 0, err
        # 5 January: 10,000 due 25 January, unpaid; 5 February: its minimum past due.
        assert "cycle 2031-02-06 .. 2031-03-05 (statement day 5; next statement " \
            "2031-03-05)" in out
        assert "last statement 2031-02-05: balance 10000 fen, minimum 2000 fen (with 1000 " \
            "past due), due 2031-02-25" in out
        assert "paid 0 fen since, still due 10000 fen, overdue yes" in out
        code, out, err = await switch_cli("card", "repay", pan, "2000", "--ref", "feb", env=env)
        assert code == 0, err
        assert f"repaid 2000 fen on {mask_pan(pan)} (ref feb)" in out
        assert "open_to_buy 92000 fen" in out
        assert "paid 2000 fen since, still due 8000 fen, overdue no" in out
        code, out, _ = await switch_cli("card", "repay", pan, "2000", "--ref", "feb", "--json",
                                        env=env)
        answer = json.loads(out)
        assert (answer["outcome"], answer["card"]["posted"]) == ("repeat", 8_000)
        assert answer["card"]["cycle"]["overdue"] is False


async def test_card_repay_and_statement_day_errors_are_one_line(redis_url):
    env = dict(os.environ, REDIS_URL=redis_url)
    pan = new_pan()
    code, _, err = await switch_cli("card", "set", pan, "--limit", "5000", env=env)
    assert code == 0, err
    code, out, err = await switch_cli("card", "repay", pan, "3000", "--ref", "r1", env=env)
    assert code == 0 and "credit balance 3000 fen (overpaid; spendable)" in out
    assert "open_to_buy 8000 fen" in out
    for args, words in ((("3001", "--ref", "r1"), "repayment r1 on " + mask_pan(pan) +
                         " was 3000 fen, not 3001: nothing changed"),
                        (("0",), "a repayment must be 1..10000000 fen"),
                        (("5", "--ref", "a:b"), "letters, digits, '_' or '-'"),
                        (("5x",), "an amount in fen")):
        code, _, err = await switch_cli("card", "repay", pan, *args, env=env)
        assert code == 2 and words in err and "Traceback" not in err, (args, err)
    code, _, err = await switch_cli("card", "set", pan, "--statement-day", "29", env=env)
    assert code == 2 and "statement day must be 1..28" in err
    code, _, err = await switch_cli("card", "repay", new_pan(), "5", env=env)
    # Without --ref the ref the command made is named with every outcome, this one too.
    assert code == 2 and re.search(r"no card \S+: repayment R[0-9a-f]{16} of 5 fen on \S+ "
                                   "not made", err), err
    code, out, _ = await switch_cli("card", "show", pan, "--json", env=env)
    card = json.loads(out)
    assert (card["posted"], card["repaid"], card["cycle"]["statement_day"]) == (
        -3_000, 3_000, limits.statement_day_default)
