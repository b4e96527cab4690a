"""Cross-sensor consistency: the residuals of the relations between process variables.

The baseline holds, per process variable, a ridge relation to the other
process variables learned in the warm-up (``Baseline.relations``). A reading
that breaks its relation — the current transmitter says 4 A more than the
load and speed imply — has a large standardised residual; a change of
operating point (more load: more current, less speed) keeps every relation.
Residuals are averaged over ``window`` frames. ``isolate`` is used by the
diagnosis to tell which transmitter is wrong.
"""

from __future__ import annotations

from collections import deque
from typing import ClassVar

import numpy as np

from ._baseline import Baseline
from ._detector import Batch, Detector, Scores

__all__ = ["Consistency"]


class Consistency(Detector):
    name: ClassVar[str] = "consistency"
    version: ClassVar[str] = "1"

    def __init__(self, *, window: int = 5, limit: float = 6.0) -> None:
        self.window = window
        self.limit = limit
        self._baseline: Baseline | None = None
        self._hist: deque[np.ndarray] = deque(maxlen=window)
        self._zhist: deque[np.ndarray] = deque(maxlen=window)

    def fit(self, baseline: Baseline, train: Batch, rng: np.random.Generator) -> None:
        self._baseline = baseline
        self._hist.clear()
        self._zhist.clear()

    def score(self, batch: Batch) -> Scores:
        n, f = batch.z.shape
        contrib = np.zeros((n, f))
        b = self._baseline
        if b is None or not b.relations:
            return Scores(
                detector=self.name, version=self.version, score=np.zeros(n), contrib=contrib
            )
        z = np.where(batch.valid, batch.z, 0.0)
        res = np.zeros((n, f))
        for rel in b.relations:
            res[:, rel.target] = rel.residual(z)
        for i in range(n):
            self._hist.append(res[i])
            self._zhist.append(z[i])
            contrib[i] = np.mean(self._hist, axis=0) / self.limit
        return Scores(
            detector=self.name,
            version=self.version,
            score=np.max(np.abs(contrib), axis=1),
            contrib=contrib,
        )

    def isolate(self, suspect: int) -> float:
        """Largest |mean residual| / limit of the relations that do not use ``suspect``.

        Small: everything that does not depend on the suspect agrees, so the
        suspect's transmitter is the odd one out."""
        b = self._baseline
        if b is None or not self._zhist:
            return float("inf")
        z = np.array(self._zhist)
        worst = 0.0
        checked = 0
        for rel in b.relations:
            if rel.target == suspect:
                continue
            sub = rel if suspect not in rel.inputs else b.without.get((rel.target, suspect))
            if sub is None:
                continue
            checked += 1
            worst = max(worst, abs(float(np.mean(sub.residual(z)))) / self.limit)
        return worst if checked else float("inf")
