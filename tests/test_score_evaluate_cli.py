"""``twinmesh score evaluate`` as a user types it: a small plant, its motors
co-simulated, the table printed; a wrong path answered in one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

PLANT = """
[plant]
site = "s"
seed = 3
sample_interval = 0.5
time_scale = 1.0
[[asset]]
name = "motor-1"
kind = "motor"
[[asset.fault]]
id = "cool"
kind = "cooling_failure"
start = 150
duration = 250
severity = 0.8
[[asset]]
name = "pump-1"
kind = "pump"
[[asset.fault]]
id = "drift"
kind = "sensor_drift"
telemetry = "dischargePressure"
start = 150
ramp = 30
duration = 250
offset = 0.6
"""


def _evaluate(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    return subprocess.run(
        [sys.executable, "-m", "twinmesh", "score", "evaluate", *args],
        capture_output=True, text=True, timeout=600, check=False, env=env, cwd=tmp_path,
    )  # fmt: skip


def test_the_table_for_a_small_plant_with_its_motor_co_simulated(tmp_path: Path) -> None:
    (tmp_path / "plant.toml").write_text(PLANT)
    proc = _evaluate(
        tmp_path, "--config", "plant.toml", "--seeds", "1", "--variants", "0",
        "--duration", "450", "--json",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert got["cosim"] == "motors co-simulated (FMUs)"
    table = got["table"]
    assert table["cooling_failure"]["recall"] == 1.0
    assert table["sensor_drift"]["sensor_labelled"] == 1.0
    assert got["false_alerts"] == 0
    text = _evaluate(
        tmp_path, "--config", "plant.toml", "--seeds", "1", "--variants", "0",
        "--duration", "450", "--no-cosim",
    )  # fmt: skip
    assert text.returncode == 0, text.stderr
    assert "co-simulation: off" in text.stdout
    assert "sensor_drift" in text.stdout


def test_a_plant_file_that_is_not_there_is_one_line(tmp_path: Path) -> None:
    proc = _evaluate(tmp_path, "--config", "nope.toml", "--seeds", "1")
    assert proc.returncode == 2
    assert proc.stderr.startswith("twinmesh score evaluate:")
    assert "Traceback" not in proc.stderr
