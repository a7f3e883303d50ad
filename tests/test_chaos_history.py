"""The history check of `loadtest chaos` on hand-made histories: it finds each of lost,
doubled and invented, and passes a history that agrees with its ledger."""

from __future__ import annotations

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from loadtest.generator import adapters
from loadtest.generator.client import ClientConnection, LoadClient
from loadtest.generator.history import Answer, Entry, History
from loadtest.generator.workload import Txn
from loadtest.harness.history_check import EXAMPLES_KEPT_MAX, Card, Request, check
from protocols.framing import BINARY_4, Framer
from protocols.messages import AuthRequest, AuthResponse, MessageClass
from switch.ledger import Transaction

PAN = "6253800000000001"
OTHER = "6253800000000019"
OK = "00"


def answer(code: str = OK, fen: int = 0, auth: str = "") -> Answer:
    return Answer(code, fen, auth)


def sale(ref: str, fen: int, auth: str = "A1", code: str = OK, pan: str = PAN) -> Request:
    approved = fen if code == OK else 0
    return Request(f"jd:{ref}", pan, "sale", ref, answer(code, approved, auth if approved else ""))


def follow(kind: str, ref: str, fen: int, code: str = OK, name: str = "") -> Request:
    return Request(f"jd:{name or kind + ref}", PAN, kind, ref, answer(code, fen if code == OK
                                                                       else 0))


def sale_record(fen: int, auth: str = "A1", posted: int | None = None, refunded: int = 0,
                state: str = "captured") -> Transaction:
    return Transaction("", "sale", state, fen, 0, fen if posted is None else posted, refunded,
                       auth, created_ms=0, beans=0)


def auth_record(fen: int, auth: str = "A2", hold: int | None = None, posted: int = 0,
                state: str = "pending") -> Transaction:
    return Transaction("", "auth", state, fen, fen if hold is None else hold, posted, 0, auth,
                       created_ms=0, beans=0)


def card(records: dict[str, Transaction], posted: int, held: int = 0, pending: int = 0) -> Card:
    return Card(posted, held, pending, records)


def counts(findings) -> tuple[int, int, int]:
    return findings.lost, findings.doubled, findings.invented


# --- a history that agrees ----------------------------------------------------------------


def agreeing() -> tuple[list[Request], dict[str, Card]]:
    requests = [
        sale("s1", 1000),
        sale("s2", 500, code="51"),  # declined: no record
        sale("s3", 700),
        follow("reversal", "s3", 700),
        sale("s4", 900),
        follow("refund", "s4", 400),
        Request("pos:a1", PAN, "auth", "a1", answer(OK, 2000, "A2")),
        follow("capture", "a1", 1800),
        Request("pos:a2", PAN, "auth", "a2", answer(OK, 300, "A3")),
        Request("pos:q", PAN, "inquiry", "q", answer(OK)),
    ]
    records = {
        "s1": sale_record(1000),
        "s3": sale_record(700, posted=0, state="reversed"),
        "s4": sale_record(900, refunded=400),
        "a1": auth_record(2000, hold=0, posted=1800, state="captured"),
        "a2": auth_record(300, auth="A3"),
    }
    # posted: 1000 + 900 + 1800; the refund waits in pending credit; held: a2's 300
    return requests, {PAN: card(records, posted=3700, held=300, pending=400)}


def test_a_history_that_agrees_with_its_ledger_is_clean():
    requests, cards = agreeing()
    findings = check(requests, cards)
    assert findings.clean and counts(findings) == (0, 0, 0), findings.examples


# --- lost -------------------------------------------------------------------------------


def test_an_approved_sale_without_its_record_is_lost():
    requests, cards = agreeing()
    records = dict(cards[PAN].records)
    del records["s1"]
    findings = check(requests, {PAN: cards[PAN]._replace(records=records, posted=2700)})
    assert counts(findings) == (1, 0, 0)
    assert findings.examples[0].ref == "s1" and findings.examples[0].card == "625380******0001"


def test_a_record_of_another_amount_or_auth_id_is_lost():
    requests, cards = agreeing()
    for changed in (sale_record(999), sale_record(1000, auth="ZZ")):
        records = {**cards[PAN].records, "s1": changed}
        assert counts(check(requests, {PAN: cards[PAN]._replace(records=records)})) == (1, 0, 0)


def test_an_approved_capture_not_on_its_record_is_lost():
    requests, cards = agreeing()
    records = {**cards[PAN].records, "a1": auth_record(2000)}
    findings = check(requests, {PAN: cards[PAN]._replace(records=records, posted=1900,
                                                           held=2300)})
    assert counts(findings) == (1, 0, 0)


def test_a_card_posting_less_than_its_approvals_is_lost():
    requests, cards = agreeing()
    assert counts(check(requests, {PAN: cards[PAN]._replace(posted=3699)})) == (1, 0, 0)


