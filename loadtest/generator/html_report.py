"""report.html: one self-contained page (inline CSS and SVG, no script, no network)."""

from __future__ import annotations

import math
from html import escape
from typing import TYPE_CHECKING

from loadtest.generator.aggregate import OVERALL
from loadtest.generator.svg import Series, line_chart

if TYPE_CHECKING:
    from loadtest.generator.runner import Result
    from loadtest.generator.stats import Totals

LATENCY_KEYS = ("p50", "p90", "p99", "p99.9", "p99.99", "max")
# x positions of the percentile chart: "nines" (90% = 1, 99% = 2, ...), as HdrHistogram plots
NINES_TICKS = ((0.0, "0%"), (1.0, "90%"), (2.0, "99%"), (3.0, "99.9%"), (4.0, "99.99%"),
               (5.0, "99.999%"))
NINES_MAX = 5.0

STYLE = """
body { font-family: sans-serif; margin: 2em; color: #222; max-width: 1000px; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
h2 { margin-top: 1.6em; font-size: 1.15em; }
.note { color: #555; font-size: 0.9em; }
.bad { color: #b00; font-weight: bold; }
"""


def render(data: dict, result: Result) -> str:
    plan = data["plan"]
    body = [
        f"<h1>Load test {escape(data['started_at'])}</h1>",
        f"<p>Offered <b>{plan['rate']:,.0f}/s</b> for {plan['duration_s']:g} s; achieved "
        f"<b>{data['achieved_rate']:,.1f}/s</b>. Mix {escape(_mix(plan['mix']))}; "
        f"{plan['workers']} worker(s), {plan['connections']} connection(s) per channel, "
        f"{plan['inflight_max']} in flight per connection at most, timeout "
        f"{plan['timeout_s']:g} s, {plan['cards']:,} cards, seed {plan['seed']}.</p>",
        "<h2>Results</h2>", _results_table(data["channels"]),
        '<p class="note">Latency is counted from each request\'s intended send time (open '
        "loop), so a stall of the target or of the generator shows in full. <i>behind</i>: "
        "sent more than 2 ms after the intended time; <i>dropped</i>: never sent, no "
        "connection was free within the timeout.</p>",
        "<h2>Response codes</h2>", _codes_table(data["channels"]),
        "<h2>Throughput over time</h2>", _throughput_chart(data, plan["rate"]),
        "<h2>Latency over time (all channels, per second)</h2>", _latency_chart(data),
        "<h2>Latency by percentile</h2>", _percentile_chart(result),
        "<h2>Files</h2>", _files(data.get("files", {})),
    ]
    return (f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>Load test "
            f"{escape(data['started_at'])}</title><style>{STYLE}</style></head><body>"
            + "\n".join(body) + "</body></html>\n")


def _mix(mix: dict[str, int]) -> str:
    return ", ".join(f"{name}={weight}" for name, weight in mix.items())


def _results_table(channels: dict) -> str:
    head = ("<tr><th>channel</th><th>sent</th><th>answered</th><th>rate/s</th>"
            "<th>failures</th><th>timeouts</th><th>errors</th><th>dropped</th><th>behind</th>"
            + "".join(f"<th>{k} ms</th>" for k in LATENCY_KEYS) + "</tr>")
    rows = []
    for name, c in channels.items():
        latency = c["latency_ms"]
        failures = f'<td class="bad">{c["failures"]}</td>' if c["failures"] else "<td>0</td>"
        rows.append(
            f"<tr><td>{escape(name)}</td><td>{c['sent']}</td><td>{c['answered']}</td>"
            f"<td>{c['achieved_rate']:,.1f}</td>{failures}<td>{c['timeouts']}</td>"
            f"<td>{c['errors'] + c['bad_answers']}</td><td>{c['dropped']}</td>"
            f"<td>{c['behind']}</td>"
            + "".join(f"<td>{latency[k]:.3f}</td>" if latency else "<td>-</td>"
                      for k in LATENCY_KEYS) + "</tr>")
    return f"<table>{head}{''.join(rows)}</table>"


def _codes_table(channels: dict) -> str:
    codes = sorted({code for c in channels.values() for code in c["codes"]})
    head = "<tr><th>channel</th>" + "".join(f"<th>{escape(code or '(none)')}</th>"
                                            for code in codes) + "</tr>"
    rows = [f"<tr><td>{escape(name)}</td>" + "".join(
        f"<td>{c['codes'].get(code, 0)}</td>" for code in codes) + "</tr>"
        for name, c in channels.items()]
    kinds = sorted({k for c in channels.values() for k in c["kinds"]})
    kind_head = "<tr><th>channel</th>" + "".join(f"<th>{escape(k)}</th>" for k in kinds)
    kind_rows = [f"<tr><td>{escape(name)}</td>" + "".join(
        f"<td>{c['kinds'].get(k, 0)}</td>" for k in kinds) + "</tr>"
        for name, c in channels.items()]
    return (f"<table>{head}{''.join(rows)}</table><p class=\"note\">Requests sent, by kind:"
            f"</p><table>{kind_head}</tr>{''.join(kind_rows)}</table>")


def _throughput_chart(data: dict, rate: float) -> str:
    points = data["series"][OVERALL]
    ends = [p["second"] + 1 for p in points]  # a point stands for the second that ends there
    series = [
        Series("offered", [(s, rate) for s in ends], dashed=True),
        Series("sent", [(p["second"] + 1, p["sent"]) for p in points]),
        Series("answered", [(p["second"] + 1, p["answered"]) for p in points]),
        Series("failures", [(p["second"] + 1, p["failures"]) for p in points]),
    ]
    return line_chart(series, x_label="seconds into the run", y_label="requests per second")


def _latency_chart(data: dict) -> str:
    points = [p for p in data["series"][OVERALL] if p["max_ms"] is not None]
    series = [Series(label, [(p["second"] + 1, p[key]) for p in points])
              for label, key in (("p50", "p50_ms"), ("p99", "p99_ms"), ("max", "max_ms"))]
    return line_chart(series, x_label="seconds into the run", y_label="latency (ms, log scale)",
                      y_log=True)


def _percentile_chart(result: Result) -> str:
    shown = [name for name in result.totals if name != OVERALL]
    if len(shown) > 1:
        shown.append(OVERALL)  # with one channel, "all" is the same line again
    series = [Series(name, _distribution(result.totals[name])) for name in shown
              if result.totals[name].latency.get_total_count()]
    return line_chart(series, x_label="percentile", y_label="latency (ms, log scale)",
                      y_log=True, x_ticks=NINES_TICKS)


def _distribution(totals: Totals) -> list[tuple[float, float]]:
    points = []
    for item in totals.latency.get_percentile_iterator(5):
        fraction = item.percentile_level_iterated_to / 100
        nines = NINES_MAX if fraction >= 1 else min(NINES_MAX, -math.log10(1 - fraction))
        points.append((nines, item.value_iterated_to / 1000))
    return points


def _files(files: dict[str, str]) -> str:
    items = "".join(f"<li>{escape(kind)}: <code>{escape(name)}</code></li>"
                    for kind, name in sorted(files.items()))
    return (f"<ul>{items}<li>json: <code>summary.json</code> (every number on this page)</li>"
            "</ul>")
