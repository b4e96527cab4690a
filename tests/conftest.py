"""Hypothesis profiles.

``ci`` (the default) is sized so the whole CRDT suite runs well under a minute
on two cores, derandomised so a run is repeatable. ``TWINMESH_HYPOTHESIS=thorough``
loads ``thorough``: many more examples, random seeds, for a nightly or a
pre-release soak.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    max_examples=30,
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "thorough",
    max_examples=1_000,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile("thorough" if os.environ.get("TWINMESH_HYPOTHESIS") == "thorough" else "ci")
