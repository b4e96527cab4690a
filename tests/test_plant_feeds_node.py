"""The issue's "done when": the synthetic plant feeds a node over both protocols,
its faults show as flags, and restarts lose nothing.

Real processes only: mosquitto, ``twinmesh plant simulate`` (asyncua server
with history + MQTT publisher), and a one-plant fleet whose plant node is
configured from the files the simulator writes. Everything is checked
through the node's HTTP API against the simulator's ground truth:

* every fault whose ``expected_quality`` names a flag or event shows it on the
  right tag inside the fault's window (OUT_OF_RANGE from a cooling failure,
  STUCK from a frozen transmitter, STALE from dropouts, on both protocols);
* the node is ``kill -9``-ed and the broker restarted while the plant keeps
  producing: every reading of a healthy asset, over MQTT and over OPC UA,
  is stored exactly once — its source timestamps are the plant's tick grid
  with no hole and no repeat.
"""

from __future__ import annotations

import itertools
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from _brokers import Mosquitto, find_mosquitto, free_port
from node_helpers import Fleet, running_fleet, wait_until

pytestmark = [
    pytest.mark.mosquitto,
    pytest.mark.skipif(
        find_mosquitto() is None,
        reason="needs mosquitto: the broker restart must keep the node's session (amqtt does not)",
    ),
]

INTERVAL = 0.1  # seconds between readings of every tag

PLANT = """
[plant]
site = "plant-a"
seed = 11
sample_interval = {interval}
out = "out"

[opcua]
endpoint = "opc.tcp://127.0.0.1:{opcua_port}/twinmesh/plant-a/"
history = true
history_count = 5000

[mqtt]
port = {mqtt_port}
client_id = "twinmesh-sim-e2e"

# Faults start 20 s in: the fleet is up and subscribed by then (a broker queues
# only for a session that exists), and the node's kill and restart overlap them.

# Healthy assets, one per protocol: their readings must all arrive.
[[asset]]
name = "motor-1"
kind = "motor"

[[asset]]
name = "pump-2"
kind = "pump"

# A cooling failure with a short thermal time constant: crosses 180 °C in seconds.
[[asset]]
name = "motor-2"
kind = "motor"
[asset.params]
thermal_time_constant = 2.0
[[asset.fault]]
id = "motor-2-cooling"
kind = "cooling_failure"
start = 20
duration = 600
severity = 0.95

# A frozen flow transmitter (MQTT), then the whole asset drops out.
[[asset]]
name = "pump-1"
kind = "pump"
[[asset.fault]]
id = "pump-1-flow-stuck"
kind = "stuck_sensor"
telemetry = "flowRate"
start = 20
duration = 5
[[asset.fault]]
id = "pump-1-dropout"
kind = "dropout"
start = 28
duration = 3

# One OPC UA tag goes silent, another freezes (its repeats arrive: STUCK).
[[asset]]
name = "cnc-1"
kind = "cnc"
[[asset.fault]]
id = "cnc-1-load-stuck"
kind = "stuck_sensor"
telemetry = "spindleLoad"
start = 25
duration = 4
[[asset.fault]]
id = "cnc-1-temperature-dropout"
kind = "dropout"
telemetry = "spindleTemperature"
start = 22
duration = 3
"""


class Plant:
    """``twinmesh plant simulate`` in a child process."""

    def __init__(self, config: Path) -> None:
        self.config = config
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "twinmesh", "plant", "simulate", "--config", str(config)],
            stdout=subprocess.PIPE,
            stderr=open(config.parent / "plant.log", "ab"),  # noqa: SIM115 - the child owns it
            start_new_session=True,
        )
        self.ready = self._ready(60.0)

    def _ready(self, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"plant exited: {(self.config.parent / 'plant.log').read_text()}"
                )
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.5)
            if ready:
                line = self.proc.stdout.readline().decode()
                if line.startswith("READY "):
                    return json.loads(line[6:])  # type: ignore[no-any-return]
        raise AssertionError("the plant did not print READY")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)

    def truth(self) -> list[dict[str, Any]]:
        path = self.config.parent / "out" / "ground-truth.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[Fleet, Mosquitto, Plant]]:
    with Mosquitto(tmp_path / "mosquitto") as broker:
        config = tmp_path / "plant" / "plant.toml"
        config.parent.mkdir()
        config.write_text(
            PLANT.format(interval=INTERVAL, opcua_port=free_port(), mqtt_port=broker.port)
        )
        plant = Plant(config)
        try:
            # The tables the plant wrote for its node, with quality limits short
            # enough for a test run (the stuck window is 60 s by default).
            tables = Path(plant.ready["files"]["node_telemetry"])
            snippet = tmp_path / "node-telemetry.toml"
            snippet.write_text(
                tables.read_text().replace(
                    "[telemetry]\n",
                    "[telemetry]\nstale_factor = 3\nstuck_count = 5\nstuck_window = 0.3\n",
                )
            )
            with running_fleet(
                tmp_path / "fleet", plants=1, telemetry={"plant-a": snippet}
            ) as fleet:
                yield fleet, broker, plant
        finally:
            plant.stop()


def samples(fleet: Fleet, entity: str, name: str) -> list[dict[str, Any]]:
    q = urlencode({"entity": entity, "name": name, "limit": 10000})
    return fleet.ok("plant-a", "GET", f"/v1/telemetry/samples?{q}")["samples"]  # type: ignore[no-any-return]


