"""IsolationForest (Liu, Ting, Zhou, ICDM 2008) trained on the healthy warm-up.

Scored in micro-batches: one ``score_samples`` call per batch of frames costs
about what one single-row call does, so the service hands it every frame
closed since the last read. The score is normalised against the training
window: ``(s - median) / (max - median)`` of the training scores, divided by
``margin`` — 1.0 means "``margin`` times further out than anything healthy".
It attributes nothing (the forest says *that*, not *which*); diagnosis uses
the other detectors' attributions.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from sklearn.ensemble import IsolationForest

from ._baseline import Baseline
from ._detector import Batch, Detector, Scores

__all__ = ["IForest"]


class IForest(Detector):
    name: ClassVar[str] = "iforest"
    version: ClassVar[str] = "1"

    def __init__(self, *, trees: int = 64, margin: float = 2.0) -> None:
        self.trees = trees
        self.margin = margin
        self._model: IsolationForest | None = None
        self._cols: np.ndarray = np.zeros(0, dtype=int)
        self._med = 0.0
        self._span = 1.0

    def fit(self, baseline: Baseline, train: Batch, rng: np.random.Generator) -> None:
        roles = np.array(baseline.roles)
        self._cols = np.flatnonzero(baseline.stationary & (roles != "process"))
        if len(self._cols) == 0 or len(train.z) < 16:
            self._model = None
            return
        z = np.where(train.valid, train.z, 0.0)[:, self._cols]
        self._model = IsolationForest(
            n_estimators=self.trees, random_state=int(rng.integers(2**31 - 1))
        ).fit(z)
        s = -self._model.score_samples(z)
        self._med = float(np.median(s))
        self._span = max(float(np.max(s)) - self._med, 1e-6)

    def score(self, batch: Batch) -> Scores:
        n = len(batch.z)
        if self._model is None or n == 0:
            return Scores(detector=self.name, version=self.version, score=np.zeros(n), contrib=None)
        z = np.where(batch.valid, batch.z, 0.0)[:, self._cols]
        s = -self._model.score_samples(z)
        return Scores(
            detector=self.name,
            version=self.version,
            score=np.maximum((s - self._med) / self._span / self.margin, 0.0),
            contrib=None,
        )

    def describe(self) -> dict[str, object]:
        return {"name": self.name, "version": self.version, "trees": self.trees}
