"""Pure parts of scoring and alerts: the forest walk, the lifecycle tables, the policy
checks, hysteresis, and the engine's diagnosis on a short generated plant stream."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.ensemble import IsolationForest

from twinmesh.node.alerts._lifecycle import AlertTransitionError, next_state
from twinmesh.node.alerts._log import fold_alerts
from twinmesh.node.alerts._policy import PolicyError, parse_policy
from twinmesh.node.scoring._iforest import _FlatForest
from twinmesh.node.workorders._lifecycle import WorkOrderTransitionError, check_outcome
from twinmesh.node.workorders._lifecycle import next_state as wo_next


def test_flat_forest_scores_equal_sklearn() -> None:
    rng = np.random.default_rng(3)
    model = IsolationForest(n_estimators=32, random_state=2).fit(rng.normal(size=(200, 5)))
    x = rng.normal(size=(300, 5)) * 2.0
    assert np.allclose(_FlatForest(model).anomaly(x), -model.score_samples(x))


def test_lifecycles_are_tables_and_errors_name_state_and_input() -> None:
    assert next_state("open", "ack") == "acknowledged"
    with pytest.raises(AlertTransitionError, match="'cleared' cannot take 'ack'"):
        next_state("cleared", "ack")
    assert wo_next("draft", "approve") == "approved"
    with pytest.raises(WorkOrderTransitionError, match="'draft' cannot 'complete'"):
        wo_next("draft", "complete")
    with pytest.raises(WorkOrderTransitionError, match=r"outcome\.result"):
        check_outcome({"result": "maybe"})


def test_policy_refuses_bad_documents_naming_the_key() -> None:
    with pytest.raises(PolicyError, match="must not exceed raise"):
        parse_policy({"version": 2, "classes": {"*": {"raise": 1.0, "clear": 2.0}}})
    with pytest.raises(PolicyError, match=r"policy\.version"):
        parse_policy({"version": 0})
    with pytest.raises(PolicyError, match="unknown key"):
        parse_policy({"version": 1, "classes": {"*": {"rais": 1}}})
    p = parse_policy({"version": 3, "classes": {"*": {"sensor_max": "warning"}}})
    assert p.rules("x").severity(10.0, "sensor") == "warning"
    assert p.rules("x").severity(10.0, "machine") == "critical"


def test_fold_ignores_a_second_concurrent_clear_and_keeps_both_events() -> None:
    base = {"alert": "a1", "entity": "p/e", "severity": "high"}
    events = [
        {**base, "id": "1", "type": "open", "at": 1.0},
        {**base, "id": "2", "type": "clear", "at": 2.0, "node": "central"},
        {**base, "id": "3", "type": "clear", "at": 2.5, "node": "plant-a"},
    ]
    a = fold_alerts(events)["a1"]
    assert a["state"] == "cleared"
    assert [e.get("ignored", False) for e in a["events"]] == [False, False, True]


def test_engine_finds_bearing_wear_as_machine_and_current_drift_as_sensor(tmp_path) -> None:
    from twinmesh.adapters.synthetic import load_config
    from twinmesh.node.scoring._engine import EngineConfig
    from twinmesh.node.scoring._evaluate import run_stream

    plant = tmp_path / "plant.toml"
    plant.write_text(
        """
