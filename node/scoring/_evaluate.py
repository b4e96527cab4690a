"""``twinmesh score evaluate``: detection quality on a synthetic plant, per fault type.

Theory of operation
-------------------
For many seeds a real node run is too slow (a plant produces a reading per tag
every ``sample_interval`` of wall time whatever its ``time_scale``), so this
runs *the same code a node runs* over the plant's generated stream: the
plant's :class:`AssetSimulator` ticks (physics, faults), the node's
:class:`QualityChecker` (STUCK, ranges), the motors' co-simulation (the
node's :class:`AssetCoupling` stepping our FMUs with the nameplate parameters
``twinmesh plant simulate`` gives a node), the :class:`ScoringEngine` and the
:class:`AlertTracker` with the default policy — in stream time, without
waiting. The ground truth is the plant's own :class:`GroundTruth`.
(``tests/test_scoring_node.py`` checks the same pipeline on a real node fed by
``twinmesh plant simulate``.)

With ``--variants K`` it also writes K altered copies of the plant file to a
temporary directory — fault start times, ramps, durations, severities and
drift offsets redrawn, one extra drift on a random process tag, new seeds —
and evaluates those: figures are about plants the detectors were not tuned on.

Scoring per fault record:

* a physical fault is *detected* when a machine-kind alert opens on its asset
  inside the fault; lead time = failure point - first alert, where the
  failure point is the end of the ramp (full wear) for bearing wear and the
  first out-of-range reading (else the end) for a cooling failure;
* a sensor fault is *labelled sensor* when a sensor-kind alert opens on its
  asset inside the fault, or one naming its transmitter is still open when the
  fault begins (a second drift on a transmitter already alerted for drifting is
  the same condition: the variants' extra drift can land on such a tag), and no
  machine-kind alert does (alerts explained by a physical fault running at the
  same time on that asset are not held against it);
* a *false alert* is an alert opened on an asset outside all its fault windows
  (each extended by ``grace`` seconds for a machine to settle); the rate is per
  healthy asset-day of stream time after the warm-up.
"""

from __future__ import annotations

import json
import math
import random
import statistics
import tempfile
import time
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from twinmesh.adapters import Provenance, Quality
from twinmesh.adapters._sample import new_sample

from ..alerts._policy import DEFAULT_POLICY
from ..alerts._tracker import AlertTracker
from ..telemetry._quality import QualityChecker, TagSpec
from ._engine import EngineConfig, FrameResult, ScoringEngine

__all__ = ["evaluate", "format_table", "run_stream", "write_variants"]

_GRACE = 120.0  # seconds after a fault's end before an alert counts as false


def _lineage(result: FrameResult, finding: Any) -> dict[str, Any]:
    return {"model_version": result.model_version}


def _couplings(config: Any, specs: dict[tuple[str, str], TagSpec], fmus: Any) -> dict[str, Any]:
    """The node's co-simulation of the plant's motors, as ``twinmesh plant simulate``
    configures it (node_cosim_toml: nameplate parameters, no faults)."""
    from twinmesh.adapters.synthetic._outputs import node_cosim_toml

    from ..cosim import Master, load_system
    from ..cosim._coupling import AssetCoupling, TagInfo
    from ..cosim._settings import parse_cosim

    raw = tomllib.loads(node_cosim_toml(config))
    tmp = Path(tempfile.gettempdir())
    settings = parse_cosim(raw, rel=lambda s: tmp / s, data_dir=tmp)
    out = {}
    for asset in settings.assets if settings is not None else ():
        system = load_system(asset.system, resolve_builtin=fmus.resolve)
        overrides = {(f, v): x for f, v, x in asset.parameters}

        def make(
            values: dict[tuple[str, str], float], sys: Any = system, o: Any = overrides
        ) -> Any:
            return Master(sys, values={**o, **values})

        out[asset.entity] = AssetCoupling(
            entity=asset.entity,
            system=system,
            make_master=make,
            time_scale=asset.time_scale,
            tags={
                name: TagInfo(unit=s.unit, minimum=s.minimum, maximum=s.maximum)
                for (e, name), s in specs.items()
                if e == asset.entity
            },
        )
    return out


