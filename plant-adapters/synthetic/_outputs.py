"""Files the simulator writes for the node and for scoring, in ``--out DIR``.

* ``opcua-mapping.toml`` — :func:`twinmesh.adapters.load_node_bindings` format:
  ``[subscription]`` defaults and one ``[[node]]`` per OPC UA tag (node_id,
  entity, telemetry, unit, sampling_interval_ms).
* ``mqtt-mapping.toml`` — :func:`twinmesh.adapters.load_topic_mapping` format:
  one ``[[rule]]`` per MQTT asset (``site/area/line/cell/asset/{tag}`` ->
  entity ``site/line/asset``, telemetry ``{tag}``), ``uns_default = false`` so
  the node subscribes to this plant's assets only. Units travel in the payloads.
* ``assets.toml`` — ``[[asset]]`` entity, model, kind, protocol, sample_interval
  (wall seconds between readings of each tag), as the node's
  ``[telemetry] assets = ...`` reads it.
* ``ground-truth.jsonl`` — one JSON object per fault (:mod:`._truth`),
  rewritten atomically as faults start and end and when the run stops.
* ``plant.json`` — pid, endpoints, start time: how to reach this run.
* ``node-cosim.toml`` — the ``[cosim]`` table that couples each motor to the
  node's shipped motor system (node/cosim/systems/motor.toml), its nameplate
  parameters from the plant config; append it to the node config beside
  ``node-telemetry.toml`` to get expected and residual series.
* ``node-telemetry.toml`` — the ``[telemetry]`` and ``[[adapter]]`` tables a
  node's config needs to ingest this plant (absolute paths to the files
  above); append it to a node config, or pass it to ``twinmesh fleet up
  --telemetry NODE=FILE``.

Every file is replaced atomically (write, fsync, rename), so a reader never
sees half a file.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ._config import PlantConfig
from ._models import kind_telemetry
from ._mqtt_publisher import MQTT_COMMANDS, command_topic
from ._opcua_server import SETPOINTS, node_id

__all__ = [
    "ASSETS_FILE",
    "GROUND_TRUTH_FILE",
    "MQTT_MAPPING_FILE",
    "NODE_COSIM_FILE",
    "NODE_TELEMETRY_FILE",
    "OPCUA_MAPPING_FILE",
    "PLANT_FILE",
    "assets_toml",
    "ground_truth_jsonl",
    "mqtt_mapping_toml",
    "node_cosim_toml",
    "node_telemetry_toml",
    "opcua_mapping_toml",
    "write_atomic",
]

OPCUA_MAPPING_FILE = "opcua-mapping.toml"
MQTT_MAPPING_FILE = "mqtt-mapping.toml"
ASSETS_FILE = "assets.toml"
GROUND_TRUTH_FILE = "ground-truth.jsonl"
PLANT_FILE = "plant.json"
NODE_TELEMETRY_FILE = "node-telemetry.toml"
NODE_COSIM_FILE = "node-cosim.toml"

_PUBLISHING_MS = 250.0


def _s(text: str) -> str:
    # A JSON string is a valid TOML basic string (same escapes, \uXXXX included).
    return json.dumps(text, ensure_ascii=False)


def _num(x: float) -> str:
    return repr(float(x)) if not float(x).is_integer() else str(int(x)) + ".0"


def _header(config: PlantConfig, what: str) -> list[str]:
    src = f" from {config.source}" if config.source else ""
    return [f"# {what}", f"# Written by `twinmesh plant simulate`{src}; regenerated each run.", ""]


def opcua_mapping_toml(config: PlantConfig, namespace_index: int) -> str:
    assets = config.assets_on("opcua")
    fastest = min((a.sample_interval for a in assets), default=config.sample_interval)
    # Enough queue for every reading of the fastest tag within two publishing intervals.
    queue = max(10, math.ceil(2 * _PUBLISHING_MS / (fastest * 1000.0)) + 1)
    lines = _header(config, f"OPC UA node bindings for {config.opcua.endpoint}")
    lines += [
        "[subscription]",
        f"publishing_interval_ms = {_num(_PUBLISHING_MS)}",
        "sampling_interval_ms = 0.0  # report every change the server sees",
        f"queue_size = {queue}",
    ]
    for a in assets:
        info = kind_telemetry(a.kind)
        for tag in a.telemetry:
            lines += [
                "",
                "[[node]]",
                f"node_id = {_s(node_id(namespace_index, a.name, tag))}",
                f"entity = {_s(a.entity)}",
                f"telemetry = {_s(tag)}",
                f"unit = {_s(info[tag].unit)}",
                f"sampling_interval_ms = {_num(a.sample_interval * 1000.0)}",
            ]
        if a.kind in SETPOINTS:
            var_name, command = SETPOINTS[a.kind]
            lines += [
                "",
                "[[command]]",
                f"node_id = {_s(node_id(namespace_index, a.name, var_name))}",
                f"entity = {_s(a.entity)}",
                f"command = {_s(command)}",
            ]
    return "\n".join(lines) + "\n"


def mqtt_mapping_toml(config: PlantConfig) -> str:
    lines = _header(config, f"MQTT topic rules for {config.mqtt.host}:{config.mqtt.port}")
    lines.append("uns_default = false")
    for a in config.assets_on("mqtt"):
        lines += [
            "",
            "[[rule]]",
            f"topic = {_s(a.topic_prefix + '/{tag}')}",
            f"entity = {_s(a.entity)}",
            'telemetry = "{tag}"',
        ]
        if a.kind in MQTT_COMMANDS:
            command = MQTT_COMMANDS[a.kind]
            lines += [
                "",
                "[[command]]  # the device answers on the topic + /ack",
                f"topic = {_s(command_topic(a.topic_prefix, command))}",
                f"entity = {_s(a.entity)}",
                f"command = {_s(command)}",
            ]
    return "\n".join(lines) + "\n"


def assets_toml(config: PlantConfig) -> str:
    lines = _header(config, f"Assets of {config.site}: the twins a node is home for")
    for a in config.assets:
        lines += [
            "[[asset]]",
            f"entity = {_s(a.entity)}",
            f"model = {_s(a.model)}",
            f"kind = {_s(a.kind)}",
            f"protocol = {_s(a.protocol)}",
            f"sample_interval = {_num(a.sample_interval)}",
            "",
        ]
    return "\n".join(lines)


def node_telemetry_toml(config: PlantConfig, *, opcua_endpoint: str | None) -> str:
    """The node config tables that ingest this plant (twinmesh.node.telemetry._settings)."""
    out = config.out.resolve()
    lines = _header(config, f"Append to the config of the node that is home for {config.site}")
    if config.opcua.security != "None" or config.mqtt.tls or config.mqtt.username:
        lines += [
            "# This plant requires credentials: give the node its own (MQTT username,",
            "# password_file, tls, tls_ca/cert/key; OPC UA security_policy, certificate,",
            "# private_key, application_uri) in the tables below.",
            "",
        ]
    lines += [
        "[telemetry]",
        f"assets = {_s(str(out / ASSETS_FILE))}",
        "",
    ]
    if config.assets_on("mqtt"):
        m = config.mqtt
        lines += [
            "[[adapter]]",
            'kind = "mqtt"',
            'name = "mqtt"',
            f"host = {_s(m.host)}",
            f"port = {m.port}",
            # One persistent session per node and broker; distinct from the publisher's id.
            f"client_id = {_s('twinmesh-node-' + config.site)}",
            f"mapping = {_s(str(out / MQTT_MAPPING_FILE))}",
            "",
        ]
    if opcua_endpoint is not None and config.assets_on("opcua"):
        lines += [
            "[[adapter]]",
            'kind = "opcua"',
            'name = "opcua"',
            f"url = {_s(opcua_endpoint)}",
            f"mapping = {_s(str(out / OPCUA_MAPPING_FILE))}",
            "",
        ]
    return "\n".join(lines)


#: MotorParams field -> the FMU parameters of node/cosim/systems/motor.toml it sets.
_MOTOR_COSIM = {
    "rated_current": ("electrical.rated_current", "thermal.rated_current"),
    "magnetising_current": ("electrical.magnetising_share",),
    "poles": ("electrical.poles", "controller.poles"),
    "rated_slip": ("electrical.rated_slip",),
    "supply_frequency": ("electrical.rated_frequency",),
    "rated_temperature_rise": ("thermal.rated_rise",),
    "constant_loss_share": ("thermal.constant_loss_share",),
    "thermal_time_constant": ("thermal.tau",),
}


def node_cosim_toml(config: PlantConfig) -> str:
    """The [cosim] table for the plant's motors: nameplate data, not their faults."""
    lines = _header(config, f"Co-simulation of {config.site}'s motors; append to the node config")
    lines += ["[cosim]", ""]
    for a in config.assets:
        if a.kind != "motor":
            continue
        params = {"thermal.ambient": config.ambient_temperature}
        for field_name, targets in _MOTOR_COSIM.items():
            for t in targets:
                params[t] = float(getattr(a.params, field_name))
        # Line-fed until a speed command: the drive passes the supply frequency.
        # Commanded, it compensates slip and ramps as the plant's drive does
        # (drive_ramp is in rpm/s of synchronous speed; the FMU ramps in Hz/s).
        params["controller.f_start"] = float(a.params.supply_frequency)
        params["controller.rated_slip"] = float(a.params.rated_slip)
        params["controller.ramp_rate"] = float(a.params.drive_ramp) * a.params.poles / 120.0
        lines += [
            "[[cosim.asset]]",
            f"entity = {_s(a.entity)}",
            'system = "motor"',
            f"time_scale = {_num(config.time_scale)}",
            "parameters = { " + ", ".join(f"{_s(k)} = {_num(v)}" for k, v in params.items()) + " }",
            "",
        ]
    return "\n".join(lines)


def ground_truth_jsonl(records: Iterable[Mapping[str, Any]]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False, allow_nan=False) + "\n" for r in records)


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
