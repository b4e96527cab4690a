"""The telemetry buffer on a real SQLite file: group commit, dedupe, cursors, retention."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import pytest

from twinmesh.adapters import Provenance, Quality, Reject, Sample, make_sample_id
from twinmesh.node.telemetry import (
    EventKind,
    IngestPipeline,
    QualityChecker,
    QualityEvent,
    Retention,
    TagSpec,
    TelemetryBuffer,
)

E = "plant-a/line-1/pump-7"
DAY = 86400.0
T0 = 1_800_000_000.0  # a minute and hour boundary: 1_800_000_000 % 3600 == 0


def run(coro: Coroutine[Any, Any, None], timeout: float = 20.0) -> None:
    async def bounded() -> None:
        async with asyncio.timeout(timeout):
            await coro

    asyncio.run(bounded())


def mk(
    value: float | int | bool | str,
    ts: float,
    *,
    name: str = "vibration_rms",
    received: float | None = None,
    quality: Quality = Quality.GOOD,
) -> Sample:
    return Sample(
        entity=E,
        name=name,
        value=value,
        unit="mm/s",
        source_ts=ts,
        server_ts=None,
        received_ts=ts if received is None else received,
        quality=quality,
        provenance=Provenance(adapter="test", source=f"topic/{name}"),
        sample_id=make_sample_id("test", name, source_ts=ts, value=value),
    )


def test_append_is_durable_and_round_trips_values(tmp_path: Path) -> None:
    async def body() -> None:
        samples = [
            mk(1.5, T0),
            mk(7, T0 + 1, name="count"),
            mk(True, T0 + 2, name="running"),
            mk("RUNNING", T0 + 3, name="state"),
            mk(math.nan, T0 + 4, quality=Quality.BAD_STATUS),
            mk(2**64 - 1, T0 + 5, name="uint64"),
        ]
        async with await TelemetryBuffer.open(tmp_path / "t.db") as buf:
            await buf.append(samples)
        # A fresh open sees everything: append returned only after the commit.
        async with await TelemetryBuffer.open(tmp_path / "t.db") as buf:
            got = [s.sample for s in await buf.read_after(0)]
            assert buf.last_seq == 6
        assert [type(s.value) for s in got] == [float, int, bool, str, float, int]
        assert got[:4] == samples[:4] and got[5] == samples[5]
        assert math.isnan(float(got[4].value)) and got[4].quality == Quality.BAD_STATUS

    run(body())


def test_concurrent_appends_share_one_commit(tmp_path: Path) -> None:
    async def body() -> None:
        async with await TelemetryBuffer.open(tmp_path / "t.db") as buf:
            batches = [
                [mk(float(i * 10 + j), T0 + i * 10 + j) for j in range(10)] for i in range(50)
            ]
            await asyncio.gather(*(buf.append(b) for b in batches))
            assert buf.stored == 500 and buf.appends == 50
            # The first append commits alone; the other 49 queued behind it share commits.
            assert buf.commits < 10, buf.commits
            assert await buf.count() == 500
            assert buf.last_seq == 500
            assert [p.seq for p in await buf.read_after(495)] == [496, 497, 498, 499, 500]

    run(body())


def test_duplicates_are_stored_once_and_counted(tmp_path: Path) -> None:
    async def body() -> None:
        async with await TelemetryBuffer.open(tmp_path / "t.db") as buf:
            a, b = mk(1.0, T0), mk(2.0, T0 + 1)
            await buf.append([a, b, a])  # a duplicate inside one batch
            await buf.append([b, mk(3.0, T0 + 2)])  # and across batches
            assert await buf.count() == 3
            assert (buf.stored, buf.duplicates) == (3, 2)
            # Skipped duplicates consume AUTOINCREMENT numbers: seqs may have gaps, but
            # last_seq is always the newest stored row, so waiting on it never spins.
            seqs = [p.seq for p in await buf.read_after(0)]
            assert seqs == sorted(seqs) and buf.last_seq == seqs[-1]
            assert not await buf.wait_after(buf.last_seq, timeout=0.01)
            await buf.append([mk(4.0, T0 + 3)])  # no duplicate: the fast path
            (newest,) = await buf.read_after(seqs[-1])
            assert buf.last_seq == newest.seq
            assert buf.counters()["telemetry_samples_duplicate_total"] == 2

    run(body())


def test_flags_rejects_and_events_are_counted_after_commit(tmp_path: Path) -> None:
    async def body() -> None:
        async with await TelemetryBuffer.open(tmp_path / "t.db") as buf:
            reject = Reject(
                adapter="mqtt",
                source="a/b",
                reason="not JSON",
                detail="Expecting value",
                payload=b"{oops",
                received_ts=T0,
            )
            event = QualityEvent(kind=EventKind.STALE, entity=E, name="x", at=T0, detail="quiet")
            flagged = mk(99.0, T0, quality=Quality.OUT_OF_RANGE | Quality.UNIT_CONVERTED)
            await buf.append([flagged, flagged, mk(1.0, T0 + 1)], [reject], events=[event])
            c = buf.counters()
            assert c['telemetry_flag_total{flag="OUT_OF_RANGE"}'] == 1  # the duplicate not again
            assert c['telemetry_flag_total{flag="UNIT_CONVERTED"}'] == 1
            assert c['telemetry_rejects_total{reason="not JSON"}'] == 1
            assert c['telemetry_events_total{kind="stale"}'] == 1
            assert [r.reject for r in await buf.rejects()] == [reject]
            assert [e.event for e in await buf.events()] == [event]

    run(body())


def test_cursor_read_and_ack_survive_reopen(tmp_path: Path) -> None:
    async def body() -> None:
        path = tmp_path / "t.db"
        async with await TelemetryBuffer.open(path) as buf:
            await buf.append([mk(float(i), T0 + i) for i in range(10)])
            assert await buf.register_consumer("scoring") == 0
            page = await buf.read_after(0, limit=4)
            assert [p.seq for p in page] == [1, 2, 3, 4]
            await buf.ack("scoring", page[-1].seq)
            with pytest.raises(ValueError, match="last committed"):
                await buf.ack("scoring", 11)
            with pytest.raises(KeyError):
                await buf.ack("nobody", 1)
        # The consumer "crashed"; it resumes after what it acknowledged.
        async with await TelemetryBuffer.open(path) as buf:
            cursor = await buf.acked("scoring")
            assert cursor == 4
            rest = await buf.read_after(cursor)
            assert [p.sample.value for p in rest] == [float(i) for i in range(4, 10)]

    run(body())


def test_wait_after_wakes_on_commit(tmp_path: Path) -> None:
    async def body() -> None:
        async with await TelemetryBuffer.open(tmp_path / "t.db") as buf:
            assert not await buf.wait_after(0, timeout=0.01)
            waiter = asyncio.create_task(buf.wait_after(0, timeout=5))
            await buf.append([mk(1.0, T0)])
            assert await waiter

    run(body())


def test_failed_commit_rolls_back_and_raises(tmp_path: Path) -> None:
    async def body() -> None:
        async with await TelemetryBuffer.open(tmp_path / "t.db") as buf:
            bad = mk(1.0, T0)
            object.__setattr__(bad, "entity", None)  # violates NOT NULL
            with pytest.raises(Exception, match="NOT NULL"):
                await buf.append([mk(2.0, T0 + 1), bad])
            assert await buf.count() == 0 and buf.stored == 0
            await buf.append([mk(2.0, T0 + 1)])  # the buffer still works
            assert await buf.count() == 1

    run(body())


def test_compaction_aggregates_and_applies_retention(tmp_path: Path) -> None:
    async def body() -> None:
        ret = Retention(raw_days=1, minute_days=7, hour_days=30)
        async with await TelemetryBuffer.open(tmp_path / "t.db", retention=ret) as buf:
            # minute 0: 1,2,3 and a bad 100 (counted, not aggregated); minute 1: 10, 20
            await buf.append(
                [
                    mk(1.0, T0 + 0),
                    mk(3.0, T0 + 20),
                    mk(2.0, T0 + 40),
                    mk(100.0, T0 + 50, quality=Quality.BAD_STATUS),
                    mk(10.0, T0 + 60),
                    mk(20.0, T0 + 90, quality=Quality.OUT_OF_RANGE),
                    mk("RUNNING", T0 + 10, name="state"),
                ]
            )
            r = await buf.compact(now=T0 + 120)
            assert (r.raw_deleted, r.raw_held) == (0, 0)
            m = await buf.aggregates(E, "vibration_rms", 60)
            assert [(a.bucket, a.count, a.good, a.flagged) for a in m] == [
                (T0, 4, 3, 1),
                (T0 + 60, 2, 2, 1),
            ]
            assert (m[0].min, m[0].max, m[0].mean, m[0].last, m[0].last_ts) == (
                1.0,
                3.0,
                2.0,
                2.0,
                T0 + 40,
            )
            (h,) = await buf.aggregates(E, "vibration_rms", 3600)
            assert (h.count, h.good, h.min, h.max, h.sum, h.last) == (6, 5, 1.0, 20.0, 36.0, 20.0)
            assert await buf.aggregates(E, "state", 60) == []  # strings are not aggregated

            # A late sample merges into its existing bucket; `last` stays the newest.
            await buf.append([mk(0.5, T0 + 30)])
            await buf.compact(now=T0 + 130)
            m0 = (await buf.aggregates(E, "vibration_rms", 60))[0]
            assert (m0.count, m0.min, m0.last) == (5, 0.5, 2.0)

            # Two days later the raw rows expire; the aggregates remain.
            r = await buf.compact(now=T0 + 2 * DAY)
            assert r.raw_deleted == 8 and await buf.count() == 0
            assert len(await buf.aggregates(E, "vibration_rms", 60)) == 2
            # After the minute retention only hours are left; after the hour one, nothing.
            r = await buf.compact(now=T0 + 8 * DAY)
            assert r.aggregates_deleted == {60: 2, 3600: 0}
            r = await buf.compact(now=T0 + 31 * DAY)
            assert r.aggregates_deleted == {60: 0, 3600: 1}

    run(body())


def test_retention_never_deletes_what_a_consumer_has_not_acked(tmp_path: Path) -> None:
    async def body() -> None:
        ret = Retention(raw_days=1)
        async with await TelemetryBuffer.open(tmp_path / "t.db", retention=ret) as buf:
            await buf.register_consumer("summaries")
            await buf.append([mk(float(i), T0 + i) for i in range(10)])
            await buf.ack("summaries", 4)
            r = await buf.compact(now=T0 + 3 * DAY)
            assert (r.raw_deleted, r.raw_held) == (4, 6)
            assert [p.seq for p in await buf.read_after(0)] == [5, 6, 7, 8, 9, 10]
            await buf.unregister_consumer("summaries")
            r = await buf.compact(now=T0 + 3 * DAY)
            assert (r.raw_deleted, r.raw_held) == (6, 0)

    run(body())


def test_pipeline_flags_before_storing(tmp_path: Path) -> None:
    async def body() -> None:
        clock = [T0]
        async with await TelemetryBuffer.open(tmp_path / "t.db") as buf:
            checker = QualityChecker(
                {(E, "vibration_rms"): TagSpec(unit="mm/s", maximum=50, expected_interval=1)}
            )
            pipe = IngestPipeline(buf, checker, clock=lambda: clock[0])
            s = mk(3.0, T0)
            await pipe([Sample(**{**_fields(s), "unit": "in/s"})])
            (stored,) = await buf.read_after(0)
            assert stored.sample.value == pytest.approx(76.2)
            assert stored.sample.quality == Quality.UNIT_CONVERTED | Quality.OUT_OF_RANGE
            clock[0] = T0 + 10
            assert await pipe.sweep() == 1
            assert [e.event.kind for e in await buf.events()] == [EventKind.STALE]
            # A restarted node primes its checker from the buffer.
            fresh = IngestPipeline(buf, QualityChecker(), clock=lambda: clock[0])
            await fresh.prime()
            await fresh([mk(1.0, T0 - 5)])
            (_, late) = await buf.read_after(0)
            assert late.sample.quality == Quality.OUT_OF_ORDER

    run(body())


def _fields(s: Sample) -> dict[str, Any]:
    return {f: getattr(s, f) for f in Sample.__dataclass_fields__}
