"""The simulator's view of the DTDL models agrees with the node's parser, and it ships."""

from __future__ import annotations

from pathlib import Path

import pytest

from twinmesh.adapters.synthetic import (
    DEFAULT_MODELS,
    EXAMPLE_CONFIG,
    MODELS_DIR,
    AssetSimulator,
    kind_telemetry,
    parse_config,
)
from twinmesh.node.dtdl import ModelRegistry, unit_symbol


@pytest.fixture(scope="module")
def registry() -> ModelRegistry:
    reg = ModelRegistry()
    reg.add_files([MODELS_DIR])
    return reg


@pytest.mark.parametrize("kind", sorted(DEFAULT_MODELS))
def test_units_and_ranges_match_the_node_parser(kind: str, registry: ModelRegistry) -> None:
    model = registry.get(DEFAULT_MODELS[kind])
    ours = kind_telemetry(kind)
    assert set(ours) == {t.name for t in model.telemetries}
    for t in model.telemetries:
        assert t.expected_range is not None
        info = ours[t.name]
        # The unit a sample carries must be the model's symbol, or the node converts it.
        assert info.unit == unit_symbol(t)
        assert (info.minimum, info.maximum) == (t.expected_range.minimum, t.expected_range.maximum)


@pytest.mark.parametrize("kind", sorted(DEFAULT_MODELS))
def test_the_physics_reports_exactly_the_model_telemetry(kind: str) -> None:
    doc = {"plant": {"site": "p"}, "asset": [{"name": "a", "kind": kind}]}
    (asset,) = parse_config(doc, base=Path(".")).assets
    tick = AssetSimulator(asset, seed=0, time_scale=1.0, ambient=20.0).tick()
    assert set(tick.values) == set(kind_telemetry(kind)) == set(asset.telemetry)


def test_the_example_config_ships_inside_the_package() -> None:
    # pyproject's package-data ("*.toml", "*.json") puts both into the wheel.
    assert EXAMPLE_CONFIG.parent == MODELS_DIR.parent
    assert EXAMPLE_CONFIG.is_file() and any(MODELS_DIR.glob("*.json"))
