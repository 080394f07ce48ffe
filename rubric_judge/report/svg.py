"""Chart geometry for the report, drawn by the template as inline SVG.

This module computes shapes (rectangles, lines, texts with coordinates and CSS classes) and
never writes markup: the template turns a `Chart` into `<svg>` elements with Jinja's
autoescaping, so a model or dimension name cannot inject anything into a chart. Colours are CSS
classes (`c0`, `c1`, ...: one per run, the same everywhere on the page).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from rubric_judge.report.model import Comparison, Section

LABEL_W = 170  # left column for dimension / model names
PLOT_W = 440
RIGHT_W = 56  # value labels
BAR_H = 13
BAR_GAP = 4
GROUP_GAP = 16
AXIS_H = 26


@dataclass(frozen=True)
class Rect:
    x: float
    y: float
    w: float
    h: float
    cls: str
    title: str = ""


@dataclass(frozen=True)
class Line:
    x1: float
    y1: float
    x2: float
    y2: float
    cls: str


@dataclass(frozen=True)
class Circle:
    cx: float
    cy: float
    r: float
    cls: str
    title: str = ""


@dataclass(frozen=True)
class Text:
    x: float
    y: float
    text: str
    cls: str = "label"
    anchor: str = "start"  # start | middle | end


@dataclass(frozen=True)
class Chart:
    width: float
    height: float
    label: str  # accessible description (aria-label)
    rects: tuple[Rect, ...] = ()
    lines: tuple[Line, ...] = ()
    circles: tuple[Circle, ...] = ()
    texts: tuple[Text, ...] = ()


@dataclass
class _Canvas:
    rects: list[Rect] = field(default_factory=list)
    lines: list[Line] = field(default_factory=list)
    circles: list[Circle] = field(default_factory=list)
    texts: list[Text] = field(default_factory=list)

    def chart(self, width: float, height: float, label: str) -> Chart:
        return Chart(round(width, 1), round(height, 1), label, tuple(self.rects), tuple(self.lines), tuple(self.circles), tuple(self.texts))


class _Scale:
    def __init__(self, low: float, high: float, x0: float = LABEL_W, width: float = PLOT_W):
        if high <= low:
            high = low + 1.0
        self.low, self.high, self.x0, self.width = low, high, x0, width

    def __call__(self, value: float) -> float:
        value = min(max(value, self.low), self.high)
        return round(self.x0 + (value - self.low) / (self.high - self.low) * self.width, 2)


def leaderboard_chart(section: Section, fmt: str = "{:.3f}") -> Chart:
    """Bars per dimension (overall first), one per run, with the bootstrap interval as whiskers."""
    runs = section.runs
    groups = [("overall", "Overall"), *section.dimensions]
    low, high = section.scale
    values = [v for run in runs for cell in (run.overall, *run.dimensions.values()) for v in (cell.score, cell.ci_low, cell.ci_high) if v is not None]
    if values:
        low, high = min(low, min(values)), max(high, max(values))
    # Bars grow from 0 for weighted points (penalties go left of it), from the bottom of a scale.
    baseline = 0.0 if section.method == "weighted_points" else low
    low, high, ticks = nice_axis(low, high)
    scale = _Scale(low, high)
    canvas = _Canvas()
    y = 8.0
    for dimension, name in groups:
        group_top = y
        for run in runs:
            cell = run.overall if dimension == "overall" else run.dimensions.get(dimension)
            centre = y + BAR_H / 2
            if cell is not None and cell.score is not None:
                x0, x1 = sorted((scale(baseline), scale(cell.score)))
                interval = "" if cell.ci_low is None else f", 95% CI {fmt.format(cell.ci_low)} to {fmt.format(cell.ci_high)}"
                canvas.rects.append(Rect(x0, y, max(x1 - x0, 1.0), BAR_H, f"bar c{run.index % 8}",
                                         f"{run.label} - {name}: {fmt.format(cell.score)}{interval} (n={cell.samples})"))
                right = scale(cell.score)
                if cell.ci_low is not None and cell.ci_high is not None:
                    lo, hi = scale(cell.ci_low), scale(cell.ci_high)
                    canvas.lines.append(Line(lo, centre, hi, centre, "whisker"))
                    canvas.lines.append(Line(lo, centre - 4, lo, centre + 4, "whisker"))
                    canvas.lines.append(Line(hi, centre - 4, hi, centre + 4, "whisker"))
                    right = max(right, hi)
                canvas.texts.append(Text(right + 5, centre + 4, fmt.format(cell.score), "value"))
            else:
                canvas.texts.append(Text(scale(baseline) + 4, centre + 4, "no score", "value muted"))
            y += BAR_H + BAR_GAP
        canvas.texts.append(Text(LABEL_W - 10, (group_top + y - BAR_GAP) / 2 + 4, _fit(name), "label strong" if dimension == "overall" else "label", "end"))
        y += GROUP_GAP - BAR_GAP
    _axis(canvas, scale, ticks, 4, y, fmt_tick(ticks))
    if low < baseline < high:
        canvas.lines.append(Line(scale(baseline), 4, scale(baseline), y, "zero"))
    return canvas.chart(LABEL_W + PLOT_W + RIGHT_W, y + AXIS_H, f"Scores of {len(runs)} runs per dimension with 95% bootstrap intervals")


def distribution_chart(section: Section, bins: int = 20) -> Chart:
    """A histogram of task (sample) scores per run, on the leaderboard's axis."""
    low, high = section.scale
    scores = {run.index: [c.score for c in section.cards if c.run == run.index and c.score is not None and not c.excluded] for run in section.runs}
    every = [s for values in scores.values() for s in values]
    if every:
        low, high = min(low, min(every)), max(high, max(every))
    low, high, ticks = nice_axis(low, high)
    scale = _Scale(low, high)
    step = (high - low) / bins
    canvas = _Canvas()
    row_h = 44.0
    y = 8.0
    for run in section.runs:
        counts = [0] * bins
        for s in scores[run.index]:
            counts[min(int((s - low) / step), bins - 1)] += 1
        peak = max(counts) or 1
        for i, count in enumerate(counts):
            if not count:
                continue
            h = (row_h - 8) * count / peak
            x0, x1 = scale(low + i * step), scale(low + (i + 1) * step)
            canvas.rects.append(Rect(x0 + 0.5, y + row_h - 4 - h, max(x1 - x0 - 1, 1), h, f"bar c{run.index % 8}",
                                     f"{run.label}: {count} sample(s) scoring {low + i * step:.3g} to {low + (i + 1) * step:.3g}"))
        canvas.lines.append(Line(LABEL_W, y + row_h - 4, LABEL_W + PLOT_W, y + row_h - 4, "grid"))
        canvas.texts.append(Text(LABEL_W - 10, y + row_h / 2 + 4, _fit(run.label), "label", "end"))
        canvas.texts.append(Text(LABEL_W + PLOT_W + 6, y + row_h / 2 + 4, f"n={len(scores[run.index])}", "value muted"))
        y += row_h + 6
    _axis(canvas, scale, ticks, 4, y, fmt_tick(ticks))
    return canvas.chart(LABEL_W + PLOT_W + RIGHT_W, y + AXIS_H, "Distribution of sample scores per run")


