"""The channel adapters: what they put on the wire, and a mixed run over every channel."""

from __future__ import annotations

from types import SimpleNamespace

from loadtest.generator import adapters
from loadtest.generator.adapters.base import Context
from loadtest.generator.adapters.iso import STANS_PER_TERMINAL, load_test_token
from loadtest.generator.aggregate import OVERALL
from loadtest.generator.client import Target
from loadtest.generator.runner import Plan, run_load
from loadtest.generator.worker import Worker
from loadtest.generator.workload import Txn, Workload, load_test_pans
from protocols.cardnumbers import luhn_valid
from protocols.iso8583 import get_codec
from protocols.messages import AuthRequest, MessageClass
from switch.config import Config, Listener
from tests.support import running_switch

# Answers that would mean the generator named something wrongly: format error, unknown
# original, duplicate, MAC/cryptogram/ATC failure, unknown card or token.
NAMING_FAILURES = {"30", "25", "94", "63", "34", "14", "12"}


def txn(number: int, kind: str = "sale", original: Txn | None = None) -> Txn:
    cls = {"sale": MessageClass.SALE, "auth": MessageClass.AUTH,
           "capture": MessageClass.CAPTURE}[kind]
    request = AuthRequest(message_class=cls, channel="pos", card="6253800000000005",
                          amount_fen=1200, mcc="5411", expiry="3012", txn_ref=f"Lx{number}",
                          original_ref=original.request.txn_ref if original else "",
                          transmitted_at="20261129123456")
    return Txn(number, kind, "pos", request, original)


def test_pos_names_a_capture_by_its_original_on_the_original_terminal():
    pos = adapters.build("pos", context=Context(0, (), "Lrun1w0n"))
    codec = get_codec("iso87ascii")
    auth = txn(STANS_PER_TERMINAL - 1, "auth")
    capture = txn(STANS_PER_TERMINAL + 5, "capture", original=auth)  # the next STAN block
    auth_id, auth_body = pos.encode(auth)
    capture_id, capture_body = pos.encode(capture)
    first, second = codec.decode(auth_body), codec.decode(capture_body)
    assert auth_id == "0100-999999-1129123456" and capture_id == "0220-000005-1129123456"
    assert first["41"] == second["41"]  # F90 has no terminal: the original's is used
    assert second["90"].startswith("0100" "999999" "1129123456")
    assert first["41"] != pos.encode(txn(3))[1] and len(first["41"]) == 8


def test_xpay_sends_a_token_and_a_growing_atc():
    pans = load_test_pans(3, seed=1)
    xpay = adapters.build("xpay", context=Context(1, pans, "Lrun1w1n"))
    codec = get_codec("iso87ascii")
    bodies = [xpay.encode(Workload(pans, {"xpay": 1}, seed, ref_prefix="T").next())[1]
              for seed in range(6)]
    tokens = {codec.decode(b)["2"] for b in bodies}
    assert tokens <= {load_test_token(i, 1) for i in range(3)}
    assert all(luhn_valid(t) and t not in pans for t in tokens)
    assert all("9F3602" in codec.decode(b)["55"] for b in bodies)


async def test_a_mixed_run_over_every_channel_is_answered_as_intended(redis_url):
    config = Config(listeners={ch: Listener(port=0) for ch in adapters.ADAPTERS})
    async with running_switch(redis_url, config) as (switch, _):
        plan = Plan(rate=400, duration_s=3, mix={ch: 1 for ch in adapters.ADAPTERS},
                    targets={ch: Target("127.0.0.1", switch.ports[ch])
                             for ch in adapters.ADAPTERS},
                    cards=100, seed=21, connections=2, redis_url=redis_url)
        result = await run_load(plan)
    assert result.totals[OVERALL].failures == 0
    assert result.totals[OVERALL].counts["answered"] == 1200
    for channel in adapters.ADAPTERS:
        totals = result.totals[channel]
        wrong = {c: n for c, n in totals.codes.items() if c in NAMING_FAILURES}
        assert not wrong, (channel, totals.codes, totals.kinds)
        assert totals.codes.get("00", 0) > 0.8 * totals.counts["answered"], channel
        assert {"sale", "reversal", "refund", "repeat"} <= set(totals.kinds), channel
    assert not {"auth", "capture", "inquiry"} & set(result.totals["wechat"].kinds)


def test_a_card_ordered_channel_keeps_each_card_on_one_connection():
    """x-pay's ATCs only rise: a token's messages must not overtake each other on two
    connections, so each card keeps to one; other channels spread over every connection."""
    def conns(card_ordered: bool) -> list:
        adapter = SimpleNamespace(card_ordered=card_ordered)
        return [SimpleNamespace(adapter=adapter, ready=True) for _ in range(4)]

    def txn(card: str) -> SimpleNamespace:
        return SimpleNamespace(channel="c", request=SimpleNamespace(card=card))

    ordered = SimpleNamespace(conns={"c": conns(True)}, next_conn={"c": 0})
    chosen = {id(Worker._connection_for(ordered, txn("6253680000000018"))) for _ in range(8)}
    assert len(chosen) == 1
    own = Worker._connection_for(ordered, txn("6253680000000018"))
    own.ready = False  # its connection busy: the message waits rather than overtake
    assert Worker._connection_for(ordered, txn("6253680000000018")) is None

    spread = SimpleNamespace(conns={"c": conns(False)}, next_conn={"c": 0})
    used = set()
    for _ in range(4):
        used.add(id(Worker._connection_for(spread, txn("6253680000000018"))))
        spread.next_conn["c"] += 1  # a new tick
    assert len(used) == 4
