"""The admin API over real HTTP against a real switch on a real Redis: health, readiness,
card endpoints with masked numbers, the bearer token, and the policy reload."""

from __future__ import annotations

import os
import signal
import tempfile
import time
from pathlib import Path

import pytest

from protocols.cardnumbers import full_card_numbers_in
from switch import limits
from switch.policy_file import default_policy_text
from switch.redis_runner import PrivateRedis
from tests.admin_support import TOKEN, admin_switch

GROCERY = "5411"


def policy_text(name: str = "baitiao-default", block_grocery: bool = False,
                broken: bool = False) -> str:
    text = default_policy_text().decode()
    text = text.replace('name = "baitiao-default"', f'name = "{name}"')
    if block_grocery:  # groceries join the gambling group, which is blocked (57)
        text = text.replace('gambling = ["7995", "7800-7802"]',
                            f'gambling = ["7995", "7800-7802", "{GROCERY}"]')
    if broken:  # a block that "declines" with an approval: the checker refuses it
        text += '\n[[mcc_block]]\nid = "broken"\ngroups = ["luxury"]\ncode = "00"\n'
    return text


async def test_health_and_readiness(redis_url):
    async with admin_switch(redis_url) as admin:
        assert await admin.call("GET", "/healthz", token=None) == (200, {"status": "up"})
        status, ready = await admin.call("GET", "/readyz", token=None)
        assert status == 200 and ready["ready"] is True
        assert ready["library"].startswith("baitiao_ledger_")


async def test_not_ready_without_the_function_library_or_without_redis():
    with tempfile.TemporaryDirectory() as folder:
        redis = PrivateRedis(Path(folder))
        url = redis.start()
        try:
            async with admin_switch(url) as admin:
                await admin.switch.ledger.client.execute_command("FUNCTION", "FLUSH")
                status, answer = await admin.call("GET", "/readyz", token=None)
                assert status == 503 and answer["ready"] is False
                assert "function library baitiao_ledger_" in answer["reason"]
                redis.stop()
                status, answer = await admin.call("GET", "/readyz", token=None)
                assert status == 503 and "Redis unreachable" in answer["reason"]
                assert await admin.call("GET", "/healthz", token=None) == (200, {"status": "up"})
        finally:
            redis.stop()


async def test_readiness_waits_for_a_frozen_redis_only_its_bound(monkeypatch):
    """A Redis that stops answering (frozen, not gone) makes /readyz say so after
    admin_probe_timeout_s, not hang the prober."""
    monkeypatch.setattr(limits, "admin_probe_timeout_s", 0.5)
    with tempfile.TemporaryDirectory() as folder:
        redis = PrivateRedis(Path(folder))
        url = redis.start()
        try:
            async with admin_switch(url) as admin:
                os.kill(redis.process.pid, signal.SIGSTOP)
                try:
                    started = time.monotonic()
                    status, answer = await admin.call("GET", "/readyz", token=None)
                    waited = time.monotonic() - started
                finally:
                    os.kill(redis.process.pid, signal.SIGCONT)
                assert status == 503 and "TimeoutError" in answer["reason"]
                assert 0.5 <= waited < 1.5  # below the client's own 2 s socket timeout
        finally:
            redis.stop()


GUARDED = [("GET", "/cards/demo1", None), ("PUT", "/cards/demo1", {"limit_fen": 1}),
           ("GET", "/cards/demo1/transactions", None),
           ("POST", "/cards/acct-x/upgrade", {"limit_fen": 1}), ("POST", "/policy/reload", None),
           ("POST", "/cards/demo1/repay", {"amount_fen": 1})]


@pytest.mark.parametrize(("method", "path", "body"), GUARDED)
async def test_card_data_and_changes_need_the_token(redis_url, method, path, body):
    async with admin_switch(redis_url) as admin:
        status, answer = await admin.call(method, path, token=None, body=body)
        assert status == 401 and "Bearer" in answer["error"]
        status, answer = await admin.call(method, path, token=TOKEN + "x", body=body)
        assert (status, answer) == (403, {"error": "wrong token"})
        status, _ = await admin.call(method, path, token=TOKEN[:-1], body=body)
        assert status == 403  # a prefix of the token is not the token
        if method == "GET":
            card = await admin.switch.new_card(limit_fen=5_000)
            status, _ = await admin.call(method, path.replace("demo1", card))
            assert status == 200


