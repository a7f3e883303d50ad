"""The decision diff as text, JSON and HTML."""

from __future__ import annotations

import json

from switch.replay import Decision, Diff, Difference
from switch.replay_report import TEXT_DIFFERENCES_MAX, as_html, as_json, as_text

APPROVED = Decision("00", 1500, 98_500, "")
BLOCKED = Decision("57", 0, 100_000, "mcc_blocked:5812")


def difference(index: int, note: str = "") -> Difference:
    return Difference(index, "jd", "625368******2194", "sale", 1500, "5812", APPROVED, BLOCKED,
                      note)


def test_text_shows_each_difference_up_to_its_bound_and_says_how_many_more():
    shown = Diff(60, 60 - TEXT_DIFFERENCES_MAX, [difference(i) for i in range(
        TEXT_DIFFERENCES_MAX)], speed="max", targets={"jd": "127.0.0.1:8601"})
    text = as_text(shown)
    assert f"matching 10, different {TEXT_DIFFERENCES_MAX}" in text
    assert "recorded 00 approved 1500 otb 98500" in text
    assert "replayed 57 mcc_blocked:5812 approved 0 otb 100000" in text
    assert "more differences" not in text
    one_more = Diff(60, 9, [difference(i) for i in range(TEXT_DIFFERENCES_MAX + 1)])
    text = as_text(one_more)
    assert "... 1 more differences" in text and f"#{TEXT_DIFFERENCES_MAX} " not in text


def test_json_holds_every_field_and_no_answer_is_null():
    missing = Difference(3, "pos", "", "", 0, "", APPROVED, None, "no answer within 5 s")
    data = json.loads(as_json(Diff(2, 1, [missing])))
    row = data["differences"][0]
    assert row["replayed"] is None and row["recorded"]["approved_fen"] == 1500
    assert row["note"] == "no answer within 5 s"


def test_html_escapes_what_the_peer_sent_and_loads_nothing():
    page = as_html(Diff(1, 0, [difference(0, note="answer unreadable: <script>x</script>")]))
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "1 differences" in page and "src=" not in page and "href=" not in page
    assert "no differences" in as_html(Diff(4, 4, []))