[plant]
site = "s"
seed = 9
sample_interval = 0.5
time_scale = 4.0
[[asset]]
name = "m1"
kind = "motor"
[[asset.fault]]
id = "b"
kind = "bearing_wear"
start = 400
ramp = 100
duration = 2000
[[asset]]
name = "m2"
kind = "motor"
[[asset.fault]]
id = "d"
kind = "sensor_drift"
telemetry = "current"
start = 400
ramp = 100
duration = 2000
offset = 5.0
"""
    )
    run = run_stream(
        load_config(plant), seed=9, duration=200, engine_config=EngineConfig(warmup=80)
    )
    opens = [e for e in run["events"] if e["type"] == "open"]
    m1 = [e for e in opens if e["entity"].endswith("m1")]
    m2 = [e for e in opens if e["entity"].endswith("m2")]
    assert m1 and all(e["diagnosis"]["kind"] == "machine" for e in m1)
    assert m1[0]["diagnosis"]["label"] == "bearing_wear"
    assert m2 and all(e["diagnosis"]["kind"] == "sensor" for e in m2)
    assert m2[0]["diagnosis"]["tag"] == "current"


def test_alert_events_are_made_plain_before_the_log_sees_them() -> None:
    # Found on a real node: a process finding's evidence held inf ("no relation
    # without this variable"), the log refused the event and the batch was lost.
    from twinmesh.crdt import LocalProtocolError
    from twinmesh.node.alerts._plain import plain_event

    e = plain_event(
        {
            "id": "a:open:1",
            "score": np.float64(2.5),
            "evidence": {"rest": float("inf"), "x": np.array([1.0, np.nan]), 3: (1, 2)},
            "ok": np.bool_(True),
        }
    )
    assert e == {
        "id": "a:open:1",
        "score": 2.5,
        "evidence": {"rest": None, "x": [1.0, None], "3": [1, 2]},
        "ok": True,
    }
    assert type(e["score"]) is float
    with pytest.raises(LocalProtocolError, match="no string id"):
        plain_event({"score": 1.0})


def test_models_are_versioned_artifacts_that_resume_without_warm_up(tmp_path) -> None:
    # A restarted node loads each asset's newest artifact from a real SQLite file
    # and scores the next frames exactly as the engine that learned it would.
    import asyncio

    from twinmesh.node.scoring._artifacts import ArtifactStore
    from twinmesh.node.scoring._engine import EngineConfig, ScoringEngine

    rng = np.random.default_rng(4)

    def feed(eng: ScoringEngine, frames: range) -> list:
        for n in frames:
            load = 60 + 10 * np.sin(n / 15)
            vals = {
                "load": load + rng.normal(0, 0.3),
                "current": 0.3 * load + rng.normal(0, 0.1),
                "vibrationRms": 1.0 + rng.normal(0, 0.01),
            }
            for k, (name, v) in enumerate(vals.items()):
                eng.add(
                    seq=n * 3 + k,
                    sample_id=f"{n}/{name}",
                    entity="p/m",
                    name=name,
                    value=float(v),
                    source_ts=1000.0 + n,
                    received_ts=1000.0 + n,
                    quality=0,
                )
        return eng.process(1000.0 + frames[-1] + 0.5)

    cfg = EngineConfig(warmup=60)
    a = ScoringEngine(config=cfg, seed=1)
    feed(a, range(70))
    state = a.export("p/m")
    assert state is not None and state["baseline"].version == 1

    async def roundtrip() -> dict:
        store = ArtifactStore(tmp_path / "models.sqlite")
        await store.open()
        await store.save(
            entity="p/m",
            version=1,
            feature_set="fs-1",
            reason="warm-up",
            frames=60,
            trained_at=1060.0,
            state=state,
        )
        await store.close()
        store = ArtifactStore(tmp_path / "models.sqlite")  # "after a restart"
        await store.open()
        got = await store.latest("fs-1")
        assert await store.latest("fs-2") == {}  # another feature set: warm up anew
        assert [h["version"] for h in await store.history("p/m")] == [1]
        await store.close()
        return got

    got = asyncio.run(roundtrip())
    b = ScoringEngine(config=cfg, seed=1)
    b.restore("p/m", got["p/m"][1])
    assert b.describe("p/m")["phase"] == "scoring"
    assert "restored model v1" in b.describe("p/m")["retrains"][-1]["reason"]
    rng = np.random.default_rng(9)
    ra = feed(a, range(70, 80))
    rng = np.random.default_rng(9)
    rb = feed(b, range(70, 80))
    assert len(rb) == len(ra) == 10
    assert [r.model_version for r in rb] == [1] * 10
    # The next retrain is v2, not v1 again: versions are never reused.
    b.retrain("p/m", reason="bearing replaced", at=2000.0)
    feed(b, range(80, 145))
    assert b.describe("p/m")["baseline"]["version"] == 2

    # After an upgrade to another feature set the old artifact does not load, and
    # the asset warms up anew: its new model is v2, and v1 stays on disk as it was.
    async def versions() -> tuple[dict[str, int], list[int]]:
        store = ArtifactStore(tmp_path / "models.sqlite")
        await store.open()
        newest = {e: v for e, (v, _state) in (await store.newest("fs-2")).items()}
        c = ScoringEngine(config=cfg, seed=1)
        for entity, version in newest.items():
            c.continue_after(entity, version)
        feed(c, range(70))
        r = c.retrains[-1]
        await store.save(
            entity="p/m",
            version=r.version,
            feature_set="fs-2",
            reason=r.reason,
            frames=r.frames,
            trained_at=r.at,
            state=c.export("p/m"),
        )
        kept = [h["version"] for h in await store.history("p/m")]
        await store.close()
        return newest, kept

    newest, kept = asyncio.run(versions())
    assert newest == {"p/m": 1}
    assert sorted(kept) == [1, 2]


def test_a_publish_that_groups_values_by_tag_closes_complete_frames() -> None:
    """An OPC UA publish after a stall carries each item's queued values together
    (tag A of 40 ticks, then tag B of the same ticks). At 50 Hz that is more ticks
    than the assembler's count horizon: every frame must still close complete,
    nothing late (before the fix: frames holding only tag A, the rest 'late', and
    a dropout alert per tag on a real node)."""
    from types import SimpleNamespace

    from twinmesh.node.scoring import EngineConfig, ScoringEngine
    from twinmesh.node.scoring._features import FrameAssembler

    tags = ["speed", "current", "vibrationRms"]
    ticks = [1000.0 + 0.02 * k for k in range(40)]

    def sample(seq: int, name: str, ts: float) -> dict[str, object]:
        return {
            "seq": seq,
            "sample_id": f"{name}/{seq}",
            "entity": "e",
            "name": name,
            "value": float(seq),
            "source_ts": ts,
            "received_ts": ts,
            "quality": 0,
        }

    # The assembler alone, fed in that order: frames wait (time horizon), then all
    # close complete.
    fa = FrameAssembler()
    for k, ts in enumerate(ticks[:3]):  # the tags an asset reports are learned first
        for t in tags:
            fa.add(**sample(k, t, ts))  # type: ignore[arg-type]
    seq, closed = 100, []
    grouped = [(t, ts) for t in tags for ts in ticks[3:]]
    for t, ts in grouped:
        seq += 1
        closed += fa.add(**sample(seq, t, ts))  # type: ignore[arg-type]
    closed += fa.flush()
    assert fa.late == 0
    assert [f for f in closed if set(f.values) != set(tags)] == []

    # The engine reads a buffer batch in source-time order, whatever the horizon.
    eng = ScoringEngine(config=EngineConfig(warmup=5), seed=1)
    stored = [
        SimpleNamespace(
            seq=i,
            sample=SimpleNamespace(
                sample_id=f"{t}/{i}",
                entity="e",
                name=t,
                value=float(i),
                source_ts=ts,
                received_ts=ts,
                quality=SimpleNamespace(_value_=0),
            ),
        )
        for i, (t, ts) in enumerate([(t, ts) for t in tags for ts in ticks])
    ]
    eng.add_stored(stored)
    eng.flush()
    assert eng.frames.late == 0


def test_a_second_drift_on_a_transmitter_already_alerted_counts_as_labelled() -> None:
    from twinmesh.node.scoring._evaluate import _score_run

    def ev(at, kind, key, alert):
        return {
            "at": at,
            "type": kind,
            "entity": "p/m",
            "key": key,
            "alert": alert,
            "diagnosis": {"kind": "sensor", "label": "drift"},
        }

    run = {
        "truth": [
            {
                "id": "d1",
                "entity": "p/m",
                "kind": "sensor_drift",
                "telemetry": ["speed"],
                "start": 100.0,
                "end": 400.0,
            },
            {
                "id": "d2",
                "entity": "p/m",
                "kind": "sensor_drift",
                "telemetry": ["speed"],
                "start": 200.0,
                "end": 500.0,
            },
            {
                "id": "d3",
                "entity": "p/m",
                "kind": "sensor_drift",
                "telemetry": ["load"],
                "start": 300.0,
                "end": 350.0,
            },
        ],
        "events": [
            ev(120.0, "open", "sensor:drift:current|speed", "a1"),
            ev(450.0, "clear", "sensor:drift:current|speed", "a1"),
        ],
        "assets": ["p/m"],
        "warmup_end": {"p/m": 0.0},
        "end": 600.0,
    }
    got = {r["id"]: r["sensor_ok"] for r in _score_run(run)["per_kind"]["sensor_drift"]}
    # d1: opened inside. d2: the speed alert is open when it begins. d3: an open
    # alert about other transmitters says nothing about the load.
    assert got == {"d1": True, "d2": True, "d3": False}
