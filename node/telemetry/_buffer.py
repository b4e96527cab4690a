"""The telemetry buffer: store-and-forward for raw samples, on SQLite (WAL).

Theory of operation
-------------------
*Write before read.* Every sample is committed to SQLite before anything can
read it: adapters call :meth:`TelemetryBuffer.append`, which returns only
after the commit, and consumers (scoring, summaries, dashboards) read from the
table by cursor. A consumer that is slow, crashed or redeployed loses
nothing: it resumes from the last sequence number it acknowledged.

*Group commit.* Appends that arrive while a commit is in progress wait and
are written together in the next transaction, so N concurrent appenders pay
for one fsync instead of N (the technique of DeWitt et al., "Implementation
techniques for main memory database systems", SIGMOD 1984, and of every
write-ahead log since). The flusher is the only writer, which also makes
``seq`` allocation order equal commit order: a reader that has seen
``seq = n`` can never later find a committed row with ``seq < n``, so a plain
``seq > cursor`` scan is a correct cursor.

*Exactly-once storage of at-least-once input.* Sources redeliver (MQTT QoS 1
after a reconnect, OPC UA initial values after a re-subscribe). Each sample
carries a stable ``sample_id``; a UNIQUE index plus ``ON CONFLICT (sample_id)
DO NOTHING`` stores it once, and the ignored rows are counted as duplicates.

*Durability.* ``journal_mode=WAL`` with ``synchronous=FULL`` (the default
here) fsyncs the WAL at every commit, so an appended batch survives power
loss; ``NORMAL`` survives a process crash (``kill -9``) but may lose the last
commits on power loss (https://www.sqlite.org/pragma.html#pragma_synchronous).

*Retention.* Raw rows are kept ``raw_days``; per-minute and per-hour
aggregates (count, good count, flagged count, min, max, sum, last) are kept
longer. :meth:`TelemetryBuffer.compact` takes ``now`` explicitly: it folds
rows not yet aggregated into the aggregates (an upsert, so late samples merge
into existing buckets), then deletes expired raw rows — never rows a
registered consumer has not acknowledged.

Readers use a second, read-only connection: under WAL it sees only committed
transactions, so a reader can never observe a batch that is later rolled back.
A third connection checkpoints the WAL into the database in the background
(``wal_checkpoint(PASSIVE)``, https://www.sqlite.org/wal.html#ckpt): SQLite's
automatic checkpoint would run inside whichever commit crosses the threshold
and stall that append for tens of milliseconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import operator
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import aiosqlite

from twinmesh.adapters import Provenance, Quality, Reject, Sample, Value

from ._quality import EventKind, QualityEvent

__all__ = [
    "Aggregate",
    "CompactResult",
    "Retention",
    "StoredEvent",
    "StoredReject",
    "StoredSample",
    "TelemetryBuffer",
]

_log = logging.getLogger(__name__)

_SCHEMA_VERSION = 1
_DAY = 86400.0
#: Resolutions of the downsampled aggregates, in seconds.
RESOLUTIONS = (60, 3600)
#: Samples whose value is not meaningful in the model's unit stay out of min/max/sum/last.
_NOT_AGGREGATED = Quality.BAD_STATUS | Quality.UNIT_MISMATCH | Quality.TYPE_MISMATCH
_INT64 = (-(2**63), 2**63 - 1)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS samples (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,  -- the consumer cursor; never reused
    sample_id   TEXT NOT NULL UNIQUE,
    entity      TEXT NOT NULL,
    name        TEXT NOT NULL,
    value,                                          -- no affinity: ints, reals, text as given
    vtype       TEXT NOT NULL,                      -- 'f' float, 'i' int, 'b' bool, 's' str
    unit        TEXT,
    source_ts   REAL NOT NULL,
    server_ts   REAL,
    received_ts REAL NOT NULL,
    quality     INTEGER NOT NULL,
    adapter     TEXT NOT NULL,
    source      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS samples_by_tag ON samples (entity, name, source_ts);
CREATE TABLE IF NOT EXISTS aggregates (
    entity      TEXT NOT NULL,
    name        TEXT NOT NULL,
    resolution  INTEGER NOT NULL,   -- seconds: 60 or 3600
    bucket      REAL NOT NULL,      -- bucket start, epoch seconds (by source time)
    count       INTEGER NOT NULL,   -- numeric samples in the bucket
    good        INTEGER NOT NULL,   -- of which aggregated (not bad / unit or type mismatch)
    flagged     INTEGER NOT NULL,   -- of which carrying any quality flag
    min         REAL,
    max         REAL,
    sum         REAL,
    last        REAL,
    last_ts     REAL,
    PRIMARY KEY (entity, name, resolution, bucket)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS agg_watermark (
    resolution  INTEGER PRIMARY KEY,
    seq         INTEGER NOT NULL    -- samples with seq <= this are in the aggregates
);
CREATE TABLE IF NOT EXISTS consumers (
    name        TEXT PRIMARY KEY,
    acked       INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS rejects (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    adapter     TEXT NOT NULL,
    source      TEXT NOT NULL,
    reason      TEXT NOT NULL,
    detail      TEXT NOT NULL,
    payload     BLOB NOT NULL,
    received_ts REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    kind        TEXT NOT NULL,
    entity      TEXT NOT NULL,
    name        TEXT NOT NULL,
    at          REAL NOT NULL,
    detail      TEXT NOT NULL
);
"""

