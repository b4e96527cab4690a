"""The node's durable store: SQLite in WAL mode through aiosqlite.

The op log is the source of truth (event sourcing): every delta this node
applied, in the order it applied them, with its replica-level dot
(origin, seq). Entity state is derived by replaying it; the signed batches
that carried the deltas are kept beside them so the node can relay them
verbatim. ``synchronous=FULL``: a commit returns only after the WAL is
fsynced, so a power cut cannot take back an acknowledged write.

Writes are group-committed: concurrent callers queue their rows and one
committer thread commits everything queued in one transaction, then wakes
them all (see "group commit" below). Under load that turns N fsyncs into one.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import queue
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import aiosqlite

from twinmesh.crdt import DecodeLimits, Delta, decode_deltas, encode_deltas
from twinmesh.sync import SignedBatch

__all__ = ["OpRecord", "Store"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS ops (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- local apply order
    origin TEXT NOT NULL,
    seq INTEGER NOT NULL,
    entity TEXT NOT NULL,
    field TEXT,
    author TEXT NOT NULL,
    applied_ms INTEGER NOT NULL,            -- this node's wall clock when applied
    body BLOB NOT NULL,                     -- encode_deltas([delta])
    UNIQUE (origin, seq)
);
CREATE INDEX IF NOT EXISTS ops_entity ON ops (entity, id);
CREATE TABLE IF NOT EXISTS batches (
    origin TEXT NOT NULL,
    first INTEGER NOT NULL,
    last INTEGER NOT NULL,
    blob BLOB NOT NULL,
    signature BLOB NOT NULL,
    PRIMARY KEY (origin, first)
);
-- Proofs the sync engine keeps through compaction (ProofStored): each origin's
-- latest batch, the batch behind each reported value. They point into
-- batches, whose rows compaction keeps while a proof names them.
CREATE TABLE IF NOT EXISTS proofs (
    key TEXT PRIMARY KEY,  -- "head\x1f<origin>" or "reported\x1f<entity>\x1f<field>"
    origin TEXT NOT NULL,
    first INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value BLOB NOT NULL
);
"""


#: The op log is our own writing, checked when it was made: replay reads it
#: with room to spare, so that a row written under older, looser limits (a
#: 65,537-byte value acknowledged before the write path checked sizes) can
#: never stop the node from starting again.
_STORED_LIMITS = DecodeLimits(max_string=16 * 1024 * 1024, max_value_bytes=16 * 1024 * 1024)

FLOOR_PREFIX = "floor:"
SNAPSHOT_VV_PREFIX = "snapshot-vv:"
#: The node's epoch (crdt/_clocks.py, issue 17), and whether the incarnation
#: that used it is still "running" or "stopped" cleanly.
EPOCH_KEY = "epoch"
RUN_KEY = "run"


@dataclass(frozen=True, slots=True, kw_only=True)
class OpRecord:
    origin: str
    seq: int
    delta: Delta
    applied_ms: int


def _runs(
    statements: Iterable[tuple[str, Sequence[Any]]],
) -> list[tuple[str, list[Sequence[Any]]]]:
    """Consecutive statements with the same SQL, merged (order kept)."""
    out: list[tuple[str, list[Sequence[Any]]]] = []
    for sql, params in statements:
        if out and out[-1][0] == sql:
            out[-1][1].append(params)
        else:
            out.append((sql, [params]))
    return out