def difference_chart(comparison: Comparison, dimension_names: dict[str, str], fmt: str = "{:+.3f}") -> Chart:
    """Paired differences a - b per dimension with their bootstrap intervals (a forest plot)."""
    rows = [r for r in comparison.paired if r.difference is not None]
    extent = max([abs(v) for r in rows for v in (r.difference, r.ci_low, r.ci_high) if v is not None] or [0.1])
    low, high, ticks = nice_axis(-extent, extent)
    scale = _Scale(low, high)
    canvas = _Canvas()
    y = 8.0
    for r in rows:
        centre = y + 9
        name = "Overall" if r.dimension == "overall" else dimension_names.get(r.dimension, r.dimension)
        if r.ci_low is not None and r.ci_high is not None:
            lo, hi = scale(r.ci_low), scale(r.ci_high)
            canvas.lines.append(Line(lo, centre, hi, centre, "whisker"))
            canvas.lines.append(Line(lo, centre - 5, lo, centre + 5, "whisker"))
            canvas.lines.append(Line(hi, centre - 5, hi, centre + 5, "whisker"))
        side = "a" if r.ci_low is not None and r.ci_low > 0 else "b" if r.ci_high is not None and r.ci_high < 0 else "none"
        interval = "" if r.ci_low is None else f", 95% CI {fmt.format(r.ci_low)} to {fmt.format(r.ci_high)}"
        canvas.circles.append(Circle(scale(r.difference), centre, 5, f"point better-{side}",
                                     f"{name}: {comparison.a.label} - {comparison.b.label} = {fmt.format(r.difference)}{interval} (n={r.samples})"))
        canvas.texts.append(Text(LABEL_W - 10, centre + 4, _fit(name), "label strong" if r.dimension == "overall" else "label", "end"))
        canvas.texts.append(Text(LABEL_W + PLOT_W + 6, centre + 4, fmt.format(r.difference), "value"))
        y += 22
    canvas.lines.append(Line(scale(0), 4, scale(0), y, "zero"))
    _axis(canvas, scale, ticks, 4, y, fmt_tick(ticks, signed=True))
    canvas.texts.append(Text(scale(low), y + AXIS_H + 6, f"\u2190 {comparison.b.label} better", "label muted"))
    canvas.texts.append(Text(scale(high), y + AXIS_H + 6, f"{comparison.a.label} better \u2192", "label muted", "end"))
    return canvas.chart(LABEL_W + PLOT_W + RIGHT_W, y + AXIS_H + 14, f"Paired differences {comparison.a.label} minus {comparison.b.label}")


def _fit(text: str, limit: int = (LABEL_W - 14) // 6) -> str:
    """A label that fits the label column (about 6 px a character at the chart's font size)."""
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "\u2026"


def _axis(canvas: _Canvas, scale: _Scale, ticks: Sequence[float], top: float, bottom: float, fmt: str) -> None:
    for tick in ticks:
        x = scale(tick)
        canvas.lines.append(Line(x, top, x, bottom, "grid"))
        canvas.texts.append(Text(x, bottom + 16, fmt.format(tick), "tick", "middle"))
    canvas.lines.append(Line(scale.x0, bottom, scale.x0 + scale.width, bottom, "axis"))


def nice_axis(low: float, high: float, target: int = 5) -> tuple[float, float, list[float]]:
    """An axis from a round number below `low` to one above `high` with ~`target` round ticks."""
    if high <= low:
        high = low + 1.0
    raw = (high - low) / target
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    start, end = math.floor(low / step + 1e-9) * step, math.ceil(high / step - 1e-9) * step
    count = round((end - start) / step)
    return start, end, [round(start + i * step, 10) for i in range(count + 1)]


def fmt_tick(ticks: Sequence[float], signed: bool = False) -> str:
    """A format showing every tick exactly with as few decimals as possible."""
    decimals = next((d for d in range(5) if all(abs(round(t, d) - t) < 1e-9 for t in ticks)), 4)
    return "{:" + ("+" if signed else "") + f".{decimals}f" + "}"