# ON CONFLICT (sample_id) DO NOTHING rather than INSERT OR IGNORE: OR IGNORE would
# also swallow NOT NULL violations, i.e. silently drop a malformed row.
_INSERT_SAMPLE = (
    "INSERT INTO samples (sample_id, entity, name, value, vtype, unit, source_ts,"
    " server_ts, received_ts, quality, adapter, source) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)"
    " ON CONFLICT (sample_id) DO NOTHING"
)
_SELECT_SAMPLE = (
    "SELECT seq, sample_id, entity, name, value, vtype, unit, source_ts, server_ts,"
    " received_ts, quality, adapter, source FROM samples"
)


def _bucket_sql(res: int) -> str:
    # floor(source_ts / res) * res without relying on SQLite's optional math functions.
    t = f"CAST(source_ts / {res} AS INTEGER) * {res}"
    return f"({t} - CASE WHEN source_ts < {t} THEN {res} ELSE 0 END)"


def _aggregate_sql(res: int) -> str:
    ok = f"(quality & {_NOT_AGGREGATED.value}) = 0 AND value IS NOT NULL"
    return f"""
WITH new AS (
    SELECT entity, name, {_bucket_sql(res)} AS bucket, CAST(value AS REAL) AS v,
           source_ts, seq, quality, ({ok}) AS ok
    FROM samples WHERE seq > :lo AND seq <= :hi AND vtype IN ('f', 'i', 'b')
), ranked AS (
    SELECT *, row_number() OVER (
        PARTITION BY entity, name, bucket ORDER BY ok DESC, source_ts DESC, seq DESC) AS rn
    FROM new
)
INSERT INTO aggregates (entity, name, resolution, bucket, count, good, flagged,
                        min, max, sum, last, last_ts)
SELECT entity, name, {res}, bucket, count(*), sum(ok), sum(quality != 0),
       min(v) FILTER (WHERE ok), max(v) FILTER (WHERE ok), sum(v) FILTER (WHERE ok),
       max(CASE WHEN rn = 1 AND ok THEN v END), max(CASE WHEN rn = 1 AND ok THEN source_ts END)
FROM ranked WHERE true GROUP BY entity, name, bucket
ON CONFLICT (entity, name, resolution, bucket) DO UPDATE SET
    count = count + excluded.count,
    good = good + excluded.good,
    flagged = flagged + excluded.flagged,
    min = coalesce(min(min, excluded.min), min, excluded.min),
    max = coalesce(max(max, excluded.max), max, excluded.max),
    sum = coalesce(sum + excluded.sum, sum, excluded.sum),
    last = CASE WHEN excluded.last_ts IS NOT NULL
                     AND (last_ts IS NULL OR excluded.last_ts >= last_ts)
                THEN excluded.last ELSE last END,
    last_ts = coalesce(max(last_ts, excluded.last_ts), last_ts, excluded.last_ts)
"""


