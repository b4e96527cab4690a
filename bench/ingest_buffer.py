"""Telemetry buffer: sustained rows/s and append latency, against raw aiosqlite.

    python bench/ingest_buffer.py [--quick] [--json FILE] [--rows 40000] [--rounds 3]

Same run, same disk, same schema, same PRAGMAs (WAL, synchronous=FULL), timed
interleaved (buffer, raw, raw-grouped, buffer, ...) and best-of-rounds so a
busy neighbour slows all alike (bench/README.md):

* figure:      ``producers`` coroutines calling ``TelemetryBuffer.append`` with
               ``batch``-sample batches (row conversion, dedupe and flag
               counting, group commit, background WAL checkpoints);
* reference 1: one coroutine, ``executemany`` of pre-built tuples and a COMMIT
               per ``batch`` rows — what each producer would do on its own;
* reference 2: the same with one COMMIT per ``producers x batch`` rows — the
               commit size group commit reaches, i.e. the floor for our work.

Latency: one producer appends ``--paced-batch``-row batches at a steady
``--paced-rate`` rows/s (not saturated); p50/p99 of the time until each batch
is durable, against the same batches written with raw executemany + COMMIT,
paced alike and interleaved. (Under saturation, append latency is queueing:
the saturated p50 is printed as a note.)
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import aiosqlite
from _report import Report

from twinmesh.adapters import Provenance, Quality, Sample, make_sample_id
from twinmesh.node.telemetry import TelemetryBuffer
from twinmesh.node.telemetry._buffer import _INSERT_SAMPLE, _SCHEMA, _row

__all__ = ["measure"]


def make_samples(n: int, offset: int = 0) -> list[Sample]:
    t0 = 1_800_000_000.0
    out = []
    for i in range(offset, offset + n):
        tag = f"tag-{i % 50}"
        ts = t0 + i * 0.001
        out.append(
            Sample(
                entity=f"plant-a/line-1/pump-{i % 7}",
                name=tag,
                value=float(i % 1000) / 10.0,
                unit="mm/s",
                source_ts=ts,
                received_ts=ts,
                quality=Quality.UNIT_CONVERTED if i % 10 == 0 else Quality.GOOD,
                provenance=Provenance(adapter="bench", source=f"plant-a/x/{tag}"),
                sample_id=make_sample_id("bench", tag, source_ts=ts, value=float(i)),
            )
        )
    return out


async def raw_rate(path: Path, rows: list[tuple[object, ...]], per_commit: int) -> float:
    db = await aiosqlite.connect(path, isolation_level=None)
    try:
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute("PRAGMA synchronous=FULL")
        await db.executescript(_SCHEMA)
        start = time.perf_counter()
        for i in range(0, len(rows), per_commit):
            await db.execute("BEGIN IMMEDIATE")
            await db.executemany(_INSERT_SAMPLE, rows[i : i + per_commit])
            await db.execute("COMMIT")
        return len(rows) / (time.perf_counter() - start)
    finally:
        await db.close()


async def buffer_rate(
    path: Path, data: list[Sample], batch: int, producers: int, latencies: list[float]
) -> tuple[float, int]:
    chunks = [data[i : i + batch] for i in range(0, len(data), batch)]
    async with await TelemetryBuffer.open(path) as buf:
        start = time.perf_counter()

        async def producer(k: int) -> None:
            for chunk in chunks[k::producers]:
                t = time.perf_counter()
                await buf.append(chunk)
                latencies.append(time.perf_counter() - t)

        await asyncio.gather(*(producer(k) for k in range(producers)))
        rate = len(data) / (time.perf_counter() - start)
        assert buf.stored == len(data) == await buf.count(), "every appended row is stored"
        return rate, buf.commits


async def paced(path: Path, data: list[Sample], batch: int, rate: float, raw: bool) -> list[float]:
    """Latencies of batches written at a steady rate (rows/s), buffer or raw."""
    chunks = [data[i : i + batch] for i in range(0, len(data), batch)]
    out: list[float] = []
    if raw:
        db = await aiosqlite.connect(path, isolation_level=None)
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute("PRAGMA synchronous=FULL")
        await db.executescript(_SCHEMA)
    else:
        buf = await TelemetryBuffer.open(path)
    start = time.perf_counter()
    try:
        for k, chunk in enumerate(chunks):
            t = time.perf_counter()
            if raw:
                await db.execute("BEGIN IMMEDIATE")
                await db.executemany(_INSERT_SAMPLE, [_row(s) for s in chunk])
                await db.execute("COMMIT")
            else:
                await buf.append(chunk)
            out.append(time.perf_counter() - t)
            due = start + (k + 1) * batch / rate
            await asyncio.sleep(max(0.0, due - time.perf_counter()))  # pacing
    finally:
        await (db.close() if raw else buf.close())
    return out


def pct(xs: list[float], p: int) -> float:
    return statistics.quantiles(xs, n=100, method="inclusive")[p - 1] if len(xs) > 1 else xs[0]


async def measure(
    report: Report,
    *,
    rows: int,
    rounds: int,
    batch: int = 500,
    producers: int = 8,
    paced_rate: float = 4000.0,
    paced_batch: int = 20,
    paced_seconds: float = 2.0,
) -> None:
    best = {"buffer": 0.0, "raw": 0.0, "grouped": 0.0}
    latencies: list[float] = []
    commits = 0
    with tempfile.TemporaryDirectory(prefix="twinmesh-bench-") as tmp:
        for r in range(rounds):
            data = make_samples(rows, offset=r * rows)
            tuples = [_row(s) for s in data]
            rate, commits = await buffer_rate(
                Path(tmp) / f"buf{r}.db", data, batch, producers, latencies
            )
            best["buffer"] = max(best["buffer"], rate)
            best["raw"] = max(best["raw"], await raw_rate(Path(tmp) / f"raw{r}.db", tuples, batch))
            best["grouped"] = max(
                best["grouped"],
                await raw_rate(Path(tmp) / f"grp{r}.db", tuples, batch * producers),
            )
        n = int(paced_rate * paced_seconds)
        lat_buf: list[float] = []
        lat_raw: list[float] = []
        for r in range(2):  # interleaved halves: buffer, raw, buffer, raw
            data = make_samples(n // 2, offset=(rounds + r) * rows)
            lat_buf += await paced(Path(tmp) / f"pb{r}.db", data, paced_batch, paced_rate, False)
            lat_raw += await paced(Path(tmp) / f"pr{r}.db", data, paced_batch, paced_rate, True)
    ratio = best["buffer"] / best["grouped"]
    report.row(
        f"TelemetryBuffer.append, {producers} producers x {batch}-row batches",
        best["buffer"],
        "rows/s",
        reference=f"raw executemany, COMMIT per {batch * producers} rows",
        ref_value=best["grouped"],
        ref_unit="rows/s",
        goal=">= 0.8",
        met=ratio >= 0.8,
        note=f"{commits} commits for {rows // batch} appends in the last round (group commit)",
    )
    report.row(
        "TelemetryBuffer.append (same figure)",
        best["buffer"],
        "rows/s",
        reference=f"raw executemany, COMMIT per {batch}-row batch",
        ref_value=best["raw"],
        ref_unit="rows/s",
        goal=">= 1",
        met=best["buffer"] >= best["raw"],
    )
    for p in (50, 99):
        report.row(
            f"append latency p{p}, {paced_batch}-row batches at {paced_rate:,.0f} rows/s",
            pct(lat_buf, p) * 1e3,
            "ms",
            reference="raw executemany + COMMIT, same pacing",
            ref_value=pct(lat_raw, p) * 1e3,
            ref_unit="ms",
        )
    report.note(
        f"saturated append latency ({producers} producers flat out): p50"
        f" {pct(latencies, 50) * 1e3:.0f} ms, p99 {pct(latencies, 99) * 1e3:.0f} ms (queueing)"
    )
    report.note(
        f"{rows} rows per round, best of {rounds} interleaved rounds; WAL, synchronous=FULL;"
        " schema with UNIQUE(sample_id) and a (entity, name, source_ts) index"
    )


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        allow_abbrev=False, description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="tiny sizes: proves it runs")
    ap.add_argument("--json", help="also write the rows as JSON to this file")
    ap.add_argument("--rows", type=int, default=40_000, help="samples per round")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds, best kept")
    return ap.parse_args(argv)


async def main() -> None:
    args = parse()
    report = Report("ingest: telemetry buffer")
    if args.quick:
        await measure(report, rows=2000, rounds=1, paced_seconds=0.2)
    else:
        await measure(report, rows=args.rows, rounds=args.rounds)
    report.print()
    if args.json:
        report.write_json(args.json)


if __name__ == "__main__":
    asyncio.run(main())