def run_stream(
    config: Any,
    *,
    seed: int,
    duration: float,
    engine_config: EngineConfig | None = None,
    batch_seconds: float = 1.0,
    fmus: Any = None,
) -> dict[str, Any]:
    """Run one plant for ``duration`` wall seconds of stream time; events and truth.

    With ``fmus`` (a :class:`BuiltinFmus`) the motors are co-simulated as on a
    node, and their ``.expected``/``.residual`` series are scored too."""
    from twinmesh.adapters.synthetic import AssetSimulator, GroundTruth, kind_telemetry

    ec = engine_config or EngineConfig()
    start = 1_700_000_000.0
    sims = [
        AssetSimulator(
            a, seed=seed, time_scale=config.time_scale, ambient=config.ambient_temperature
        )
        for a in config.assets
    ]
    truth = GroundTruth(config.assets, start=start, time_scale=config.time_scale)
    specs = {}
    models = {}
    for a in config.assets:
        models[a.entity] = a.model
        for name, info in kind_telemetry(a.kind).items():
            specs[(a.entity, name)] = TagSpec(
                unit=info.unit,
                minimum=info.minimum,
                maximum=info.maximum,
                expected_interval=a.sample_interval,
                varies=True,
            )
    checker = QualityChecker(specs)
    couplings = _couplings(config, specs, fmus) if fmus is not None else {}
    engine = ScoringEngine(config=ec, cohort_of=models.__getitem__, seed=seed)
    tracker = AlertTracker(node="eval", policy=lambda: DEFAULT_POLICY, model_of=models.__getitem__)
    events: list[dict[str, Any]] = []
    prov = {a.entity: Provenance(adapter="synthetic", source=a.name) for a in config.assets}
    units = {a.entity: kind_telemetry(a.kind) for a in config.assets}
    seq = 0
    next_batch = start + batch_seconds
    due = [(start, i) for i in range(len(sims))]
    end = start + duration
    wall0 = time.perf_counter()
    latencies: list[float] = []
    while True:
        t, i = min(due)
        if t >= end:
            break
        while t >= next_batch:
            for r in engine.process(next_batch):
                events += tracker.observe(r, now=next_batch, lineage=_lineage)
            next_batch += batch_seconds
        sim = sims[i]
        a = sim.asset
        tick = sim.tick()
        ts = round(start + tick.n * a.sample_interval, 6)
        truth.observe(a, tick, ts)
        for name, value in tick.values.items():
            seq += 1
            s = new_sample(
                a.entity,
                name,
                float(value),
                units[a.entity][name].unit,
                ts,
                ts + 0.01,
                None,
                Quality.GOOD,
                prov[a.entity],
                f"{a.entity}/{name}/{tick.n}",
            )
            s = checker.check(s, ts + 0.01).sample
            coupling = couplings.get(a.entity)
            derived = coupling.offer(s, ts + 0.01) if coupling is not None else []
            for d in (s, *derived):
                engine.add(
                    seq=seq,
                    sample_id=d.sample_id,
                    entity=d.entity,
                    name=d.name,
                    value=d.value,
                    source_ts=d.source_ts,
                    received_ts=d.received_ts,
                    quality=d.quality._value_,
                )
        due[i] = (start + sim.n * a.sample_interval, i)
    engine.flush()
    for r in engine.process(end):
        events += tracker.observe(r, now=end, lineage=_lineage)
    return {
        "events": events,
        "truth": truth.records(final=True, stopped=end),
        "start": start,
        "end": end,
        "assets": [a.entity for a in config.assets],
        "warmup_end": {a.entity: start + ec.warmup * a.sample_interval for a in config.assets},
        "frames": engine.frames_scored,
        "samples": engine.samples_seen,
        "seconds": time.perf_counter() - wall0,
        "retrains": [r.reason for r in engine.retrains if not r.reason.startswith("warm-up")],
        "latencies": latencies,
    }


