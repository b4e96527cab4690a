"""The process relations of ``Consistency``: learned past the warm-up, trusted only once
they have predicted healthy frames they had not seen, and held where they were never
fitted; and diagnosis while a transmitter is stuck (pure, synthetic rows)."""

from __future__ import annotations

import numpy as np

from twinmesh.node.scoring._baseline import learn_baseline
from twinmesh.node.scoring._consistency import Consistency
from twinmesh.node.scoring._detector import Batch
from twinmesh.node.scoring._diagnosis import diagnose

FEATURES = ("current", "load", "speed")
ROLES = ("process", "process", "process")


def _rows(rng: np.random.Generator, n: int, *, swing: float, t0: int = 0) -> np.ndarray:
    t = np.arange(t0, t0 + n)
    load = 60 + swing * np.sin(t / 40.0) + rng.normal(0, 1.0, n)
    current = 5 + 0.3 * load + rng.normal(0, 0.1, n)
    speed = 1500 - 0.4 * load + rng.normal(0, 0.5, n)
    return np.column_stack([current, load, speed])


def _fitted(x: np.ndarray) -> tuple[Consistency, object]:
    b = learn_baseline(x, FEATURES, ROLES, version=1, trained_at=0.0, reason="t", min_r2=0.7)
    det = Consistency()
    valid = np.ones_like(x, dtype=bool)
    det.fit(b, Batch(x=x, z=b.standardise(x), valid=valid), np.random.default_rng(0))
    return det, b


def _learn(det: Consistency, b, x: np.ndarray) -> None:
    for row in b.standardise(x):
        det.learn(row, np.ones(len(row), dtype=bool))


def test_a_relation_raises_only_after_predicting_unseen_healthy_frames() -> None:
    rng = np.random.default_rng(1)
    det, b = _fitted(_rows(rng, 120, swing=10.0))
    assert det.relations and not det.trusted  # fitted, not yet trusted
    drifted = _rows(rng, 20, swing=10.0, t0=120)
    drifted[:, 0] += 3.0  # the current transmitter reads 3 A high
    z = b.standardise(drifted)
    early = det.score(Batch(x=drifted, z=z, valid=np.ones_like(z, dtype=bool)))
    assert float(early.score.max()) == 0.0  # untrusted relations never raise
    _learn(det, b, _rows(rng, 2 * det.refit_every, swing=10.0, t0=140))
    assert 0 in det.trusted  # current ~ load, speed predicted two periods
    late = det.score(Batch(x=drifted, z=z, valid=np.ones_like(z, dtype=bool)))
    assert float(np.abs(late.contrib[-1, 0])) >= 1.0
    best = det.hypotheses(len(drifted) - 1, late.contrib[-1])[0]
    assert FEATURES[best.feature] == "current" and best.unexplained < 0.5
    assert best.outside == 0.0  # the machine itself is where it was learned


def test_a_relation_that_fails_to_predict_stays_untrusted() -> None:
    rng = np.random.default_rng(2)
    det, b = _fitted(_rows(rng, 120, swing=10.0))
    bad = _rows(rng, det.refit_every, swing=10.0, t0=120)
    bad[:, 0] += np.linspace(0.0, 4.0, len(bad))  # unseen frames it does not predict
    _learn(det, b, bad)
    _learn(det, b, _rows(rng, det.refit_every, swing=10.0, t0=200))
    assert 0 not in det.trusted  # one good period after a failed one is not two


def test_outside_measures_the_distance_beyond_the_learned_range() -> None:
    rng = np.random.default_rng(3)
    x = _rows(rng, 120, swing=10.0)
    det, b = _fitted(x)
    assert det.outside(b.standardise(x)[60]) == 0.0  # a frame it learned
    far = b.standardise(np.array([[5 + 0.3 * 120, 120.0, 1500 - 0.4 * 120]]))[0]
    assert det.outside(far) > 0.5  # load 120 % after a warm-up of 50-70 %


def test_a_stuck_process_tag_explains_the_broken_relations() -> None:
    f = ("current", "load", "speed")
    zero = np.zeros(3)
    common = dict(
        features=f,
        roles=("process",) * 3,
        x=zero,
        center=zero,
        level=zero,
        level_by={},
        residual=zero,
        iforest=0.0,
        hypotheses=lambda: [],
        scale=np.ones(3),
        missing={},
        dropout_frames=6,
    )
    broken = np.array([1.5, 0.0, 1.2])
    found = diagnose(consistency=broken, stuck=["load"], **common)
    assert [x.key for x in found] == ["sensor:stuck:load"]
    alone = diagnose(consistency=broken, stuck=[], **common)
    assert [x.key for x in alone] == ["machine:process_anomaly"]
    assert alone[0].score < 1.0  # no hypothesis inside the learned range: held


def test_an_input_that_only_shows_its_noise_keeps_the_relation_from_raising() -> None:
    # The speed transmitter shows nothing but its noise in what was learned: its
    # coefficient is attenuated toward zero, so the relation is not trusted yet.
    rng = np.random.default_rng(5)

    def rows(n: int, t0: int) -> np.ndarray:
        x = _rows(rng, n, swing=10.0, t0=t0)
        x[:, 2] = 1500 + rng.normal(0, 0.5, n)
        return x

    det, b = _fitted(rows(120, 0))
    _learn(det, b, rows(4 * det.refit_every, 120))
    current = next(r for r in det.relations if r.target == 0)
    assert 2 in current.inputs and 0 not in det.trusted
