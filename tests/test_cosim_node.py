"""The issue's "done when", on real processes: ``twinmesh plant simulate`` (OPC UA)
feeds a plant node whose config is the plant's node-telemetry.toml plus its
node-cosim.toml. Through the node's API: observed, expected and residual winding
temperature and current per motor; a cooling failure grows the temperature
residual with the current residual near zero, a current-sensor drift the
reverse; a what-if answers (and an absurd one is refused with the bound);
/metrics and /openapi.json carry the co-simulation; the FMU registry replicates
identities and deployments, moves a binary by hash over mTLS, and refuses one
whose bytes do not match."""

from __future__ import annotations

import hashlib
import statistics
import zipfile
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from _brokers import free_port
from cosim_helpers import system_text
from node_helpers import Fleet, running_fleet, wait_until
from test_plant_feeds_node import Plant

from twinmesh.node._config import load_config

INTERVAL = 0.1
PLANT = """
[plant]
site = "plant-a"
seed = 5
sample_interval = {interval}
out = "out"

[opcua]
endpoint = "opc.tcp://127.0.0.1:{port}/twinmesh/plant-a/"
history = true

[[asset]]
name = "motor-1"
kind = "motor"

# Faults start 8 s in: the node is up and subscribed by then.
[[asset]]
name = "motor-2"
kind = "motor"
[asset.params]
thermal_time_constant = 20.0
[[asset.fault]]
id = "motor-2-cooling"
kind = "cooling_failure"
start = 8
duration = 600
severity = 0.7

[[asset]]
name = "motor-3"
kind = "motor"
[[asset.fault]]
id = "motor-3-current-drift"
kind = "sensor_drift"
telemetry = "current"
start = 8
duration = 600
offset = 4.0
ramp = 3

# Co-simulated with a model valid only up to 10 % load: its doStep fails at once.
[[asset]]
name = "motor-4"
kind = "motor"
"""
M1, M2, M3, M4 = (f"plant-a/line-1/motor-{i}" for i in (1, 2, 3, 4))


def samples(fleet: Fleet, entity: str, name: str) -> list[dict[str, Any]]:
    q = urlencode({"entity": entity, "name": name, "limit": 10000})
    return fleet.ok("plant-a", "GET", f"/v1/telemetry/samples?{q}")["samples"]  # type: ignore[no-any-return]


def values(fleet: Fleet, entity: str, name: str, after: float) -> list[float]:
    return [s["value"] for s in samples(fleet, entity, name) if s["source_ts"] >= after]


def _fail_motor_4(text: str) -> str:
    blocks = text.split("[[cosim.asset]]")
    return "[[cosim.asset]]".join(
        b.replace("parameters = { ", 'parameters = { "electrical.max_load" = 10.0, ')
        if '"plant-a/line-1/motor-4"' in b
        else b
        for b in blocks
    )


@pytest.fixture
def fleet(tmp_path: Path):  # type: ignore[no-untyped-def]
    config = tmp_path / "plant" / "plant.toml"
    config.parent.mkdir()
    config.write_text(PLANT.format(interval=INTERVAL, port=free_port()))
    plant = Plant(config)
    try:
        files = plant.ready["files"]
        snippet = tmp_path / "node-extra.toml"
        snippet.write_text(
            Path(files["node_telemetry"]).read_text()
            + "\n"
            + _fail_motor_4(Path(files["node_cosim"]).read_text())
        )
        with running_fleet(tmp_path / "fleet", plants=2, telemetry={"plant-a": snippet}) as f:
            yield f, plant
    finally:
        plant.stop()