def _score_run(run: dict[str, Any]) -> dict[str, Any]:
    opens = [e for e in run["events"] if e["type"] in ("open", "reopen")]
    per_kind: dict[str, list[dict[str, Any]]] = {}
    windows: dict[str, list[tuple[float, float, str]]] = {}
    for r in run["truth"]:
        windows.setdefault(r["entity"], []).append((r["start"], r["end"], r["kind"]))
    for r in run["truth"]:
        ent, a, b = r["entity"], r["start"], r["end"]
        inside = [e for e in opens if e["entity"] == ent and a <= e["at"] <= b]
        machine = [e for e in inside if e["diagnosis"]["kind"] == "machine"]
        sensor = [e for e in inside if e["diagnosis"]["kind"] == "sensor"]
        if r["kind"] not in ("bearing_wear", "cooling_failure"):
            sensor += [
                e
                for e in _open_at(run["events"], ent, a)
                if e["diagnosis"]["kind"] == "sensor"
                and set(e["key"].rsplit(":", 1)[-1].split("|")) & set(r.get("telemetry", ()))
            ]
        rec: dict[str, Any] = {
            "id": r["id"],
            "entity": ent,
            # What opened inside the fault, for reading a miss or a wrong label.
            "alerts": sorted({e["key"] for e in inside}),
        }
        if r["kind"] in ("bearing_wear", "cooling_failure"):
            rec["detected"] = bool(machine)
            rec["label_ok"] = any(e["diagnosis"]["label"] == r["kind"] for e in machine)
            if r["kind"] == "bearing_wear":
                fail = r.get("ramp_end", b)
            else:
                fail = r["observed"].get("first_out_of_range") or b
            rec["lead"] = (fail - min(e["at"] for e in machine)) if machine else None
        else:
            physical = [
                (s, t) for s, t, k in windows[ent] if k in ("bearing_wear", "cooling_failure")
            ]
            unexplained = [
                e for e in machine if not any(s <= e["at"] <= t + _GRACE for s, t in physical)
            ]
            rec["detected"] = bool(sensor)
            rec["sensor_ok"] = bool(sensor) and not unexplained
        per_kind.setdefault(r["kind"], []).append(rec)
    false = []
    healthy = 0.0
    for ent in run["assets"]:
        w = [(s, t + _GRACE) for s, t, _ in windows.get(ent, [])]
        t0 = run["warmup_end"][ent]
        false += [
            e
            for e in opens
            if e["entity"] == ent and e["at"] >= t0 and not any(s <= e["at"] <= t for s, t in w)
        ]
        covered = sum(max(0.0, min(t, run["end"]) - max(s, t0)) for s, t in _union(w))
        healthy += max(run["end"] - t0 - covered, 0.0)
    return {"per_kind": per_kind, "false": false, "healthy_seconds": healthy}


def _open_at(events: Sequence[dict[str, Any]], entity: str, t: float) -> list[dict[str, Any]]:
    """The opening event of every alert of ``entity`` that is open at time ``t``."""
    state: dict[str, dict[str, Any] | None] = {}
    for e in sorted(events, key=lambda e: e["at"]):
        if e["entity"] != entity or e["at"] > t:
            continue
        if e["type"] in ("open", "reopen"):
            state[e["alert"]] = e
        elif e["type"] == "clear":
            state[e["alert"]] = None
    return [e for e in state.values() if e is not None]


def _union(w: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    for s, t in sorted(w):
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], t))
        else:
            out.append((s, t))
    return out


