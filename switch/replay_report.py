"""The decision diff of `switch replay` as text, JSON and one self-contained HTML page."""

from __future__ import annotations

import html

import msgspec

from switch.replay import Decision, Diff, Difference

TEXT_DIFFERENCES_MAX = 50  # the terminal shows this many; --json and --html have them all


def decision_text(decision: Decision | None) -> str:
    if decision is None:
        return "no answer"
    reason = f" {decision.reason}" if decision.reason else ""
    return (f"{decision.response_code}{reason} approved {decision.approved_fen} "
            f"otb {decision.open_to_buy_fen}")


def request_text(difference: Difference) -> str:
    what = difference.kind or "refused by the codec"
    mcc = f" mcc {difference.mcc}" if difference.mcc else ""
    return (f"#{difference.index} {difference.channel} {difference.card or '-'} {what} "
            f"{difference.amount_fen} fen{mcc}")


def as_text(result: Diff) -> str:
    lines = [f"replayed {result.exchanges} exchanges in {result.elapsed_s:g} s (speed "
             f"{result.speed}) to " + " ".join(f"{c}={t}" for c, t in result.targets.items()),
             f"  matching {result.matching}, different {len(result.differences)}"]
    for difference in result.differences[:TEXT_DIFFERENCES_MAX]:
        lines.append(f"  {request_text(difference)}")
        lines.append(f"      recorded {decision_text(difference.recorded)}")
        lines.append(f"      replayed {decision_text(difference.replayed)}"
                     + (f"  ({difference.note})" if difference.note else ""))
    hidden = len(result.differences) - TEXT_DIFFERENCES_MAX
    if hidden > 0:
        lines.append(f"  ... {hidden} more differences (--json or --html has them all)")
    return "\n".join(lines)


def as_json(result: Diff) -> bytes:
    return msgspec.json.format(msgspec.json.encode(result), indent=2) + b"\n"


STYLE = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
         "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}"
         "th{background:#eee}.ok{color:#070}.bad{color:#a00}")


def as_html(result: Diff) -> str:
    def cell(text: object) -> str:
        return f"<td>{html.escape(str(text))}</td>"

    rows = "".join(
        "<tr>" + cell(d.index) + cell(d.channel) + cell(d.card or "-")
        + cell(d.kind or "refused") + cell(d.amount_fen) + cell(d.mcc)
        + cell(decision_text(d.recorded)) + cell(decision_text(d.replayed)) + cell(d.note)
        + "</tr>" for d in result.differences)
    verdict = ("ok", "no differences") if not result.differences else (
        "bad", f"{len(result.differences)} differences")
    targets = html.escape(" ".join(f"{c}={t}" for c, t in result.targets.items()))
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Replay decision diff</title>"
        f"<style>{STYLE}</style></head><body><h1>Replay decision diff</h1>"
        f"<p>{result.exchanges} exchanges replayed in {result.elapsed_s:g} s at speed "
        f"{html.escape(result.speed)} to {targets}: {result.matching} matching, "
        f"<span class='{verdict[0]}'>{verdict[1]}</span>.</p>"
        "<table><tr><th>#</th><th>channel</th><th>card</th><th>kind</th><th>amount (fen)</th>"
        "<th>MCC</th><th>recorded</th><th>replayed</th><th>note</th></tr>"
        f"{rows}</table></body></html>\n")
