"""Inline SVG line charts, rendered on the server: no JavaScript library, no CDN (the platform
must work offline), and the chart is in the HTML a browser test or a script receives."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from html import escape

WIDTH, HEIGHT = 760, 280
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 56, 16, 28, 36


@dataclass(frozen=True)
class Series:
    """One line: (time, value) points; None values break the line."""

    name: str
    points: Sequence[tuple[datetime, float | None]]
    color: str
    dashed: bool = False


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering [low, high] (steps of 1, 2 or 5 times a power of ten)."""
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError(f"ticks need finite bounds, got {low}, {high}")
    if high <= low:
        high = low + 1.0
    raw = (high - low) / max(1, count)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.floor(low / step) * step
    ticks = []
    value = first
    while value <= high + step * 1e-9:
        ticks.append(round(value, 10))
        value += step
    if ticks[-1] < high:
        ticks.append(round(value, 10))
    return ticks


def time_ticks(start: datetime, end: datetime, count: int = 8) -> list[datetime]:
    """At most about ``count`` whole-hour ticks in [start, end], on multiples of the step
    (every 3 h at 00, 03, 06...; daily steps at midnight)."""
    span_h = (end - start).total_seconds() / 3600
    step_h = next(
        (h for h in (1, 2, 3, 6, 12, 24) if span_h / h <= count),
        24 * math.ceil(span_h / 24 / count),
    )
    tick = start.replace(minute=0, second=0, microsecond=0)
    if tick < start:
        tick += timedelta(hours=1)
    while tick.hour % min(step_h, 24):
        tick += timedelta(hours=1)
    ticks = []
    while tick <= end:
        ticks.append(tick)
        tick += timedelta(hours=step_h)
    return ticks


def line_chart(
    series: Sequence[Series], *, title: str, unit: str, width: int = WIDTH, height: int = HEIGHT
) -> str:
    """An ``<svg>`` element with axes, ticks, a legend and one polyline per series."""
    values = [v for s in series for _, v in s.points if v is not None and math.isfinite(v)]
    times = [t for s in series for t, v in s.points if v is not None]
    label = escape(title)
    if not values:
        return (
            f'<svg class="chart" role="img" aria-label="{label}" viewBox="0 0 {width} 60" '
            f'width="{width}" height="60"><text x="8" y="34">{label}: no data yet</text></svg>'
        )
    start, end = min(times), max(times)
    if end == start:
        end = start + timedelta(hours=1)
    ticks = nice_ticks(min(values), max(values))
    low, high = ticks[0], ticks[-1]
    plot_w = width - MARGIN_LEFT - MARGIN_RIGHT
    plot_h = height - MARGIN_TOP - MARGIN_BOTTOM

    def x(t: datetime) -> float:
        return MARGIN_LEFT + plot_w * (t - start) / (end - start)

    def y(v: float) -> float:
        return MARGIN_TOP + plot_h * (1 - (v - low) / (high - low))

    parts = [
        f'<svg class="chart" role="img" aria-label="{label}" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">',
        f'<text x="{MARGIN_LEFT}" y="16" class="chart-title">{label} ({escape(unit)})</text>',
    ]
    for tick in ticks:
        parts.append(
            f'<line x1="{MARGIN_LEFT}" x2="{width - MARGIN_RIGHT}" y1="{y(tick):.1f}" '
            f'y2="{y(tick):.1f}" class="grid"/>'
            f'<text x="{MARGIN_LEFT - 6}" y="{y(tick) + 4:.1f}" text-anchor="end">{tick:g}</text>'
        )
    for tick in time_ticks(start, end):
        label_text = f"{tick:%d %b %H:%M}" if tick.hour == 0 else f"{tick:%H:%M}"
        parts.append(
            f'<text x="{x(tick):.1f}" y="{height - MARGIN_BOTTOM + 16}" '
            f'text-anchor="middle">{label_text}</text>'
        )
    for index, s in enumerate(series):
        segments: list[list[str]] = [[]]
        for t, v in s.points:
            if v is None or not math.isfinite(v):
                segments.append([])
            else:
                segments[-1].append(f"{x(t):.1f},{y(v):.1f}")
        dash = ' stroke-dasharray="6 4"' if s.dashed else ""
        for points in segments:
            if len(points) == 1:
                cx, cy = points[0].split(",")
                parts.append(f'<circle cx="{cx}" cy="{cy}" r="2.5" fill="{s.color}"/>')
            elif points:
                parts.append(
                    f'<polyline class="series" data-series="{escape(s.name)}" fill="none" '
                    f'stroke="{s.color}" stroke-width="2"{dash} points="{" ".join(points)}"/>'
                )
        legend_x = MARGIN_LEFT + 12 + index * 170
        parts.append(
            f'<line x1="{legend_x}" x2="{legend_x + 18}" y1="{height - 8}" y2="{height - 8}" '
            f'stroke="{s.color}" stroke-width="2"{dash}/>'
            f'<text x="{legend_x + 24}" y="{height - 4}">{escape(s.name)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)