def evaluate(
    configs: Sequence[Path],
    *,
    seeds: int,
    duration: float | None = None,
    tail: float = 1800.0,
    engine_config: EngineConfig | None = None,
    first_seed: int = 1,
    fmus: Any = None,
) -> dict[str, Any]:
    from twinmesh.adapters.synthetic import load_config

    kinds: dict[str, list[dict[str, Any]]] = {}
    false: list[dict[str, Any]] = []
    healthy = 0.0
    frames = 0
    seconds = 0.0
    retrains: list[str] = []
    runs = 0
    for path in configs:
        cfg = load_config(path)
        last = max((f.end / cfg.time_scale for a in cfg.assets for f in a.faults), default=0.0)
        dur = duration if duration is not None else last + tail
        for k in range(seeds):
            run = run_stream(
                cfg, seed=first_seed + k, duration=dur, engine_config=engine_config, fmus=fmus
            )
            runs += 1
            frames += run["frames"]
            seconds += run["seconds"]
            retrains += run["retrains"]
            scored = _score_run(run)
            for kind, recs in scored["per_kind"].items():
                kinds.setdefault(kind, []).extend(
                    {**r, "plant": path.name, "seed": first_seed + k} for r in recs
                )
            false += scored["false"]
            healthy += scored["healthy_seconds"]
    table = {}
    for kind, recs in sorted(kinds.items()):
        row: dict[str, Any] = {"faults": len(recs)}
        row["recall"] = sum(r["detected"] for r in recs) / len(recs)
        if kind in ("bearing_wear", "cooling_failure"):
            leads = [r["lead"] for r in recs if r["lead"] is not None]
            row["label_ok"] = sum(r["label_ok"] for r in recs) / len(recs)
            row["lead_median"] = statistics.median(leads) if leads else None
            row["lead_worst"] = min(leads) if leads else None
        else:
            row["sensor_labelled"] = sum(r["sensor_ok"] for r in recs) / len(recs)
        table[kind] = row
    days = healthy / 86400.0
    return {
        "runs": runs,
        "table": table,
        "false_alerts": len(false),
        "healthy_asset_days": days,
        "false_per_asset_day": len(false) / days if days else math.nan,
        "false_examples": [{k: e[k] for k in ("entity", "at", "key", "score")} for e in false[:10]],
        "frames_scored": frames,
        "frames_per_second": frames / seconds if seconds else math.nan,
        "retrains": retrains[:20],
        "misses": [r for recs in kinds.values() for r in recs if not r.get("detected")][:20],
        "mislabelled": [
            r
            for recs in kinds.values()
            for r in recs
            if r.get("detected") and r.get("sensor_ok") is False
        ][:20],
    }


# -- altered plants ----------------------------------------------------------------------


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    return json.dumps(v)


def _dump(raw: dict[str, Any]) -> str:
    lines = []
    for table in ("plant", "opcua", "mqtt"):
        if table in raw:
            lines.append(f"[{table}]")
            lines += [f"{k} = {_toml_value(v)}" for k, v in raw[table].items()]
            lines.append("")
    for asset in raw.get("asset", []):
        lines.append("[[asset]]")
        lines += [
            f"{k} = {_toml_value(v)}" for k, v in asset.items() if k not in ("params", "fault")
        ]
        if asset.get("params"):
            lines.append("[asset.params]")
            lines += [f"{k} = {_toml_value(v)}" for k, v in asset["params"].items()]
        for fault in asset.get("fault", []):
            lines.append("[[asset.fault]]")
            lines += [f"{k} = {_toml_value(v)}" for k, v in fault.items()]
        lines.append("")
    return "\n".join(lines)


def write_variants(
    config: Path, out: Path, *, count: int, seed: int, warmup_seconds: float
) -> list[Path]:
    """``count`` altered copies of ``config`` in ``out``: faults redrawn (see module doc)."""
    from twinmesh.adapters.synthetic import kind_telemetry

    raw = tomllib.loads(config.read_text())
    rng = random.Random(seed)
    paths = []
    scale = float(raw.get("plant", {}).get("time_scale", 1.0))
    for v in range(count):
        alt = json.loads(json.dumps(raw))
        alt.setdefault("plant", {})["seed"] = rng.randrange(1, 2**31)
        alt["plant"]["out"] = str(out / f"variant-{v}-out")
        earliest = (warmup_seconds + 30.0) * scale
        for asset in alt.get("asset", []):
            for i, f in enumerate(asset.get("fault", [])):
                f["id"] = f"{asset['name']}-f{i}-v{v}"
                f["start"] = round(earliest + rng.uniform(0.0, 1.5) * max(f["start"], 60.0), 1)
                f["duration"] = round(f["duration"] * rng.uniform(0.8, 1.3), 1)
                if "ramp" in f:
                    f["ramp"] = round(min(f["ramp"] * rng.uniform(0.6, 1.5), f["duration"]), 1)
                if f["kind"] == "bearing_wear":
                    f["severity"] = round(rng.uniform(0.4, 1.0), 3)
                elif f["kind"] == "cooling_failure":
                    f["severity"] = round(rng.uniform(0.5, 0.95), 3)
                elif f["kind"] == "sensor_drift":
                    f["offset"] = round(
                        f["offset"] * rng.uniform(0.7, 1.5) * rng.choice([1, -1]), 3
                    )
        # One extra drift on a random process tag of a random asset.
        assets = alt.get("asset", [])
        if assets:
            asset = rng.choice(assets)
            tags = [
                (n, i)
                for n, i in kind_telemetry(asset["kind"]).items()
                if "vibration" not in n.lower()
                and "temperature" not in n.lower()
                and n.lower() != "toolwear"
            ]
            name, info = rng.choice(tags)
            start = earliest + rng.uniform(0.0, 600.0) * scale
            asset.setdefault("fault", []).append(
                {
                    "id": f"{asset['name']}-extra-drift-v{v}",
                    "kind": "sensor_drift",
                    "telemetry": name,
                    "start": round(start, 1),
                    "duration": round(rng.uniform(200.0, 400.0) * scale, 1),
                    "offset": round(
                        rng.uniform(0.015, 0.04)
                        * (info.maximum - info.minimum)
                        * rng.choice([1, -1]),
                        3,
                    ),
                }
            )
        p = out / f"variant-{v}.toml"
        p.write_text(_dump(alt))
        paths.append(p)
    return paths


