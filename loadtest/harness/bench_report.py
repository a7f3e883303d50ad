"""The bench's side-by-side table (terminal and Markdown) and the facts about the machine."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from importlib import metadata


def machine() -> dict:
    cpu = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    redis_version = "?"
    if shutil.which("redis-server"):
        words = subprocess.run(["redis-server", "--version"], capture_output=True,
                               text=True).stdout.split()
        redis_version = next((w[2:] for w in words if w.startswith("v=")), "?")
    facts = {
        "cpu": cpu, "cores": os.cpu_count(), "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(), "redis": redis_version,
        "uvloop": _version("uvloop"), "msgspec": _version("msgspec"),
    }
    facts["summary"] = (f"{facts['cores']} cores ({cpu}), {facts['os']}, Python "
                        f"{facts['python']}, Redis {redis_version}")
    return facts


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "?"


COLUMNS = ("channel", "(a) switch", "(b) echo ceiling", "(d) reference", "(a)/(b)",
           "(a)/(c) Redis", "(a)/(d)")


def _rate(entry: dict | None) -> str:
    return f"{entry['rate']:,.0f}/s" if entry else "-"


def _ratio(numerator: dict | None, denominator: dict | None) -> str:
    if not numerator or not denominator or not denominator["rate"]:
        return "-"
    return f"{numerator['rate'] / denominator['rate']:.2f}"


def _cells(results: dict) -> list[list[str]]:
    body = [list(COLUMNS)]
    for channel in results["channels"]:
        switch = results["switch"].get(channel)
        ceiling = results["ceiling"].get(channel)
        reference = results["reference"].get(channel)
        body.append([channel, _rate(switch), _rate(ceiling), _rate(reference),
                     _ratio(switch, ceiling), _ratio(switch, results.get("redis")),
                     _ratio(switch, reference)])
    return body


def _redis_line(results: dict) -> str:
    redis = results.get("redis")
    if not redis:
        return "(c) Redis alone: not measured"
    return (f"(c) Redis alone, the switch's authorize function pipelined {redis['depth']} deep "
            f"({redis['client']}): {redis['rate']:,.0f}/s")


def terminal_table(results: dict) -> str:
    body = _cells(results)
    widths = [max(len(row[i]) for row in body) for i in range(len(COLUMNS))]
    lines = ["  ".join(cell.ljust(widths[0]) if i == 0 else cell.rjust(widths[i])
                       for i, cell in enumerate(row)) for row in body]
    return "\n".join([f"\nbench {results['date']}: {results['machine']['summary']}", "",
                      *lines, "", _redis_line(results), "", _note(results)])


def markdown(results: dict) -> str:
    body = _cells(results)
    table = ["| " + " | ".join(body[0]) + " |", "|" + "---|" * len(COLUMNS)]
    table += ["| " + " | ".join(row) + " |" for row in body[1:]]
    return "\n".join([
        f"# Bench {results['date']}", "", f"Machine: {results['machine']['summary']}.", "",
        *table, "", _redis_line(results), "", _note(results), "",
        f"{_command(results)} ({results.get('seconds', '?')} s); every step of every search is in "
        "the JSON file next to this one.", ""])


def _command(results: dict) -> str:
    runs = results["settings"].get("runs", 1)
    return f"`loadtest bench --runs {runs}`" if runs > 1 else "`make bench` (`loadtest bench`)"


def _note(results: dict) -> str:
    s = results["settings"]
    runs = s.get("runs", 1)
    median = f"Medians of {runs} runs (every run is in the JSON). " if runs > 1 else ""
    return (median + f"Each rate is the highest an open-loop generator sustained with p99 <= "
            f"{s['p99_target_ms']:g} ms (from intended send time) and no failures: find-max "
            f"from {s['start_rate']:,.0f}/s, x{s['growth']:g} per step, {s['step_duration_s']:g}"
            f" s steps, {s['connections']} connections, {s['generator_workers']} generator "
            f"process(es), {s.get('switch_workers', 1)} switch process(es), {s['cards']:,} "
            "cards. Generator, servers and Redis share this "
            "machine's cores.")
