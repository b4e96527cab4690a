"""plant.toml: defaults, the shipped example, and errors that name the key."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from twinmesh.adapters.synthetic import (
    EXAMPLE_CONFIG,
    FAULT_KINDS,
    MotorParams,
    PlantConfigError,
    load_config,
    parse_config,
)
from twinmesh.cli import main

BASE: dict[str, Any] = {
    "plant": {"site": "plant-a"},
    "asset": [
        {
            "name": "motor-1",
            "kind": "motor",
            "fault": [{"kind": "stuck_sensor", "telemetry": "speed", "start": 5, "duration": 80}],
        },
        {"name": "pump-1", "kind": "pump"},
    ],
}


def _parse(doc: dict[str, Any], base: Path = Path("/plants")) -> Any:
    return parse_config(doc, base=base)


def test_defaults() -> None:
    c = _parse(BASE)
    motor, pump = c.assets
    assert (c.area, c.seed, c.sample_interval, c.time_scale) == ("area-1", 0, 0.5, 1.0)
    assert c.out == Path("/plants/plant-out")
    assert c.namespace_uri == "urn:twinmesh:plant:plant-a"
    assert c.opcua.endpoint == "opc.tcp://127.0.0.1:4840/twinmesh/plant-a/"
    assert c.opcua.security == "None" and not c.opcua.history
    assert (c.mqtt.host, c.mqtt.port, c.mqtt.client_id) == (
        "127.0.0.1",
        1883,
        "twinmesh-sim-plant-a",
    )
    assert motor.entity == "plant-a/line-1/motor-1"
    assert motor.topic_prefix == "plant-a/area-1/line-1/cell-1/motor-1"
    assert (motor.protocol, motor.model) == ("opcua", "dtmi:twinmesh:plant:Motor;1")
    assert (pump.protocol, pump.model) == ("mqtt", "dtmi:twinmesh:plant:Pump;1")
    assert motor.params == MotorParams()
    (fault,) = motor.faults
    assert (fault.id, fault.kind, fault.telemetry, fault.end) == (
        "motor-1-stuck-sensor-1",
        "stuck_sensor",
        "speed",
        85.0,
    )


def test_the_shipped_example_loads_and_uses_every_fault_kind() -> None:
    c = load_config(EXAMPLE_CONFIG)
    assert c.out == EXAMPLE_CONFIG.parent / "plant-out"
    assert {a.kind for a in c.assets} == {"motor", "pump", "cnc"}
    assert {a.protocol for a in c.assets} == {"opcua", "mqtt"}
    assert {f.kind for a in c.assets for f in a.faults} == set(FAULT_KINDS)
    assert c.opcua.history
    # Stuck faults outlast the node's default stuck window (10 readings over 60 s).
    for a in c.assets:
        for f in a.faults:
            if f.kind == "stuck_sensor":
                assert f.duration > 60 + 10 * a.sample_interval


def test_overrides() -> None:
    c = _parse(BASE).with_overrides(out=Path("/tmp/x"), seed=9)
    assert (c.out, c.seed) == (Path("/tmp/x"), 9)


def _set(path: str, value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(BASE)
    node: Any = doc
    parts = path.split(".")
    for part in parts[:-1]:
        name, _, index = part.partition("[")
        node = node.setdefault(name, {})
        if index:
            node = node[int(index[:-1])]
    if value is _DELETE:
        del node[parts[-1]]
    else:
        node[parts[-1]] = value
    return doc


_DELETE = object()

CASES = [
    ("plant.site", _DELETE, "plant.site", "required"),
    ("plant.site", "plant/a", "plant.site", "letters, digits"),
    ("plant.sample_interval", 0, "plant.sample_interval", "expected a number in [0.01, 3600]"),
    ("plant.time_scale", 0, "plant.time_scale", "(0, 10000]"),
    ("plant.seed", "x", "plant.seed", "expected an integer, found 'x'"),
    ("plant.sample_intervall", 1, "plant.sample_intervall", "unknown key"),
    ("opcua", {"endpoint": "http://x:1/"}, "opcua.endpoint", "opc.tcp://HOST:PORT/PATH"),
    ("opcua", {"security": "Basic128"}, "opcua.security", "'Basic256Sha256_SignAndEncrypt'"),
    (
        "opcua",
        {"security": "Basic256Sha256_SignAndEncrypt"},
        "opcua.certificate",
        "required when security",
    ),
    ("opcua", {"certificate": "nope.der"}, "opcua.certificate", "expected a readable file"),
    ("mqtt", {"port": 70000}, "mqtt.port", "expected an integer in [1, 65535], found 70000"),
    ("mqtt", {"password_file": "missing"}, "mqtt.password_file", "readable file"),
    ("mqtt", {"queue_limit": 0}, "mqtt.queue_limit", "[1, 100000000]"),
    ("asset", [], "asset", "at least one [[asset]]"),
    ("asset[0].kind", "fan", "asset[0].kind", "one of 'motor', 'pump', 'cnc', found 'fan'"),
    ("asset[0].protocol", "modbus", "asset[0].protocol", "found 'modbus'"),
    ("asset[0].model", "Motor", "asset[0].model", "expected a DTMI"),
    ("asset[1].name", "motor-1", "asset[1].name", "unique in the plant"),
    ("asset[0].params", {"rated_curent": 20}, "asset[0].params.rated_curent", "rated_current"),
    ("asset[0].params", {"poles": 3}, "asset[0].params.poles", "even"),
    ("asset[0].params", {"load_mean": -5}, "asset[0].params.load_mean", "found -5"),
    ("asset[0].params", {"load_period": 0}, "asset[0].params.load_period", "(0, "),
    ("asset[1].params", {"shutoff_head": 0.9}, "asset[1].params.shutoff_head", "more than 1"),
    ("asset[0].params", {"rated_slip": 1.5}, "asset[0].params.rated_slip", "below 1"),
    ("asset[0].fault[0].kind", "fire", "asset[0].fault[0].kind", "'bearing_wear'"),
    ("asset[0].fault[0].telemetry", "sped", "asset[0].fault[0].telemetry", "found 'sped'"),
    ("asset[0].fault[0].telemetry", _DELETE, "asset[0].fault[0].telemetry", "required"),
    ("asset[0].fault[0].duration", 0, "asset[0].fault[0].duration", "found 0"),
    ("asset[0].fault[0].start", -1, "asset[0].fault[0].start", "found -1"),
    ("asset[0].fault[0].ramp", 5, "asset[0].fault[0].ramp", "unknown key"),
    ("asset[0].fault[0].severty", 1, "asset[0].fault[0].severty", "unknown key"),
]


@pytest.mark.parametrize(("path", "value", "key", "fragment"), CASES, ids=[c[0] for c in CASES])
def test_errors_name_the_key(path: str, value: Any, key: str, fragment: str) -> None:
    with pytest.raises(PlantConfigError) as info:
        _parse(_set(path, value))
    assert info.value.key == key
    assert fragment in str(info.value)
    assert str(info.value).startswith(f"{key}: ")


@pytest.mark.parametrize(
    ("fault", "key", "fragment"),
    [
        ({"kind": "bearing_wear", "telemetry": "speed"}, "telemetry", "names no telemetry"),
        ({"kind": "bearing_wear", "severity": 1.5}, "severity", "(0, 1]"),
        ({"kind": "cooling_failure", "severity": 1.0}, "severity", "(0, 0.99]"),
        ({"kind": "cooling_failure", "ramp": 500}, "ramp", "[0, 100]"),
        ({"kind": "sensor_drift", "telemetry": "load"}, "offset", "required"),
        ({"kind": "sensor_drift", "telemetry": "load", "offset": 0}, "offset", "non-zero"),
        ({"kind": "dropout", "telemetry": "flowRate"}, "telemetry", "found 'flowRate'"),
        ({"kind": "dropout", "offset": 1.0}, "offset", "unknown key"),
    ],
)
def test_fault_errors(fault: dict[str, Any], key: str, fragment: str) -> None:
    doc = copy.deepcopy(BASE)
    doc["asset"][0]["fault"] = [{"start": 0, "duration": 100, **fault}]
    with pytest.raises(PlantConfigError) as info:
        _parse(doc)
    assert info.value.key == f"asset[0].fault[0].{key}"
    assert fragment in str(info.value)


def test_duplicate_fault_ids() -> None:
    doc = copy.deepcopy(BASE)
    doc["asset"][1]["fault"] = [{"id": "motor-1-stuck-sensor-1", "kind": "dropout", "start": 0,
                                 "duration": 1}]  # fmt: skip
    with pytest.raises(PlantConfigError, match=r"asset\[1\]\.fault\[0\]\.id: .*asset\[0\]"):
        _parse(doc)


def test_unreadable_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(PlantConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[plant\nsite = 1\n")
    with pytest.raises(PlantConfigError, match="not valid TOML") as info:
        load_config(bad)
    assert info.value.key == str(bad)


def test_cli_reports_a_bad_config_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "plant.toml"
    path.write_text('[plant]\nsite = "plant-a"\n\n[[asset]]\nname = "m1"\nkind = "fan"\n')
    assert main(["plant", "simulate", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("twinmesh plant: asset[0].kind: expected one of")
    assert main(["plant", "simulate", "--config", str(EXAMPLE_CONFIG), "--duration", "0"]) == 2
    assert "--duration" in capsys.readouterr().err
