"""report.html: one self-contained page (inline CSS and SVG, no script, no network)."""

from __future__ import annotations

import math
from html import escape
from typing import TYPE_CHECKING

from loadtest.generator.aggregate import OVERALL
from loadtest.generator.runner import parts_line
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
h3 { font-size: 1em; margin: 1.2em 0 0.3em; }
.note { color: #555; font-size: 0.9em; }
.bad { color: #b00; font-weight: bold; }
"""


def render(data: dict, result: Result) -> str:
    plan = data["plan"]
    parts = result.plan.parts > 1 or result.plan.part
    body = [
        f"<h1>Load test {escape(data['started_at'])}</h1>",
        *([f"<p>{escape(parts_line(result.plan))}.</p>"] if parts else []),
        f"<p>Offered <b>{data['offered_rate']:,.0f}/s</b> for {plan['duration_s']:g} s; achieved "
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
        "<h2>Throughput over time</h2>", _throughput_chart(data, data["offered_rate"]),
        "<h2>Latency over time (all channels, per second)</h2>", _latency_chart(data),
        "<h2>Latency by percentile</h2>", _percentile_chart(result),
        *(_switch_side(data) if data.get("switch") else []),
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


def _switch_side(data: dict) -> list[str]:
    """The switch's own numbers beside the client's (--admin-url; switch_side.py)."""
    side = data["switch"]
    points = side["series"]
    client = data["series"][OVERALL]
    channels = sorted({ch for p in points for ch in p.get("requests_per_s", {})})

    def line(label: str, value, dashed: bool = False) -> Series:
        return Series(label, [(p["second"], value(p) if p["ok"] else None) for p in points],
                      dashed)

    rates = [line(f"switch {ch}", lambda p, ch=ch: p["requests_per_s"].get(ch, 0.0))
             for ch in channels]
    rates.append(Series("client answered (all)", [(p["second"] + 1, p["answered"])
                                                   for p in client], dashed=True))
    latency = [line("switch p50", lambda p: p.get("decision_p50_ms")),
               line("switch p99", lambda p: p.get("decision_p99_ms")),
               Series("client p50", [(p["second"] + 1, p["p50_ms"]) for p in client
                                     if p["p50_ms"] is not None], dashed=True),
               Series("client p99", [(p["second"] + 1, p["p99_ms"]) for p in client
                                     if p["p99_ms"] is not None], dashed=True)]
    load = [line("in flight", lambda p: p.get("inflight")),
            line("late answers (91)", lambda p: p.get("late"))]
    batches = [line("Redis calls per batch", lambda p: p.get("redis_calls_per_batch"))]
    x_label = "seconds into the run (a switch point covers the time since its last reading)"
    return [
        '<section id="switch-side">',
        "<h2>The switch's side (its /metrics, read once a second)</h2>", _switch_summary(data),
        "<h3>Requests per second: the switch's decisions per channel, the client's answers</h3>",
        line_chart(rates, x_label=x_label, y_label="requests per second"),
        "<h3>Decision time in the switch (from its histogram) and the client's latency</h3>",
        line_chart(latency, x_label=x_label, y_label="ms, log scale", y_log=True),
        '<p class="note">The switch times a request from its frame in to its answer ready, '
        "in buckets (50 µs to 2.5 s): its percentiles are interpolated within a bucket, "
        "read them as \"about\". The client's latency adds the network, both event loops "
        "and any wait to send.</p>",
        "<h3>In flight at each reading, and answers given late (91) since the last</h3>",
        line_chart(load, x_label=x_label, y_label="requests"),
        "<h3>Redis calls per pipelined write (the calls of one event-loop tick go "
        "together)</h3>",
        line_chart(batches, x_label=x_label, y_label="calls per batch"),
        "<h3>Response codes the switch counted for the run, and the client's</h3>",
        _switch_codes(data),
        "</section>",
    ]


def _switch_summary(data: dict) -> str:
    side = data["switch"]
    failed = side["failed"]
    readings = (f'{side["readings"]} readings of <code>{escape(side["admin_url"])}/metrics'
                f"</code>, " + (f'<span class="bad">{failed} failed</span> (gaps in the '
                                f"charts: {escape('; '.join(side['errors']))})"
                                if failed else "none failed"))
    answered = data["channels"][OVERALL]["answered"]
    if side["run_requests"] is None:
        counted = ("the readings before and after the run did not both succeed, so the "
                   "switch's count for the run is not known")
    else:
        decided = sum(side["run_requests"].values())
        refused = sum(side["run_refused"].values())
        verdict = _agreement(decided + refused, data["channels"][OVERALL])
        counted = (f"between the reading before the first send and the one after the last "
                   f"answer the switch counted <b>{decided:,}</b> answers with a decision and "
                   f"{refused:,} frames its codecs answered themselves: {decided + refused:,}; "
                   f"the generator was answered <b>{answered:,}</b>{verdict}")
    return f"<p>{readings}; {counted}.</p>"


def _agreement(counted: int, client: dict) -> str:
    """Why the switch's count and the client's may differ, in words."""
    answered, late = client["answered"], client["timeouts"]
    if counted == answered:
        return " (the same)"
    if late and counted == answered + late:
        return (f" <span class=\"bad\">and answered the other {late:,} after the client's "
                "timeout (counted as timeouts above)</span>")
    return " <span class=\"bad\">(not the same: was another client sending?)</span>"


def _switch_codes(data: dict) -> str:
    side_codes = data["switch"]["run_codes"] or {}
    client_codes = data["channels"][OVERALL]["codes"]
    codes = sorted(set(side_codes) | set(client_codes))
    head = "<tr><th>counted by</th>" + "".join(f"<th>{escape(c or '(none)')}</th>"
                                                for c in codes) + "</tr>"
    rows = [f"<tr><td>{who}</td>" + "".join(f"<td>{counts.get(c, 0)}</td>" for c in codes)
            + "</tr>" for who, counts in (("switch", side_codes), ("client", client_codes))]
    return f"<table>{head}{''.join(rows)}</table>"


def _files(files: dict[str, str]) -> str:
    items = "".join(f"<li>{escape(kind)}: <code>{escape(name)}</code></li>"
                    for kind, name in sorted(files.items()))
    return (f"<ul>{items}<li>json: <code>summary.json</code> (every number on this page)</li>"
            "</ul>")
