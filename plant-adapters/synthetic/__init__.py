"""The synthetic plant (twinmesh.adapters.synthetic): machines to run nodes against.

``twinmesh plant simulate --config plant.toml`` serves a line of induction
motors, centrifugal pumps and a CNC machining centre over OPC UA (asyncua
server) and MQTT (unified-namespace JSON, QoS 1, store-and-forward), with
physics-based readings (:mod:`._physics`, :mod:`._vibration`), scheduled
faults (:mod:`._faults`) and their ground truth (:mod:`._truth`). The DTDL
models of the machines live in ``models/``.

The pure parts are exported here; the servers (:mod:`._opcua_server`,
:mod:`._mqtt_publisher`, :mod:`._run`) are imported on use, so importing this
package does not pull in asyncua or aiomqtt.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

#: The example plant shipped with the package.
EXAMPLE_CONFIG = Path(__file__).resolve().parent / "plant.toml"

# Exports resolve on first use (PEP 562): `twinmesh plant --help` imports this
# package for its CLI, and should not pay for numpy, asyncua or aiomqtt.
_EXPORTS = {
    "_config": (
        "AssetConfig MqttSettings OpcUaSettings PlantConfig PlantConfigError load_config "
        "parse_config"
    ),
    "_faults": "FAULT_KINDS Fault affected_telemetry apply_sensor_faults conditions_at",
    "_models": "DEFAULT_MODELS MODELS_DIR TelemetryInfo kind_telemetry model_telemetry",
    "_physics": (
        "CncParams CncState Conditions MotorParams MotorState PumpParams PumpState cnc_init "
        "cnc_step motor_init motor_step pump_init pump_step taylor_tool_life"
    ),
    "_plant": "AssetSimulator Tick asset_rng",
    "_truth": "GroundTruth",
    "_vibration": "VibrationFeatures VibrationSource VibrationSpec bpfo_hz measure",
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names.split()}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "DEFAULT_MODELS",
    "EXAMPLE_CONFIG",
    "FAULT_KINDS",
    "MODELS_DIR",
    "AssetConfig",
    "AssetSimulator",
    "CncParams",
    "CncState",
    "Conditions",
    "Fault",
    "GroundTruth",
    "MotorParams",
    "MotorState",
    "MqttSettings",
    "OpcUaSettings",
    "PlantConfig",
    "PlantConfigError",
    "PumpParams",
    "PumpState",
    "TelemetryInfo",
    "Tick",
    "VibrationFeatures",
    "VibrationSource",
    "VibrationSpec",
    "affected_telemetry",
    "apply_sensor_faults",
    "asset_rng",
    "bpfo_hz",
    "cnc_init",
    "cnc_step",
    "conditions_at",
    "kind_telemetry",
    "load_config",
    "measure",
    "model_telemetry",
    "motor_init",
    "motor_step",
    "parse_config",
    "pump_init",
    "pump_step",
    "taylor_tool_life",
]
