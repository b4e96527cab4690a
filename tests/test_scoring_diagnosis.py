"""Diagnosis while a process transmitter is stuck (pure): its stuck finding explains
the relations it breaks; they are not another transmitter's drift nor the process."""

from __future__ import annotations

import numpy as np

from twinmesh.node.scoring._diagnosis import diagnose


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
    # Without the stuck finding the same residuals are the process's.
    alone = diagnose(consistency=broken, stuck=[], **common)
    assert [x.key for x in alone] == ["machine:process_anomaly"]
