"""Cross-sensor consistency: the residuals of the relations between process variables.

The baseline holds, per process variable, a ridge relation to the other
process variables learned in the warm-up (``Baseline.relations``). A reading
that breaks its relation — the current transmitter says 4 A more than the
load and speed imply — has a large standardised residual; a change of
operating point (more load: more current, less speed) keeps every relation.
Residuals are averaged over ``window`` frames.

Which transmitter is wrong (:meth:`Consistency.hypotheses`): a bias of
``d`` scales on variable *j* moves the residual of relation *k* by
``d * s_j[k]``, with ``s_j[k] = 1 / sigma_k`` when *j* is *k*'s target and
``-coef_kj / sigma_k`` when it is an input (the fault's *signature*: Gertler,
*Fault Detection and Diagnosis in Engineering Systems*, 1998, ch. 7,
directional residuals). For each variable the least-squares ``d`` and the
share of the residual vector it leaves unexplained say whether one faulty
transmitter explains what is seen. When two variables are so tightly tied
that their signatures are parallel (current and load of a motor), the
residuals alone cannot tell them apart; then the hypotheses are ranked by how
ordinary the operating point each implies is (its squared standardised
distance from the mean of the consistent frames seen so far, the warm-up
first): a current
transmitter reading 5 A high at a normal load implies a normal machine if the
current is wrong, and an unusual load *and* current if the load is.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ._baseline import Baseline
from ._detector import Batch, Detector, Scores

__all__ = ["Consistency", "Hypothesis"]


class Consistency(Detector):
    name: ClassVar[str] = "consistency"
    version: ClassVar[str] = "1"

    def __init__(
        self, *, window: int = 5, limit: float = 6.0, forget: float = 0.005, alarm_r2: float = 0.9
    ) -> None:
        # Relations below alarm_r2 never raise (measured: at r2 >= 0.7 a CNC's tool
        # wear and a pump's pressures alarmed 73 times per healthy asset-day); they
        # only help tell which transmitter broke the strong ones.
        self.alarm_r2 = alarm_r2
        self.window = window
        self.limit = limit
        self.forget = forget
        self._mu = np.zeros(0)
        self._var = np.ones(0)
        self._baseline: Baseline | None = None
        self._hist: deque[np.ndarray] = deque(maxlen=window)
        self._zhist: deque[np.ndarray] = deque(maxlen=window)
        self._zmean = np.zeros((0, 0))  # per frame of the last batch: window mean of z
        self._rmean = np.zeros((0, 0))  # ... and of every relation's residual

    def fit(self, baseline: Baseline, train: Batch, rng: np.random.Generator) -> None:
        self._baseline = baseline
        self._hist.clear()
        self._zhist.clear()
        # Where the operating point usually is: mean and variance of z over the
        # warm-up, then over every consistent frame (exponential forgetting), so
        # the duty cycle's whole range counts as ordinary, not just the warm-up's.
        z = np.where(train.valid, train.z, 0.0)
        self._mu = z.mean(axis=0) if len(z) else np.zeros(len(baseline.features))
        self._var = np.maximum(z.var(axis=0), 1.0) if len(z) else np.ones(len(baseline.features))

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
        self._zmean = np.zeros((n, f))
        self._rmean = np.zeros((n, f))
        strong = np.zeros(f, dtype=bool)
        for rel in b.relations:
            strong[rel.target] |= rel.r2 >= self.alarm_r2
        for i in range(n):
            self._hist.append(res[i])
            self._zhist.append(z[i])
            self._rmean[i] = np.mean(self._hist, axis=0)
            contrib[i] = np.where(strong, self._rmean[i] / self.limit, 0.0)
            self._zmean[i] = np.mean(self._zhist, axis=0)
            if np.max(np.abs(contrib[i])) < 0.5:
                a = self.forget
                dz = z[i] - self._mu
                self._mu = self._mu + a * dz
                self._var = (1.0 - a) * (self._var + a * dz * dz)
        return Scores(
            detector=self.name,
            version=self.version,
            score=np.max(np.abs(contrib), axis=1),
            contrib=contrib,
        )

    def hypotheses(self, frame: int, contrib: np.ndarray) -> list[Hypothesis]:
        """Single-transmitter explanations of frame ``frame`` of the last batch, best first.

        ``contrib`` (that frame's row of contributions) is kept for callers; the
        residuals of every relation, weak ones too, come from the last batch."""
        b = self._baseline
        if b is None or not b.relations or frame >= len(self._zmean):
            return []
        rels = b.relations
        r = np.array([self._rmean[frame][rel.target] for rel in rels])
        norm = float(np.linalg.norm(r))
        if norm == 0.0:
            return []
        zbar = self._zmean[frame]
        process = sorted(
            {rel.target for rel in rels}
            | {i for rel in rels for i in rel.inputs if b.roles[i] == "process"}
        )
        out = []
        for j in process:
            sig = np.array(
                [
                    (1.0 if rel.target == j else 0.0)
                    - (float(rel.coef[rel.inputs.index(j)]) if j in rel.inputs else 0.0)
                    for rel in rels
                ]
            ) / np.array([rel.sigma for rel in rels])
            ss = float(sig @ sig)
            if ss == 0.0:
                continue
            d = float(r @ sig) / ss
            left = float(np.linalg.norm(r - d * sig)) / norm
            implied = zbar[process].copy()
            implied[process.index(j)] -= d
            dev = (implied - self._mu[process]) ** 2 / np.maximum(self._var[process], 1e-6)
            misfit = (left * norm) ** 2 * len(self._hist)  # chi-square of what is left
            out.append(
                Hypothesis(
                    feature=j,
                    shift=d,
                    unexplained=left,
                    implausibility=float(dev.sum()),
                    cost=misfit + float(dev.sum()),
                )
            )
        # Cost = -2 log likelihood (up to a constant): what the bias leaves
        # unexplained plus how unusual the operating point it implies is.
        out.sort(key=lambda h: (h.unexplained >= 0.5, h.cost))
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class Hypothesis:
    """ "Transmitter ``feature`` reads ``shift`` scales off": how well that explains it."""

    feature: int
    shift: float  # in the feature's baseline scales
    unexplained: float  # |r - shift * signature| / |r|: 0 = fully explained
    cost: float  # misfit chi-square + implausibility: lower is likelier
    implausibility: float  # squared distance of the operating point it implies from the usual one
