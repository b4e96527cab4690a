"""Hypothesis profiles, and the ``mosquitto`` marker.

``ci`` (the default) is sized so the whole CRDT suite runs well under a minute
on two cores, derandomised so a run is repeatable. ``TWINMESH_HYPOTHESIS=thorough``
loads ``thorough``: many more examples, random seeds, for a nightly or a
pre-release soak.

``mosquitto`` marks every test that needs mosquitto or runs a case on it (the
``broker_kind == "mosquitto"`` cases of the MQTT adapter tests are marked
here; modules that need it say so in their ``pytestmark``). The README's test
command runs everything; without mosquitto these skip with a reason or run on
amqtt. ``.ci/run`` runs the whole suite with the OS brokers hidden, then only
``-m mosquitto`` with them, so both machine states are covered in one CI.
"""

from __future__ import annotations

import os

import pytest
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


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and callspec.params.get("broker_kind") == "mosquitto":
            item.add_marker(pytest.mark.mosquitto)