@dataclass(frozen=True, slots=True, kw_only=True)
class Retention:
    raw_days: float = 7.0  # raw samples, rejects and quality events
    minute_days: float = 90.0  # per-minute aggregates
    hour_days: float = 3650.0  # per-hour aggregates


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredSample:
    seq: int
    sample: Sample


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredReject:
    id: int
    reject: Reject


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredEvent:
    id: int
    event: QualityEvent


@dataclass(frozen=True, slots=True, kw_only=True)
class Aggregate:
    entity: str
    name: str
    resolution: int
    bucket: float
    count: int
    good: int
    flagged: int
    min: float | None
    max: float | None
    sum: float | None
    last: float | None
    last_ts: float | None

    @property
    def mean(self) -> float | None:
        return None if not self.good or self.sum is None else self.sum / self.good


@dataclass(frozen=True, slots=True, kw_only=True)
class CompactResult:
    aggregated: int  # raw rows folded into the aggregates (per resolution, same rows)
    raw_deleted: int
    raw_held: int  # expired raw rows kept because a consumer has not acknowledged them
    aggregates_deleted: dict[int, int] = field(default_factory=dict)
    rejects_deleted: int = 0
    events_deleted: int = 0


@dataclass(slots=True)
class _Pending:
    rows: list[tuple[Any, ...]]
    rejects: Sequence[Reject]
    events: Sequence[QualityEvent]
    done: asyncio.Future[None]


def _encode_value(value: Value) -> tuple[Any, str]:
    if isinstance(value, bool):
        return int(value), "b"
    if isinstance(value, int):
        # SQLite integers are 64-bit; a UInt64 from OPC UA may not fit.
        return (value if _INT64[0] <= value <= _INT64[1] else str(value)), "i"
    if isinstance(value, float):
        return value, "f"  # NaN is stored as NULL by SQLite and read back as NaN
    return str(value), "s"


def _decode_value(raw: Any, vtype: str) -> Value:
    if vtype == "b":
        return bool(raw)
    if vtype == "i":
        return int(raw)
    if vtype == "f":
        return math.nan if raw is None else float(raw)
    return str(raw)


_QUALITY_COLUMN = 9  # index of ``quality`` in the tuples _row builds
_quality_of = operator.itemgetter(_QUALITY_COLUMN)


async def _seq_allocated(db: aiosqlite.Connection) -> int:
    row = await (
        await db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'samples'")
    ).fetchone()
    return int(row[0]) if row else 0


def _row(s: Sample) -> tuple[Any, ...]:
    # Once per stored sample. Floats (most telemetry) skip _encode_value's
    # isinstance chain, and the quality's int is read as ``_value_``: the
    # ``value`` property of an enum member is Python-level descriptor code.
    value = s.value
    if type(value) is float:
        vtype = "f"
    else:
        value, vtype = _encode_value(value)
    provenance = s.provenance
    return (
        s.sample_id,
        s.entity,
        s.name,
        value,
        vtype,
        s.unit,
        s.source_ts,
        s.server_ts,
        s.received_ts,
        s.quality._value_,
        provenance.adapter,
        provenance.source,
    )


def _stored(r: Sequence[Any]) -> StoredSample:
    return StoredSample(
        seq=r[0],
        sample=Sample(
            sample_id=r[1],
            entity=r[2],
            name=r[3],
            value=_decode_value(r[4], r[5]),
            unit=r[6],
            source_ts=r[7],
            server_ts=r[8],
            received_ts=r[9],
            quality=Quality(r[10]),
            provenance=Provenance(adapter=r[11], source=r[12]),
        ),
    )


