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

The operating envelope: a relation is a local model, learned over the part
of the duty cycle the warm-up saw. Outside it the line is an extrapolation
of a curve (a motor's current is sqrt(I_m^2 + (k * load)^2), not a line), and
its residual says more about the model than about the transmitter (measured on
bench/plants/heldout-plant-c.toml: a compressor whose load swings 35-85 % over
200 s, warm-up 60 s: a false current drift every cycle, 70 per healthy
asset-day). So a relation judges a frame only while each of its inputs lies
inside the range the relation was fitted on, widened by a tenth of that
range; outside it abstains (and the hypotheses leave it out). "Outside" is an
operating point that moved: two or more of the tied variables beyond their
range at once; one variable alone beyond it is judged, because that is what a
drifting transmitter looks like. Frames beyond the rows fitted on that every
other detector found healthy, with no finding, are kept, and once there are
``grow_after`` of them the relations are refitted on the warm-up plus those
frames: the envelope grows with the machine's own healthy operation, as a
recorded model version (the engine's retrain list says why). A refitted
relation whose r2 falls under ``alarm_r2`` (the curve is not a line over the
wider range) stops raising. This is the validity domain of a data-driven
model (Venkatasubramanian et al., Comput. Chem. Eng. 27 (2003), part III:
extrapolation is the known failure of process-history models).
The envelope learns only from operation that has been consistent for
``settle`` frames: a broken relation drops the frames collected so far, which
may be the ramp of the very drift it found. A physical law (a pump's curve,
``_pump_curve``; a spindle's vibration power, ``_spindle_power``:
``extrapolates``) has no envelope: it judges every frame its own ``valid`` allows.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ._baseline import AnyRelation, Baseline
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
        alarm_r2: float = 0.9,
        widen: float = 0.1,
        grow_after: int = 60,
        keep_rows: int = 2000,
        keep_r2: float = 0.7,
        settle: int = 240,
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
        self.widen = widen
        self.grow_after = grow_after
        self.keep_rows = keep_rows
        self.keep_r2 = keep_r2
        # Frames since a relation last broke (a finding): the envelope learns only
        # from operation that has been consistent for settle frames.
        self.settle = settle
        self._quiet = settle
        self.relations: tuple[AnyRelation, ...] = ()
        self._rows = np.zeros((0, 0))  # the standardised rows the relations were fitted on
        self._lo = np.zeros(0)  # envelope per feature (z), from _rows
        self._hi = np.zeros(0)
        self._beyond: list[np.ndarray] = []  # healthy rows outside the envelope
        self._outside = np.zeros((0, 0), dtype=bool)  # last batch: frame x relation abstained
        self._novel = np.zeros(0, dtype=bool)  # last batch: beyond the rows fitted on
        self._fit_lo = np.zeros(0)
        self._fit_hi = np.zeros(0)

    def __setstate__(self, state: dict[str, object]) -> None:
        # An artifact saved before the envelope existed: judge everywhere, as then.
        self.__init__()  # type: ignore[misc]
        self.__dict__.update(state)
        if not self.relations and self._baseline is not None:
            self.relations = self._baseline.relations

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
        self.relations = baseline.relations
        self._rows = z.copy()
        self._beyond = []
        self._set_envelope()

    def _may_raise(self, rel: AnyRelation) -> bool:
        # A physical law passed its own test of fit when it was fitted; its r2
        # over a warm-up that barely moved its target says nothing.
        return rel.extrapolates or rel.r2 >= self.alarm_r2

    def _set_envelope(self) -> None:
        f = self._rows.shape[1] if self._rows.ndim == 2 else 0
        if not len(self._rows):
            self._lo, self._hi = np.full(f, -np.inf), np.full(f, np.inf)
            self._fit_lo, self._fit_hi = self._lo, self._hi
            return
        lo, hi = self._rows.min(axis=0), self._rows.max(axis=0)
        pad = np.maximum(self.widen * (hi - lo), 0.25)
        self._fit_lo, self._fit_hi = lo, hi
        self._lo, self._hi = lo - pad, hi + pad

    def _out(self, z: np.ndarray, *, padded: bool = True) -> np.ndarray:
        """Per frame and feature: beyond the envelope (padded) or the fitted rows."""
        lo, hi = (self._lo, self._hi) if padded else (self._fit_lo, self._fit_hi)
        out = (z < lo) | (z > hi)
        tied = np.zeros(z.shape[1], dtype=bool)
        for rel in self.relations:
            if rel.extrapolates:
                continue  # a physical law has no envelope to leave
            tied[rel.target] = True
            tied[list(rel.inputs)] = True
        return out & tied

    @staticmethod
    def _moved(out: np.ndarray) -> np.ndarray:
        # An operating point moves several tied variables at once (less load:
        # less current, more speed); a transmitter fault moves one. Only the
        # former takes a relation out of its domain: a single variable beyond
        # its range is judged, since that is how a drift looks.
        return np.asarray(out.sum(axis=1) >= 2)

    # -- the envelope grows with healthy operation ---------------------------------------

    def beyond(self, frame: int) -> bool:
        """Frame ``frame`` of the last batch lay beyond the rows some relation was
        fitted on (in the envelope's margin, where it extrapolates, or outside),
        and ``settle`` frames after the relations last broke (see ``score``)."""
        return bool(frame < len(self._novel) and self._novel[frame])

    def keep_healthy(self, z: np.ndarray) -> None:
        """The engine found this out-of-envelope row healthy: learn from it."""
        self._beyond.append(np.where(np.isfinite(z), z, 0.0))

    def rebase(self, baseline: Baseline) -> None:
        """The engine's new model version (same centre and scale, these relations)."""
        self._baseline = baseline

    @property
    def fitted_rows(self) -> int:
        """How many standardised rows the current relations were fitted on."""
        return len(self._rows)

    def wants_growth(self) -> bool:
        # Only relations that may raise are worth widening; an asset whose
        # relations are all weak (a CNC's tool wear grows without end, forever
        # "beyond") stops growing instead of writing a model version a minute.
        strong = any(self._may_raise(r) for r in self.relations)
        return strong and len(self._beyond) >= self.grow_after

    def grow(self) -> tuple[tuple[AnyRelation, ...], str]:
        """Refit every relation (same target and inputs) on the rows fitted so far
        plus the healthy rows beyond the envelope; the new relations and why."""
        new = np.array(self._beyond)
        self._beyond = []
        before_lo, before_hi = self._lo.copy(), self._hi.copy()
        rows = np.vstack([self._rows, new])
        if len(rows) > self.keep_rows:
            # Keep the original warm-up and an even spread of what came after.
            head = self._rows[: min(len(self._rows), self.keep_rows // 4)]
            rest = rows[len(head) :]
            pick = np.linspace(0, len(rest) - 1, self.keep_rows - len(head)).astype(int)
            rows = np.vstack([head, rest[pick]])
        self._rows = rows
        refit = []
        for rel in self.relations:
            r = rel.refit(rows)
            # A relation that no longer explains keep_r2 of its target over the
            # wider range is not a relation there: dropped, as at the warm-up.
            # (A physical law has its own test of fit, in its refit.)
            if r is not None and (r.extrapolates or r.r2 >= self.keep_r2):
                refit.append(r)
        self.relations = tuple(refit)
        self._set_envelope()
        b = self._baseline
        names = b.features if b is not None else ()
        moved = sorted(
            {
                names[i]
                for rel in self.relations
                for i in rel.inputs
                if i < len(names)
                and (self._lo[i] < before_lo[i] - 1e-9 or self._hi[i] > before_hi[i] + 1e-9)
            }
        )
        r2 = ", ".join(f"{names[r.target]} r2 {r.r2:.3f}" for r in self.relations) or "none kept"
        why = (
            f"operating envelope widened ({', '.join(moved) or 'no input'}): relations refitted"
            f" on {len(rows)} healthy frames, {len(new)} of them beyond the learned range ({r2})"
        )
        return self.relations, why

    def score(self, batch: Batch) -> Scores:
        n, f = batch.z.shape
        contrib = np.zeros((n, f))
        b = self._baseline
        rels = self.relations
        if b is None or not rels:
            self._outside = np.zeros((n, 0), dtype=bool)
            return Scores(
                detector=self.name, version=self.version, score=np.zeros(n), contrib=contrib
            )
        z = np.where(batch.valid, batch.z, 0.0)
        res = np.zeros((n, f))
        self._outside = np.zeros((n, len(rels)), dtype=bool)
        out = self._out(z)
        moved = self._moved(out)
        self._novel = self._moved(self._out(z, padded=False))
        judged = np.zeros((n, f), dtype=bool)
        for k, rel in enumerate(rels):
            if rel.extrapolates:
                inside = rel.valid(z)
            else:
                inside = ~(moved & out[:, list(rel.inputs)].any(axis=1)) & rel.valid(z)
            self._outside[:, k] = ~inside
            # Outside the envelope the relation abstains: residual 0, not judged.
            res[:, rel.target] = np.where(inside, rel.residual(z), 0.0)
            judged[:, rel.target] |= inside
        self._zmean = np.zeros((n, f))
        self._rmean = np.zeros((n, f))
        strong = np.zeros(f, dtype=bool)
        for rel in rels:
            strong[rel.target] |= self._may_raise(rel)
        for i in range(n):
            self._hist.append(res[i])
            self._zhist.append(z[i])
            self._rmean[i] = np.mean(self._hist, axis=0)
            contrib[i] = np.where(strong & judged[i], self._rmean[i] / self.limit, 0.0)
            self._zmean[i] = np.mean(self._zhist, axis=0)
            # A broken relation is a drift or the edge of what the relations know;
            # either way the frames that led up to it must not widen the envelope
            # (they are the drift's ramp: a line refitted on them learns the drift
            # and then calls the healthy transmitter drifting the other way;
            # plant.toml variant seed 601: seven false current drifts after one
            # real one). Drop what was collected and wait for settle quiet frames.
            if np.max(np.abs(contrib[i])) >= 1.0:
                self._quiet = 0
                self._beyond = []
            else:
                self._quiet += 1
            self._novel[i] &= self._quiet >= self.settle
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
        if b is None or not self.relations or frame >= len(self._zmean):
            return []
        # Only the relations that judged this frame (inside their envelope) speak.
        rels = tuple(
            rel for rel, out in zip(self.relations, self._outside[frame], strict=True) if not out
        )
        if not rels:
            return []
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
            sig = np.array([rel.sensitivity(j, zbar) for rel in rels])
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
                    relations=len(rels),
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
    #: How many relations judged the frame. With one, every transmitter it ties
    #: explains its residual fully (parallel signatures): no residual isolates.
    relations: int = 0
