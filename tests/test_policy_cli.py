"""The policy's commands as a user runs them: `send --explain`, WeChat sends."""

from __future__ import annotations

import json

from tests.support import make_card, switch_cli
from tests.test_policy_support import policy_switch


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
