"""Line charts as inline SVG, drawn on the server so the dashboard needs no JavaScript."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

WIDTH = 720
HEIGHT = 220
# Room for the axis labels, in SVG user units.
MARGIN_LEFT = 56
MARGIN_RIGHT = 12
MARGIN_TOP = 12
MARGIN_BOTTOM = 28
GRID_LINES = 4


@dataclass(frozen=True, slots=True)
class Series:
    key: str  # a stable name for tests and styling, e.g. "handed_off"
    label: str
    color: str
    values: Sequence[float | None]  # one per x label; None leaves a gap


def render_line_chart(
    chart_id: str,
    title: str,
    x_labels: Sequence[str],
    series: Sequence[Series],
    *,
    format_value: Callable[[float], str],
    log_scale: bool = False,
) -> str:
    """Return an SVG line chart; every point has a <title> that browsers show on hover.

    With `log_scale` the y axis is logarithmic from the smallest positive
    value's power of ten, which keeps milliseconds and minutes on one chart.
    """
    values = [v for s in series for v in s.values if v is not None]
    scale = Scale.for_values(values, log_scale=log_scale)
    plot_width = WIDTH - MARGIN_LEFT - MARGIN_RIGHT
    step = plot_width / max(len(x_labels) - 1, 1)

    def x_of(index: int) -> float:
        return MARGIN_LEFT + index * step

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'class="chart" data-chart="{escape(chart_id)}" role="img" '
        f'aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
    ]
    parts.extend(render_grid(scale, format_value))
    parts.extend(render_x_labels(x_labels, x_of))
    for item in series:
        parts.extend(render_series(item, x_labels, x_of, scale, format_value))
    if not values:
        parts.append(
            f'<text x="{WIDTH / 2:.0f}" y="{HEIGHT / 2:.0f}" text-anchor="middle" '
            'class="empty">no data in the last hour</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


@dataclass(frozen=True, slots=True)
class Scale:
    """Maps a value to a y coordinate of the plot area."""

    low: float
    high: float
    log_scale: bool

    @classmethod
    def for_values(cls, values: Sequence[float], *, log_scale: bool) -> Scale:
        if log_scale:
            positive = [v for v in values if v > 0]
            if not positive:
                return cls(0.001, 1.0, log_scale=True)
            low = 10 ** math.floor(math.log10(min(positive)))
            high = 10 ** math.ceil(math.log10(max(positive)))
            return cls(low, max(high, low * 10), log_scale=True)
        high = max(values, default=0.0)
        return cls(0.0, nice_ceiling(high), log_scale=False)

    def y_of(self, value: float) -> float:
        plot_height = HEIGHT - MARGIN_TOP - MARGIN_BOTTOM
        if self.log_scale:
            value = max(value, self.low)
            fraction = math.log10(value / self.low) / math.log10(self.high / self.low)
        else:
            fraction = (value - self.low) / (self.high - self.low)
        return MARGIN_TOP + plot_height * (1 - fraction)

    def ticks(self) -> list[float]:
        if self.log_scale:
            count = round(math.log10(self.high / self.low))
            return [self.low * 10**i for i in range(count + 1)]
        return [self.low + (self.high - self.low) * i / GRID_LINES for i in range(GRID_LINES + 1)]


def nice_ceiling(value: float) -> float:
    """Round up to 1, 2 or 5 times a power of ten, so grid labels are round numbers."""
    if value <= 0:
        return 1.0
    magnitude = 10 ** math.floor(math.log10(value))
    for factor in (1, 2, 5, 10):
        if value <= factor * magnitude:
            return float(factor * magnitude)
    return float(10 * magnitude)


def render_grid(scale: Scale, format_value: Callable[[float], str]) -> list[str]:
    parts = []
    for tick in scale.ticks():
        y = scale.y_of(tick)
        parts.append(
            f'<line x1="{MARGIN_LEFT}" x2="{WIDTH - MARGIN_RIGHT}" y1="{y:.1f}" y2="{y:.1f}" '
            'class="grid"/>'
        )
        parts.append(
            f'<text x="{MARGIN_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" class="axis">'
            f"{escape(format_value(tick))}</text>"
        )
    return parts


def render_x_labels(x_labels: Sequence[str], x_of: Callable[[int], float]) -> list[str]:
    # About six labels fit under the chart without overlapping.
    every = max(len(x_labels) // 6, 1)
    last = len(x_labels) - 1
    parts = []
    for index, label in enumerate(x_labels):
        if index % every and index != last:
            continue
        # The first and last labels align with the plot's edges so none is cut off.
        anchor = "middle"
        if index == 0:
            anchor = "start"
        elif index == last:
            anchor = "end"
        parts.append(
            f'<text x="{x_of(index):.1f}" y="{HEIGHT - 8}" text-anchor="{anchor}" class="axis">'
            f"{escape(label)}</text>"
        )
    return parts


def render_series(
    series: Series,
    x_labels: Sequence[str],
    x_of: Callable[[int], float],
    scale: Scale,
    format_value: Callable[[float], str],
) -> list[str]:
    parts: list[str] = []
    runs: list[list[tuple[float, float]]] = [[]]
    points: list[str] = []
    for index, value in enumerate(series.values):
        if value is None:
            runs.append([])
            continue
        x, y = x_of(index), scale.y_of(value)
        runs[-1].append((x, y))
        points.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{escape(series.color)}" '
            f'data-series="{escape(series.key)}"><title>{escape(series.label)} '
            f"{escape(x_labels[index])}: {escape(format_value(value))}</title></circle>"
        )
    for run in runs:
        if len(run) < 2:
            continue
        coordinates = " ".join(f"{x:.1f},{y:.1f}" for x, y in run)
        parts.append(
            f'<polyline points="{coordinates}" fill="none" stroke="{escape(series.color)}" '
            f'stroke-width="1.8" data-series="{escape(series.key)}"/>'
        )
    parts.extend(points)
    return parts
