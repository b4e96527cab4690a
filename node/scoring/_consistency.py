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

Which relations may raise (:meth:`Consistency.learn`): a warm-up of a minute
sees a slice of the duty cycle, and a relation fitted on it extrapolates
(measured: a pump's relations fitted on 120 frames left residuals of 13-17
sigma on the healthy frames that followed; a motor swung wider than its
warm-up broke its current relation with no fault). So the relations keep
learning from the frames that raised nothing, refitted every ``refit_every``
of them on all such frames so far (the warm-up first), and a relation earns
the right to raise by *prediction*: before each refit, the relation as it
stands is tried on the healthy frames it has not seen; when its ``window``
mean residual stayed within half the alarm limit on ``validations`` such
periods in a row, its own learned noise is known to describe the machine
and it may raise. This replaces a fixed r2 cut: a pump relation with r2 0.8
whose residual stays white raises, a tight relation that only fits the warm-up
does not, until it has learned the rest. Relations are kept (to isolate) at
r2 >= ``min_r2``. A frame is learned only when nothing fired (the engine
says so), so a fault a validated relation sees is never learned as normal;
one nothing sees yet may be (the warm-up's own limit, too).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ._baseline import Baseline, Relation, fit_relation
from ._detector import Batch, Detector, Scores

__all__ = ["Consistency", "Hypothesis"]


class Consistency(Detector):
    name: ClassVar[str] = "consistency"
    version: ClassVar[str] = "2"

    def __init__(
        self,
        *,
        window: int = 5,
        limit: float = 6.0,
        forget: float = 0.005,
        min_r2: float = 0.7,
        refit_every: int = 60,
        validations: int = 2,
        max_rows: int = 4000,
        reliability: float = 0.9,
    ) -> None:
        self.reliability = reliability
        self.min_r2 = min_r2
        self.refit_every = refit_every
        self.validations = validations
        self.max_rows = max_rows
        self.relations: tuple[Relation, ...] = ()
        self.trusted: set[int] = set()  # targets whose relation may raise
        self._passed: dict[int, int] = {}  # target -> validation periods passed in a row
        self._rows = np.zeros((0, 0))  # standardised healthy frames learned so far
        self._new: list[np.ndarray] = []  # ... since the last refit
        self._cols: list[int] = []  # the columns relations use (process + tonal)
        self._lo = np.zeros(0)  # per column of _cols: the learned range
        self._hi = np.zeros(0)
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
        process = [i for i, r in enumerate(baseline.roles) if r == "process"]
        self._cols = process + [i for i in baseline.tonal if i not in process]
        ok = np.all(train.valid[:, self._cols], axis=1) if len(train.z) else np.zeros(0, bool)
        self._rows = train.z[ok] if len(train.z) else np.zeros((0, len(baseline.features)))
        self._new = []
        self._passed = {}
        self.trusted = set()
        self._refit()
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
        if b is None or not self.relations:
            self._zmean = np.zeros((n, f))
            self._rmean = np.zeros((n, f))
            return Scores(
                detector=self.name, version=self.version, score=np.zeros(n), contrib=contrib
            )
        z = np.where(batch.valid, batch.z, 0.0)
        res = np.zeros((n, f))
        for rel in self.relations:
            res[:, rel.target] = rel.residual(z)
        self._zmean = np.zeros((n, f))
        self._rmean = np.zeros((n, f))
        strong = np.zeros(f, dtype=bool)
        for rel in self.relations:
            strong[rel.target] |= rel.target in self.trusted
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

    def learn(self, z: np.ndarray, valid: np.ndarray) -> None:
        """Frame ``z`` (standardised) raised nothing: learn it; every ``refit_every``
        such frames, validate the relations on them, then refit on all so far."""
        if self._baseline is None or not self._cols or not np.all(valid[self._cols]):
            return
        self._new.append(np.asarray(z, dtype=float))
        if len(self._new) < self.refit_every:
            return
        new = np.array(self._new)
        self._new = []
        k = max(min(self.window, len(new)), 1)
        for rel in self.relations:
            r = np.convolve(rel.residual(new), np.ones(k) / k, mode="valid")
            held = float(np.max(np.abs(r), initial=0.0)) <= self.limit / 2
            self._passed[rel.target] = self._passed.get(rel.target, 0) + 1 if held else 0
            if self._passed[rel.target] >= self.validations and self._exercised(rel):
                # Once earned, kept: a trusted relation gates what is learned, so
                # what it saw break is never learned and cannot fail it later.
                self.trusted.add(rel.target)
        rows = np.concatenate([self._rows, new]) if len(self._rows) else new
        if len(rows) > self.max_rows:
            # Thin the oldest half: the whole history stays represented, bounded.
            half = len(rows) // 2
            rows = np.concatenate([rows[:half:2], rows[half:]])
        self._rows = rows
        self._refit()

    def _exercised(self, rel: Relation) -> bool:
        """Every process input of ``rel`` moved well beyond its own noise in the frames learned.

        An input whose learned variation is mostly its noise has its coefficient
        attenuated toward zero (errors in variables: Fuller, *Measurement Error
        Models*, 1987, ch. 1; the factor is the reliability 1 - noise/total
        variance), so the relation breaks, with no fault, once that input moves
        (a pump's suction with the tank level). Noise variance: von Neumann's
        MSSD / 2 over the learned frames in order."""
        b = self._baseline
        # The vibration lines are a speed measurement: on a machine that runs at
        # one speed they do not move and their (small) coefficients do not matter.
        inputs = [i for i in rel.inputs if b is not None and b.roles[i] == "process"]
        x = self._rows[:, inputs]
        if len(x) < 3:
            return False
        var = x.var(axis=0)
        noise = np.mean(np.diff(x, axis=0) ** 2, axis=0) / 2.0
        reliability = 1.0 - noise / np.maximum(var, 1e-12)
        return bool(np.all(reliability >= self.reliability))

    def _refit(self) -> None:
        b = self._baseline
        if b is None or len(self._rows) < 3:
            self.relations = ()
            return
        process = [i for i, r in enumerate(b.roles) if r == "process"]
        rels = []
        for t in process:
            inputs = [i for i in self._cols if i != t]
            rel = fit_relation(self._rows, t, inputs)
            if rel is not None and rel.r2 >= self.min_r2:
                rels.append(rel)
        self.relations = tuple(rels)
        # The operating range the relations were fitted on (see outside()).
        used = self._rows[:, self._cols]
        self._lo = used.min(axis=0)
        self._hi = used.max(axis=0)
        kept = {r.target for r in rels}
        self.trusted &= kept
        self._passed = {t: n for t, n in self._passed.items() if t in kept}

    def outside(self, point: np.ndarray) -> float:
        """How far ``point`` (a full standardised frame) lies beyond the range the
        relations were fitted on, in spans of that range (0: inside). A linear
        relation is an approximation of the machine where it was learned; beyond,
        a broken relation says as much about the fit as about the transmitter."""
        if not self._cols or len(self._lo) != len(self._cols):
            return math.inf
        v = point[self._cols]
        span = np.maximum(self._hi - self._lo, 1e-9)
        over = np.maximum(np.maximum(v - self._hi, self._lo - v), 0.0) / span
        return float(over.max(initial=0.0))

    def describe(self) -> dict[str, object]:
        b = self._baseline
        names = b.features if b is not None else ()
        return {
            "name": self.name,
            "version": self.version,
            "learned_frames": len(self._rows) + len(self._new),
            "relations": [
                {
                    "target": names[r.target] if names else r.target,
                    "inputs": [names[i] if names else i for i in r.inputs],
                    "r2": round(r.r2, 4),
                    "may_raise": r.target in self.trusted,
                }
                for r in self.relations
            ],
        }

    def hypotheses(self, frame: int, contrib: np.ndarray) -> list[Hypothesis]:
        """Single-transmitter explanations of frame ``frame`` of the last batch, best first.

        ``contrib`` (that frame's row of contributions) is kept for callers; the
        residuals of every relation, weak ones too, come from the last batch."""
        b = self._baseline
        if b is None or not self.relations or frame >= len(self._zmean):
            return []
        rels = self.relations
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
                    outside=self.outside(zbar),
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
    outside: float = 0.0  # how far that point lies beyond the learned range (spans; 0: inside)
