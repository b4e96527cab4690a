"""Run reports: text for the terminal, JSON for machines, SVG for people.

The SVG is a timeline in the manner of Jepsen's ``timeline.html`` and
nemesis plots: one row per replica showing when it was cut off (fully or
partly) or crashed, a zoom on the liveness phase showing when each replica
converged, and each replica's lag (acknowledged writes it had not applied
yet) over the run. Hand-written SVG: no plotting dependency in the core.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from html import escape
from typing import Any

from ._checkers import Verdict
from ._runner import RunResult

__all__ = ["checkers_json", "result_json", "svg_timeline", "text_report"]


def checkers_json(verdicts: Iterable[Verdict]) -> dict[str, dict[str, Any]]:
    """Each checker's verdict as the JSON reports carry it (simulated and real runs alike)."""
    return {
        v.name: {
            "ok": v.ok,
            "checks": v.checks,
            "failures": v.failures,
            "details": list(v.details),
            "description": v.description,
        }
        for v in verdicts
    }


def _t(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    s = round(seconds)
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    text = f"{h}:{m:02d}:{s:02d}"
    return f"{d}d{text}" if d else text


def _bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def text_report(r: RunResult, *, verbose: bool = False) -> str:
    lines: list[str] = []
    mode = " (swarm draw)" if r.swarm else ""
    scale = "" if r.scale == 1 else f", schedule x{r.scale:g}"
    verdict = "PASS" if r.ok else "FAIL"
    lines.append(f"twinmesh sim — {r.scenario}, seed {r.seed}{mode}{scale}: {verdict}")
    more = " ..." if len(r.nodes) > 8 else ""
    lines.append(f"  fleet        {len(r.nodes)} replicas: {', '.join(r.nodes[:8])}{more}")
    simulated = r.safety_seconds + r.liveness_seconds
    ratio = simulated / r.wall_seconds if r.wall_seconds else math.inf
    lines.append(
        f"  time         simulated {_t(r.safety_seconds)} safety + "
        f"{_t(r.liveness_seconds)} liveness; "
        f"wall {r.wall_seconds:.2f} s ({ratio:,.0f}x real time); {r.events:,} events"
    )
    kinds = ", ".join(f"{k} {n}" for k, n in r.writes_by_kind.items())
    lines.append(
        f"  writes       {r.writes} acknowledged ({kinds}); "
        f"{r.unavailable} refused while a replica was down"
    )
    net = r.network
    dropped = ", ".join(f"{k} {v}" for k, v in net["dropped"].items()) or "none"
    lines.append(
        f"  traffic      {r.messages:,} messages, {_bytes(r.bytes)}: "
        f"{r.messages_per_write:.1f} messages and {_bytes(r.bytes_per_write)} per write; "
        f"dropped: {dropped}; duplicated {net['duplicated']}, reordered {net['reordered']}, "
        f"held by clogs {net['held_by_clog']}; snapshots {r.snapshots}"
    )
    lines.append(
        f"  conflicts    {r.conflicts_at_heal} open at heal (most at one replica), "
        f"{r.conflicts_final} after convergence; {r.resolutions} resolved by reviewers"
    )
    if r.rounds_after_heal is not None:
        wait = r.first_crossing_rounds or 0.0
        crossing = (
            "no link or replica was down at heal"
            if r.first_crossing_rounds is None
            else f"first message over a healed link after {wait:.1f} rounds (back-off)"
        )
        lines.append(
            f"  convergence  {r.rounds_after_heal:.1f} rounds "
            f"({r.liveness_seconds:.1f} s simulated) after heal; {crossing}, "
            f"spread {r.rounds_after_heal - wait:.1f} rounds; "
            f"goal ceil(log2 {len(r.nodes)})+2 = {r.round_goal}, checker bound {r.round_bound}; "
            f"catch-up {r.catch_up_messages:,} messages, {_bytes(r.catch_up_bytes)}"
        )
    else:
        lines.append(f"  convergence  NOT converged within {r.liveness_seconds:.0f} s after heal")
    if r.faults:
        lines.append("  faults")
        shown = r.faults if verbose else r.faults[:12]
        for f in shown:
            end = "" if f.end is None else f" – {_t(f.end)}"
            lines.append(f"    {_t(f.start):>9}{end:<12} {f.kind:<16} {f.detail}")
        if len(r.faults) > len(shown):
            lines.append(f"    ... {len(r.faults) - len(shown)} more (--verbose)")
    if r.crashes:
        crashes = "; ".join(
            f"{n} " + ", ".join(f"{_t(a)}–{_t(b) if b != math.inf else 'end'}" for a, b in spans)
            for n, spans in r.crashes.items()
        )
        lines.append(f"  crashes      {crashes}")
    if r.lag_times:
        worst = sorted(((max(v), n) for n, v in r.lag.items()), reverse=True)[:5]
        lines.append("  lag          max writes behind: " + ", ".join(f"{n} {m}" for m, n in worst))
    if r.swarm_draw is not None:
        lines.append(f"  swarm draw   {json.dumps(r.swarm_draw.describe())}")
    lines.append("  checkers")
    for v in r.verdicts:
        mark = "PASS" if v.ok else "FAIL"
        extra = "" if v.ok else f" ({v.failures} failures)"
        lines.append(f"    {mark} {v.name:<20} {v.checks:>8} checks{extra}")
        for d in v.details if not v.ok else ():
            lines.append(f"         - {d}")
    if r.verify_cache:
        lines.append(
            f"  signatures   {r.verify_cache['misses']:,} verified, "
            f"{r.verify_cache['hits']:,} memo hits; batches "
            f"{r.verify_cache.get('decode_misses', 0):,} decoded, "
            f"{r.verify_cache.get('decode_hits', 0):,} memo hits"
        )
    lines.append(f"  trace        sha256 {r.trace_hash} ({r.trace_events:,} records)")
    if not r.ok:
        lines.append(f"  reproduce    {r.command}")
    return "\n".join(lines)


def result_json(r: RunResult) -> dict[str, Any]:
    def num(x: float | None) -> float | None:
        return None if x is None or x == math.inf else round(x, 6)

    return {
        "scenario": r.scenario,
        "scenario_path": r.scenario_path,
        "seed": r.seed,
        "swarm": r.swarm,
        "scale": r.scale,
        "ok": r.ok,
        "trace_hash": r.trace_hash,
        "command": r.command,
        "checkers": checkers_json(r.verdicts),
        "figures": {
            "nodes": len(r.nodes),
            "simulated_seconds": num(r.safety_seconds + r.liveness_seconds),
            "safety_seconds": num(r.safety_seconds),
            "liveness_seconds": num(r.liveness_seconds),
            "wall_seconds": num(r.wall_seconds),
            "events": r.events,
            "writes": r.writes,
            "writes_by_kind": r.writes_by_kind,
            "unavailable": r.unavailable,
            "messages": r.messages,
            "bytes": r.bytes,
            "messages_per_write": num(r.messages_per_write),
            "bytes_per_write": num(r.bytes_per_write),
            "converged": r.converged,
            "rounds_after_heal": num(r.rounds_after_heal),
            "seconds_after_heal": num(r.liveness_seconds),
            "first_crossing_rounds": num(r.first_crossing_rounds),
            "round_goal": r.round_goal,
            "round_bound": r.round_bound,
            "conflicts_at_heal": r.conflicts_at_heal,
            "conflicts_final": r.conflicts_final,
            "resolutions": r.resolutions,
            "snapshots": r.snapshots,
            "catch_up_messages": r.catch_up_messages,
            "catch_up_bytes": r.catch_up_bytes,
            "duplicate_probes": r.probes,
            "network": r.network,
            "verify_cache": r.verify_cache,
            "final_digest": r.final_digest,
        },
        "swarm_draw": None if r.swarm_draw is None else r.swarm_draw.describe(),
        "faults": [
            {
                "kind": f.kind,
                "start": num(f.start),
                "end": num(f.end),
                "detail": f.detail,
                "nodes": list(f.nodes),
            }
            for f in r.faults
        ],
        "crashes": {n: [[num(a), num(b)] for a, b in spans] for n, spans in r.crashes.items()},
        "connectivity": {n: [[num(t), s] for t, s in v] for n, v in r.status.items()},
        "converged_at": {n: num(t) for n, t in r.converged_at.items()},
        "lag": {"times": [num(t) for t in r.lag_times], "per_replica": r.lag},
    }


_COLORS = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)


