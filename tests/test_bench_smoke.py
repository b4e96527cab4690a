"""Every benchmark in bench/ runs with its tiny size flag and writes its JSON report.

This proves the benchmarks run; it asserts nothing about their figures or
timings (machines are shared and noisy; see bench/README.md).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
SCRIPTS = sorted(BENCH.glob("*_bench.py"))


def test_there_are_benchmarks() -> None:
    assert any(p.name == "crdt_bench.py" for p in SCRIPTS)


# Benchmarks with an MQTT part measure on mosquitto where it is installed (and
# on amqtt where not): CI runs them in both machine states.
MQTT_BENCHES = {"ingest_bench"}


@pytest.mark.parametrize(
    "script",
    [
        pytest.param(p, id=p.stem, marks=pytest.mark.mosquitto if p.stem in MQTT_BENCHES else ())
        for p in SCRIPTS
    ],
)
def test_benchmark_runs_quick(script: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    proc = subprocess.run(
        [sys.executable, str(script), "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "| figure" in proc.stdout
    report = json.loads(out.read_text())
    assert report["rows"], "the benchmark reported no figures"
    for row in report["rows"]:
        assert row["figure"]
        assert {"value", "reference", "ref_value", "ratio", "goal", "met"} <= set(row)
