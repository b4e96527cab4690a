"""Ground truth against the node's real data-quality checker, without any IO.

The plant is ticked on simulated time and delivered the way each protocol
delivers: MQTT every reading, OPC UA only changes (a server's default
DataChangeTrigger). The node's :class:`QualityChecker` flags the samples and
its ``sweep`` raises STALE events. Every flag and event the ground truth
expects must be raised inside its fault, and nothing may be raised outside
one: the healthy plant produces no data-quality findings at all.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from twinmesh.adapters import Provenance, Quality, Sample, make_sample_id
from twinmesh.adapters.synthetic import AssetSimulator, GroundTruth, kind_telemetry, parse_config
from twinmesh.node.telemetry._quality import EventKind, QualityChecker, TagSpec

START = 1_800_000_000.0
INTERVAL = 1.0
TICKS = 360
LATENCY = 0.05

PLANT: dict[str, Any] = {
    "plant": {"site": "plant-a", "seed": 5, "sample_interval": INTERVAL},
    "asset": [
        {
            "name": "motor-1",
            "kind": "motor",
            "protocol": "opcua",
            "params": {"thermal_time_constant": 60.0},
            "fault": [
                # Runs past the end of the run: its record is truncated at the stop.
                {"id": "cool", "kind": "cooling_failure", "start": 30, "duration": 400},
                {"id": "speed-stuck", "kind": "stuck_sensor", "telemetry": "speed",
                 "start": 40, "duration": 100},
            ],
        },
        {
            "name": "pump-1",
            "kind": "pump",
            "protocol": "mqtt",
            "fault": [
                {"id": "flow-stuck", "kind": "stuck_sensor", "telemetry": "flowRate",
                 "start": 20, "duration": 90},
                {"id": "pump-gone", "kind": "dropout", "start": 150, "duration": 30},
                {"id": "pressure-drift", "kind": "sensor_drift", "telemetry": "dischargePressure",
                 "start": 200, "duration": 100, "offset": 30.0},
                {"id": "small-drift", "kind": "sensor_drift", "telemetry": "suctionPressure",
                 "start": 200, "duration": 100, "offset": 0.3},
            ],
        },
        {
            "name": "cnc-1",
            "kind": "cnc",
            "protocol": "opcua",
            "fault": [
                {"id": "temp-gone", "kind": "dropout", "telemetry": "spindleTemperature",
                 "start": 50, "duration": 20},
                {"id": "spindle-bearing", "kind": "bearing_wear", "start": 100, "ramp": 30,
                 "duration": 100},
            ],
        },
    ],
}  # fmt: skip


@pytest.fixture(scope="module")
def run() -> dict[str, Any]:
    config = parse_config(PLANT, base=Path("."))
    sims = [
        AssetSimulator(a, seed=config.seed, time_scale=1.0, ambient=25.0) for a in config.assets
    ]
    truth = GroundTruth(config.assets, start=START, time_scale=1.0)
    specs = {
        (a.entity, tag): TagSpec(
            unit=info.unit,
            minimum=info.minimum,
            maximum=info.maximum,
            expected_interval=a.sample_interval,
            varies=True,
        )
        for a in config.assets
        for tag, info in kind_telemetry(a.kind).items()
    }
    checker = QualityChecker(specs)
    flags: dict[str, list[tuple[str, str, float]]] = defaultdict(list)  # flag -> (entity, tag, ts)
    events: list[tuple[str, str, str, float]] = []  # (kind, entity, tag, at)
    for n in range(TICKS):
        ts = START + n * INTERVAL
        now = ts + LATENCY
        events += [(e.kind.value, e.entity, e.name, e.at) for e in checker.sweep(now)]
        for sim in sims:
            a = sim.asset
            tick = sim.tick()
            truth.observe(a, tick, ts)
            for tag, value in tick.values.items():
                # Every reading arrives, repeats too: the adapter's OPC UA trigger
                # is STATUS_VALUE_TIMESTAMP (plant-adapters/_mapping.py).
                source = f"{a.name}.{tag}"
                sample = Sample(
                    entity=a.entity,
                    name=tag,
                    value=value,
                    unit=kind_telemetry(a.kind)[tag].unit,
                    source_ts=ts,
                    received_ts=now,
                    provenance=Provenance(adapter="test", source=source),
                    sample_id=make_sample_id(a.protocol, source, source_ts=ts, value=value),
                )
                result = checker.check(sample, now)
                for name in result.sample.quality.names():
                    flags[name].append((a.entity, tag, ts))
                events += [(e.kind.value, e.entity, e.name, e.at) for e in result.events]
    stopped = START + TICKS * INTERVAL
    records = truth.records(final=True, stopped=stopped)
    return {"records": records, "flags": flags, "events": events, "stopped": stopped}


def _found(run: dict[str, Any], what: str) -> list[tuple[str, str, float]]:
    if what == "OUT_OF_RANGE":
        return run["flags"]["OUT_OF_RANGE"]
    kind = {"STUCK": EventKind.STUCK.value, "STALE": EventKind.STALE.value}[what]
    return [(e, t, at) for k, e, t, at in run["events"] if k == kind]


def test_expected_quality_per_fault(run: dict[str, Any]) -> None:
    expected = {r["id"]: r["expected_quality"] for r in run["records"]}
    assert expected == {
        "cool": ["OUT_OF_RANGE"],
        "speed-stuck": ["STUCK"],  # OPC UA, trigger STATUS_VALUE_TIMESTAMP: repeats arrive
        "flow-stuck": ["STUCK"],  # MQTT: the repeats arrive
        "pump-gone": ["STALE"],
        "pressure-drift": ["OUT_OF_RANGE"],  # observed: it drifted past 25 bar
        "small-drift": [],  # stays in range: for scoring models only
        "temp-gone": ["STALE"],
        "spindle-bearing": [],
    }
    status = {r["id"]: r["status"] for r in run["records"]}
    assert status["cool"] == "truncated" and set(status.values()) == {"truncated", "ended"}
    cool = next(r for r in run["records"] if r["id"] == "cool")
    assert cool["end"] == run["stopped"] and cool["start"] == START + 30


@pytest.mark.parametrize("flag", ["OUT_OF_RANGE", "STUCK", "STALE"])
def test_every_expected_finding_is_raised_inside_its_fault(run: dict[str, Any], flag: str) -> None:
    found = _found(run, flag)
    for r in run["records"]:
        if flag not in r["expected_quality"]:
            continue
        hits = [
            at
            for entity, tag, at in found
            if entity == r["entity"] and tag in r["telemetry"] and r["start"] <= at <= r["end"]
        ]
        assert hits, f"{flag} expected for {r['id']} but never raised"


@pytest.mark.parametrize("flag", ["OUT_OF_RANGE", "STUCK", "STALE"])
def test_nothing_is_raised_outside_a_fault_that_expects_it(run: dict[str, Any], flag: str) -> None:
    for entity, tag, at in _found(run, flag):
        covering = [
            r["id"]
            for r in run["records"]
            if flag in r["expected_quality"]
            and r["entity"] == entity
            and tag in r["telemetry"]
            and r["start"] <= at <= r["end"]
        ]
        assert covering, f"{flag} on {entity}/{tag} at +{at - START:.0f} s matches no fault"


def test_the_healthy_plant_raises_nothing(run: dict[str, Any]) -> None:
    # Findings other than the three the faults produce (cleared events aside).
    assert not {f for f in run["flags"] if f != "OUT_OF_RANGE" and f != "STUCK"}
    kinds = {k for k, *_ in run["events"]}
    assert kinds <= {"stale", "stale-cleared", "stuck", "stuck-cleared"}
    assert Quality.OUT_OF_RANGE.name == "OUT_OF_RANGE"