async def test_open_endpoints_need_no_token(redis_url):
    async with admin_switch(redis_url) as admin:
        for path in ("/", "/healthz", "/readyz", "/metrics", "/policy"):
            status, _ = await admin.call("GET", path, token=None)
            assert status == 200, path


async def test_a_card_read_changed_and_its_transactions_with_masked_numbers(redis_url):
    async with admin_switch(redis_url) as admin:
        pan = await admin.switch.new_card(limit_fen=100_000)
        sale = await admin.switch.send("jd", pan, amount=12_800, mcc=GROCERY)
        assert sale.response.response_code == "00"
        status, card = await admin.call("GET", f"/cards/{pan}")
        assert status == 200
        assert card["pan"] == f"{pan[:6]}{'*' * (len(pan) - 10)}{pan[-4:]}"
        assert card["open_to_buy"] == 100_000 - 12_800 and card["limit"] == 100_000
        status, history = await admin.call("GET", f"/cards/{pan}/transactions")
        assert status == 200 and [t["amount"] for t in history["transactions"]] == [12_800]
        assert history["pan"] == card["pan"]
        status, changed = await admin.call("PUT", f"/cards/{pan}",
                                           body={"limit_fen": 50_000, "status": "frozen"})
        assert status == 200 and (changed["limit"], changed["status"]) == (50_000, "frozen")
        assert (await admin.switch.card(pan)).limit == 50_000
        for answer in (card, history, changed):
            assert not full_card_numbers_in(str(answer))


async def test_card_errors_are_answers_not_tracebacks(redis_url):
    async with admin_switch(redis_url) as admin:
        pan = await admin.switch.new_card(limit_fen=100_000)
        missing = "6253680000000000006"
        status, answer = await admin.call("GET", f"/cards/{missing}")
        assert status == 404 and answer["error"] == "no card 625368*********0006"
        status, answer = await admin.call("GET", "/cards/12ab")
        assert status == 400 and "not a card number" in answer["error"]
        status, answer = await admin.call("PUT", f"/cards/{pan}", body={"status": "gone"})
        assert status == 400 and "status must be one of" in answer["error"]
        status, answer = await admin.call("PUT", f"/cards/{pan}", body={"limits": 1})
        assert status == 400 and "limits" in answer["error"]
        status, answer = await admin.call("PUT", f"/cards/{pan}", body="{not json")
        assert status == 400
        assert (await admin.switch.card(pan)).limit == 100_000


async def test_upgrade_an_account_once(redis_url, tmp_path):
    account = f"acct-{tmp_path.name[-12:]}"
    async with admin_switch(redis_url) as admin:
        status, first = await admin.call("POST", f"/cards/{account}/upgrade",
                                          body={"limit_fen": 30_000})
        assert status == 200 and first["created"] is True
        assert first["card"]["limit"] == 30_000 and first["card"]["account"] == account
        assert not full_card_numbers_in(str(first))
        status, again = await admin.call("POST", f"/cards/{account}/upgrade",
                                          body={"limit_fen": 30_000})
        assert status == 200 and again["created"] is False
        assert again["card"]["pan"] == first["card"]["pan"]


async def test_a_repayment_over_http_restores_open_to_buy_once_per_ref(redis_url):
    async with admin_switch(redis_url) as admin:
        pan = await admin.switch.new_card(limit_fen=100_000)
        sale = await admin.switch.send("jd", pan, amount=12_800, mcc=GROCERY)
        assert sale.response.response_code == "00"
        status, paid = await admin.call("POST", f"/cards/{pan}/repay",
                                        body={"amount_fen": 5_000, "ref": "pay-1"})
        assert status == 200
        assert (paid["outcome"], paid["ref"], paid["amount_fen"]) == ("repaid", "pay-1", 5_000)
        card = paid["card"]
        assert (card["posted"], card["open_to_buy"], card["repaid"]) == (7_800, 92_200, 5_000)
        assert card["pan"] == f"{pan[:6]}{'*' * (len(pan) - 10)}{pan[-4:]}"
        assert card["cycle"]["statement_day"] == limits.statement_day_default
        status, again = await admin.call("POST", f"/cards/{pan}/repay",
                                         body={"amount_fen": 5_000, "ref": "pay-1"})
        assert status == 200 and again["outcome"] == "repeat"
        assert again["card"]["posted"] == 7_800
        status, refused = await admin.call("POST", f"/cards/{pan}/repay",
                                           body={"amount_fen": 5_001, "ref": "pay-1"})
        assert status == 409 and "was 5000 fen, not 5001: nothing changed" in refused["error"]
        status, fresh = await admin.call("POST", f"/cards/{pan}/repay", body={"amount_fen": 1})
        assert status == 200 and fresh["outcome"] == "repaid" and fresh["ref"] != "pay-1"
        status, changed = await admin.call("PUT", f"/cards/{pan}", body={"statement_day": 20})
        assert status == 200 and changed["cycle"]["statement_day"] == 20
        for answer in (paid, again, refused, fresh, changed):
            assert not full_card_numbers_in(str(answer))
        assert (await admin.switch.card(pan)).posted == 7_799


