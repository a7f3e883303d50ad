"""bench-scale's report: the tables (terminal and Markdown) and three SVG curves.

The curves are drawn by generator/svg.py (inline SVG, no network, no plotting library):
throughput and p99 against connections (log scale of connections), memory per card against
cards.
"""

from __future__ import annotations

import math
from html import escape
from pathlib import Path

from loadtest.generator.svg import Series, line_chart


def rate_cell(value: float | None) -> str:
    return f"{value:,.0f}/s" if value else "-"


def ms_cell(value: float | None) -> str:
    return f"{value:,.3f}" if value is not None else "-"


def ratio_cell(top: float | None, bottom: float | None) -> str:
    return f"{top / bottom:.2f}x" if top and bottom else "-"


def _met(ok: bool | None) -> str:
    return "-" if ok is None else ("yes" if ok else "no")


# --- the tables, as rows of cells --------------------------------------------------------


def saturation_rows(results: dict) -> list[list[str]]:
    part = results.get("saturation")
    if not part:
        return []
    med = part["median"]

    def cell(server: str, channel: str, key: str = "median_rate"):
        return med.get(server, {}).get(channel, {}).get(key)

    rows = [["channel", "(a) switch x1", "(a2) switch x2", "(d) reference", "(b) echo",
             "(a)/(d)", "(a2)/(d)", "p99 ms (a)", "p99 ms (d)", "94s"]]
    for channel in results["settings"]["channels"]:
        a, a2, d, b = (cell(s, channel) for s in ("switch-1", "switch-2", "reference", "echo"))
        dupes = sum(r["duplicates_94"] for r in part["runs"] if r["channel"] == channel)
        rows.append([channel, rate_cell(a), rate_cell(a2), rate_cell(d), rate_cell(b),
                     ratio_cell(a, d), ratio_cell(a2, d), ms_cell(cell("switch-1", channel, "p99")),
                     ms_cell(cell("reference", channel, "p99")), str(dupes)])
    return rows


def target_rows(results: dict) -> list[list[str]]:
    targets = results["targets"]
    rows = [["scaling target", "measured", "met"]]
    part = results.get("saturation")
    if part:
        med = part["median"]
        rate = {s: med.get(s, {}).get("pos", {}).get("median_rate") for s in med}
        best = max(rate.get("switch-1") or 0, rate.get("switch-2") or 0)
        ratio = best / rate["reference"] if rate.get("reference") else None
        rows.append([f"POS saturation >= {targets['saturation_ratio']:g}x the reference",
                     f"{ratio:.2f}x" if ratio else "-",
                     _met(ratio >= targets["saturation_ratio"] if ratio else None)])
        rows.append([f"aim: {targets['visanet_rate']:,} messages/s (VisaNet)", rate_cell(best),
                     _met(best >= targets["visanet_rate"])])
        for name, found in part["counters"].items():
            per_call = found.get("round_trips_per_call") if found else None
            rows.append([f"Redis round trips per authorization at saturation <= "
                         f"{targets['round_trips_per_call']:g} (switch x{name[-1]})",
                         f"{per_call:.3f}" if per_call is not None else "-",
                         _met(per_call <= targets["round_trips_per_call"]
                              if per_call is not None else None)])
    openloop = results.get("openloop") or {}
    runs = [(openloop.get("half"), ""),
            (openloop.get("half_realtime"), ", real-time priority")]
    for half, how in runs:
        if not half or "unavailable" in half:
            continue
        for key, limit in targets["open_loop_ms"].items():
            rows.append([f"open loop at half the sustainable rate ({half['rate']:,.0f}/s"
                         f"{how}): {key} <= {limit:g} ms", f"{ms_cell(half[key])} ms",
                         _met(half[key] is not None and half[key] <= limit
                              and not half["failures"])])
    return rows if len(rows) > 1 else []


def scaling_rows(results: dict) -> list[list[str]]:
    part = results.get("scaling")
    if not part:
        return []
    rows = [["connections", "in flight each", "in flight total", "switch x1", "p99 ms x1",
             "switch x2", "p99 ms x2"]]
    by_key = {(p["connections"], p["switch_processes"]): p for p in part["points"]}
    for connections in sorted({p["connections"] for p in part["points"]}):
        one, two = by_key.get((connections, 1)), by_key.get((connections, 2))
        first = one or two
        rows.append([f"{connections:,}", str(first["inflight"]), f"{first['total_inflight']:,}",
                     rate_cell(one and one["rate"]), ms_cell(one and one["p99"]),
                     rate_cell(two and two["rate"]), ms_cell(two and two["p99"])])
    return rows


