"""The demo's synthetic plants: one ``twinmesh plant simulate`` per plant node.

Each plant serves a motor over OPC UA and a pump over MQTT (through the
demo's broker), with its own site name, ports and seed. Plant B's motor has
a bearing that starts to wear ``wear_start`` seconds after the plant starts
(outer-race impacts: kurtosis first, then RMS and the bearing band).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["WORN_MOTOR", "PlantProcess", "plant_config", "start_plants"]

WORN_MOTOR = "motor-1"  # the asset whose bearing wears, at plant B

_PLANT = """\
# Written by `twinmesh demo`: a small line for plant {site}.
[plant]
site = "{site}"
seed = {seed}
sample_interval = 0.5
out = "out"

[opcua]
endpoint = "opc.tcp://127.0.0.1:{opcua_port}/twinmesh/{site}/"
history = true
history_count = 2400

[mqtt]
host = "127.0.0.1"
port = {mqtt_port}
client_id = "twinmesh-demo-{site}"

[[asset]]
name = "motor-1"
kind = "motor"
line = "line-1"
cell = "cell-1"
{wear}
[[asset]]
name = "pump-1"
kind = "pump"
line = "line-1"
cell = "cell-2"
"""

_WEAR = """
[[asset.fault]]
id = "{site}-motor-1-bearing"
kind = "bearing_wear"
start = {start}
ramp = 90
duration = 3600
severity = 1.0
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def plant_config(site: str, *, seed: int, mqtt_port: int, wear_start: float | None) -> str:
    wear = "" if wear_start is None else _WEAR.format(site=site, start=wear_start)
    return _PLANT.format(
        site=site, seed=seed, opcua_port=_free_port(), mqtt_port=mqtt_port, wear=wear
    )


@dataclass(slots=True)
class PlantProcess:
    site: str
    proc: subprocess.Popen[bytes]
    directory: Path
    ready: dict[str, Any] | None = None

    @property
    def node_telemetry(self) -> Path:
        assert self.ready is not None
        return Path(self.ready["files"]["node_telemetry"])

    def truth(self) -> list[dict[str, Any]]:
        path = self.directory / "out" / "ground-truth.jsonl"
        try:
            text = path.read_text()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


def start_plants(
    workdir: Path, sites: list[str], *, mqtt_port: int, worn: str, wear_start: float
) -> list[PlantProcess]:
    """Start every plant at once and wait for each one's ``READY`` line."""
    plants: list[PlantProcess] = []
    for i, site in enumerate(sites):
        directory = workdir / f"plant-sim-{site}"
        directory.mkdir(parents=True, exist_ok=True)
        config = directory / "plant.toml"
        config.write_text(
            plant_config(
                site,
                seed=100 + i,
                mqtt_port=mqtt_port,
                wear_start=wear_start if site == worn else None,
            )
        )
        with (directory / "plant.log").open("ab") as log:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "twinmesh",
                    "plant",
                    "simulate",
                    "--config",
                    str(config),
                    "--quiet",
                ],
                stdout=subprocess.PIPE,
                stderr=log,
                start_new_session=True,
            )
        plants.append(PlantProcess(site=site, proc=proc, directory=directory))
    deadline = time.monotonic() + 90
    for plant in plants:
        assert plant.proc.stdout is not None
        while plant.ready is None:
            if plant.proc.poll() is not None or time.monotonic() > deadline:
                log_text = (plant.directory / "plant.log").read_text()[-2000:]
                raise RuntimeError(f"the synthetic plant {plant.site} did not start:\n{log_text}")
            ready, _, _ = select.select([plant.proc.stdout], [], [], 0.2)
            if ready:
                line = plant.proc.stdout.readline().decode()
                if line.startswith("READY "):
                    plant.ready = json.loads(line[6:])
    return plants