def _open_writer(path: Path) -> sqlite3.Connection:
    """The writer's connection, made on (and only used from) the commit thread."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous=FULL")  # per connection: this is the one that commits
    conn.execute("PRAGMA busy_timeout=5000")
    return conn


#: Rows per multi-row INSERT: 7 parameters a row stays far below SQLite's
#: variable limit (32,766 since 3.32), and a big group still commits at once.
_ROWS_PER_STATEMENT = 256


def _statements(runs: list[tuple[str, list[Sequence[Any]]]]) -> list[tuple[str, Sequence[Any]]]:
    """Each run of one ``INSERT ... VALUES (?, ...)`` as multi-row INSERTs
    (``VALUES (...), (...), ...``), anything else one statement per row.

    Same rows, same order, same conflict clause (SQLite applies a multi-row
    VALUES row by row, so ``OR IGNORE``/``OR REPLACE`` and AUTOINCREMENT ids
    come out as with ``executemany``). Why: Python's sqlite3 drops and retakes
    the GIL around every ``sqlite3_step``, and ``executemany`` steps once per
    row, so the committer thread queued for the GIL behind the event loop
    once per row of every group; one statement per run is one step."""
    out: list[tuple[str, Sequence[Any]]] = []
    for sql, run in runs:
        cut = sql.rfind(" VALUES (")
        if not sql.startswith("INSERT") or cut < 0 or not sql.endswith(")") or len(run) == 1:
            out.extend((sql, params) for params in run)
            continue
        for start in range(0, len(run), _ROWS_PER_STATEMENT):
            chunk = run[start : start + _ROWS_PER_STATEMENT]
            flat = [value for params in chunk for value in params]
            out.append((_multi_row(sql, cut, len(chunk)), flat))
    return out


@functools.lru_cache(maxsize=1024)
def _multi_row(sql: str, cut: int, rows: int) -> str:
    """``sql``'s VALUES group repeated ``rows`` times. Cached: the committer
    built the same few strings for every group (the same text is also what
    lets sqlite3's statement cache skip preparing it again)."""
    head, group = sql[: cut + 8], sql[cut + 8 :]
    return head + ", ".join([group] * rows)


def _commit(conn: sqlite3.Connection, runs: list[tuple[str, list[Sequence[Any]]]]) -> int:
    """One transaction on the commit thread; returns once COMMIT (and with
    ``synchronous=FULL`` the WAL's fsync) has, or raises having rolled back.

    A group that comes down to one statement (the common case: local writes,
    one multi-row INSERT into ops) runs without BEGIN/COMMIT: in autocommit
    mode a single statement is its own transaction, atomic and, under
    ``synchronous=FULL``, fsynced before it returns — one GIL hand-off for
    the whole group instead of three."""
    rows = sum(len(run) for _, run in runs)
    statements = _statements(runs)
    if len(statements) == 1:
        sql, params = statements[0]
        conn.execute(sql, params)
        return rows
    conn.execute("BEGIN IMMEDIATE")
    try:
        for sql, params in statements:
            conn.execute(sql, params)
        conn.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(Exception):
            conn.execute("ROLLBACK")
        raise
    return rows


class _Submission(NamedTuple):
    statements: list[tuple[str, Sequence[Any]]]
    future: asyncio.Future[None]


def _settle(futures: list[asyncio.Future[None]], error: BaseException | None) -> None:
    """On the event loop: resolve a committed group (or fail it)."""
    for fut in futures:
        if not fut.done():
            if error is None:
                fut.set_result(None)
            else:
                fut.set_exception(error)


class Store:
    """Open with :meth:`open`; every method is a coroutine except the stats."""

    def __init__(self, db: aiosqlite.Connection, path: Path) -> None:
        self._db = db  # reads (and the schema); every write goes through the committer
        self.path = path
        self._loop: asyncio.AbstractEventLoop | None = None
        # Submissions in FIFO order, for the committer thread; None stops it.
        self._queue: queue.SimpleQueue[_Submission | None] = queue.SimpleQueue()
        self._committer: threading.Thread | None = None
        self._closed = False
        self.commits = 0
        self.commit_seconds_total = 0.0
        self.commit_rows_total = 0

    @classmethod
    async def open(cls, path: Path) -> Store:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = await aiosqlite.connect(path, isolation_level=None)
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute("PRAGMA synchronous=FULL")
        await db.execute("PRAGMA busy_timeout=5000")
        await db.executescript(_SCHEMA)
        store = cls(db, path)
        store._loop = asyncio.get_running_loop()
        opened: asyncio.Future[None] = store._loop.create_future()
        store._committer = threading.Thread(
            target=store._commit_loop, args=(opened,), name="store-commit", daemon=True
        )
        store._committer.start()
        await opened
        return store

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        if self._committer is not None:
            # Everything submitted before close commits first (FIFO), then it stops.
            await asyncio.get_running_loop().run_in_executor(None, self._committer.join)
        await self._db.close()

    # ------------------------------------------------------------ group commit
    #
    # The committer is a thread with its own connection that commits back to
    # back: it takes everything submitted since its last commit as one
    # transaction, commits (BEGIN, every run, COMMIT with the WAL's fsync under
    # synchronous=FULL), then hands the results to the event loop in one
    # call and goes straight on to the next group. Neither side waits for the
    # other: before, each commit was a task on the loop doing one aiosqlite hop
    # per statement, so a commit took ~2.5 ms of hand-offs around ~0.25 ms of
    # SQLite and fsync, and a group held ~6 writes. A caller's future is
    # resolved only after its COMMIT returned, so an acknowledged write is on
    # disk, as before. A group goes to SQLite as few statements as possible
    # (``_statements``: one multi-row INSERT per run), because each statement
    # step drops and retakes the GIL, and retaking it waits behind the busy
    # event loop; a group of op rows alone is a single autocommit statement.

    def _commit_loop(self, opened: asyncio.Future[None]) -> None:
        loop = self._loop
        assert loop is not None
        try:
            conn = _open_writer(self.path)
        except BaseException as exc:
            loop.call_soon_threadsafe(_settle, [opened], exc)
            return
        loop.call_soon_threadsafe(_settle, [opened], None)
        try:
            stop = False
            while not stop:
                first = self._queue.get()
                group = [] if first is None else [first]
                stop = first is None
                while not stop:  # everything else already queued joins this group
                    try:
                        nxt = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is None:
                        stop = True
                    else:
                        group.append(nxt)
                if not group:
                    continue
                started = time.perf_counter()
                error: BaseException | None = None
                try:
                    rows = _commit(conn, _runs(st for sub in group for st in sub.statements))
                except Exception as exc:
                    error = exc
                else:
                    self.commits += 1
                    self.commit_rows_total += rows
                    self.commit_seconds_total += time.perf_counter() - started
                loop.call_soon_threadsafe(_settle, [sub.future for sub in group], error)
        finally:
            conn.close()

    def _submit_nowait(self, statements: list[tuple[str, Sequence[Any]]]) -> asyncio.Future[None]:
        """Queue one transaction for the committer; the future resolves once it
        is committed (or fails with the commit's error). On the event loop."""
        if self._closed:
            raise RuntimeError("store is closed")
        assert self._loop is not None
        fut: asyncio.Future[None] = self._loop.create_future()
        self._queue.put(_Submission(statements, fut))
        return fut

    async def _submit(self, statements: list[tuple[str, Sequence[Any]]]) -> None:
        await self._submit_nowait(statements)

    # ------------------------------------------------------------ writes

    @staticmethod
    def _op_row(origin: str, seq: int, delta: Delta, applied_ms: int) -> tuple[str, Sequence[Any]]:
        return (
            "INSERT OR IGNORE INTO ops (origin, seq, entity, field, author, applied_ms, body)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                origin,
                seq,
                delta.entity,
                delta.field,
                delta.author,
                applied_ms,
                encode_deltas([delta]),
            ),
        )

    @staticmethod
    def _batch_row(batch: SignedBatch) -> tuple[str, Sequence[Any]]:
        return (
            "INSERT OR REPLACE INTO batches (origin, first, last, blob, signature)"
            " VALUES (?, ?, ?, ?, ?)",
            (batch.origin, batch.first, batch.last, batch.blob, batch.signature),
        )

    async def append_local_many(
        self, origin: str, deltas: Sequence[tuple[int, Delta]], applied_ms: int
    ) -> None:
        """Durably record writes made here, in one transaction (all or none)."""
        await self.append_local_nowait(origin, deltas, applied_ms)

    def append_local_nowait(
        self, origin: str, deltas: Sequence[tuple[int, Delta]], applied_ms: int
    ) -> asyncio.Future[None]:
        """:meth:`append_local_many` without a coroutine: queued for the
        committer before this returns (so in submission order), durable when
        the future resolves. The node's write path awaits this directly: a
        task per write to run the coroutine cost more than the commit's share."""
        return self._submit_nowait([self._op_row(origin, seq, d, applied_ms) for seq, d in deltas])

    async def write_rows(self, rows: list[tuple[str, Sequence[Any]]]) -> None:
        """Durably write rows from the builders below, in one transaction.

        Submissions commit in the order they were made (the group-commit queue
        is FIFO), so a caller that builds and submits without awaiting in
        between keeps its rows ordered after everything submitted before."""
        await self._submit(rows)

    @classmethod
    def batch_rows(
        cls, batch: SignedBatch, applied: Iterable[tuple[int, Delta]], applied_ms: int
    ) -> list[tuple[str, Sequence[Any]]]:
        rows = [cls._batch_row(batch)]
        rows += [cls._op_row(batch.origin, seq, d, applied_ms) for seq, d in applied]
        return rows

    @classmethod
    def sealed_rows(cls, batch: SignedBatch) -> list[tuple[str, Sequence[Any]]]:
        return [cls._batch_row(batch)]

    @classmethod
    def proof_rows(
        cls, key: tuple[str, ...], batch: SignedBatch
    ) -> list[tuple[str, Sequence[Any]]]:
        return [
            (
                "INSERT OR IGNORE INTO batches (origin, first, last, blob, signature)"
                " VALUES (?, ?, ?, ?, ?)",
                (batch.origin, batch.first, batch.last, batch.blob, batch.signature),
            ),
            (
                "INSERT OR REPLACE INTO proofs (key, origin, first) VALUES (?, ?, ?)",
                ("\x1f".join(key), batch.origin, batch.first),
            ),
        ]

    @staticmethod
    def compact_rows(origin: str, floor: int) -> list[tuple[str, Sequence[Any]]]:
        return [
            (
                "DELETE FROM batches WHERE origin = ? AND last <= ? AND NOT EXISTS"
                " (SELECT 1 FROM proofs p WHERE p.origin = batches.origin"
                " AND p.first = batches.first)",
                (origin, floor),
            ),
            (
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                (f"{FLOOR_PREFIX}{origin}", str(floor).encode()),
            ),
        ]

    @classmethod
    def snapshot_rows(
        cls, state: bytes, vv: Iterable[tuple[str, int]]
    ) -> list[tuple[str, Sequence[Any]]]:
        rows = [cls.meta_row("snapshot", state)]
        rows += [cls.meta_row(f"{SNAPSHOT_VV_PREFIX}{o}", str(n).encode()) for o, n in vv]
        return rows

    @staticmethod
    def meta_row(key: str, value: bytes) -> tuple[str, Sequence[Any]]:
        return ("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    async def begin_epoch(self, *, has_history: bool) -> int:
        """The epoch this incarnation issues its dots in, durable before it returns.

        A new epoch when the last incarnation did not stop cleanly (killed,
        power cut, the disk refused a commit): it may have joined writes in
        memory that never reached this store and handed their dots out in a
        read, so none of its dots may be issued again (crdt/_clocks.py). A
        store written before epochs existed (no marker, but history) counts
        as not stopped cleanly. A clean stop keeps the epoch: every dot it
        issued is in the op log, so replay continues its counters."""
        epoch = int(await self.get_meta(EPOCH_KEY) or b"0")
        run = await self.get_meta(RUN_KEY)
        if run == b"running" or (run is None and has_history):
            epoch += 1
        await self.write_rows(
            [self.meta_row(EPOCH_KEY, str(epoch).encode()), self.meta_row(RUN_KEY, b"running")]
        )
        return epoch

    async def end_epoch(self) -> None:
        """Record a clean stop: every local write of this incarnation is durable."""
        await self.write_rows([self.meta_row(RUN_KEY, b"stopped")])

    # ------------------------------------------------------------ reads

    async def get_meta(self, key: str) -> bytes | None:
        async with self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)) as cur:
            row = await cur.fetchone()
        return None if row is None else bytes(row[0])

    async def meta_prefix(self, prefix: str) -> dict[str, bytes]:
        async with self._db.execute(
            "SELECT key, value FROM meta WHERE key >= ? AND key < ?", (prefix, prefix + "\uffff")
        ) as cur:
            return {k: bytes(v) async for k, v in cur}

    async def ops(
        self, *, entity: str | None = None, until_ms: int | None = None
    ) -> list[OpRecord]:
        """The op log in apply order, optionally for one entity and up to a time."""
        sql = "SELECT origin, seq, body, applied_ms FROM ops"
        cond, params = [], []
        if entity is not None:
            cond.append("entity = ?")
            params.append(entity)
        if until_ms is not None:
            cond.append("applied_ms <= ?")
            params.append(until_ms)
        if cond:
            sql += " WHERE " + " AND ".join(cond)
        sql += " ORDER BY id"
        out = []
        async with self._db.execute(sql, params) as cur:
            async for origin, seq, body, applied_ms in cur:
                (delta,) = decode_deltas(bytes(body), limits=_STORED_LIMITS)
                out.append(OpRecord(origin=origin, seq=seq, delta=delta, applied_ms=applied_ms))
        return out

    async def batches(self) -> list[SignedBatch]:
        async with self._db.execute(
            "SELECT origin, first, last, blob, signature FROM batches ORDER BY origin, first"
        ) as cur:
            return [
                SignedBatch(origin=o, first=f, last=la, blob=bytes(b), signature=bytes(s))
                async for o, f, la, b, s in cur
            ]

    async def _int_meta(self, prefix: str) -> dict[str, int]:
        out = {}
        for key, value in (await self.meta_prefix(prefix)).items():
            out[key[len(prefix) :]] = int(value)
        return out

    async def floors(self) -> dict[str, int]:
        """Per origin, the compaction floor (deltas at or below it are only in snapshots)."""
        return await self._int_meta(FLOOR_PREFIX)

    async def snapshot_vv(self) -> dict[str, int]:
        """The vector of the last snapshot persisted (empty if none)."""
        return await self._int_meta(SNAPSHOT_VV_PREFIX)

    async def proofs(self) -> list[tuple[tuple[str, ...], SignedBatch]]:
        async with self._db.execute(
            "SELECT p.key, b.origin, b.first, b.last, b.blob, b.signature FROM proofs p"
            " JOIN batches b ON b.origin = p.origin AND b.first = p.first ORDER BY p.key"
        ) as cur:
            return [
                (
                    tuple(k.split("\x1f")),
                    SignedBatch(origin=o, first=f, last=la, blob=bytes(b), signature=bytes(sg)),
                )
                async for k, o, f, la, b, sg in cur
            ]
