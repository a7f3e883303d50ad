"""The synthetic transactions: valid cards, realistic distributions, determinism from a seed."""

from __future__ import annotations

import collections
import statistics

from loadtest.generator.workload import (
    AMOUNT_MAX_FEN,
    APPROVED,
    DECLINED,
    MCC_MIX,
    PENDING,
    Workload,
    load_test_pans,
)
from loadtest.harness.reference import blocked_categories
from protocols.cardnumbers import luhn_valid
from protocols.messages import MessageClass
from switch.policy_file import load_policy

# The categories the switch's default policy blocks (the generator cannot ask it: a client).
BLOCKED_MCCS = set(blocked_categories(load_policy(None)))


def answer_all(txn) -> None:
    """What a switch with the default rules says: blocked categories declined, the rest
    approved."""
    blocked = txn.request.mcc in BLOCKED_MCCS and txn.kind in ("sale", "auth")
    txn.state = DECLINED if blocked else APPROVED


def stream(seed: int, steps: int, mix=None, answer=answer_all) -> list:
    workload = Workload(load_test_pans(500, seed), mix or {"jd": 1}, seed, ref_prefix="T",
                        lag=50)
    out = []
    for _ in range(steps):
        txn = workload.next()
        out.append(txn)
        answer(txn)
    return out


def fingerprint(txn) -> tuple:
    r = txn.request
    return (txn.kind, txn.channel, r.card, r.amount_fen, r.mcc, r.txn_ref, r.original_ref)


def test_cards_are_luhn_valid_unionpay_numbers_from_the_seed():
    pans = load_test_pans(2000, seed=7)
    assert len(set(pans)) == 2000
    assert all(len(p) == 16 and p.startswith("62") and luhn_valid(p) for p in pans)
    assert load_test_pans(2000, seed=7) == pans
    assert load_test_pans(2000, seed=8) != pans


def test_same_seed_same_stream_other_seed_other_stream():
    first = [fingerprint(t) for t in stream(3, 3000)]
    assert first == [fingerprint(t) for t in stream(3, 3000)]
    assert first != [fingerprint(t) for t in stream(4, 3000)]


def test_amounts_are_skewed_and_bounded():
    sales = [t.request.amount_fen for t in stream(1, 20_000) if t.kind == "sale"]
    assert all(1 <= a <= AMOUNT_MAX_FEN for a in sales)
    median, mean = statistics.median(sales), statistics.fmean(sales)
    assert 3_000 <= median <= 40_000  # tens to a few hundred yuan: an everyday basket
    assert mean > 1.5 * median  # a long tail of large purchases (log-normal)
    assert max(sales) > 20 * median


def test_mcc_mix_follows_its_weights_with_a_few_blocked():
    purchases = [t for t in stream(2, 40_000) if t.kind in ("sale", "auth")]
    counts = collections.Counter(t.request.mcc for t in purchases)
    total_weight = sum(w for _, w, _, _ in MCC_MIX)
    for mcc, weight, _, _ in MCC_MIX:
        expected = weight / total_weight
        assert abs(counts[mcc] / len(purchases) - expected) < 0.25 * expected + 0.003, mcc
    blocked_share = sum(counts[m] for m in BLOCKED_MCCS) / len(purchases)
    assert 0.005 < blocked_share < 0.03  # gambling and ATM cash, about 1% each


def test_the_blocked_categories_of_the_mix_are_the_ones_its_comments_name():
    """MCC_MIX says which of its categories the default policy blocks: the policy agrees."""
    assert {mcc for mcc, *_ in MCC_MIX} & BLOCKED_MCCS == {"7995", "6011"}


def test_later_messages_name_approved_transactions_of_the_right_kind():
    txns = stream(5, 10_000)
    kinds = collections.Counter(t.kind for t in txns)
    for kind in ("capture", "reversal", "refund", "repeat", "inquiry", "auth"):
        assert kinds[kind] > 0.01 * len(txns), kind
    by_ref = {t.request.txn_ref: t for t in txns if t.kind != "repeat"}
    for txn in txns:
        if txn.kind in ("capture", "reversal", "refund"):
            original = txn.original
            assert original.state == APPROVED
            assert txn.request.original_ref == original.request.txn_ref
            assert by_ref[txn.request.original_ref] is original
            assert (txn.request.card, txn.channel) == (original.request.card, original.channel)
            assert original.kind == {"capture": "auth", "refund": "sale"}.get(txn.kind,
                                                                               original.kind)
            if txn.kind != "reversal":
                assert 1 <= txn.request.amount_fen <= original.request.amount_fen
        if txn.kind == "repeat":  # the very message again: same id, same content
            first = by_ref[txn.request.txn_ref]
            assert txn.request is first.request and txn.number == first.number


def test_nothing_names_a_transaction_whose_answer_is_unknown():
    txns = stream(6, 5000, answer=lambda txn: None)  # no answers ever come
    assert all(t.state == PENDING for t in txns)
    assert {t.kind for t in txns} <= {"sale", "auth", "inquiry"}
    assert all(t.request.message_class in (MessageClass.SALE, MessageClass.AUTH,
                                           MessageClass.INQUIRY) for t in txns)


def test_channels_follow_the_mix_and_ids_never_repeat_but_for_repeats():
    txns = stream(9, 20_000, mix={"jd": 3, "pos": 1})
    fresh = [t for t in txns if t.kind in ("sale", "auth", "inquiry")]
    share = sum(t.channel == "jd" for t in fresh) / len(fresh)
    assert 0.72 < share < 0.78
    refs = [t.request.txn_ref for t in txns if t.kind != "repeat"]
    assert len(refs) == len(set(refs))