def memory_rows(results: dict) -> list[list[str]]:
    part = results.get("memory")
    if not part:
        return []
    rows = [["cards", "idle card, bytes", "card with one approval, bytes", "keys per card",
             "seed s", "approve s"]]
    for m in part:
        rows.append([f"{m['cards']:,}", f"{m['idle_per_card']:,.0f}",
                     f"{m['approved_per_card']:,.0f}", f"{m['keys_per_card']:g}",
                     f"{m['seed_s']:.1f}", f"{m['approve_s']:.1f}"])
    return rows


SECTIONS = (
    ("Scaling targets", target_rows),
    ("Closed-loop saturation, medians of the rounds", saturation_rows),
    ("Connections (closed loop, POS)", scaling_rows),
    ("Memory per card in Redis (INFO used_memory delta / cards)", memory_rows),
)


# --- rendering ----------------------------------------------------------------------------


def text_table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i])
                      for i, cell in enumerate(row)) for row in rows]


def md_table(rows: list[list[str]]) -> list[str]:
    return (["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
            + ["| " + " | ".join(row) + " |" for row in rows[1:]])


def notes(results: dict) -> list[str]:
    out = []
    sat = results.get("saturation")
    if sat:
        out.append(f"Saturation: closed loop, {sat['connections']} connections x "
                   f"{sat['inflight']} in flight per server and channel, "
                   f"{sat['duration_s']:g} s measured after {sat['warmup_s']:g} s warm-up, "
                   f"{sat['rounds']} round(s) alternating the servers; the same client, the "
                   "same synthetic transactions (the open-loop generator's mix), cards seeded "
                   "afresh before every run. Latencies at saturation are queueing (Little's "
                   "law), not a target. 94s: duplicate answers over every run (should be 0).")
        total = sat["connections"] * sat["inflight"]
        held = all(r.get("inflight_seen") == [total, total] for r in sat["runs"])
        out.append(f"In flight: every 50 ms sample of every window held exactly {total:,} "
                   "requests." if held else "In flight: some samples held fewer than "
                   f"{total:,} requests (timeouts or lost connections: see the JSON).")
    ol = results.get("openloop")
    if ol and ol.get("half"):
        s = ol["sustainable"]
        out.append(f"Open loop: find-max (p99 <= 5 ms, no failures) sustained "
                   f"{s['rate']:,.0f}/s on the one-process switch; the run at half of it "
                   f"answered {ol['half']['achieved']:,.0f}/s with p50 "
                   f"{ms_cell(ol['half']['p50'])} ms, p99 {ms_cell(ol['half']['p99'])} ms, p99.9 "
                   f"{ms_cell(ol['half']['p99.9'])} ms, max {ms_cell(ol['half']['max'])} ms, "
                   f"{ol['half']['failures']} failures.")
        rt = ol.get("half_realtime") or {}
        if "unavailable" in rt:
            out.append(f"The run at real-time priority was skipped: {rt['unavailable']}.")
        elif rt:
            out.append(f"The same run with the switch, Redis and the generator at real-time "
                       f"priority (SCHED_FIFO: a woken process takes a core at once instead of "
                       f"waiting for one): p50 {ms_cell(rt['p50'])} ms, "
                       f"p99 {ms_cell(rt['p99'])} ms, "
                       f"p99.9 {ms_cell(rt['p99.9'])} ms, max {ms_cell(rt['max'])} ms, "
                       f"{rt['failures']} failures.")
        floor = ol.get("echo_floor")
        if floor:
            out.append(f"The same open loop against the echo server (no decision at all: the "
                       f"generator's own send schedule and this machine): p50 "
                       f"{ms_cell(floor['p50'])} ms, p99 {ms_cell(floor['p99'])} ms, p99.9 "
                       f"{ms_cell(floor['p99.9'])} ms.")
    sc = results.get("scaling")
    if sc:
        out.append(f"Connections: {sc['inflight_rule']}, {sc['duration_s']:g} s each.")
    mem = results.get("memory")
    if mem:
        sizes = mem[-1]["sample_card_key_bytes"]
        out.append("Memory: a card with one approval has " + ", ".join(
            f"{KEY_NAMES.get(k, k)} {n} B" for k, n in sizes.items())
            + " (MEMORY USAGE of one card's keys); the rest of the per-card figure is Redis' "
            "key table and, for the remembered answer, its expiry entry. The answer expires "
            "after 24 hours; the transaction record and index entry stay.")
    return out


KEY_NAMES = {"card": "the card hash", ":t:": "the transaction record", ":tx": "its index",
             ":i:": "the remembered answer", ":n": "the velocity counters",
             ":h": "the holds"}
CURVE_TITLES = {"connections-rate": "Throughput against connections",
                "connections-p99": "p99 latency against connections",
                "memory": "Redis memory per card against cards"}


def terminal(results: dict) -> str:
    lines = [f"\nbench-scale {results['date']}: {results['machine']['summary']}"]
    for title, rows_of in SECTIONS:
        rows = rows_of(results)
        if rows:
            lines += ["", title, *text_table(rows)]
    return "\n".join(lines + [""] + notes(results))


def markdown(results: dict, svg_names: list[str]) -> str:
    lines = [f"# Bench-scale {results['date']}", "",
             f"Machine: {results['machine']['summary']}. Client, servers and Redis share "
             "its cores.", ""]
    for title, rows_of in SECTIONS:
        rows = rows_of(results)
        if rows:
            lines += [f"## {title}", "", *md_table(rows), ""]
    for note in notes(results):
        lines += [note, ""]
    if svg_names:
        lines += ["## Curves", ""]
        for name in svg_names:
            title = next((t for key, t in CURVE_TITLES.items() if name.endswith(f"-{key}.svg")),
                         name)
            lines += [f"![{title}]({name})", ""]
    lines.append(f"`make bench-scale` (`loadtest bench-scale`), {results.get('seconds', '?')} "
                 "s; every run is in the JSON file next to this one.")
    return "\n".join(lines) + "\n"


def curves(results: dict) -> dict[str, str]:
    """suffix -> SVG text, for the parts that were measured."""
    out = {}
    points = (results.get("scaling") or {}).get("points") or []
    if points:
        ticks = [(math.log10(c), f"{c:,}") for c in sorted({p["connections"] for p in points})]
        for key, label, y_log in (("rate", "answers per second", False),
                                  ("p99", "p99 latency, ms (log)", True)):
            series = [Series(f"switch x{w}", [(math.log10(p["connections"]), p[key])
                                              for p in points
                                              if p["switch_processes"] == w and p[key]])
                      for w in (1, 2)]
            out[f"connections-{key}"] = _titled(line_chart(
                series, x_label="connections (log scale), closed loop POS", y_label=label,
                y_log=y_log, x_ticks=ticks), f"{label} against connections, {results['date']}")
    mem = results.get("memory") or []
    if mem:
        ticks = [(math.log10(m["cards"]), _cards(m["cards"])) for m in mem]
        series = [Series("idle card", [(math.log10(m["cards"]), m["idle_per_card"])
                                       for m in mem]),
                  Series("card with one approval", [(math.log10(m["cards"]),
                                                     m["approved_per_card"]) for m in mem])]
        out["memory"] = _titled(line_chart(series, x_label="cards in Redis (log scale)",
                                           y_label="bytes per card", x_ticks=ticks),
                                f"Redis memory per card against cards, {results['date']}")
    return out


def _titled(svg: str, title: str) -> str:
    """The chart with a <title> (shown by browsers and screen readers)."""
    head, sep, rest = svg.partition(">")
    return f"{head}{sep}<title>{escape(title)}</title>{rest}" if sep else svg


def _cards(count: int) -> str:
    for size, suffix in ((1_000_000, "M"), (1_000, "k")):
        if count >= size and count % size == 0:
            return f"{count // size}{suffix}"
    return f"{count:,}"


def write_all(results: dict, folder: Path, stem: str) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    svgs = []
    for suffix, svg in curves(results).items():
        path = folder / f"{stem}-{suffix}.svg"
        path.write_text(svg + "\n")
        svgs.append(path)
    md = folder / f"{stem}.md"
    md.write_text(markdown(results, [p.name for p in svgs]))
    return {"terminal": terminal(results), "md": md, "svg": svgs}