def _el(tag: str, text: str | None = None, **attrs: object) -> str:
    """One SVG element; attribute names use _ for - (stroke_width=...)."""
    parts = []
    for key, value in attrs.items():
        shown = f"{value:.1f}" if isinstance(value, float) else str(value)
        parts.append(f'{key.rstrip("_").replace("_", "-")}="{escape(shown)}"')
    head = f"<{tag} {' '.join(parts)}"
    return f"{head}/>" if text is None else f"{head}>{escape(text)}</{tag}>"


def svg_timeline(r: RunResult) -> str:
    """Who was cut off when, when each replica converged, and lag over time."""
    names = list(r.nodes)
    row = 16 if len(names) <= 20 else 10
    left, right, width = 120, 30, 1100
    plot_w = width - left - right
    heal = r.safety_seconds
    end = heal + max(r.liveness_seconds, 1e-9)
    y0 = 50
    timeline_h = row * len(names)
    zoom_y = y0 + timeline_h + 60
    zoom_h = row * len(names)
    lag_y = zoom_y + zoom_h + 60
    lag_h = 160
    height = lag_y + lag_h + 50
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        'font-family="sans-serif" font-size="11">',
        _el("rect", width="100%", height="100%", fill="white"),
    ]
    add = out.append
    status = "PASS" if r.ok else "FAIL"
    title = f"{r.scenario} — seed {r.seed} — {status} — trace {r.trace_hash[:16]}"
    add(_el("text", title, x=left, y=20, font_size=14, font_weight="bold"))

    def x(t: float) -> float:
        return left + plot_w * t / end

    def label(y: float, name: str) -> None:
        add(_el("text", name, x=left - 6, y=y + row - 4, text_anchor="end"))

    def ticks(y: float, to_x: object, times: list[float], fmt: object) -> None:
        for t in times:
            add(_el("text", fmt(t), x=to_x(t), y=y, text_anchor="middle", fill="#555"))  # type: ignore[operator]

    # Panel 1: connectivity and crashes over the whole run.
    legend = "connectivity (red: cut off, orange: partly cut, black: crashed, green: converged)"
    add(_el("text", legend, x=left, y=y0 - 8, font_weight="bold"))
    for i, n in enumerate(names):
        y = y0 + i * row
        label(y, n)
        add(_el("rect", x=left, y=y + 1, width=plot_w, height=row - 2, fill="#eef5ee"))
        spans = r.status.get(n, [])
        for j, (t, s) in enumerate(spans):
            t_end = min(spans[j + 1][0] if j + 1 < len(spans) else heal, heal)
            if s == "ok" or t_end <= t:
                continue
            color = "#d62728" if s == "isolated" else "#ff9f40"
            w = max(x(t_end) - x(t), 0.8)
            add(_el("rect", x=x(t), y=y + 1, width=w, height=row - 2, fill=color))
        for a, b in r.crashes.get(n, []):
            b = heal if b == math.inf else b
            w = max(x(b) - x(a), 0.8)
            add(_el("rect", x=x(a), y=y + 3, width=w, height=row - 6, fill="black"))
        c = r.converged_at.get(n)
        if c is not None:
            add(_el("circle", cx=x(c), cy=y + row / 2, r=3, fill="#2ca02c"))
    bottom = y0 + timeline_h
    dash = {"stroke": "#2ca02c", "stroke_dasharray": "4,3"}
    add(_el("line", x1=x(heal), y1=y0 - 4, x2=x(heal), y2=bottom + 4, **dash))
    add(_el("text", "heal", x=x(heal) + 3, y=bottom + 16, fill="#2ca02c"))
    ticks(bottom + 30, x, [end * k / 5 for k in range(6)], _t)

    # Panel 2: the liveness phase, zoomed.
    span = max(r.liveness_seconds, r.gossip_interval)
    zoom_title = (
        "after heal (zoom): bar until the replica held every write; "
        f"goal {r.round_goal} rounds, bound {r.round_bound}"
    )
    add(_el("text", zoom_title, x=left, y=zoom_y - 8, font_weight="bold"))

    def zx(t: float) -> float:
        return left + plot_w * (t - heal) / span

    for i, n in enumerate(names):
        y = zoom_y + i * row
        label(y, n)
        c = r.converged_at.get(n)
        done = c if c is not None else heal + span
        color = "#1f77b4" if c is not None else "#d62728"
        w = max(zx(done) - left, 1.0)
        add(_el("rect", x=left, y=y + 2, width=w, height=row - 4, fill=color, opacity=0.6))
    goal_t = heal + r.round_goal * r.gossip_interval
    if goal_t <= heal + span:
        purple = {"stroke": "#9467bd", "stroke_dasharray": "3,3"}
        add(_el("line", x1=zx(goal_t), y1=zoom_y, x2=zx(goal_t), y2=zoom_y + zoom_h, **purple))
        add(_el("text", "goal", x=zx(goal_t) + 3, y=zoom_y + zoom_h + 14, fill="#9467bd"))
    ticks(
        zoom_y + zoom_h + 28,
        zx,
        [heal + span * k / 5 for k in range(6)],
        lambda t: f"+{t - heal:.1f}s",
    )

    # Panel 3: lag over time.
    lag_title = "lag: acknowledged writes not yet applied, per replica"
    add(_el("text", lag_title, x=left, y=lag_y - 8, font_weight="bold"))
    add(_el("rect", x=left, y=lag_y, width=plot_w, height=lag_h, fill="none", stroke="#ccc"))
    peak = max((max(v) for v in r.lag.values() if v), default=0) or 1
    add(_el("text", str(peak), x=left - 6, y=lag_y + 10, text_anchor="end"))
    add(_el("text", "0", x=left - 6, y=lag_y + lag_h, text_anchor="end"))
    for i, n in enumerate(names):
        values = r.lag.get(n, [])
        if not values:
            continue
        pts = " ".join(
            f"{x(t):.1f},{lag_y + lag_h - lag_h * v / peak:.1f}"
            for t, v in zip(r.lag_times, values, strict=False)
        )
        color = _COLORS[i % len(_COLORS)]
        add(_el("polyline", points=pts, fill="none", stroke=color, stroke_width=1, opacity=0.8))
    add(_el("line", x1=x(heal), y1=lag_y, x2=x(heal), y2=lag_y + lag_h, **dash))
    ticks(lag_y + lag_h + 14, x, [end * k / 5 for k in range(6)], _t)
    legend_x = float(left)
    for i, n in enumerate(names[:10]):
        color = _COLORS[i % len(_COLORS)]
        add(_el("rect", x=legend_x, y=lag_y + lag_h + 24, width=10, height=10, fill=color))
        add(_el("text", n, x=legend_x + 14, y=lag_y + lag_h + 33))
        legend_x += 14 + 7 * len(n) + 12
    if len(names) > 10:
        add(_el("text", "... colours repeat", x=legend_x, y=lag_y + lag_h + 33, fill="#555"))
    add("</svg>")
    return "\n".join(out)
