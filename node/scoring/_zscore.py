"""Rolling z-score per cohort: each asset against its own baseline, minus the cohort's
common mode.

The z-score of each stationary, non-process feature is averaged over the last
``window`` frames (a moving average: one noisy reading never alarms). Assets of
one model form a cohort; with three or more members reporting, the median of
the other members' rolling z is subtracted, so that a plant-wide change
(ambient temperature, a shared supply) moves the cohort, not one asset.
"""

from __future__ import annotations

from collections import deque
from typing import ClassVar

import numpy as np

from ._baseline import Baseline
from ._detector import Batch, Detector, Scores

__all__ = ["Cohort", "RollingZ"]


class Cohort:
    """The latest rolling z of every member of one cohort, by feature name."""

    def __init__(self) -> None:
        self.latest: dict[str, dict[str, float]] = {}

    def common_mode(self, member: str, feature: str) -> float:
        others = [v[feature] for m, v in self.latest.items() if m != member and feature in v]
        if len(others) < 2:
            return 0.0
        return float(np.median(others))


class RollingZ(Detector):
    name: ClassVar[str] = "rolling-z"
    version: ClassVar[str] = "1"

    def __init__(self, *, member: str, cohort: Cohort, window: int = 5, limit: float = 6.0) -> None:
        self.member = member
        self.cohort = cohort
        self.window = window
        self.limit = limit
        self._mask = np.zeros(0, dtype=bool)
        self._hist: deque[np.ndarray] = deque(maxlen=window)
        self._features: tuple[str, ...] = ()

    def fit(self, baseline: Baseline, train: Batch, rng: np.random.Generator) -> None:
        roles = np.array(baseline.roles)
        self._mask = baseline.stationary & (roles != "process")
        # Thermal levels are watched even when they follow a slow cycle: a lost
        # cooling moves them far outside what the warm-up saw.
        self._mask |= roles == "thermal"
        self._features = baseline.features
        self._hist.clear()

    def score(self, batch: Batch) -> Scores:
        n, f = batch.z.shape
        contrib = np.zeros((n, f))
        names = [self._features[i] for i in np.flatnonzero(self._mask)]
        for i in range(n):
            row = np.where(batch.valid[i], batch.z[i], 0.0)
            self._hist.append(row)
            mean = np.mean(self._hist, axis=0)
            self.cohort.latest[self.member] = {
                name: float(mean[j])
                for name, j in zip(names, np.flatnonzero(self._mask), strict=True)
            }
            adj = mean.copy()
            for name, j in zip(names, np.flatnonzero(self._mask), strict=True):
                adj[j] -= self.cohort.common_mode(self.member, name)
            contrib[i] = np.where(self._mask, adj / self.limit, 0.0)
        return Scores(
            detector=self.name,
            version=self.version,
            score=np.max(np.abs(contrib), axis=1) if f else np.zeros(n),
            contrib=contrib,
        )
