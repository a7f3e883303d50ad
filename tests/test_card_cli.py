"""The card commands as a user runs them (`switch card upgrade`; set and show: test_cli.py)."""

from __future__ import annotations

import json
import os

from protocols.cardnumbers import luhn_valid, mask_pan
from tests.support import switch_cli


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
    pan = "6253680000000513"
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
