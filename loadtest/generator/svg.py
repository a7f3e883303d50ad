"""Line charts as inline SVG, so a report opens in any browser with no network and no script.

One function, `line_chart`: series of (x, y) points on linear axes, or a log-scale y axis
for latencies (a 0.1 ms median and a 200 ms stall on one readable chart). A y of None is a
gap: the line stops there and starts again after it (a reading that failed).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape
from typing import NamedTuple

WIDTH, HEIGHT = 860, 300
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 70, 20, 20, 60
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2")


class Series(NamedTuple):
    label: str
    points: Sequence[tuple[float, float | None]]  # y None: a gap
    dashed: bool = False


def line_chart(series: Sequence[Series], *, x_label: str, y_label: str, y_log: bool = False,
               x_ticks: Sequence[tuple[float, str]] | None = None) -> str:
    points = [p for s in series for p in s.points if _shown(p[1], y_log)]
    if not points:
        return '<p class="empty">no data</p>'
    x_lo, x_hi = min(p[0] for p in points), max(p[0] for p in points)
    y_values = [p[1] for p in points]
    axis = _LogAxis(y_values) if y_log else _LinearAxis(y_values)
    x_hi = x_hi if x_hi > x_lo else x_lo + 1
    plot_w = WIDTH - MARGIN_LEFT - MARGIN_RIGHT
    plot_h = HEIGHT - MARGIN_TOP - MARGIN_BOTTOM

    def sx(x: float) -> float:
        return MARGIN_LEFT + (x - x_lo) / (x_hi - x_lo) * plot_w

    def sy(y: float) -> float:
        return MARGIN_TOP + (1 - axis.fraction(y)) * plot_h

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
             f'width="{WIDTH}" height="{HEIGHT}" font-family="sans-serif" font-size="11">']
    for value, text in axis.ticks():
        y = sy(value)
        parts.append(f'<line x1="{MARGIN_LEFT}" x2="{WIDTH - MARGIN_RIGHT}" y1="{y:.1f}" '
                     f'y2="{y:.1f}" stroke="#ddd"/><text x="{MARGIN_LEFT - 6}" y="{y + 4:.1f}" '
                     f'text-anchor="end">{escape(text)}</text>')
    for value, text in x_ticks or _linear_ticks(x_lo, x_hi):
        x = sx(value)
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{MARGIN_TOP}" '
                     f'y2="{HEIGHT - MARGIN_BOTTOM}" stroke="#eee"/><text x="{x:.1f}" '
                     f'y="{HEIGHT - MARGIN_BOTTOM + 16}" text-anchor="middle">'
                     f'{escape(text)}</text>')
    parts.append(f'<text x="{MARGIN_LEFT + plot_w / 2}" y="{HEIGHT - 22}" '
                 f'text-anchor="middle">{escape(x_label)}</text>')
    parts.append(f'<text transform="translate(14 {MARGIN_TOP + plot_h / 2}) rotate(-90)" '
                 f'text-anchor="middle">{escape(y_label)}</text>')
    for index, s in enumerate(series):
        color = PALETTE[index % len(PALETTE)]
        dash = ' stroke-dasharray="6 4"' if s.dashed else ""
        for run in _runs(s.points, y_log):
            path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in run)
            parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.6"{dash} '
                         f'points="{path}"><title>{escape(s.label)}</title></polyline>')
        lx = MARGIN_LEFT + index * 130
        parts.append(f'<rect x="{lx}" y="{HEIGHT - 14}" width="12" height="3" fill="{color}"/>'
                     f'<text x="{lx + 16}" y="{HEIGHT - 9}">{escape(s.label)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _shown(y: float | None, y_log: bool) -> bool:
    return y is not None and (not y_log or y > 0)


def _runs(points: Sequence[tuple[float, float | None]], y_log: bool
          ) -> list[list[tuple[float, float]]]:
    """The points as unbroken runs: a gap (y None) ends one; a point a log axis cannot show
    (y <= 0) is left out without breaking the line."""
    runs: list[list[tuple[float, float]]] = [[]]
    for x, y in points:
        if y is None:
            if runs[-1]:
                runs.append([])
        elif not y_log or y > 0:
            runs[-1].append((x, y))
    return [run for run in runs if run]


class _LinearAxis:
    def __init__(self, values: Sequence[float]) -> None:
        self.lo = min(0.0, min(values))
        self.hi = max(values) * 1.05 or 1.0

    def fraction(self, y: float) -> float:
        return (y - self.lo) / (self.hi - self.lo)

    def ticks(self) -> list[tuple[float, str]]:
        return _linear_ticks(self.lo, self.hi)


class _LogAxis:
    def __init__(self, values: Sequence[float]) -> None:
        positive = [v for v in values if v > 0]
        self.lo = 10 ** math.floor(math.log10(min(positive)))
        self.hi = 10 ** math.ceil(math.log10(max(positive) * 1.0001))
        if self.hi <= self.lo:
            self.hi = self.lo * 10

    def fraction(self, y: float) -> float:
        return math.log10(y / self.lo) / math.log10(self.hi / self.lo)

    def ticks(self) -> list[tuple[float, str]]:
        ticks = []
        value = self.lo
        while value <= self.hi * 1.0001:
            ticks.append((value, f"{value:g}"))
            value *= 10
        return ticks


def _linear_ticks(lo: float, hi: float, count: int = 6) -> list[tuple[float, str]]:
    raw = (hi - lo) / count
    magnitude = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    first = math.ceil(lo / step) * step
    ticks = []
    value = first
    while value <= hi + step * 1e-9:
        ticks.append((value, f"{value:,.10g}"))
        value += step
    return ticks
