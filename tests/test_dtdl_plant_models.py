"""The synthetic plant's models: all valid, and shaped the way the rest of twinmesh needs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from twinmesh.crdt._schema import FieldKind, Policy, ValueType
from twinmesh.node.dtdl import (
    TWINMESH_CONTEXT,
    ModelRegistry,
    Relationship,
    Telemetry,
    load_model_files,
    unit_symbol,
)

MODELS = Path(__file__).resolve().parent.parent / "plant-adapters" / "synthetic" / "models"
FILES = sorted(MODELS.glob("*.json"))
PLANT = "dtmi:twinmesh:plant:"


@pytest.fixture(scope="module")
def registry() -> ModelRegistry:
    reg = ModelRegistry()
    reg.add_files([MODELS])
    return reg


def test_the_plant_has_its_models(registry: ModelRegistry) -> None:
    assert list(registry) == [
        f"{PLANT}{name};1"
        for name in ("Asset", "CncMachine", "Entity", "Line", "Motor", "Pump", "Site")
    ]


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_every_shipped_model_validates(path: Path) -> None:
    # Each file with the files it references, which is all of them at most.
    result = load_model_files([MODELS])
    assert result.errors == ()
    (interface,) = [m for m in result.models if m.source == str(path)]
    doc = json.loads(path.read_text())
    assert doc["@context"][0] == "dtmi:dtdl:context;3" and TWINMESH_CONTEXT in doc["@context"]
    assert interface.id == doc["@id"]


def test_machines_extend_the_asset_base(registry: ModelRegistry) -> None:
    for name in ("Motor", "Pump", "CncMachine"):
        model = registry.get(f"{PLANT}{name};1")
        assert model.ancestors == (f"{PLANT}Asset;1", f"{PLANT}Entity;1")


@pytest.mark.parametrize(
    ("model", "telemetry"),
    [
        (
            "Motor",
            {
                "speed": ("AngularVelocity", "revolutionPerMinute"),
                "current": ("Current", "ampere"),
                "windingTemperature": ("Temperature", "degreeCelsius"),
                "vibrationRms": (None, None),
                "vibrationKurtosis": (None, None),
                "vibrationBand1x": (None, None),
                "vibrationBand2x": (None, None),
                "vibrationBandBearing": (None, None),
                "load": (None, None),
            },
        ),
        (
            "Pump",
            {
                "flowRate": ("VolumeFlowRate", "cubicMetrePerHour"),
                "dischargePressure": ("Pressure", "bar"),
                "suctionPressure": ("Pressure", "bar"),
                "vibrationRms": (None, None),
                "vibrationKurtosis": (None, None),
                "vibrationBand1x": (None, None),
                "vibrationBand2x": (None, None),
                "vibrationBandBearing": (None, None),
                "bearingTemperature": ("Temperature", "degreeCelsius"),
            },
        ),
        (
            "CncMachine",
            {
                "spindleSpeed": ("AngularVelocity", "revolutionPerMinute"),
                "spindleLoad": (None, None),
                "vibrationRms": (None, None),
                "vibrationKurtosis": (None, None),
                "vibrationBand1x": (None, None),
                "vibrationBand2x": (None, None),
                "vibrationBandBearing": (None, None),
                "spindleTemperature": ("Temperature", "degreeCelsius"),
                "toolWear": ("Length", "millimetre"),
            },
        ),
    ],
)
def test_telemetry_has_units_and_expected_ranges(
    registry: ModelRegistry, model: str, telemetry: dict[str, tuple[str | None, str | None]]
) -> None:
    found = {t.name: t for t in registry.get(f"{PLANT}{model};1").telemetries}
    assert set(found) == set(telemetry)
    for name, (semantic, unit) in telemetry.items():
        item = found[name]
        assert item.semantic_types == ((semantic,) if semantic else ())
        assert item.unit == unit
        # Data-quality range checks rely on every machine telemetry having a range.
        assert item.expected_range is not None
        assert item.expected_range.minimum is not None and item.expected_range.maximum is not None
        assert item.expected_range.minimum < item.expected_range.maximum
        # ...and a unit the data-quality checks can convert to.
        assert unit_symbol(item) is not None


def test_vibration_is_in_millimetres_per_second(registry: ModelRegistry) -> None:
    for name in ("Motor", "Pump", "CncMachine"):
        vibration = registry.get(f"{PLANT}{name};1").content("vibrationRms")
        assert isinstance(vibration, Telemetry) and unit_symbol(vibration) == "mm/s"


def test_entity_schemas_use_every_kind(registry: ModelRegistry) -> None:
    fields = registry.entity_schema(f"{PLANT}Pump;1").fields
    expected = {
        "nextMaintenanceDate": (FieldKind.SHARED, Policy.MIN, ValueType.DATE),
        "vibrationAlarmThreshold": (FieldKind.SHARED, Policy.STRICTER, ValueType.DOUBLE),
        "lifecycle": (FieldKind.SHARED, Policy.STRICTER, ValueType.ENUM),
        "responsibleTeam": (FieldKind.SHARED, Policy.HOME_WINS, ValueType.STRING),
        "serialNumber": (FieldKind.REPORTED, Policy.LATEST, ValueType.STRING),
        "displayLabel": (FieldKind.LABEL, Policy.LATEST, ValueType.STRING),
        "tags": (FieldKind.SET, Policy.LATEST, ValueType.STRING),
        "operatingHours": (FieldKind.COUNTER, Policy.LATEST, ValueType.INTEGER),
        "notes": (FieldKind.TEXT, Policy.LATEST, ValueType.STRING),
        "maintenanceLog": (FieldKind.LOG, Policy.LATEST, ValueType.ANY),
    }
    for name, (kind, policy, vtype) in expected.items():
        assert (fields[name].kind, fields[name].policy, fields[name].value_type) == (
            kind,
            policy,
            vtype,
        ), name
    assert fields["vibrationAlarmThreshold"].strictness == "lower"
    assert fields["minSuctionPressure"].strictness == "higher"
    assert fields["lifecycle"].enum_values[-1] == "decommissioned"  # the strictest state
    assert {n for n, f in fields.items() if f.kind is FieldKind.REPORTED} == {"serialNumber"}


def test_line_and_site_relationships_point_at_plant_models(registry: ModelRegistry) -> None:
    line = registry.get(f"{PLANT}Line;1")
    targets = {r.name: r.target for r in line.relationships}
    assert targets == {
        "motors": f"{PLANT}Motor;1",
        "pumps": f"{PLANT}Pump;1",
        "cncMachines": f"{PLANT}CncMachine;1",
    }
    site = registry.get(f"{PLANT}Site;1")
    (lines,) = site.relationships
    assert isinstance(lines, Relationship) and lines.target == f"{PLANT}Line;1"
    for relationship in (*line.relationships, *site.relationships):
        assert relationship.target in registry  # every target is a shipped model


def test_every_property_and_no_telemetry_becomes_a_field(registry: ModelRegistry) -> None:
    for dtmi in registry:
        model = registry.get(dtmi)
        fields = registry.entity_schema(dtmi).fields
        assert set(fields) == {p.name for p in model.properties}, dtmi
        assert not set(fields) & {t.name for t in model.telemetries}
