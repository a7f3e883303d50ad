"""The policy's commands as a user runs them: `card upgrade`, `send --explain`, WeChat sends."""

from __future__ import annotations

import asyncio
import json
import os
import sys

from protocols.cardnumbers import luhn_valid, mask_pan
from tests.support import make_card
from tests.test_policy_support import policy_switch

WAIT_S = 20.0


async def switch_cli(*args: str, env: dict | None = None) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "switch.cli", *args, env=env or dict(os.environ),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    async with asyncio.timeout(WAIT_S):
        out, err = await process.communicate()
    return process.returncode, out.decode(), err.decode()


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


async def test_send_explain_and_wechat_through_the_cli(redis_url):
    async with policy_switch(redis_url) as (switch, ledger, _):
        pan = await make_card(ledger, limit_fen=100_000)
        port = str(switch.ports["wechat"])
        code, out, err = await switch_cli("send", "--channel", "wechat", "--port", port,
                                          "--pan", pan, "--amount", "100", "--mcc", "7995",
                                          "--explain")
        assert code == 0, err
        assert "decline  mcc_blocked:7995" in out
        assert "DECLINED 57  reason mcc_blocked:7995" in out
        assert pan not in out
        code, out, err = await switch_cli("send", "--channel", "wechat", "--port", port,
                                          "--pan", pan, "--amount", "12800", "--json")
        sale = json.loads(out)
        assert (sale["response_code"], sale["wire"]["result_code"], sale["beans"]) == (
            "00", "SUCCESS", 128)
        code, out, err = await switch_cli("send", "--channel", "wechat", "--port", port,
                                          "--pan", pan, "--type", "inquiry", "--original",
                                          sale["id"], "--json")
        assert json.loads(out)["wire"]["trade_state"] == "SUCCESS"
        code, _, err = await switch_cli("send", "--channel", "wechat", "--port", port,
                                        "--pan", pan, "--type", "auth", "--amount", "5")
        assert code == 2 and "WeChat Pay has no auth" in err