class TelemetryBuffer:
    """Durable, deduplicating, cursor-read telemetry store. Open with :meth:`open`."""

    def __init__(
        self,
        writer: aiosqlite.Connection,
        reader: aiosqlite.Connection,
        checkpointer: aiosqlite.Connection,
        *,
        retention: Retention,
        max_seq: int,
        seq_allocated: int,
        checkpoint_interval: float,
    ) -> None:
        self._db = writer
        self._ro = reader
        self._ck = checkpointer
        self._checkpoint_interval = checkpoint_interval
        self._wal_dirty = asyncio.Event()
        self._checkpointer = asyncio.create_task(self._checkpoint_loop())
        self.retention = retention
        # Highest seq of a stored row (what consumers wait for), and SQLite's
        # AUTOINCREMENT counter, which also advances for rows ON CONFLICT skipped.
        self._max_seq = max_seq
        self._seq_allocated = seq_allocated
        self._pending: list[_Pending] = []
        self._flusher: asyncio.Task[None] | None = None
        self._write_lock = asyncio.Lock()
        self._committed = asyncio.Condition()
        self._closed = False
        # Counters since open, for /metrics.
        self.stored = 0
        self.duplicates = 0
        self.commits = 0
        self.appends = 0
        self.flags: Counter[str] = Counter()
        self.rejects_by_reason: Counter[str] = Counter()
        self.events_by_kind: Counter[str] = Counter()

    @classmethod
    async def open(
        cls,
        path: str | Path,
        *,
        retention: Retention | None = None,
        synchronous: Literal["FULL", "NORMAL"] = "FULL",
        checkpoint_interval: float = 1.0,
    ) -> TelemetryBuffer:
        """Open (creating if needed) the buffer at ``path``; a file, not ``:memory:``.

        ``checkpoint_interval``: seconds after a commit before the background WAL
        checkpoint runs (batching checkpoints; an idle buffer never wakes up).
        """
        if str(path) == ":memory:":
            raise ValueError("the telemetry buffer needs a file: readers use a second connection")
        writer = await aiosqlite.connect(path, isolation_level=None)
        opened = [writer]
        try:
            await writer.execute("PRAGMA journal_mode=WAL")
            await writer.execute(f"PRAGMA synchronous={synchronous}")
            await writer.execute("PRAGMA busy_timeout=5000")
            await writer.execute("PRAGMA wal_autocheckpoint=0")  # see the module docstring
            version = (await (await writer.execute("PRAGMA user_version")).fetchone() or (0,))[0]
            if version > _SCHEMA_VERSION:
                raise RuntimeError(f"{path}: schema version {version} is newer than this code")
            await writer.executescript(_SCHEMA)
            await writer.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")
            for res in RESOLUTIONS:
                await writer.execute(
                    "INSERT OR IGNORE INTO agg_watermark (resolution, seq) VALUES (?, 0)", (res,)
                )
            alloc = await _seq_allocated(writer)
            row = await (await writer.execute("SELECT max(seq) FROM samples")).fetchone()
            stored_max = int(row[0]) if row and row[0] is not None else 0
            reader = await aiosqlite.connect(
                f"file:{Path(path).resolve()}?mode=ro", uri=True, isolation_level=None
            )
            opened.append(reader)
            await reader.execute("PRAGMA busy_timeout=5000")
            checkpointer = await aiosqlite.connect(path, isolation_level=None)
            opened.append(checkpointer)
            await checkpointer.execute("PRAGMA busy_timeout=5000")
        except BaseException:
            for conn in opened:
                await conn.close()
            raise
        return cls(
            writer,
            reader,
            checkpointer,
            retention=retention or Retention(),
            max_seq=stored_max,
            seq_allocated=alloc,
            checkpoint_interval=checkpoint_interval,
        )

    async def close(self) -> None:
        """Finish pending appends, checkpoint the WAL, then close the connections."""
        if self._closed:
            return
        if self._flusher is not None:
            with contextlib.suppress(Exception):
                await self._flusher
        self._closed = True
        self._checkpointer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._checkpointer
        await self._ck.close()
        await self._ro.close()
        with contextlib.suppress(Exception):
            await self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        await self._db.close()

    async def _checkpoint_loop(self) -> None:
        while True:
            await self._wal_dirty.wait()
            await asyncio.sleep(self._checkpoint_interval)
            self._wal_dirty.clear()
            try:
                # PASSIVE never blocks the writer or readers; what it cannot copy now
                # (frames a reader still needs) is copied by a later round.
                await self._ck.execute("PRAGMA wal_checkpoint(PASSIVE)")
            except Exception:
                _log.exception("telemetry buffer: background WAL checkpoint failed")

    async def __aenter__(self) -> TelemetryBuffer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- writing ----------------------------------------------------------------------

    async def append(
        self,
        samples: Sequence[Sample],
        rejects: Sequence[Reject] = (),
        /,
        *,
        events: Sequence[QualityEvent] = (),
    ) -> None:
        """Store a batch; returns once it is committed. Usable directly as an adapter sink.

        Raises if the commit fails; then nothing of the batch was stored (the
        transaction is rolled back) and the caller must not acknowledge its source.
        """
        if self._closed:
            raise RuntimeError("telemetry buffer is closed")
        if not samples and not rejects and not events:
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # Rows are built here, while the flusher may be waiting on the previous
        # commit in SQLite's thread, so conversion overlaps IO instead of adding to it.
        self._pending.append(_Pending([_row(s) for s in samples], rejects, events, done))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_loop())
        # Shielded: a cancelled appender must not abort a commit others share.
        await asyncio.shield(done)

    async def _flush_loop(self) -> None:
        while self._pending:
            group, self._pending = self._pending, []
            try:
                await self._commit(group)
            except Exception as exc:
                for p in group:
                    if not p.done.done():
                        p.done.set_exception(exc)
            else:
                for p in group:
                    if not p.done.done():
                        p.done.set_result(None)
                self._wal_dirty.set()
                async with self._committed:
                    self._committed.notify_all()

    async def _commit(self, group: list[_Pending]) -> None:
        rows = [r for p in group for r in p.rows]
        reject_rows = [
            (r.adapter, r.source, r.reason, r.detail, r.payload, r.received_ts)
            for p in group
            for r in p.rejects
        ]
        event_rows = [
            (e.kind.value, e.entity, e.name, e.at, e.detail) for p in group for e in p.events
        ]
        async with self._write_lock:
            before = self._seq_allocated
            await self._db.execute("BEGIN IMMEDIATE")
            try:
                inserted = 0
                new_max, new_alloc = self._max_seq, before
                new_flags: Counter[int] = Counter()
                if rows:
                    cur = await self._db.executemany(_INSERT_SAMPLE, rows)
                    inserted = cur.rowcount
                    if inserted == len(rows):
                        # No duplicate: every row is new, count its flags here. As the
                        # only writer under AUTOINCREMENT we got before+1 .. before+inserted.
                        new_flags.update(map(_quality_of, rows))
                        new_max = new_alloc = before + inserted
                    else:
                        # Skipped duplicates still consumed seq numbers: ask SQLite.
                        # Only this connection writes, so the new rows are exactly seq > before.
                        cursor = await self._db.execute(
                            "SELECT quality, count(*), max(seq) FROM samples"
                            " WHERE seq > ? GROUP BY quality",
                            (before,),
                        )
                        for quality, count, max_seq in await cursor.fetchall():
                            new_flags[quality] += count
                            new_max = max(new_max, max_seq)
                        new_alloc = await _seq_allocated(self._db)
                if reject_rows:
                    await self._db.executemany(
                        "INSERT INTO rejects (adapter, source, reason, detail, payload,"
                        " received_ts) VALUES (?,?,?,?,?,?)",
                        reject_rows,
                    )
                if event_rows:
                    await self._db.executemany(
                        "INSERT INTO events (kind, entity, name, at, detail) VALUES (?,?,?,?,?)",
                        event_rows,
                    )
                await self._db.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(Exception):
                    await self._db.execute("ROLLBACK")
                raise
        # Counters change only after the commit succeeded.
        self.commits += 1
        self.appends += len(group)
        self.stored += inserted
        self.duplicates += len(rows) - inserted
        self._max_seq = max(self._max_seq, new_max)
        self._seq_allocated = new_alloc
        for quality, count in new_flags.items():
            for name in Quality(quality).names():
                self.flags[name] += count
        for p in group:
            self.rejects_by_reason.update(r.reason for r in p.rejects)
            self.events_by_kind.update(e.kind.value for e in p.events)

    # -- consumers ----------------------------------------------------------------------

    @property
    def last_seq(self) -> int:
        """The highest committed sequence number (0 when empty)."""
        return self._max_seq

    async def read_after(self, cursor: int, limit: int = 1000) -> list[StoredSample]:
        """Committed samples with ``seq > cursor``, oldest first."""
        rows = await self._ro.execute_fetchall(
            f"{_SELECT_SAMPLE} WHERE seq > ? ORDER BY seq LIMIT ?", (cursor, limit)
        )
        return [_stored(r) for r in rows]

    async def wait_after(self, cursor: int, timeout: float | None = None) -> bool:
        """Wait until a sample with ``seq > cursor`` is committed; False on timeout."""
        try:
            async with asyncio.timeout(timeout), self._committed:
                await self._committed.wait_for(lambda: self._max_seq > cursor)
        except TimeoutError:
            return False
        return True

    async def register_consumer(self, name: str, *, from_start: bool = True) -> int:
        """Create a consumer (idempotent); returns its acknowledged cursor.

        A new consumer starts before the oldest retained row, or at the current
        end with ``from_start=False``. Retention never deletes rows a registered
        consumer has not acknowledged.
        """
        async with self._write_lock:
            await self._db.execute(
                "INSERT OR IGNORE INTO consumers (name, acked) VALUES (?, ?)",
                (name, 0 if from_start else self._max_seq),
            )
        return await self.acked(name)

    async def unregister_consumer(self, name: str) -> None:
        async with self._write_lock:
            await self._db.execute("DELETE FROM consumers WHERE name = ?", (name,))

    async def acked(self, name: str) -> int:
        row = await (
            await self._db.execute("SELECT acked FROM consumers WHERE name = ?", (name,))
        ).fetchone()
        if row is None:
            raise KeyError(f"unknown consumer {name!r}")
        return int(row[0])

    async def ack(self, name: str, seq: int) -> None:
        """Durably record that consumer ``name`` has processed everything up to ``seq``."""
        async with self._write_lock:
            # Checked against the database, not self.last_seq: a reader may see a
            # commit a moment before the flusher updates the in-memory counter.
            last = await _seq_allocated(self._db)
            if seq > last:
                raise ValueError(f"cannot ack seq {seq}: the last committed seq is {last}")
            cur = await self._db.execute(
                "UPDATE consumers SET acked = max(acked, ?) WHERE name = ?", (seq, name)
            )
        if cur.rowcount == 0:
            raise KeyError(f"unknown consumer {name!r}")

    # -- retention ------------------------------------------------------------------------

    async def compact(self, now: float) -> CompactResult:
        """Aggregate new rows, then apply retention as of ``now`` (epoch seconds)."""
        ret = self.retention
        async with self._write_lock:
            await self._db.execute("BEGIN IMMEDIATE")
            try:
                hi = self._max_seq
                aggregated = 0
                for res in RESOLUTIONS:
                    row = await (
                        await self._db.execute(
                            "SELECT seq FROM agg_watermark WHERE resolution = ?", (res,)
                        )
                    ).fetchone()
                    lo = int(row[0]) if row else 0
                    if hi > lo:
                        row = await (
                            await self._db.execute(
                                "SELECT count(*) FROM samples WHERE seq > ? AND seq <= ?"
                                " AND vtype IN ('f', 'i', 'b')",
                                (lo, hi),
                            )
                        ).fetchone()
                        aggregated = int(row[0]) if row else 0
                        await self._db.execute(_aggregate_sql(res), {"lo": lo, "hi": hi})
                        await self._db.execute(
                            "UPDATE agg_watermark SET seq = ? WHERE resolution = ?", (hi, res)
                        )

                row = await (await self._db.execute("SELECT min(acked) FROM consumers")).fetchone()
                floor = hi if row is None or row[0] is None else min(int(row[0]), hi)
                cutoff = now - ret.raw_days * _DAY
                # Raw rows expire as a prefix in seq order, up to the first row received
                # after the cutoff: O(expired rows) with no index on received_ts, and a
                # clock step backwards cannot punch holes into the consumers' sequence.
                row = await (
                    await self._db.execute(
                        "SELECT seq FROM samples WHERE received_ts >= ? ORDER BY seq LIMIT 1",
                        (cutoff,),
                    )
                ).fetchone()
                expire_below = int(row[0]) if row else hi + 1
                cur = await self._db.execute(
                    "DELETE FROM samples WHERE seq < ? AND seq <= ?", (expire_below, floor)
                )
                raw_deleted = cur.rowcount
                row = await (
                    await self._db.execute(
                        "SELECT count(*) FROM samples WHERE seq < ?", (expire_below,)
                    )
                ).fetchone()
                raw_held = int(row[0]) if row else 0

                agg_deleted = {}
                for res, days in ((60, ret.minute_days), (3600, ret.hour_days)):
                    cur = await self._db.execute(
                        "DELETE FROM aggregates WHERE resolution = ? AND bucket < ?",
                        (res, now - days * _DAY),
                    )
                    agg_deleted[res] = cur.rowcount
                cur = await self._db.execute("DELETE FROM rejects WHERE received_ts < ?", (cutoff,))
                rejects_deleted = cur.rowcount
                cur = await self._db.execute("DELETE FROM events WHERE at < ?", (cutoff,))
                events_deleted = cur.rowcount
                await self._db.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(Exception):
                    await self._db.execute("ROLLBACK")
                raise
        self._wal_dirty.set()
        return CompactResult(
            aggregated=aggregated,
            raw_deleted=raw_deleted,
            raw_held=raw_held,
            aggregates_deleted=agg_deleted,
            rejects_deleted=rejects_deleted,
            events_deleted=events_deleted,
        )

    # -- queries ----------------------------------------------------------------------------

    async def aggregates(
        self,
        entity: str,
        name: str,
        resolution: int,
        start: float = -math.inf,
        end: float = math.inf,
    ) -> list[Aggregate]:
        """Aggregates of one tag with ``start <= bucket < end``, oldest first."""
        rows = await self._ro.execute_fetchall(
            "SELECT entity, name, resolution, bucket, count, good, flagged, min, max, sum,"
            " last, last_ts FROM aggregates WHERE entity = ? AND name = ? AND resolution = ?"
            " AND bucket >= ? AND bucket < ? ORDER BY bucket",
            (entity, name, resolution, start, end),
        )
        return [
            Aggregate(
                entity=r[0],
                name=r[1],
                resolution=r[2],
                bucket=r[3],
                count=r[4],
                good=r[5],
                flagged=r[6],
                min=r[7],
                max=r[8],
                sum=r[9],
                last=r[10],
                last_ts=r[11],
            )
            for r in rows
        ]

    async def samples(
        self,
        entity: str,
        name: str,
        start: float = -math.inf,
        end: float = math.inf,
        *,
        limit: int = 1000,
        newest_first: bool = False,
    ) -> list[StoredSample]:
        """Raw samples of one tag with ``start <= source_ts < end`` (index ``samples_by_tag``)."""
        order = "DESC" if newest_first else "ASC"
        rows = await self._ro.execute_fetchall(
            f"{_SELECT_SAMPLE} WHERE entity = ? AND name = ? AND source_ts >= ?"
            f" AND source_ts < ? ORDER BY source_ts {order}, seq {order} LIMIT ?",
            (entity, name, start, end, limit),
        )
        return [_stored(r) for r in rows]

    async def tags(self) -> list[tuple[str, str, int]]:
        """Every tag with raw samples retained, and how many."""
        rows = await self._ro.execute_fetchall(
            "SELECT entity, name, count(*) FROM samples GROUP BY entity, name ORDER BY 1, 2"
        )
        return [(r[0], r[1], int(r[2])) for r in rows]

    async def latest_per_tag(self) -> list[Sample]:
        """The newest sample (by source time) of every tag, e.g. to prime quality checks."""
        rows = await self._ro.execute_fetchall(
            f"{_SELECT_SAMPLE} WHERE seq IN (SELECT seq FROM (SELECT seq, row_number() OVER"
            " (PARTITION BY entity, name ORDER BY source_ts DESC, seq DESC) AS rn FROM samples)"
            " WHERE rn = 1)"
        )
        return [_stored(r).sample for r in rows]

    async def rejects(self, after_id: int = 0, limit: int = 1000) -> list[StoredReject]:
        rows = await self._ro.execute_fetchall(
            "SELECT id, adapter, source, reason, detail, payload, received_ts FROM rejects"
            " WHERE id > ? ORDER BY id LIMIT ?",
            (after_id, limit),
        )
        return [
            StoredReject(
                id=r[0],
                reject=Reject(
                    adapter=r[1],
                    source=r[2],
                    reason=r[3],
                    detail=r[4],
                    payload=bytes(r[5]),
                    received_ts=r[6],
                ),
            )
            for r in rows
        ]

    async def events(self, after_id: int = 0, limit: int = 1000) -> list[StoredEvent]:
        rows = await self._ro.execute_fetchall(
            "SELECT id, kind, entity, name, at, detail FROM events WHERE id > ? ORDER BY id"
            " LIMIT ?",
            (after_id, limit),
        )
        return [
            StoredEvent(
                id=r[0],
                event=QualityEvent(
                    kind=EventKind(r[1]), entity=r[2], name=r[3], at=r[4], detail=r[5]
                ),
            )
            for r in rows
        ]

    async def event_tags(self, kind: EventKind) -> set[tuple[str, str]]:
        """The ``(entity, name)`` of every stored event of ``kind``."""
        rows = await self._ro.execute_fetchall(
            "SELECT DISTINCT entity, name FROM events WHERE kind = ?", (kind.value,)
        )
        return {(r[0], r[1]) for r in rows}

    async def count(self) -> int:
        """Raw samples currently retained."""
        row = await (await self._ro.execute("SELECT count(*) FROM samples")).fetchone()
        return int(row[0]) if row else 0

    def counters(self) -> dict[str, int]:
        """Flat counters for /metrics (since open)."""
        out = {
            "telemetry_samples_stored_total": self.stored,
            "telemetry_samples_duplicate_total": self.duplicates,
            "telemetry_commits_total": self.commits,
            "telemetry_appends_total": self.appends,
            "telemetry_last_seq": self._max_seq,
        }
        # Prometheus exposition names with labels; label values are escaped per the format.
        for prefix, label, counter in (
            ("telemetry_flag_total", "flag", self.flags),
            ("telemetry_rejects_total", "reason", self.rejects_by_reason),
            ("telemetry_events_total", "kind", self.events_by_kind),
        ):
            for key, value in counter.items():
                escaped = key.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
                out[f'{prefix}{{{label}="{escaped}"}}'] = value
        return out