# --- invented ---------------------------------------------------------------------------


def test_a_record_whose_request_was_answered_91_is_invented():
    requests, cards = agreeing()
    requests[0] = sale("s1", 1000, code="91")
    assert counts(check(requests, cards)) == (0, 0, 1)


def test_a_record_of_an_unanswered_request_is_invented():
    requests, cards = agreeing()
    requests[0] = requests[0]._replace(answer=None)
    assert counts(check(requests, cards)) == (0, 0, 1)


def test_a_capture_answered_91_but_on_the_record_is_invented():
    requests, cards = agreeing()
    requests[7] = follow("capture", "a1", 0, code="91")
    assert counts(check(requests, cards)) == (0, 0, 1)


def test_a_record_no_request_made_is_invented():
    requests, cards = agreeing()
    records = {**cards[PAN].records, "nobody": sale_record(50)}
    assert counts(check(requests, {PAN: cards[PAN]._replace(records=records)})) == (0, 0, 1)


# --- doubled ----------------------------------------------------------------------------


def test_a_refund_on_its_record_twice_is_doubled():
    requests, cards = agreeing()
    records = {**cards[PAN].records, "s4": sale_record(900, refunded=800)}
    findings = check(requests, {PAN: cards[PAN]._replace(records=records, pending_credit=800)})
    assert counts(findings) == (0, 1, 0)


def test_a_card_posting_more_than_its_approvals_is_doubled():
    requests, cards = agreeing()
    assert counts(check(requests, {PAN: cards[PAN]._replace(posted=4700)})) == (0, 1, 0)
    assert counts(check(requests, {PAN: cards[PAN]._replace(held=301)})) == (0, 1, 0)


def test_two_approvals_of_one_record_are_doubled():
    requests, cards = agreeing()
    requests.append(sale("s1", 1000)._replace(key="jd:again"))
    assert counts(check(requests, cards)) == (0, 1, 0)


def test_each_card_is_checked_on_its_own():
    requests, cards = agreeing()
    requests.append(sale("o1", 100, pan=OTHER))
    other = card({"o1": sale_record(100)}, posted=100)
    assert check(requests, {**cards, OTHER: other}).clean
    assert counts(check(requests, {**cards, OTHER: other._replace(posted=200)})) == (0, 1, 0)


# --- property: a ledger built from the approvals agrees; any dropped approval shows ---------

operations = st.lists(st.tuples(st.sampled_from(["sale", "auth"]), st.integers(1, 10_000),
                                st.sampled_from(["none", "capture", "reversal", "refund"]),
                                st.booleans()), min_size=1, max_size=12)


def model(ops) -> tuple[list[Request], dict[str, Card]]:
    """Requests all approved, and the ledger the switch's Lua would make of them."""
    requests, records = [], {}
    posted = held = pending = 0
    for i, (kind, fen, then, _) in enumerate(ops):
        ref, auth = f"r{i}", f"X{i}"
        requests.append(Request(f"k{i}", PAN, kind, ref, answer(OK, fen, auth)))
        if kind == "sale":
            record = sale_record(fen, auth)
            posted += fen
        else:
            record = auth_record(fen, auth)
            held += fen
        if then == "capture" and kind == "auth":
            record = auth_record(fen, auth, hold=0, posted=fen, state="captured")
            held, posted = held - fen, posted + fen
        elif then == "reversal":
            record = msgspec.structs.replace(record, hold=0, posted=0, state="reversed")
            if kind == "auth":
                held -= fen
            else:
                posted -= fen
        elif then == "refund" and kind == "sale":
            record = msgspec.structs.replace(record, refunded=fen)
            pending += fen
        else:
            then = "none"
        if then != "none":
            requests.append(Request(f"f{i}", PAN, then, ref, answer(OK, fen)))
        records[ref] = record
    return requests, {PAN: card(records, posted, held, pending)}


@settings(max_examples=200, deadline=None)
@given(operations)
def test_a_ledger_built_from_the_approvals_agrees_and_a_dropped_approval_shows(ops):
    requests, cards = model(ops)
    assert check(requests, cards).clean
    for i, (_, _, _, drop) in enumerate(ops):
        if drop:  # the client never saw this approval: its effect is invented
            dropped = [r._replace(answer=answer("91")) if r.key in (f"k{i}", f"f{i}") else r
                       for r in requests]
            assert check(dropped, cards).invented >= 1
            records = {ref: r for ref, r in cards[PAN].records.items() if ref != f"r{i}"}
            assert check(requests, {PAN: cards[PAN]._replace(records=records)}).lost >= 1


# --- a whole reversal: approved with no amount (ISO 8583 answers echo the request's F4) -------


