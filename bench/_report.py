"""A tiny shared helper for twinmesh benchmarks.

Machines are shared and noisy, so a benchmark never prints a bare figure: it
prints the figure beside a reference measured in the same run, and the ratio
between them is what the goal is stated on. Each row reads
``figure | reference | ratio | goal | met?``.

Usage::

    report = Report("crdt")
    report.row("bytes per delta", 41.2, "B", reference="pycrdt", ref_value=27.0,
               ref_unit="B", goal="<= 64 B", met=41.2 <= 64)
    report.print()
    report.write_json(path)  # optional

Timing helpers (``time.perf_counter``): ``best_of`` gives the best time of a
callable over a few runs; ``best_of_each`` times a figure and its reference
interleaved (a, b, a, b, ...) so that a noisy neighbour slows both alike.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Report", "Row", "best_of", "best_of_each", "fmt"]


def fmt(value: float | None, unit: str = "") -> str:
    """A number with about four significant digits and its unit."""
    if value is None:
        return "—"
    a = abs(value)
    if a == 0 or 0.01 <= a < 100_000:
        text = f"{value:.4g}" if a < 1000 else f"{value:,.0f}"
    else:
        text = f"{value:.3e}"
    return f"{text} {unit}".rstrip()


@dataclass(slots=True)
class Row:
    figure: str
    value: float | None
    unit: str = ""
    reference: str = ""
    ref_value: float | None = None
    ref_unit: str = ""
    ratio: float | None = None
    goal: str = ""
    met: bool | None = None
    note: str = ""


@dataclass
class Report:
    title: str
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def row(
        self,
        figure: str,
        value: float | None,
        unit: str = "",
        *,
        reference: str = "",
        ref_value: float | None = None,
        ref_unit: str = "",
        ratio: float | None = None,
        goal: str = "",
        met: bool | None = None,
        note: str = "",
    ) -> Row:
        """Add one row. ``ratio`` defaults to value / ref_value when both exist."""
        if ratio is None and value is not None and ref_value:
            ratio = value / ref_value
        r = Row(figure, value, unit, reference, ref_value, ref_unit, ratio, goal, met, note)
        self.rows.append(r)
        return r

    def note(self, text: str) -> None:
        self.notes.append(text)

    def table(self) -> str:
        head = ["figure", "value", "reference", "ratio", "goal", "met?"]
        body = []
        for r in self.rows:
            ref = f"{r.reference} {fmt(r.ref_value, r.ref_unit)}" if r.reference else ""
            if r.reference and r.ref_value is None:
                ref = r.reference
            met = "—" if r.met is None else ("yes" if r.met else "NO")
            ratio = "" if r.ratio is None else f"{r.ratio:.3g}"
            body.append([r.figure, fmt(r.value, r.unit), ref, ratio, r.goal, met])
        widths = [max(len(x[i]) for x in [head, *body]) for i in range(len(head))]
        lines = [
            "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"
            for cells in [head, ["-" * w for w in widths], *body]
        ]
        return "\n".join(lines)

    def print(self) -> None:
        print(f"\n== {self.title}")
        print(self.table())
        for r in self.rows:
            if r.note:
                print(f"  * {r.figure}: {r.note}")
        for n in self.notes:
            print(f"  * {n}")
        sys.stdout.flush()

    def as_dict(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "python": sys.version.split()[0],
            "machine": platform.machine(),
            "rows": [asdict(r) for r in self.rows],
            "notes": list(self.notes),
        }

    def write_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.as_dict(), indent=2) + "\n")


def best_of(
    run: Callable[[], Any], *, repeat: int = 3, setup: Callable[[], Any] | None = None
) -> tuple[float, list[float]]:
    """Best wall time of ``run()`` over ``repeat`` runs (``setup()`` untimed before each).

    If ``setup`` is given, its result is passed to ``run``.
    """
    samples = []
    for _ in range(repeat):
        arg = setup() if setup is not None else None
        t0 = time.perf_counter()
        if setup is not None:
            run(arg)  # type: ignore[call-arg]
        else:
            run()
        samples.append(time.perf_counter() - t0)
    return min(samples), samples


def best_of_each(
    *runs: Callable[[], Any] | tuple[Callable[[], Any], Callable[[Any], Any]],
    repeat: int = 3,
) -> list[float]:
    """Best time of each run, the runs interleaved (a, b, a, b, ...) so that a
    noisy neighbour slows a figure and its reference alike.

    A run is a callable, or a ``(setup, run)`` pair: ``run(setup())`` with the
    setup untimed.
    """
    best = [float("inf")] * len(runs)
    for _ in range(repeat):
        for i, spec in enumerate(runs):
            if isinstance(spec, tuple):
                setup, fn = spec
                arg = setup()
                t0 = time.perf_counter()
                fn(arg)
            else:
                t0 = time.perf_counter()
                spec()
            best[i] = min(best[i], time.perf_counter() - t0)
    return best
