"""Telemetry charts drawn on the server as SVG: no chart library, no script.

One panel per series group: the observed series, its ``<name>.expected``
(co-simulation, dashed) on the same axes, and below it the residual or
anomaly score where those exist. Samples carrying a quality flag are drawn as
ringed red points and listed under the chart by flag name, because a colour
alone does not tell a reader what it means. Long windows are reduced to the
minimum and maximum of each pixel column (so a spike survives downsampling).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

__all__ = ["Point", "Series", "render_chart"]

WIDTH = 960
HEIGHT = 240
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 24, 30
COLUMNS = 480


@dataclass(frozen=True, slots=True, kw_only=True)
class Point:
    t: float
    v: float
    flags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Series:
    label: str
    points: Sequence[Point]
    css: str  # observed | expected | residual | score


def _reduce(points: Sequence[Point], t0: float, t1: float) -> list[Point]:
    """Min and max per pixel column, in time order; flagged points always kept."""
    if len(points) <= 2 * COLUMNS:
        return list(points)
    span = (t1 - t0) or 1.0
    cols: dict[int, list[Point]] = {}
    keep: list[Point] = []
    for p in points:
        if p.flags:
            keep.append(p)
            continue
        cols.setdefault(int((p.t - t0) / span * (COLUMNS - 1)), []).append(p)
    for col in cols.values():
        lo = min(col, key=lambda p: p.v)
        hi = max(col, key=lambda p: p.v)
        keep += [lo] if lo is hi else sorted((lo, hi), key=lambda p: p.t)
    return sorted(keep, key=lambda p: p.t)


def _nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.ceil(lo / step) * step
    ticks = []
    v = start
    while v <= hi + step * 1e-9:
        ticks.append(round(v, 10))
        v += step
    return ticks


def _fmt(v: float, step: float | None = None) -> str:
    """A tick label with as many decimals as the tick step needs (a 0.25 step
    labels 76.25, not a rounded 76.2 that names the wrong line)."""
    if step is None or step <= 0:
        return f"{v:.0f}" if abs(v) >= 100 else f"{v:.3g}"
    decimals = 0
    while decimals < 6 and abs(step * 10**decimals - round(step * 10**decimals)) > 1e-6:
        decimals += 1
    return f"{v:.{decimals}f}"


#: Time-axis steps, seconds: ticks fall on round clock times (every 2 s, 5 min, ...).
_TIME_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600)


def _time_ticks(t0: float, t1: float, n: int = 6) -> list[float]:
    span = t1 - t0
    if span <= 0:
        return [t0]
    step = next((s for s in _TIME_STEPS if span / s <= n), 43200 * math.ceil(span / 43200 / n))
    t = math.ceil(t0 / step) * step
    out = []
    while t <= t1 + 1e-9:
        out.append(float(t))
        t += step
    return out


def _time_label(t: float, span: float) -> str:
    d = dt.datetime.fromtimestamp(t, dt.UTC)
    return d.strftime("%H:%M:%S" if span < 6 * 3600 else "%d %b %H:%M")


def render_chart(
    *,
    title: str,
    unit: str,
    series: Sequence[Series],
    t0: float,
    t1: float,
    chart_id: str,
) -> Markup:
    pts = [p for s in series for p in s.points if math.isfinite(p.v)]
    w, h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    if not pts:
        lo, hi = 0.0, 1.0
    else:
        lo, hi = min(p.v for p in pts), max(p.v for p in pts)
        pad = (hi - lo) * 0.08 or max(abs(hi) * 0.05, 1.0)
        lo, hi = lo - pad, hi + pad
    span = (t1 - t0) or 1.0

    def x(t: float) -> float:
        return LEFT + (t - t0) / span * w

    def y(v: float) -> float:
        return TOP + (hi - v) / (hi - lo) * h

    out: list[str] = [
        f'<svg class="chart" id="{escape(chart_id)}" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'role="img" aria-labelledby="{escape(chart_id)}-title" preserveAspectRatio="none">',
        f'<title id="{escape(chart_id)}-title">{escape(title)}'
        f"{escape(f' ({unit})' if unit else '')}</title>",
        f'<rect class="plot" x="{LEFT}" y="{TOP}" width="{w}" height="{h}"/>',
    ]
    ticks = _nice_ticks(lo, hi)
    step = ticks[1] - ticks[0] if len(ticks) > 1 else None
    for v in ticks:
        yy = y(v)
        out.append(f'<line class="grid" x1="{LEFT}" x2="{LEFT + w}" y1="{yy:.1f}" y2="{yy:.1f}"/>')
        out.append(
            f'<text class="tick" x="{LEFT - 6}" y="{yy + 4:.1f}" text-anchor="end">'
            f"{escape(_fmt(v, step))}</text>"
        )
    for t in _time_ticks(t0, t1):
        xx = x(t)
        out.append(f'<line class="grid" x1="{xx:.1f}" x2="{xx:.1f}" y1="{TOP}" y2="{TOP + h}"/>')
        # Labels near an edge align inward so they are not cut off.
        edge = (t - t0) / span
        anchor = "start" if edge < 0.06 else "end" if edge > 0.94 else "middle"
        out.append(
            f'<text class="tick" x="{xx:.1f}" y="{HEIGHT - 10}" text-anchor="{anchor}">'
            f"{escape(_time_label(t, span))}</text>"
        )
    if unit:
        out.append(f'<text class="unit" x="6" y="{TOP + 10}">{escape(unit)}</text>')
    flagged: list[Point] = []
    for s in series:
        reduced = [p for p in _reduce(s.points, t0, t1) if math.isfinite(p.v)]
        if not reduced:
            continue
        path = " ".join(f"{x(p.t):.1f},{y(p.v):.1f}" for p in reduced)
        out.append(
            f'<polyline class="line {escape(s.css)}" points="{path}">'
            f"<title>{escape(s.label)}</title></polyline>"
        )
        if s.css == "observed":
            flagged += [p for p in reduced if p.flags]
    for p in flagged[:500]:
        out.append(
            f'<circle class="flag" cx="{x(p.t):.1f}" cy="{y(p.v):.1f}" r="4">'
            f"<title>{escape(', '.join(p.flags))} at {escape(_time_label(p.t, 1))} UTC: "
            f"{escape(_fmt(p.v))}</title></circle>"
        )
    if not pts:
        out.append(
            f'<text class="empty" x="{LEFT + w / 2}" y="{TOP + h / 2}" text-anchor="middle">'
            "no samples in this window</text>"
        )
    out.append("</svg>")
    return Markup("".join(out))
