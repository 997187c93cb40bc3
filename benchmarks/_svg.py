"""Line charts with log-log axes, written as SVG: the scaling charts of docs/performance.md.

Dependency-free on purpose: the benchmarks must run wherever the library runs, and a chart
is a few dozen lines of SVG. Each chart is a white card (readable in the docs' dark mode
too) with a title, decade gridlines, labelled axes and a legend beside the plot.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from xml.sax.saxutils import escape

__all__ = ("Chart", "Series", "format_bytes", "format_count", "format_seconds")

# Tableau 10: distinct, and readable by most colour-blind readers.
PALETTE = (
    "#4e79a7",
    "#f28e2b",
    "#e15759",
    "#76b7b2",
    "#59a14f",
    "#edc948",
    "#b07aa1",
    "#ff9da7",
    "#9c755f",
    "#bab0ac",
)

WIDTH = 760
HEIGHT = 420
LEFT = 78  # room for the y tick labels and the y axis label
TOP = 44
BOTTOM = 56
LEGEND = 250  # the legend's column, right of the plot
FONT = "font-family='system-ui, -apple-system, Segoe UI, Helvetica, Arial, sans-serif'"


def _si(value: float, units: Sequence[tuple[float, str]], space: str = " ") -> str:
    for scale, unit in units:
        if abs(value) >= scale * 0.999:
            shown = value / scale
            text = f"{shown:.0f}" if shown >= 10 or shown == int(shown) else f"{shown:.2g}"
            return f"{text}{space}{unit}".rstrip()
    scale, unit = units[-1]
    return f"{value / scale:.2g}{space}{unit}".rstrip()


def format_count(value: float) -> str:
    """1000 -> '1k', 1_000_000 -> '1M'."""
    return _si(value, ((1e9, "G"), (1e6, "M"), (1e3, "k"), (1, "")), space="")


def format_seconds(value: float) -> str:
    """0.001 -> '1 ms', 1e-6 -> '1 µs'."""
    return _si(value, ((1, "s"), (1e-3, "ms"), (1e-6, "µs"), (1e-9, "ns")))


def format_bytes(value: float) -> str:
    """Decimal units, so that decades read round: 1000 -> '1 kB'."""
    return _si(value, ((1e9, "GB"), (1e6, "MB"), (1e3, "kB"), (1, "B")))


@dataclass(frozen=True)
class Series:
    """One line: `points` are (x, y); points that a log axis cannot show (y <= 0, None)
    are left out. Series given the same `color` are drawn in one colour (the same library,
    say, with a dashed line for a second figure of it)."""

    name: str
    points: Sequence[tuple[float, float | None]]
    dashed: bool = False
    color: int | None = None  # an index into PALETTE; default: the series' own


@dataclass(frozen=True)
class Chart:
    """A line chart with log-log axes; `svg()` renders it."""

    name: str  # the file name, without ".svg"
    title: str
    x_label: str
    y_label: str
    series: Sequence[Series]
    x_format: Callable[[float], str] = format_count
    y_format: Callable[[float], str] = format_seconds
    note: str = ""  # one line under the plot
    x_ticks: Sequence[float] = ()  # the x values to label (the sizes measured); default decades
    alt: str = field(default="")

    def svg(self) -> str:
        return _render(self)


def _decades(values: Sequence[float]) -> tuple[float, float]:
    """The axis from the decade at or below the least value to the one at or above the most."""
    low = math.floor(math.log10(min(values)) + 1e-9)
    high = math.ceil(math.log10(max(values)) - 1e-9)
    return low, max(high, low + 1)


def _y_range(values: Sequence[float]) -> tuple[float, float]:
    """Whole decades for values spread over two or more of them; otherwise one decade around
    them (never less: a narrow axis would make a flat line look steep)."""
    low, high = math.log10(min(values)), math.log10(max(values))
    if high - low >= 1.5:
        return _decades(values)
    middle = (low + high) / 2
    half = max(0.5, (high - low) / 2 + 0.1)
    return middle - half, middle + half


def _ticks(low: float, high: float) -> tuple[list[float], list[float]]:
    """(labelled, faint) gridline values between 10**low and 10**high: labels at each decade,
    or at 1, 2 and 5 of each decade when the axis spans less than two."""
    labelled: list[float] = []
    faint: list[float] = []
    steps = (1, 2, 5) if high - low < 2 else (1,)
    for decade in range(math.floor(low), math.ceil(high) + 1):
        for multiple in range(1, 10):
            value = multiple * 10.0**decade
            if not low - 1e-9 <= math.log10(value) <= high + 1e-9:
                continue
            (labelled if multiple in steps else faint).append(value)
    return labelled, faint


def _text(
    x: float, y: float, body: str, *, anchor: str = "start", size: int = 12, **extra: str
) -> str:
    attrs = "".join(f" {key.replace('_', '-')}='{value}'" for key, value in extra.items())
    return (
        f"<text x='{x:.1f}' y='{y:.1f}' font-size='{size}' text-anchor='{anchor}'"
        f"{attrs}>{escape(body)}</text>"
    )


def _render(chart: Chart) -> str:
    shown = [
        (index, s, [(x, y) for x, y in s.points if y is not None and y > 0 and x > 0])
        for index, s in enumerate(chart.series)
    ]
    xs = [x for _, _, points in shown for x, _ in points]
    ys = [y for _, _, points in shown for _, y in points]
    plot_w = WIDTH - LEFT - LEGEND
    plot_h = HEIGHT - TOP - BOTTOM
    parts = [
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{WIDTH}' height='{HEIGHT}' "
        f"viewBox='0 0 {WIDTH} {HEIGHT}' role='img' {FONT}>",
        f"<title>{escape(chart.alt or chart.title)}</title>",
        f"<rect width='{WIDTH}' height='{HEIGHT}' fill='#ffffff' rx='6'/>",
        _text(LEFT, 24, chart.title, size=15, font_weight="600", fill="#222"),
    ]
    if not xs:
        parts.append(_text(LEFT, TOP + plot_h / 2, "nothing measured", fill="#666"))
        parts.append("</svg>")
        return "\n".join(parts) + "\n"

    if chart.x_ticks:
        x_low = math.log10(min([*chart.x_ticks, *xs]))
        x_high = max(math.log10(max([*chart.x_ticks, *xs])), x_low + 0.3)
        x_labels = list(chart.x_ticks)
    else:
        x_low, x_high = _decades(xs)
        x_labels = [10.0**decade for decade in range(int(x_low), int(x_high) + 1)]
    y_low, y_high = _y_range(ys)

    def px(x: float) -> float:
        return LEFT + (math.log10(x) - x_low) / (x_high - x_low) * plot_w

    def py(y: float) -> float:
        return TOP + plot_h - (math.log10(y) - y_low) / (y_high - y_low) * plot_h

    labelled, faint = _ticks(y_low, y_high)
    for value in faint:
        y = py(value)
        parts.append(
            f"<line x1='{LEFT}' y1='{y:.1f}' x2='{LEFT + plot_w}' y2='{y:.1f}' stroke='#efefef'/>"
        )
    for value in labelled:
        y = py(value)
        parts.append(
            f"<line x1='{LEFT}' y1='{y:.1f}' x2='{LEFT + plot_w}' y2='{y:.1f}' stroke='#d0d0d0'/>"
        )
        parts.append(_text(LEFT - 8, y + 4, chart.y_format(value), anchor="end", fill="#444"))
    for value in x_labels:
        x = px(value)
        parts.append(
            f"<line x1='{x:.1f}' y1='{TOP}' x2='{x:.1f}' y2='{TOP + plot_h}' stroke='#d0d0d0'/>"
        )
        parts.append(
            _text(x, TOP + plot_h + 18, chart.x_format(value), anchor="middle", fill="#444")
        )
    parts.append(
        f"<rect x='{LEFT}' y='{TOP}' width='{plot_w}' height='{plot_h}' fill='none' stroke='#888'/>"
    )
    parts.append(_text(LEFT + plot_w / 2, HEIGHT - 14, chart.x_label, anchor="middle", fill="#222"))
    mid = TOP + plot_h / 2
    parts.append(
        _text(
            18,
            mid,
            chart.y_label,
            anchor="middle",
            fill="#222",
            transform=f"rotate(-90 18 {mid:.1f})",
        )
    )

    legend_x = LEFT + plot_w + 16
    legend_y = TOP + 6
    for index, series, points in shown:
        color = PALETTE[(index if series.color is None else series.color) % len(PALETTE)]
        dash = " stroke-dasharray='6 4'" if series.dashed else ""
        if points:
            coords = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in sorted(points))
            parts.append(
                f"<polyline points='{coords}' fill='none' stroke='{color}' stroke-width='2'{dash}/>"
            )
            parts.extend(
                f"<circle cx='{px(x):.1f}' cy='{py(y):.1f}' r='3' fill='{color}'/>"
                for x, y in points
            )
        parts.append(
            f"<line x1='{legend_x}' y1='{legend_y:.1f}' x2='{legend_x + 24}' y2='{legend_y:.1f}' "
            f"stroke='{color}' stroke-width='2'{dash}/>"
        )
        label = series.name if points else f"{series.name} (not measured)"
        parts.append(_text(legend_x + 30, legend_y + 4, label, size=11, fill="#222"))
        legend_y += 18
    if chart.note:
        parts.append(_text(legend_x, HEIGHT - 14, chart.note, size=10, fill="#666"))
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
