"""``twinmesh sim run`` and ``twinmesh sim swarm``: reports, files, exit status."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from twinmesh.cli import main

ROOT = Path(__file__).resolve().parent.parent
WAN_SPLIT = str(ROOT / "scenarios" / "wan-split.toml")


def test_run_writes_json_and_svg(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, plot = tmp_path / "r.json", tmp_path / "r.svg"
    rc = main(
        [
            "sim",
            "run",
            WAN_SPLIT,
            "--seed",
            "7",
            "--quick",
            "--json",
            str(out),
            "--plot",
            str(plot),
            "--twice",
        ]
    )
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "wan-split, seed 7" in text and "PASS" in text and "identical" in text
    data = json.loads(out.read_text())
    assert data["seed"] == 7 and len(data["trace_hash"]) == 64 and data["ok"]
    assert set(data["checkers"]) >= {
        "convergence",
        "no-lost-writes",
        "conflicts-exact",
        "determinism",
    }
    figures = data["figures"]
    for key in (
        "simulated_seconds",
        "wall_seconds",
        "messages_per_write",
        "bytes_per_write",
        "rounds_after_heal",
        "round_goal",
    ):
        assert key in figures
    assert data["faults"] and data["faults"][0]["kind"] == "isolate"
    assert data["lag"]["times"] and set(data["lag"]["per_replica"]) == {
        "central",
        "plant-a",
        "plant-b",
        "plant-c",
    }
    svg = ET.parse(plot).getroot()
    assert svg.tag.endswith("svg")
    assert "plant-a" in plot.read_text()


FAILING = """
[scenario]
name = "too-strict"
duration = "2m"

[fleet]
plants = ["plant-a", "plant-b"]
central = "central"

[workload]
rate = "1/5s"

[[faults]]
kind = "isolate"
plant = "plant-a"
at = "10s"
for = "110s"

[liveness]
max_rounds = 1   # the back-off alone takes longer: this run must fail
"""


def test_a_failing_run_exits_non_zero_and_prints_the_reproducer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "too-strict.toml"
    path.write_text(FAILING)
    rc = main(["sim", "run", str(path), "--seed", "3"])
    text = capsys.readouterr().out
    assert rc == 1
    assert "FAIL liveness" in text
    assert f"reproduce    twinmesh sim run {path} --seed 3" in text


def test_a_bad_scenario_file_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(
        '[scenario]\nname = "x"\nduration = "1m"\n[fleet]\nplants = ["a"]\ncentral = "a"\n'
    )
    assert main(["sim", "run", str(path)]) == 2
    assert "fleet.central: expected a name different from every plant" in capsys.readouterr().err


def test_swarm_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "swarm.json"
    rc = main(
        ["sim", "swarm", "--seeds", "3", "--start", "5", "--scale", "0.5", "--json", str(out)]
    )
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "3 seeds (5..7), 3 passed, 0 failed" in text
    data = json.loads(out.read_text())
    assert [r["seed"] for r in data["runs"]] == [5, 6, 7]