def test_plant_node_couples_its_motors_and_the_fleet_sees_its_fmus(fleet) -> None:  # type: ignore[no-untyped-def]
    fleet, plant = fleet
    start = plant.ready["start"]
    cosim = lambda e: fleet.ok("plant-a", "GET", f"/v1/assets/{quote(e)}/cosim")  # noqa: E731
    wait_until(
        lambda: all(
            cosim(e)["state"] == "running" and cosim(e)["counters"]["steps"] > 100
            for e in (M1, M2, M3)
        ),
        40,
        interval=0.2,
        what="the three motors co-simulated",
    )
    status = cosim(M1)
    assert [f["instance"] for f in status["fmus"]] == ["controller", "electrical", "thermal"]
    assert [f["version"] for f in status["fmus"]] == ["1.1.0", "1.0.0", "1.0.0"]
    assert all(len(f["sha256"]) == 64 for f in status["fmus"])
    assert status["real_time_factor"] > 1 and status["held_inputs"] == [], status
    out = status["outputs"]["windingTemperature"]
    assert out["residual"] == pytest.approx(out["observed"] - out["expected"])
    lineage = fleet.ok("plant-a", "GET", f"/v1/assets/{quote(M1)}/cosim/lineage")
    assert lineage["points"] and lineage["points"][-1]["inputs"][0]["telemetry"] == "load"

    # Faults: wait until 8 s of them are stored.
    fault_from = start + 12
    wait_until(
        lambda: len(values(fleet, M3, "current.residual", fault_from)) > 40,
        40,
        interval=0.3,
        what="residuals from inside the faults",
    )
    healthy_t = values(fleet, M1, "windingTemperature.residual", start + 5)
    healthy_i = values(fleet, M1, "current.residual", start + 5)
    assert abs(statistics.mean(healthy_t)) < 0.3 and abs(statistics.mean(healthy_i)) < 0.05
    cooling_t = values(fleet, M2, "windingTemperature.residual", fault_from)
    cooling_i = values(fleet, M2, "current.residual", fault_from)
    assert statistics.mean(cooling_t) > 3 and abs(statistics.mean(cooling_i)) < 0.05
    assert cooling_t[-1] > cooling_t[0]  # growing
    drift_i = values(fleet, M3, "current.residual", fault_from)
    drift_t = values(fleet, M3, "windingTemperature.residual", fault_from)
    assert statistics.mean(drift_i) == pytest.approx(4.0, abs=0.15)
    assert abs(statistics.mean(drift_t)) < 0.3
    expected = samples(fleet, M1, "current.expected")[-1]
    assert expected["adapter"] == "cosim" if "adapter" in expected else True

    # What-if: load +10 % for 2 h, from the motor's current state.
    answer = fleet.ok(
        "plant-a",
        "POST",
        f"/v1/assets/{quote(M1)}/whatif",
        {"horizon": 7200, "inputs": {"load": {"scale": 1.1}}},
        role="operator",
    )
    assert answer["complete"] and answer["final"]["windingTemperature"] > 25
    hotter = fleet.ok(
        "plant-a",
        "POST",
        f"/v1/assets/{quote(M1)}/whatif",
        {"horizon": 7200, "parameters": {"thermal.cooling_gain": 10.0}},
        role="operator",
    )
    assert "windingTemperature" in hotter["leaves_range"]
    absurd = fleet.request(
        "plant-a", "POST", f"/v1/assets/{quote(M1)}/whatif", {"horizon": 1e9}, role="operator"
    )
    assert absurd.status == 422 and "86400" in absurd.json["reason"]

    # The FMU that failed mid-run: that asset stopped with the reason, the rest went on.
    failed = cosim(M4)
    assert failed["state"] == "failed" and "outside the model's validity" in failed["reason"]
    metrics = fleet.metrics("plant-a")
    assert metrics[("twinmesh_cosim_failures_total", frozenset({("entity", M4)}))] == 1
    assert metrics[("twinmesh_cosim_steps_total", frozenset({("entity", M1)}))] > 0
    paths = fleet.ok("plant-a", "GET", "/openapi.json", role=None)["paths"]
    assert {"/v1/assets/{entity}/cosim", "/v1/assets/{entity}/whatif", "/v1/fmus"} <= set(paths)

    # The fleet sees which FMUs plant-a runs.
    def seen_at(node: str) -> dict[str, Any] | None:
        listing = fleet.ok(node, "GET", "/v1/fmus", role="viewer")
        return listing if "plant-a" in listing["plants"] else None

    listing = wait_until(lambda: seen_at("central") and seen_at("plant-b"), 20, what="deployments")
    thermal = listing["plants"]["plant-a"][M1]["fmus"]["thermal"]
    assert thermal["version"] == "1.0.0" and thermal["sha256"] in listing["fmus"]
    motor_class = fleet.entity("plant-a", M1)["model"]
    assert listing["plants"]["plant-a"][M1]["asset_class"] == motor_class
    assert listing["fmus"][thermal["sha256"]]["asset_classes"] == [motor_class]
    assert listing["skew"] == []

    # plant-b fetches that binary by hash over mTLS and checks it.
    sha = thermal["sha256"]
    got = fleet.ok("plant-b", "POST", f"/v1/fmus/{sha}/fetch")
    assert got["from"] == "plant-a"
    blob = Path(got["stored"])
    assert hashlib.sha256(blob.read_bytes()).hexdigest() == sha

    # A new version registered at plant-a; its stored bytes then rot: plant-b refuses them.
    a_data = load_config(Path(fleet.nodes["plant-a"]["config"])).data_dir
    v2 = blob.parent / "v2.fmu"
    with zipfile.ZipFile(blob) as zin, zipfile.ZipFile(v2, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename == "modelDescription.xml":
                data = data.replace(b'version="1.0.0"', b'version="2.0.0"')
            zout.writestr(item.filename, data)
    reg = fleet.request(
        "plant-a", "POST", "/v1/fmus", raw=v2.read_bytes(), content_type="application/octet-stream"
    )
    assert reg.status == 201 and reg.json["version"] == "2.0.0"
    sha2 = reg.json["sha256"]
    (a_data / "fmu-blobs" / f"{sha2}.fmu").write_bytes(b"PK not the registered bytes")
    wait_until(lambda: sha2 in fleet.ok("plant-b", "GET", "/v1/fmus", role="viewer")["fmus"], 20)
    bad = fleet.request("plant-b", "POST", f"/v1/fmus/{sha2}/fetch")
    assert bad.status == 502 and "refused" in bad.json["reason"]
    assert not fleet.ok("plant-b", "GET", f"/v1/fmus/{sha2}", role="viewer")["binary_here"]
    # Not an FMU at all: refused with the rule, nothing registered.
    junk = fleet.request(
        "plant-a", "POST", "/v1/fmus", raw=b"hello", content_type="application/octet-stream"
    )
    assert junk.status == 422 and "not-a-zip" in junk.json["reason"]

    # A real restart of plant-a, onto the same motor model built as FMI 3.0 for the
    # thermal FMU. Lineage written before the restart is still served, naming the
    # FMI 2.0 build that produced it; the node now runs FMI 3.0 live; the switch
    # of FMU is recorded in the replicated log and every node sees it.
    before = fleet.ok("plant-a", "GET", f"/v1/assets/{quote(M1)}/cosim/lineage")["points"][-1]
    old_thermal = next(f for f in before["run"]["fmus"] if f["instance"] == "thermal")
    assert old_thermal["fmi_version"] == "2.0" and old_thermal["sha256"] == sha
    config = Path(fleet.nodes["plant-a"]["config"])
    fmi3_system = config.parent / "motor-fmi3.toml"
    fmi3_system.write_text(
        system_text(**{'builtin = "motor_thermal"': 'builtin = "motor_thermal@fmi3"'})
    )
    text = config.read_text()
    assert 'system = "motor"' in text
    config.write_text(text.replace('system = "motor"', f'system = "{fmi3_system}"'))
    fleet.restart("plant-a")

    q = urlencode({"ts": repr(before["source_ts"])})
    kept = fleet.ok("plant-a", "GET", f"/v1/assets/{quote(M1)}/cosim/lineage?{q}")
    point = next(p for p in kept["points"] if p["observation"] == before["observation"])
    assert point["inputs"] == before["inputs"] and point["run"] == before["run"]
    now_thermal = next(f for f in kept["fmus"] if f["instance"] == "thermal")
    assert now_thermal["fmi_version"] == "3.0" and now_thermal["sha256"] != sha
    wait_until(
        lambda: cosim(M1)["state"] == "running" and cosim(M1)["counters"]["steps"] > 50,
        30,
        interval=0.2,
        what="M1 co-simulated on the FMI 3.0 thermal FMU",
    )
    fresh = fleet.ok("plant-a", "GET", f"/v1/assets/{quote(M1)}/cosim/lineage")["points"][-1]
    assert fresh["run"]["id"] != before["run"]["id"]
    assert {f["fmi_version"] for f in fresh["run"]["fmus"]} == {"2.0", "3.0"}
    out = cosim(M1)["outputs"]["windingTemperature"]
    assert abs(out["residual"]) < 3.0, out  # restarted from the twin's state: still healthy

    def switched(node: str) -> list[dict[str, Any]] | None:
        logged = fleet.ok(node, "GET", "/v1/fmus", role="viewer")["switches"].get("plant-a", [])
        return logged or None

    for node in ("plant-a", "central"):
        logged = wait_until(lambda n=node: switched(n), 20, what=f"the switch seen at {node}")
        thermal_switches = [s for s in logged if s["instance"] == "thermal"]
        assert {s["asset"] for s in thermal_switches} == {M1, M2, M3, M4}, logged
        assert all(
            s["from"]["sha256"] == sha and s["to"]["sha256"] == now_thermal["sha256"]
            for s in thermal_switches
        )
        assert not [s for s in logged if s["instance"] != "thermal"]  # nothing else changed
    listing = fleet.ok("central", "GET", "/v1/fmus", role="viewer")
    assert listing["plants"]["plant-a"][M1]["fmus"]["thermal"]["sha256"] == now_thermal["sha256"]
    assert listing["fmus"][now_thermal["sha256"]]["fmi_version"] == "3.0"
