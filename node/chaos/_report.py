"""Chaos reports: text, JSON with the simulator report's fields, SVG timeline.

The JSON has the keys of ``twinmesh sim run --json`` (``sim/_report.py``:
scenario, seed, scale, ok, checkers, figures, faults, crashes, connectivity,
converged_at ...) so one tool reads both; ``mode`` says ``real``, and
figures that only a simulator can count (messages per write, trace hash)
are replaced by what a real run measures (proxy connections and bytes, a
hash of the recorded history). The SVG shows, per node, when it was cut off
or crashed, every operation it served (ok, failed, unknown), and when it
converged after the final heal.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from html import escape
from typing import Any

from twinmesh.sim._report import checkers_json

from ._harness import ChaosResult

__all__ = ["chaos_json", "chaos_svg", "chaos_text"]


def _num(x: float | None) -> float | None:
    return None if x is None or x == math.inf else round(x, 4)


def history_hash(r: ChaosResult) -> str:
    h = hashlib.sha256()
    for e in r.history:
        h.update(json.dumps(e.to_json(), sort_keys=True).encode())
    return h.hexdigest()


def _writes(r: ChaosResult) -> tuple[int, dict[str, int], int]:
    ops = r.history.ops()
    ok = Counter(o.invoke.f for o in ops if o.status == "ok" and o.invoke.f != "read")
    failed = sum(1 for o in ops if o.status == "fail" and o.invoke.f != "read")
    return sum(ok.values()), dict(sorted(ok.items())), failed


def _traffic(stats: dict[str, Any]) -> str:
    if stats.get("backend") == "netns":
        return (
            f"  traffic      {stats['packets']} packets, {stats['bytes'] / 1e6:.2f} MB sent on "
            f"the namespaces' WAN veths; {stats['cuts']} link cuts (blackhole routes), "
            f"{stats['cables_pulled']} times a node's WAN veths set down"
        )
    return (
        f"  traffic      {stats['connections']} gossip connections, "
        f"{stats['bytes'] / 1e6:.2f} MB through the proxies; refused while down "
        f"{stats['refused_down']}, reset by loss {stats['reset_by_loss']}, cut {stats['cut']}"
    )


def chaos_text(r: ChaosResult) -> str:
    verdict = "PASS" if r.ok else "FAIL"
    writes, kinds, failed = _writes(r)
    ops = r.history.ops()
    lines = [
        f"twinmesh chaos — {r.scenario.name}, seed {r.seed}, real processes, "
        f"schedule x{r.plan.scale:.3g}: {verdict}",
        f"  fleet        {len(r.plan.nodes)} node processes: {', '.join(r.plan.nodes)}; "
        f"gossip every {r.interval:g} s; "
        + ("network namespaces" if r.proxy_stats.get("backend") == "netns" else "link proxies"),
        f"  time         safety {r.safety_seconds:.1f} s real "
        f"({r.scenario.duration / r.plan.scale:.0f} s of scenario time), "
        f"wall {r.wall_seconds:.1f} s",
        f"  operations   {len(ops)} ({sum(1 for o in ops if o.invoke.f == 'read')} reads); "
        f"writes acknowledged {writes} "
        f"({', '.join(f'{k} {v}' for k, v in kinds.items())}); failed {failed}; "
        f"unknown {r.outcome.unknown['total']} (took effect {r.outcome.unknown['took_effect']}, "
        f"did not {r.outcome.unknown['did_not']}; never twice: see unknown-outcomes)",
        _traffic(r.proxy_stats),
    ]
    final_conflicts = max((len(f.queue) for f in r.finals.values()), default=0)
    resolutions = kinds.get("resolve", 0)
    lines.append(
        f"  conflicts    {r.conflicts_at_heal} open at heal (most at one node), "
        f"{final_conflicts} after convergence; {resolutions} resolved by reviewers"
    )
    if r.liveness_seconds is not None:
        lines.append(
            f"  convergence  {r.liveness_seconds:.2f} s after the final heal "
            f"({r.liveness_seconds / r.interval:.1f} gossip rounds); "
            f"bound {r.bound_seconds:.1f} s (back-off + reply timeout + "
            f"2 x (ceil(log2 {len(r.plan.nodes)})+2) rounds)"
        )
    else:
        lines.append(f"  convergence  NOT converged within {3 * r.bound_seconds:.0f} s of heal")
    lines.append("  mapping")
    for note in r.plan.mapping:
        lines.append(f"    {note}")
    if r.unmapped_workload:
        lines.append(
            "    workload kinds NOT exercised on real processes: " + ", ".join(r.unmapped_workload)
        )
    if r.faults:
        lines.append("  faults")
        for f in r.faults[:16]:
            # A fault still on at the end of the safety phase ends at the final heal.
            end = "" if f.end is None else f" – {min(f.end, r.plan.duration):.2f}s"
            lines.append(f"    {f.start:7.2f}s{end:<11} {f.kind:<16} {f.detail}")
        if len(r.faults) > 16:
            lines.append(f"    ... {len(r.faults) - 16} more (see the JSON report)")
    lines.append("  checkers")
    for v in r.outcome.verdicts:
        mark = "PASS" if v.ok else "FAIL"
        extra = "" if v.ok else f" ({v.failures} failures)"
        lines.append(f"    {mark} {v.name:<20} {v.checks:>8} checks{extra}")
        for d in v.details if not v.ok else ():
            lines.append(f"         - {d}")
    lines.append(f"  history      sha256 {history_hash(r)} ({len(r.history)} events)")
    lines.append(f"  reproduce    {r.command}")
    return "\n".join(lines)


def chaos_json(r: ChaosResult) -> dict[str, Any]:
    writes, kinds, failed = _writes(r)
    digests = {f.digest for f in r.finals.values()}
    return {
        "mode": "real",
        "backend": r.proxy_stats.get("backend", "proxy"),
        "scenario": r.scenario.name,
        "scenario_path": r.scenario.path,
        "seed": r.seed,
        "swarm": False,
        "scale": r.plan.scale,
        "ok": r.ok,
        "trace_hash": history_hash(r),  # of the recorded history: a real run is not replayable
        "command": r.command,
        "mapping": list(r.plan.mapping),
        "unmapped_workload": list(r.unmapped_workload),
        "checkers": checkers_json(r.outcome.verdicts),
        "figures": {
            "nodes": len(r.plan.nodes),
            "safety_seconds": _num(r.safety_seconds),
            "liveness_seconds": _num(r.liveness_seconds),
            "wall_seconds": _num(r.wall_seconds),
            "gossip_interval": r.interval,
            "events": len(r.history),
            "writes": writes,
            "writes_by_kind": kinds,
            "unavailable": failed,
            "unknown": r.outcome.unknown,
            "converged": r.liveness_seconds is not None,
            "rounds_after_heal": None
            if r.liveness_seconds is None
            else _num(r.liveness_seconds / r.interval),
            "seconds_after_heal": _num(r.liveness_seconds),
            "bound_seconds": _num(r.bound_seconds),
            "round_goal": math.ceil(math.log2(max(len(r.plan.nodes), 2))) + 2,
            "conflicts_at_heal": r.conflicts_at_heal,
            "conflicts_final": max((len(f.queue) for f in r.finals.values()), default=0),
            "resolutions": kinds.get("resolve", 0),
            "network": r.proxy_stats,
            "final_digest": next(iter(digests)) if len(digests) == 1 else None,
        },
        "faults": [
            {
                "kind": f.kind,
                "start": _num(f.start),
                "end": _num(None if f.end is None else min(f.end, r.plan.duration)),
                "detail": f.detail,
                "nodes": list(f.nodes),
            }
            for f in r.faults
        ],
        "crashes": {n: [[_num(a), _num(b)] for a, b in s] for n, s in r.crashes.items()},
        "connectivity": {n: [[_num(t), s] for t, s in v] for n, v in r.plan.status.items()},
        "converged_at": {n: _num(t) for n, t in r.converged_at.items()},
    }


def _el(tag: str, text: str | None = None, **attrs: object) -> str:
    parts = []
    for key, value in attrs.items():
        shown = f"{value:.1f}" if isinstance(value, float) else str(value)
        parts.append(f'{key.rstrip("_").replace("_", "-")}="{escape(shown)}"')
    head = f"<{tag} {' '.join(parts)}"
    return f"{head}/>" if text is None else f"{head}>{escape(text)}</{tag}>"


_OP_COLOURS = {"ok": "#2ca02c", "fail": "#d62728", "info": "#ff9f40"}


def chaos_svg(r: ChaosResult) -> str:
    """Per node: cut off / crashed spans, operations, convergence after heal."""
    names = list(r.plan.nodes)
    row = 34
    left, right, width = 110, 30, 1100
    plot_w = width - left - right
    heal = r.safety_seconds
    end = heal + max(r.liveness_seconds or r.bound_seconds, 0.5) + 0.5
    y0 = 60
    height = y0 + row * len(names) + 80
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        'font-family="sans-serif" font-size="11">',
        _el("rect", width="100%", height="100%", fill="white"),
    ]
    add = out.append
    status = "PASS" if r.ok else "FAIL"
    add(
        _el(
            "text",
            f"chaos {r.scenario.name} — seed {r.seed} — real processes — {status}",
            x=left,
            y=20,
            font_size=14,
            font_weight="bold",
        )
    )
    add(
        _el(
            "text",
            "band: red cut off, orange partly cut, black crashed; ticks: operations "
            "(green ok, red failed, orange unknown); blue: until converged after heal",
            x=left,
            y=40,
        )
    )

    def x(t: float) -> float:
        return left + plot_w * max(0.0, min(t, end)) / end

    ops_by_node: dict[str, list[tuple[float, str]]] = {n: [] for n in names}
    for op in r.history.ops():
        if op.invoke.node in ops_by_node and op.invoke.f != "read":
            ops_by_node[op.invoke.node].append((op.invoke.time, op.status))
    for i, n in enumerate(names):
        y = y0 + i * row
        add(_el("text", n, x=left - 6, y=y + 14, text_anchor="end"))
        add(_el("rect", x=left, y=y, width=x(heal) - left, height=18, fill="#eef5ee"))
        spans = r.plan.status.get(n, [])
        for j, (t, s) in enumerate(spans):
            t_end = spans[j + 1][0] if j + 1 < len(spans) else heal
            if s == "ok" or t_end <= t:
                continue
            colour = "#d62728" if s == "isolated" else "#ff9f40"
            add(_el("rect", x=x(t), y=y, width=max(x(t_end) - x(t), 0.8), height=18, fill=colour))
        for a, b in r.crashes.get(n, []):
            b = heal if b == math.inf else b
            add(_el("rect", x=x(a), y=y + 4, width=max(x(b) - x(a), 0.8), height=10, fill="black"))
        for t, s in ops_by_node[n]:
            add(
                _el(
                    "line",
                    x1=x(t),
                    y1=y + 20,
                    x2=x(t),
                    y2=y + 30,
                    stroke=_OP_COLOURS.get(s, "#555"),
                    stroke_width=1,
                )
            )
        c = r.converged_at.get(n)
        done = c if c is not None else end
        add(
            _el(
                "rect",
                x=x(heal),
                y=y + 2,
                width=max(x(done) - x(heal), 1.0),
                height=14,
                fill="#1f77b4" if c is not None else "#d62728",
                opacity=0.6,
            )
        )
    bottom = y0 + row * len(names)
    dash = {"stroke": "#2ca02c", "stroke_dasharray": "4,3"}
    add(_el("line", x1=x(heal), y1=y0 - 4, x2=x(heal), y2=bottom, **dash))
    add(_el("text", "final heal", x=x(heal) + 3, y=bottom + 14, fill="#2ca02c"))
    bound_x = x(heal + r.bound_seconds)
    purple = {"stroke": "#9467bd", "stroke_dasharray": "3,3"}
    add(_el("line", x1=bound_x, y1=y0 - 4, x2=bound_x, y2=bottom, **purple))
    add(_el("text", "bound", x=bound_x + 3, y=bottom + 26, fill="#9467bd"))
    for k in range(6):
        t = end * k / 5
        add(_el("text", f"{t:.1f}s", x=x(t), y=bottom + 44, text_anchor="middle", fill="#555"))
    add("</svg>")
    return "\n".join(out)
