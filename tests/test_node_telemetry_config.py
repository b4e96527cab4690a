"""The node's [telemetry] / [[adapter]] config and the tag specs it derives from DTDL.

Pure parsing tests (no sockets): every wrong key is an error naming it; the
specs of the shipped plant models carry units the quality checker can
convert, the ExpectedRange bounds, and the asset's sample interval.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from twinmesh.node._models import load_registry
from twinmesh.node.telemetry import (
    UNITS,
    AssetSpec,
    TelemetryConfigError,
    load_assets,
    parse_telemetry,
    tag_specs,
)

MOTOR = "dtmi:twinmesh:plant:Motor;1"
PUMP = "dtmi:twinmesh:plant:Pump;1"
CNC = "dtmi:twinmesh:plant:CncMachine;1"


def parse(text: str, base: Path) -> Any:
    (base / "opcua.toml").write_text(
        '[[node]]\nnode_id = "ns=2;s=M1.Speed"\nentity = "p/l/m1"\ntelemetry = "speed"\n'
    )
    return parse_telemetry(
        tomllib.loads(text), rel=lambda p: (base / p).resolve(), data_dir=base / "data"
    )


def test_no_telemetry_tables_means_no_ingest(tmp_path: Path) -> None:
    assert parse("[node]\nname = 'x'\n", tmp_path) is None


def test_full_config_parses(tmp_path: Path) -> None:
    (tmp_path / "assets.toml").write_text(
        '[[asset]]\nentity = "p/l/m1"\nmodel = "dtmi:twinmesh:plant:Motor;1"\n'
        'kind = "motor"\nprotocol = "opcua"\nsample_interval = 0.5\n'
    )
    (tmp_path / "secret").write_text("hunter2\n")
    settings = parse(
        """
[telemetry]
assets = "assets.toml"
raw_days = 2
stale_factor = 4
[[telemetry.asset]]
entity = "p/l/pump1"
model = "dtmi:twinmesh:plant:Pump;1"
steady = ["flowRate"]
[[adapter]]
kind = "mqtt"
name = "uns"
host = "127.0.0.1"
port = 1884
username = "plant"
password_file = "secret"
[[adapter]]
kind = "opcua"
url = "opc.tcp://127.0.0.1:4840/x/"
mapping = "opcua.toml"
""",
        tmp_path,
    )
    assert settings.buffer == tmp_path / "data" / "telemetry.sqlite"
    assert [a.entity for a in settings.assets] == ["p/l/m1", "p/l/pump1"]
    assert settings.assets[0].sample_interval == 0.5
    assert settings.assets[1].steady == ("flowRate",)
    assert settings.retention.raw_days == 2
    assert settings.quality.stale_factor == 4
    mqtt, opcua = settings.adapters
    assert (mqtt.kind, mqtt.name, mqtt.config.port, mqtt.config.password) == (
        "mqtt",
        "uns",
        1884,
        "hunter2",
    )
    assert mqtt.config.client_id == "twinmesh-uns"
    assert opcua.name == "opcua" and opcua.config.mapping.bindings[0].telemetry == "speed"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[telemetry]\nraw_dayz = 3\n", "telemetry: unknown key(s) raw_dayz"),
        ("[telemetry]\nraw_days = 'x'\n", "telemetry.raw_days: expected float"),
        ("[telemetry]\nstale_factor = 0.5\n", "telemetry.stale_factor: expected 1.0..1000"),
        ("[[adapter]]\nkind = 'modbus'\n", "adapter[0].kind: expected 'mqtt' or 'opcua'"),
        ("[[adapter]]\nkind = 'mqtt'\n", "adapter[0].host: required"),
        (
            "[[adapter]]\nkind = 'opcua'\nurl = 'http://x'\nmapping = 'opcua.toml'\n",
            "adapter[0].url: expected opc.tcp://",
        ),
        (
            "[[adapter]]\nkind = 'opcua'\nurl = 'opc.tcp://x:1/'\nmapping = 'missing.toml'\n",
            "adapter[0].mapping:",
        ),
        (
            "[[adapter]]\nkind = 'mqtt'\nhost = 'h'\npassword_file = 'nope'\n",
            "adapter[0]: cannot read",
        ),
        (
            "[[adapter]]\nkind = 'mqtt'\nhost = 'h'\n[[adapter]]\nkind = 'mqtt'\nhost = 'g'\n",
            "two adapters are named 'mqtt'",
        ),
        (
            "[[telemetry.asset]]\nentity = 'a'\nmodel = 'm'\n"
            "[[telemetry.asset]]\nentity = 'a'\nmodel = 'm'\n",
            "asset a is listed twice",
        ),
        (
            "[[telemetry.asset]]\nentity = 'a'\nmodel = 'm'\nsample_interval = -1\n",
            "telemetry.asset[0].sample_interval: expected 0..86400",
        ),
        ("[[telemetry.asset]]\nentity = 'a'\n", "telemetry.asset[0].model: required"),
        ("[[adapter]]\nkind = 'mqtt'\nhost = 'h'\nqos = 2\n", "adapter[0].qos: expected 0..1"),
    ],
)
def test_bad_settings_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(TelemetryConfigError) as err:
        parse(text, tmp_path)
    assert message in str(err.value)


def test_assets_file_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "assets.toml"
    path.write_text('[[asset]]\nentity = "a"\nmodel = "m"\ncolour = "red"\n')
    with pytest.raises(TelemetryConfigError, match=r"assets.toml: asset\[0\]: unknown key"):
        load_assets(path)
    path.write_text("[[asset]\n")
    with pytest.raises(TelemetryConfigError, match="not valid TOML"):
        load_assets(path)


def test_specs_from_the_shipped_models() -> None:
    registry = load_registry()
    assets = [
        AssetSpec(entity="p/l/m1", model=MOTOR, sample_interval=0.5),
        AssetSpec(entity="p/l/pump1", model=PUMP, sample_interval=1.0),
        AssetSpec(entity="p/l/cnc1", model=CNC, sample_interval=1.0, steady=("toolWear",)),
    ]
    specs = tag_specs(assets, registry)
    speed = specs[("p/l/m1", "speed")]
    assert (speed.unit, speed.minimum, speed.maximum) == ("rpm", 0, 3600)
    assert speed.expected_interval == 0.5 and speed.varies
    assert specs[("p/l/m1", "vibrationRms")].unit == "mm/s"
    assert specs[("p/l/m1", "windingTemperature")].unit == "°C"
    assert not specs[("p/l/cnc1", "toolWear")].varies
    for (entity, name), spec in specs.items():
        # Every model unit must be one the checker converts, or normalisation is a no-op.
        assert spec.unit is None or spec.unit in UNITS, (entity, name, spec.unit)
        assert spec.minimum is not None and spec.maximum is not None, (entity, name)


def test_specs_refuse_unknown_models_and_steady_names() -> None:
    registry = load_registry()
    with pytest.raises(TelemetryConfigError, match="no model dtmi:twinmesh:plant:Pump;9"):
        tag_specs([AssetSpec(entity="a", model="dtmi:twinmesh:plant:Pump;9")], registry)
    with pytest.raises(TelemetryConfigError, match="lacks: sped"):
        tag_specs([AssetSpec(entity="a", model=MOTOR, steady=("sped",))], registry)
