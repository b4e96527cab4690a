"""Scoring figures, each beside a reference measured in the same run.

1. Per-frame scoring cost of the engine (features, all five detectors,
   diagnosis) called one frame at a time, against sklearn's
   ``IsolationForest.score_samples`` of one row (the issue: ~3 ms a call);
   and the engine's per-frame cost in micro-batches of 1,000 frames, against
   ``score_samples`` on a batch of 1,000 rows, per row (the issue: ~6 µs).
2. Scoring throughput in samples/s (engine fed the plant's samples, micro-
   batches as the node's consumer reads them) against the node-side ingest
   path for the same samples in the same run (``new_sample`` + the node's
   ``QualityChecker``, what every sample costs before it is stored): the goal
   is >= 1.0, scoring never falls behind ingestion. (The telemetry buffer's
   SQLite commit is left out of the reference, which makes it faster: the
   ratio is conservative.)
3. Features per sample: the width of an asset's feature vector against the
   tags it reports (each frame is one sample per tag).

4. With ``--node``: the same figures on a real node fed at full rate by
   ``twinmesh plant simulate`` (bench/scoring_node.py): scoring capacity
   against the node's own ingest rate, sample -> verdict and sample -> alert
   latency p50/p99, the scoring lag.

    python bench/scoring_bench.py [--quick] [--json out.json] [--node ...]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from _report import Report, best_of_each
from sklearn.ensemble import IsolationForest

from twinmesh.adapters import Provenance, Quality
from twinmesh.adapters._sample import new_sample
from twinmesh.adapters.synthetic import AssetSimulator, kind_telemetry, load_config
from twinmesh.node.scoring import EngineConfig, ScoringEngine
from twinmesh.node.telemetry._quality import QualityChecker, TagSpec

PLANT = """
[plant]
site = "plant-a"
seed = 11
sample_interval = 0.5
time_scale = 1.0
out = "out"
[[asset]]
name = "motor-1"
kind = "motor"
"""

WARMUP = 120


def samples(n_frames: int, tmp: Path) -> list[tuple[str, str, float, str, float, int]]:
    """``n_frames`` readings of one healthy motor: (entity, tag, value, unit, ts, tick)."""
    cfg_path = tmp / "plant.toml"
    cfg_path.write_text(PLANT)
    cfg = load_config(cfg_path)
    a = cfg.assets[0]
    sim = AssetSimulator(a, seed=11, time_scale=1.0, ambient=cfg.ambient_temperature)
    units = kind_telemetry(a.kind)
    out = []
    for _ in range(n_frames):
        tick = sim.tick()
        ts = 1_700_000_000.0 + tick.n * a.sample_interval
        for name, value in tick.values.items():
            out.append((a.entity, name, float(value), units[name].unit, ts, tick.n))
    return out


def engine_after_warmup(
    rows: list[tuple[str, str, float, str, float, int]],
) -> tuple[ScoringEngine, int]:
    eng = ScoringEngine(config=EngineConfig(warmup=WARMUP), seed=1)
    per_frame = len({r[1] for r in rows})
    i = 0
    for seq, (entity, name, value, _unit, ts, _n) in enumerate(rows[: (WARMUP + 1) * per_frame]):
        eng.add(
            seq=seq,
            sample_id=f"{seq}",
            entity=entity,
            name=name,
            value=value,
            source_ts=ts,
            received_ts=ts,
            quality=0,
        )
        i = seq + 1
    eng.process(rows[i - 1][4])
    return eng, i


def feed(
    eng: ScoringEngine, rows: list[tuple[str, str, float, str, float, int]], start: int, every: int
) -> int:
    """Feed rows from ``start``, calling ``process`` every ``every`` frames; frames scored."""
    per_frame = len({r[1] for r in rows})
    before = eng.frames_scored
    for k, (entity, name, value, _unit, ts, _n) in enumerate(rows[start:]):
        seq = start + k
        eng.add(
            seq=seq,
            sample_id=f"{seq}",
            entity=entity,
            name=name,
            value=value,
            source_ts=ts,
            received_ts=ts,
            quality=0,
        )
        if (k + 1) % (every * per_frame) == 0:
            eng.process(ts)
    eng.flush()
    eng.process(rows[-1][4] + 1.0)
    return eng.frames_scored - before


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes: proves it runs")
    p.add_argument("--json", help="also write the rows as JSON to this file")
    p.add_argument(
        "--node",
        action="store_true",
        help="also run the real-node figures (bench/scoring_node.py: plant + node processes)",
    )
    p.add_argument(
        "--node-seconds", type=float, default=60.0, help="the real-node measuring window, s"
    )
    p.add_argument("--motors", type=int, default=6, help="motors in the real-node plant")
    p.add_argument(
        "--sample-interval", type=float, default=0.02, help="plant sample interval, s (real node)"
    )
    p.add_argument(
        "--time-scale", type=float, default=1.0, help="plant time per wall second (real node)"
    )
    args = p.parse_args()
    n = 150 if args.quick else 3000
    repeat = 1 if args.quick else 3
    import tempfile

    report = Report(
        "scoring" + (" (--quick: sizes too small to mean anything)" if args.quick else "")
    )
    with tempfile.TemporaryDirectory() as tmp:
        rows = samples(WARMUP + 1 + n, Path(tmp))
    per_frame = len({r[1] for r in rows})
    single_n = min(n, 300)

    # The reference forest: as many trees as the engine's, on as many features.
    eng0, start = engine_after_warmup(rows)
    asset = next(iter(eng0.assets.values()))
    width = len(asset.features)
    rng = np.random.default_rng(2)
    forest = IsolationForest(n_estimators=64, random_state=3).fit(rng.normal(size=(WARMUP, width)))
    one = rng.normal(size=(1, width))
    thousand = rng.normal(size=(1000, width))

    def single() -> None:
        eng, s = engine_after_warmup(rows)
        feed(eng, rows[: s + single_n * per_frame], s, every=1)

    def batched() -> None:
        eng, s = engine_after_warmup(rows)
        feed(eng, rows, s, every=1000)

    def warm_only() -> None:
        engine_after_warmup(rows)

    def sk_one() -> None:
        for _ in range(20):
            forest.score_samples(one)

    def sk_batch() -> None:
        forest.score_samples(thousand)

    t_single, t_batch, t_warm, t_sk1, t_skb = best_of_each(
        single, batched, warm_only, sk_one, sk_batch, repeat=repeat
    )
    per_single = (t_single - t_warm) / single_n
    per_batch = (t_batch - t_warm) / n
    report.row(
        "engine, one frame per call: per frame",
        per_single * 1e6,
        "µs",
        reference="sklearn score_samples, 1 row",
        ref_value=t_sk1 / 20 * 1e6,
        ref_unit="µs",
        goal="<= 1 (cheaper than the forest alone)",
        met=per_single <= t_sk1 / 20,
    )
    report.row(
        "engine, micro-batches of 1,000: per frame",
        per_batch * 1e6,
        "µs",
        reference="sklearn score_samples, 1,000 rows, per row",
        ref_value=t_skb / 1000 * 1e6,
        ref_unit="µs",
        goal="(reported: five detectors + diagnosis vs one forest)",
    )
    report.row(
        "micro-batch speed-up over single calls",
        per_single / per_batch,
        "x",
        reference="sklearn batch speed-up",
        ref_value=(t_sk1 / 20) / (t_skb / 1000),
        ref_unit="x",
        goal="(reported)",
    )

    # Throughput: scoring vs the node-side ingest path of the same samples.
    specs = {
        (r[0], r[1]): TagSpec(
            unit=r[3], minimum=None, maximum=None, expected_interval=0.5, varies=True
        )
        for r in rows[:per_frame]
    }
    prov = Provenance(adapter="synthetic", source="bench")
    body = rows[start:]

    def ingest() -> None:
        checker = QualityChecker(specs)
        for entity, name, value, unit, ts, tick in body:
            s = new_sample(
                entity, name, value, unit, ts, ts, None, Quality.GOOD, prov, f"{name}/{tick}"
            )
            checker.check(s, ts)

    def score() -> None:
        eng, s = engine_after_warmup(rows)
        feed(eng, rows, s, every=3)  # a node consumer reads a few frames per commit

    t_ing, t_score, t_warm2 = best_of_each(ingest, score, warm_only, repeat=repeat)
    scored_rate = len(body) / max(t_score - t_warm2, 1e-9)
    ingest_rate = len(body) / t_ing
    report.row(
        "scoring throughput (micro-batches of 3 frames)",
        scored_rate,
        "samples/s",
        reference="ingest path (new_sample + QualityChecker)",
        ref_value=ingest_rate,
        ref_unit="samples/s",
        goal=">= 1.0",
        met=scored_rate >= ingest_rate,
    )
    report.row(
        "features per sample",
        width / per_frame,
        "",
        reference="tags per frame",
        ref_value=float(per_frame),
        ratio=width / per_frame,
        goal="(reported)",
        note=f"{width} features per frame: {', '.join(asset.features)}",
    )
    report.note(
        f"one healthy motor, {per_frame} tags at 2 Hz, warm-up {WARMUP} frames (untimed:"
        " subtracted); single-call row over {single_n} frames, batched over {n};"
        " the machine is shared, so only the ratios mean something".format(single_n=single_n, n=n)
    )
    if args.node:
        from scoring_node import measure_node

        measure_node(
            report,
            seconds=args.node_seconds,
            motors=args.motors,
            time_scale=args.time_scale,
            interval=args.sample_interval,
        )
    report.print()
    if args.json:
        report.write_json(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