def format_table(result: dict[str, Any]) -> str:
    def f(v: Any, spec: str = ".2f") -> str:
        return "-" if v is None else format(v, spec)

    lines = [
        f"runs: {result['runs']}  frames scored: {result['frames_scored']}"
        f"  ({result['frames_per_second']:.0f} frames/s)"
        + (f"  co-simulation: {result['cosim']}" if "cosim" in result else ""),
        "",
        f"{'fault type':<18}{'faults':>7}{'recall':>8}{'label':>7}{'lead med s':>12}"
        f"{'lead worst s':>13}{'sensor lbl':>11}",
    ]
    for kind, row in result["table"].items():
        lines.append(
            f"{kind:<18}{row['faults']:>7}{row['recall']:>8.2f}"
            f"{f(row.get('label_ok')):>7}{f(row.get('lead_median'), '.1f'):>12}"
            f"{f(row.get('lead_worst'), '.1f'):>13}{f(row.get('sensor_labelled')):>11}"
        )
    lines += [
        "",
        f"false alerts: {result['false_alerts']} over {result['healthy_asset_days']:.3f} healthy"
        f" asset-days = {result['false_per_asset_day']:.2f} per healthy asset-day",
        "goals: recall >= 0.9 (bearing_wear, cooling_failure); <= 1 false alert per healthy"
        " asset-day; >= 0.9 of sensor faults labelled sensor",
    ]
    return "\n".join(lines)


def main_evaluate(
    config: Path,
    *,
    seeds: int,
    variants: int,
    duration: float | None,
    tail: float,
    as_json: bool,
    first_seed: int = 1,
    cosim: bool = True,
) -> str:
    ec = EngineConfig()
    fmus = None
    note = ""
    if cosim:
        from ..cosim import BuiltinFmus, CompilerMissing

        try:
            fmus = BuiltinFmus()
            fmus.build_all()
        except CompilerMissing as exc:
            # As on a node without a C compiler: scored without residuals, and said so.
            fmus, note = None, f"co-simulation off: {exc}"
    configs = [config]
    with tempfile.TemporaryDirectory(prefix="twinmesh-eval-") as tmp:
        if variants:
            from twinmesh.adapters.synthetic import load_config

            interval = max(a.sample_interval for a in load_config(config).assets)
            configs += write_variants(
                config,
                Path(tmp),
                count=variants,
                seed=first_seed,
                warmup_seconds=ec.warmup * interval,
            )
        result = evaluate(
            configs,
            seeds=seeds,
            duration=duration,
            tail=tail,
            engine_config=ec,
            first_seed=first_seed,
            fmus=fmus,
        )
    result["cosim"] = note or ("motors co-simulated (FMUs)" if fmus is not None else "off")
    return json.dumps(result, indent=2, default=str) if as_json else format_table(result)