async def test_a_bad_repayment_over_http_is_an_answer_and_changes_nothing(redis_url):
    async with admin_switch(redis_url) as admin:
        pan = await admin.switch.new_card(limit_fen=100_000)
        for body, status_wanted, words in (
                ({"amount_fen": 0}, 400, "a repayment must be 1.."),
                ({"amount_fen": 5, "ref": "a b"}, 400, "letters, digits"),
                ({"amount": 5}, 400, "amount"),
                ("{not json", 400, ""),
                ({"amount_fen": "5"}, 400, "int")):
            status, answer = await admin.call("POST", f"/cards/{pan}/repay", body=body)
            assert status == status_wanted and words in answer["error"], body
        missing = "6253680000000000006"
        status, answer = await admin.call("POST", f"/cards/{missing}/repay",
                                          body={"amount_fen": 5})
        assert status == 404 and answer["error"] == "no card 625368*********0006"
        status, answer = await admin.call("PUT", f"/cards/{pan}", body={"statement_day": 29})
        assert status == 400 and "statement day must be 1..28" in answer["error"]
        view = await admin.switch.card(pan)
        assert (view.posted, view.repaid, view.transactions) == (0, 0, [])


async def test_a_request_body_above_the_bound_is_refused(redis_url):
    async with admin_switch(redis_url) as admin:
        pan = await admin.switch.new_card(limit_fen=100_000)
        from_bound = limits.admin_body_max_bytes
        padded = '{"limit_fen": 7' + " " * (from_bound - 16) + "}"
        assert len(padded) == from_bound
        status, _ = await admin.call("PUT", f"/cards/{pan}", body=padded)
        assert status == 200
        status, _ = await admin.call("PUT", f"/cards/{pan}", body=padded + " ")
        assert status == 413


async def test_policy_reload_swaps_for_new_requests_and_refuses_a_bad_file(redis_url,
                                                                           tmp_path):
    policy = tmp_path / "policy.toml"
    policy.write_text(policy_text())
    async with admin_switch(redis_url, policy=policy) as admin:
        pan = await admin.switch.new_card(limit_fen=1_000_000)
        assert (await admin.switch.send("jd", pan, amount=100, mcc=GROCERY)
                ).response.response_code == "00"
        status, shown = await admin.call("GET", "/policy", token=None)
        assert status == 200 and shown["source"] == str(policy)
        assert shown["name"] == "baitiao-default" and shown["reloads"] == 0

        policy.write_text(policy_text("broken", broken=True))
        status, refused = await admin.call("POST", "/policy/reload")
        assert status == 422 and refused["reloaded"] is False
        assert "00 is an approval, not a decline" in refused["error"]
        assert refused["in_force"] == "baitiao-default"
        assert (await admin.switch.send("jd", pan, amount=100, mcc=GROCERY)
                ).response.response_code == "00"

        policy.write_text(policy_text("no-groceries", block_grocery=True))
        status, done = await admin.call("POST", "/policy/reload")
        assert status == 200 and done == {"reloaded": True, "source": str(policy),
                                           "name": "no-groceries", "reloads": 1}
        assert (await admin.switch.send("jd", pan, amount=100, mcc=GROCERY)
                ).response.response_code == "57"
        _, shown = await admin.call("GET", "/policy", token=None)
        assert shown["name"] == "no-groceries"
        assert GROCERY in shown["policy"]["mcc_groups"]["gambling"]