def events(fleet: Fleet) -> list[dict[str, Any]]:
    return fleet.ok("plant-a", "GET", "/v1/telemetry/events?limit=10000")["events"]  # type: ignore[no-any-return]


def flagged(fleet: Fleet, record: dict[str, Any], flag: str) -> bool:
    for name in record["telemetry"]:
        for s in samples(fleet, record["entity"], name):
            if flag in s["quality"] and record["start"] - 1e-6 <= s["source_ts"] <= record["end"]:
                return True
    return False


def stale_event(fleet: Fleet, record: dict[str, Any]) -> bool:
    """A STALE period of one of the fault's tags overlaps the fault.

    A period runs from a STALE event to the tag's next STALE_CLEARED. Seen
    live it starts when the silence passed the limit (arrival time); seen
    after the fact (the node or the broker was down) it is dated in source
    time. A broker outage that began just before a dropout shows as one
    period covering both, so overlap, not containment, is the test."""
    names = set(record["telemetry"])
    open_since: dict[str, float] = {}
    periods: list[tuple[float, float]] = []
    for e in events(fleet):
        if e["entity"] != record["entity"] or e["name"] not in names:
            continue
        if e["kind"] == "stale":
            open_since.setdefault(e["name"], e["at"])
        elif e["kind"] == "stale-cleared" and e["name"] in open_since:
            periods.append((open_since.pop(e["name"]), e["at"]))
    periods += [(at, float("inf")) for at in open_since.values()]
    return any(a <= record["end"] and b >= record["start"] for a, b in periods)


def test_plant_feeds_node_faults_flag_and_restarts_lose_nothing(
    setup: tuple[Fleet, Mosquitto, Plant],
) -> None:
    fleet, broker, plant = setup
    adapters = lambda: fleet.ok("plant-a", "GET", "/v1/adapters")["adapters"]  # noqa: E731
    wait_until(lambda: all(a["healthy"] for a in adapters()), 30, what="both adapters connected")

    # Both protocols deliver into the same node.
    wait_until(lambda: samples(fleet, "plant-a/line-1/motor-1", "speed"), 20, what="OPC UA data")
    wait_until(lambda: samples(fleet, "plant-a/line-1/pump-2", "flowRate"), 20, what="MQTT data")

    # Outages while the plant keeps producing and its faults run: the node
    # dies hard, then the broker restarts.
    wait_until(
        lambda: any(r["status"] != "planned" for r in plant.truth()),
        60,
        interval=0.2,
        what="the first fault to start",
    )
    fleet.kill("plant-a")
    fleet.start("plant-a")
    broker.restart()
    wait_until(lambda: all(a["healthy"] for a in adapters()), 30, what="adapters back")

    # Every fault the ground truth says a quality checker must see, the node saw.
    def all_faults_seen() -> list[str]:
        missing = []
        for record in plant.truth():
            if record["status"] == "planned":
                return ["faults still planned"]
            for expected in record["expected_quality"]:
                seen = (
                    stale_event(fleet, record)
                    if expected == "STALE"
                    else flagged(fleet, record, expected)
                )
                if not seen:
                    missing.append(f"{record['id']}: {expected}")
        return missing

    missing: list[str] = []

    def none_missing() -> bool:
        missing[:] = all_faults_seen()
        return not missing

    try:
        wait_until(none_missing, 90, interval=0.5, what="every expected flag")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; still missing: {missing}") from None
    kinds = {(r["id"], q) for r in plant.truth() for q in r["expected_quality"]}
    assert {
        ("motor-2-cooling", "OUT_OF_RANGE"),
        ("pump-1-flow-stuck", "STUCK"),
        ("pump-1-dropout", "STALE"),
        ("cnc-1-temperature-dropout", "STALE"),
        ("cnc-1-load-stuck", "STUCK"),
    } <= kinds

    # Stop the plant; then every reading of the healthy assets is stored once.
    plant.stop()
    start = plant.ready["start"]

    holes: dict[tuple[str, str], list[tuple[int, int]]] = {}

    def grid_complete(entity: str, name: str) -> bool:
        rows = samples(fleet, entity, name)
        if not rows:
            return False
        exact = [(s["source_ts"] - start) / INTERVAL for s in rows]
        ticks = [round(t) for t in exact]
        # Timestamps travel as RFC 3339 text (ms) or OPC UA DateTime (100 ns).
        assert all(abs(t - r) < 0.05 for t, r in zip(exact, ticks, strict=True)), "off the grid"
        assert len(set(ticks)) == len(ticks), f"{entity}/{name} stored a reading twice"
        # No hole from the first stored reading to the last.
        holes[(entity, name)] = [(a, b) for a, b in itertools.pairwise(ticks) if b != a + 1]
        return not holes[(entity, name)] and ticks[-1] > 0

    for entity, name in [
        ("plant-a/line-1/pump-2", "flowRate"),
        ("plant-a/line-1/pump-2", "dischargePressure"),
        ("plant-a/line-1/motor-1", "speed"),
        ("plant-a/line-1/motor-1", "windingTemperature"),
    ]:
        try:
            wait_until(lambda e=entity, n=name: grid_complete(e, n), 30)  # type: ignore[misc]
        except AssertionError:
            raise AssertionError(f"{entity}/{name}: holes (tick, next tick) {holes}") from None