def test_a_whole_reversal_approved_without_an_amount_counts_as_all_that_remained():
    requests, cards = agreeing()
    requests[3] = follow("reversal", "s3", 0)  # the answer says 00 and no amount
    assert check(requests, cards).clean
    records = {**cards[PAN].records, "s3": sale_record(700)}  # ... but nothing was reversed
    findings = check(requests, {PAN: cards[PAN]._replace(records=records, posted=4400)})
    assert counts(findings) == (1, 0, 0)


def test_a_whole_reversal_of_an_invented_record_is_no_second_finding():
    requests, cards = agreeing()
    requests[2] = sale("s3", 700, code="91")  # the sale was answered 91, its reversal 00
    requests[3] = follow("reversal", "s3", 0)
    assert counts(check(requests, cards)) == (0, 0, 1)


# --- the history the generator keeps ------------------------------------------------------


def test_the_history_keeps_one_entry_per_request_and_the_decision_that_stands():
    request = AuthRequest(message_class=MessageClass.SALE, channel="jd", card=PAN,
                          amount_fen=100, txn_ref="t1")
    txn = Txn(1, "sale", "jd", request, None, wire=("t1", b"{}"))
    repeat = Txn(1, "repeat", "jd", request, None, wire=txn.wire)  # the same bytes again
    history = History()
    history.sent(txn)
    assert [entry.txn for entry in history.unanswered()] == [txn]
    assert [entry.txn for entry in history.undecided()] == [txn]
    assert history.entries["jd", "t1"].last is None
    history.answered(txn, AuthResponse(response_code="00", approved_fen=100, auth_id="A"))
    history.sent(repeat)
    history.answered(repeat, AuthResponse(response_code="91"))  # Redis frozen: undecided
    entry = history.entries["jd", "t1"]
    assert (len(history.entries), entry.sends, len(entry.answers)) == (1, 2, 2)
    assert entry.last == Answer("00", 100, "A") and history.unanswered() == []
    assert history.undecided() == []
    history.answered(repeat, AuthResponse(response_code="96"))
    assert entry.last == Answer("00", 100, "A")
    history.answered(repeat, AuthResponse(response_code="51"))  # a decision: it stands
    assert entry.last == Answer("51", 0, "")
    only_undecided = Entry(txn)
    only_undecided.answers.append(Answer("91", 0, ""))
    assert only_undecided.last == Answer("91", 0, "")
    history.entries["jd", "t2"] = only_undecided
    assert history.undecided() == [only_undecided] and history.unanswered() == []


def test_a_voided_record_is_no_effect():
    requests, cards = agreeing()
    requests[0] = sale("s1", 1000, code="91")  # answered 91, its call ran, then voided
    voided = msgspec.structs.replace(sale_record(1000, posted=0), state="voided")
    records = {**cards[PAN].records, "s1": voided, "gone": voided}
    assert check(requests, {PAN: cards[PAN]._replace(records=records, posted=2700)}).clean
    approved = agreeing()[0]  # ... but an approval seen of a voided record is lost
    assert counts(check(approved, {PAN: cards[PAN]._replace(records=records,
                                                             posted=2700)})) == (1, 0, 0)


def test_the_findings_listed_in_full_are_bounded_but_all_are_counted():
    requests = [sale(f"s{i}", 100) for i in range(EXAMPLES_KEPT_MAX + 1)]
    findings = check(requests, {PAN: card({}, posted=0)})  # every approval lost
    assert findings.lost == EXAMPLES_KEPT_MAX + 1
    assert len(findings.examples) == EXAMPLES_KEPT_MAX


def test_an_answer_after_the_timeout_is_counted_late_and_kept_in_the_history():
    client = LoadClient(["jd"], timeout_s=1.0)
    client.history = History()
    conn = ClientConnection(client, adapters.build("jd"))
    request = AuthRequest(message_class=MessageClass.SALE, channel="jd", card=PAN,
                          amount_fen=100, txn_ref="late1")
    txn = Txn(1, "sale", "jd", request, None, wire=("late1", b"{}"))
    conn.pending["late1"] = (0, txn)
    client.sent(conn, "late1", 0, txn)
    assert client.expire_overdue(client.timeout_ns) == {conn}  # timed out
    body = msgspec.json.encode({"tradeNum": "late1", "isoCode": "00", "amount": "100",
                                "authCode": "A1"})
    assert conn.read_answers(Framer(BINARY_4, 1 << 16).frame(body)) == []
    stats = client.stats["jd"]
    assert (stats.timeouts, stats.late_answers, stats.bad_answers) == (1, 1, 0)
    assert client.history.entries["jd", "late1"].last == Answer("00", 100, "A1")
    conn.read_answers(Framer(BINARY_4, 1 << 16).frame(body))  # once more: nothing pending
    assert (stats.late_answers, stats.bad_answers) == (1, 1)
