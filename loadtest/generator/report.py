"""What a run leaves behind: the terminal table, summary.json, .hgrm files, report.html."""

from __future__ import annotations

from pathlib import Path

import msgspec

from loadtest.generator import html_report
from loadtest.generator.aggregate import OVERALL
from loadtest.generator.runner import Result, parts_line
from loadtest.generator.stats import Totals
from loadtest.generator.switch_side import summary_line

HGRM_TICKS_PER_HALF_DISTANCE = 5  # HdrHistogram's usual resolution of the percentile table
US_PER_MS = 1000.0  # histograms hold microseconds; every file shows milliseconds


def channel_summary(totals: Totals, duration_s: float) -> dict:
    counts = totals.counts
    return {
        **counts,
        "failures": totals.failures,
        "achieved_rate": round(counts["answered"] / duration_s, 1),
        "codes": dict(sorted(totals.codes.items())),
        "kinds": dict(sorted(totals.kinds.items())),
        "approved": dict(sorted(totals.approved.items())),
        "latency_ms": _with_mean(totals.percentiles_ms(), totals),
        "send_lag_ms": _lag_percentiles(totals),
        "histogram": totals.latency.encode().decode() if counts["answered"] else "",
    }


def _with_mean(percentiles: dict[str, float], totals: Totals) -> dict[str, float]:
    if not percentiles:
        return {}
    return {**percentiles, "mean": round(totals.latency.get_mean_value() / US_PER_MS, 3)}


def _lag_percentiles(totals: Totals) -> dict[str, float]:
    lag = totals.send_lag
    if lag.get_total_count() == 0:
        return {}
    return {label: lag.get_value_at_percentile(p) / US_PER_MS
            for label, p in (("p50", 50.0), ("p99", 99.0), ("max", 100.0))}


def summary(result: Result) -> dict:
    plan = result.plan
    return {
        "started_at": result.started_at,
        "plan": msgspec.to_builtins(plan),
        "offered_rate": result.offered_rate,
        "achieved_rate": round(result.achieved_rate, 1),
        "elapsed_s": round(result.elapsed_s, 3),
        "channels": {name: channel_summary(t, plan.duration_s)
                     for name, t in result.totals.items()},
        "series": msgspec.to_builtins(result.series),
        # The switch's side (--admin-url): what its /metrics said, read once a second.
        **({"switch": msgspec.to_builtins(result.switch)} if result.switch else {}),
    }


def hgrm_text(totals: Totals) -> str:
    """HdrHistogram's percentile distribution file, values in milliseconds.

    Written here rather than by hdrh's `output_percentile_distribution`, whose footer gives
    the standard deviation unscaled (microseconds under a millisecond heading)."""
    histogram = totals.latency
    lines = [f"{'Value':>12} {'Percentile':>14} {'TotalCount':>10} {'1/(1-Percentile)':>14}", ""]
    for item in histogram.get_percentile_iterator(HGRM_TICKS_PER_HALF_DISTANCE):
        value = item.value_iterated_to / US_PER_MS
        fraction = item.percentile_level_iterated_to / 100
        line = f"{value:12.3f} {fraction:2.12f} {item.total_count_to_this_value:10d}"
        lines.append(line if fraction >= 1 else f"{line} {1 / (1 - fraction):14.2f}")
    mean = histogram.get_mean_value() / US_PER_MS
    stddev = histogram.get_stddev() / US_PER_MS
    maximum = histogram.get_max_value() / US_PER_MS
    lines += [f"#[Mean    = {mean:12.3f}, StdDeviation   = {stddev:12.3f}]",
              f"#[Max     = {maximum:12.3f}, Total count    = {histogram.get_total_count():12d}]",
              f"#[Buckets = {histogram.bucket_count:12d}, SubBuckets     = "
              f"{histogram.sub_bucket_count:12d}]"]
    return "\n".join(lines) + "\n"


def write_all(result: Result, folder: Path) -> dict[str, Path]:
    """Write every output file; return them by kind."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for name, totals in result.totals.items():
        if totals.latency.get_total_count():
            files[f"hgrm:{name}"] = folder / f"latency-{name}.hgrm"
            files[f"hgrm:{name}"].write_text(hgrm_text(totals))
    data = summary(result)
    data["files"] = {kind: path.name for kind, path in files.items()}
    files["html"] = folder / "report.html"
    files["html"].write_text(html_report.render(data, result))
    files["json"] = folder / "summary.json"
    files["json"].write_bytes(msgspec.json.format(msgspec.json.encode(data), indent=2))
    return files


# --- the terminal table -------------------------------------------------------------------

LATENCY_COLUMNS = ("p50", "p90", "p99", "p99.9", "p99.99", "max")


def table(result: Result) -> str:
    plan = result.plan
    lines = [
        *([parts_line(plan)] if plan.parts > 1 or plan.part else []),
        f"offered {result.offered_rate:,.0f}/s for {plan.duration_s:g} s, achieved "
        f"{result.achieved_rate:,.1f}/s  ({plan.workers} worker(s), {plan.connections} "
        f"connection(s) per channel, timeout {plan.timeout_s:g} s)",
        "",
        f"{'channel':<8}{'sent':>10}{'answered':>10}{'rate/s':>10}{'timeout':>8}{'errors':>8}"
        f"{'dropped':>8}{'behind':>8}  " + "".join(f"{c:>9}" for c in LATENCY_COLUMNS)
        + "  (ms)",
    ]
    for name, totals in result.totals.items():
        c = totals.counts
        pct = totals.percentiles_ms()
        lines.append(
            f"{name:<8}{c['sent']:>10}{c['answered']:>10}"
            f"{c['answered'] / plan.duration_s:>10.1f}{c['timeouts']:>8}"
            f"{c['errors'] + c['bad_answers']:>8}{c['dropped']:>8}{c['behind']:>8}  "
            + "".join(f"{pct[k]:>9.3f}" if pct else f"{'-':>9}" for k in LATENCY_COLUMNS))
    lines.append("")
    for name, totals in result.totals.items():
        if name == OVERALL and len(result.totals) == 2:
            continue  # one channel: its codes are the run's
        codes = "  ".join(f"{code or '(none)'}: {n}" for code, n in sorted(totals.codes.items()))
        lines.append(f"response codes {name}: {codes or '-'}")
    failures = result.totals[OVERALL].failures
    lines.append(f"failures (timeouts, errors, dropped, 91/96): {failures}")
    if result.switch is not None:
        lines.append(summary_line(result.switch))
    return "\n".join(lines)

