"""EWMA control chart on standardised features (Roberts 1959; Montgomery,
*Introduction to Statistical Quality Control*, 7th ed., §9.2).

``e_t = lambda * z_t + (1 - lambda) * e_{t-1}`` with the asymptotic limit
``L * sqrt(lambda / (2 - lambda))``. A small lambda is sensitive to small
persistent shifts (a slowly wearing bearing, a creeping temperature) that a
rolling z-score with a high limit misses; L is set high because readings are
autocorrelated and a chart tuned for i.i.d. data would alarm daily.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from ._baseline import Baseline
from ._detector import Batch, Detector, Scores

__all__ = ["Ewma"]


class Ewma(Detector):
    name: ClassVar[str] = "ewma"
    version: ClassVar[str] = "1"

    def __init__(self, *, lam: float = 0.05, width: float = 8.0) -> None:
        self.lam = lam
        self.width = width
        self._limit = width * float(np.sqrt(lam / (2.0 - lam)))
        self._mask = np.zeros(0, dtype=bool)
        self._e = np.zeros(0)

    def fit(self, baseline: Baseline, train: Batch, rng: np.random.Generator) -> None:
        roles = np.array(baseline.roles)
        self._mask = baseline.stationary & (roles != "process")
        self._e = np.zeros(len(baseline.features))

    def score(self, batch: Batch) -> Scores:
        n, f = batch.z.shape
        contrib = np.zeros((n, f))
        lam = self.lam
        e = self._e
        for i in range(n):
            z = np.where(batch.valid[i], batch.z[i], e)  # a missing value holds the chart
            e = lam * z + (1.0 - lam) * e
            contrib[i] = np.where(self._mask, e / self._limit, 0.0)
        self._e = e
        return Scores(
            detector=self.name,
            version=self.version,
            score=np.max(np.abs(contrib), axis=1) if f else np.zeros(n),
            contrib=contrib,
        )

    def describe(self) -> dict[str, object]:
        return {"name": self.name, "version": self.version, "lambda": self.lam, "L": self.width}
