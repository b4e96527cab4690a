"""A cutting spindle's vibration power as a relation (node/scoring/_spindle_power.py).

Readings from the synthetic plant's CNC physics (a seeded AssetSimulator); the
relation itself is pure numpy.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
from scoring_helpers import healthy_rows

from twinmesh.node.scoring._baseline import learn_baseline
from twinmesh.node.scoring._features import FEATURE_SET, roles_of
from twinmesh.node.scoring._spindle_power import (
    SpindlePower,
    fit_spindle_power,
    locate_spindle_power,
)

PLANT = """
[plant]
site = "s"
seed = 11
sample_interval = 0.5
time_scale = 1.0
[[asset]]
name = "{name}"
kind = "{kind}"
"""


def _rows(tmp_path, kind: str, frames: int, seed: int = 11):
    path = tmp_path / f"{kind}.toml"
    path.write_text(PLANT.format(name=f"{kind}-1", kind=kind))
    return healthy_rows(path, frames, seed)


def _law(names, x):
    roles = [roles_of(names, FEATURE_SET)[n] for n in names]
    at = locate_spindle_power(names, roles, FEATURE_SET.spindle_power, FEATURE_SET.impulsive)
    assert at is not None
    b = learn_baseline(
        x,
        names,
        roles,
        version=1,
        trained_at=0.0,
        reason="warm-up",
        laws=[functools.partial(fit_spindle_power, **at)],
    )
    return b, [r for r in b.relations if isinstance(r, SpindlePower)]


def test_the_law_learned_on_half_a_program_holds_over_every_step(tmp_path) -> None:
    # The part program is 115 s; the warm-up (60 s) sees loading and roughing.
    names, x = _rows(tmp_path, "cnc", 4800)
    b, laws = _law(names, x[:120])
    assert len(laws) == 1
    law = laws[0]
    assert names[law.target] == "spindleLoad"
    z = b.standardise(x)
    window = np.convolve(law.residual(z[120:]), np.ones(5) / 5, "valid")
    assert np.max(np.abs(window)) < 6.0
    # A spindle-load transmitter reading 5 % high: seen while roughing.
    biased = x.copy()
    biased[:, names.index("spindleLoad")] += 5.0
    drift = np.convolve(law.residual(b.standardise(biased)[120:]), np.ones(5) / 5, "valid")
    roughing = np.convolve(x[120:, names.index("spindleLoad")] > 60, np.ones(5) / 5, "valid")
    assert np.median(np.abs(drift[roughing == 1.0])) > 6.0


def test_a_motor_whose_vibration_ignores_its_load_has_no_such_law(tmp_path) -> None:
    names, x = _rows(tmp_path, "motor", 120)
    roles = [roles_of(names, FEATURE_SET)[n] for n in names]
    at = locate_spindle_power(names, roles, FEATURE_SET.spindle_power, FEATURE_SET.impulsive)
    assert at is not None  # the tags are there ...
    center, scale = np.median(x, axis=0), np.maximum(x.std(axis=0), 1e-9)
    assert fit_spindle_power((x - center) / scale, center, scale, **at) is None  # ... the law not


def test_the_signature_is_the_residuals_derivative(tmp_path) -> None:
    names, x = _rows(tmp_path, "cnc", 200)
    b, (law,) = _law(names, x[:120])
    z = b.standardise(x[130:131])
    for j in (law.target, law.speed, law.rms):
        dz = np.zeros_like(z)
        dz[0, j] = 1e-4
        numeric = float((law.residual(z + dz) - law.residual(z - dz))[0]) / 2e-4
        assert law.sensitivity(j, z[0]) == pytest.approx(numeric, rel=1e-4, abs=1e-9)
