"""The inline SVG charts: tick choice and what the markup holds."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

import pytest

from serving.charts import Series, line_chart, nice_ticks, time_ticks

T0 = datetime(2026, 11, 20, 5, 30, tzinfo=UTC)
SVG = "{http://www.w3.org/2000/svg}"


@pytest.mark.parametrize(
    ("low", "high", "expected"),
    [
        (3.2, 11.7, [2, 4, 6, 8, 10, 12]),
        (0.0012, 0.0051, [0.001, 0.002, 0.003, 0.004, 0.005, 0.006]),
        (-3, 3, [-4, -2, 0, 2, 4]),
        (5, 5, [5, 5.2, 5.4, 5.6, 5.8, 6]),
    ],
)
def test_nice_ticks_cover_the_range_in_round_steps(low, high, expected):
    ticks = nice_ticks(low, high)
    assert ticks == pytest.approx(expected)
    assert ticks[0] <= low and ticks[-1] >= high


def test_nice_ticks_refuse_non_finite_bounds():
    with pytest.raises(ValueError, match="finite"):
        nice_ticks(0, float("inf"))


def test_time_ticks_are_whole_hours_on_step_multiples():
    week = time_ticks(T0, T0 + timedelta(days=7))
    assert week[0] == datetime(2026, 11, 21, tzinfo=UTC) and len(week) <= 8
    assert all(t.hour == 0 for t in week)
    day = time_ticks(T0, T0 + timedelta(hours=20))
    assert all(t.minute == 0 and t.hour % 3 == 0 for t in day) and day[0] >= T0


def test_line_chart_draws_each_series_and_breaks_lines_at_gaps():
    points = [(T0 + timedelta(hours=i), float(i % 5)) for i in range(30)]
    gappy = [(t, None if i == 10 else v + 1) for i, (t, v) in enumerate(points)]
    svg = line_chart(
        [Series("actual", points, "#00f"), Series("pred <x>", gappy, "#f00", dashed=True)],
        title="T & U",
        unit="°C",
    )
    root = ET.fromstring(svg)  # well-formed, names escaped
    lines = root.findall(f"{SVG}polyline")
    assert [p.get("data-series") for p in lines] == ["actual", "pred <x>", "pred <x>"]
    assert len(lines[0].get("points").split()) == 30
    assert [len(p.get("points").split()) for p in lines[1:]] == [10, 19]
    assert lines[1].get("stroke-dasharray")
    assert root.get("aria-label") == "T & U"


def test_line_chart_without_data_says_so():
    svg = line_chart([Series("actual", [(T0, None)], "#00f")], title="MSE", unit="°C²")
    assert "no data yet" in svg and "<polyline" not in svg
