"""Residual thresholds on the co-simulation's ``<name>.residual`` series.

Residual = observed - expected (node/cosim writes it), so a healthy machine's residual
is centred near zero with the model error as its spread; the baseline learns
both per asset from the warm-up. Absent residual series (no FMU for this
asset, or the co-simulation lane not deployed), this detector scores zero and
attributes nothing; when a series appears later the asset retrains (the
feature layout changed) and the reason says so.
"""

from __future__ import annotations

from collections import deque
from typing import ClassVar

import numpy as np

from ._baseline import Baseline
from ._detector import Batch, Detector, Scores

__all__ = ["ResidualThreshold"]


class ResidualThreshold(Detector):
    name: ClassVar[str] = "residual"
    version: ClassVar[str] = "1"

    def __init__(self, *, window: int = 5, limit: float = 6.0) -> None:
        self.window = window
        self.limit = limit
        self._mask = np.zeros(0, dtype=bool)
        self._hist: deque[np.ndarray] = deque(maxlen=window)

    def fit(self, baseline: Baseline, train: Batch, rng: np.random.Generator) -> None:
        self._mask = np.array(baseline.roles) == "residual"
        self._hist.clear()

    def score(self, batch: Batch) -> Scores:
        n, f = batch.z.shape
        contrib = np.zeros((n, f))
        if not self._mask.any():
            return Scores(
                detector=self.name, version=self.version, score=np.zeros(n), contrib=contrib
            )
        for i in range(n):
            self._hist.append(np.where(batch.valid[i], batch.z[i], 0.0))
            contrib[i] = np.where(self._mask, np.mean(self._hist, axis=0) / self.limit, 0.0)
        return Scores(
            detector=self.name,
            version=self.version,
            score=np.max(np.abs(contrib), axis=1),
            contrib=contrib,
        )
