"""The switch's own counters, as it prints them when it stops (switch/app.py `counters_line`).

    counters: connections=16 requests=90210 answered=90210 ... redis_calls=90210
              redis_round_trips=6013 round_trips_per_call=0.067

one line per process (`switch serve --workers N` prints N). The bench stops the switch with
SIGTERM after its saturation runs and reads these lines from the switch's log: the Redis
round trips per authorization are then the switch's own count, not an estimate.
"""

from __future__ import annotations

PREFIX = "counters:"


def parse_line(line: str) -> dict[str, int | float | str]:
    """One `counters:` line as a dict (numbers as int or float; '-' kept as text)."""
    text = line.strip()
    if not text.startswith(PREFIX):
        raise ValueError(f"not a counters line: {text[:60]!r}")
    fields: dict[str, int | float | str] = {}
    for word in text[len(PREFIX):].split():
        name, sep, value = word.partition("=")
        if not sep or not name:
            raise ValueError(f"counters line: {word!r} is not NAME=VALUE")
        fields[name] = _number(value)
    return fields


def _number(value: str) -> int | float | str:
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def parse_counters(text: str) -> dict[str, int | float | None] | None:
    """Every process' `counters:` line in `text` summed; None when there is none.
    `round_trips_per_call` is recomputed from the sums (None when no call was made)."""
    lines = [parse_line(line) for line in text.splitlines() if line.startswith(PREFIX)]
    if not lines:
        return None
    total: dict[str, int | float | None] = {"processes": len(lines)}
    for fields in lines:
        for name, value in fields.items():
            if name != "round_trips_per_call" and isinstance(value, int):
                total[name] = int(total.get(name) or 0) + value
    calls, trips = total.get("redis_calls") or 0, total.get("redis_round_trips") or 0
    total["round_trips_per_call"] = round(trips / calls, 4) if calls else None
    return total
