"""Lineage of expected values, on SQLite: it outlives the node process.

Theory of operation
-------------------
Every expected/residual pair the co-simulation stores has a lineage point:
which observation it answers, the model time, the input samples the master
used (their ids, source times and values) and whether an input was held. A
point belongs to a *run*: one co-simulation of one asset from the moment the
node started it, with the system file (name, version, path, sha256) and the
FMUs (name, version, FMI version, sha256) it ran. A run never changes its FMUs
(a switch is a new run, after a restart with the new system), so a point read
back after a restart or a switch still names the FMU build that produced it.

The store is ``<data_dir>/cosim-lineage.sqlite`` (WAL), written the way the
telemetry buffer is: the service commits a batch's points *before* it appends
the batch's expected and residual samples to the buffer, so a reader that sees
an expected value can always find its lineage (write before read). Points are
kept ``lineage_days`` (by default as long as the buffer keeps raw samples);
:meth:`LineageStore.prune` takes ``now`` explicitly.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiosqlite

__all__ = ["LineageStore"]

_DAY = 86400.0
_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run INTEGER PRIMARY KEY, entity TEXT NOT NULL, started_at REAL NOT NULL,
    source TEXT NOT NULL, system TEXT NOT NULL, fmus TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS points (
    run INTEGER NOT NULL REFERENCES runs (run), entity TEXT NOT NULL, telemetry TEXT NOT NULL,
    source_ts REAL NOT NULL, model_time REAL, observation TEXT NOT NULL,
    inputs TEXT NOT NULL, held INTEGER NOT NULL, held_why TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS points_at ON points (entity, source_ts);
"""
#: Two points whose source times differ by less than this are "at" the same time.
_TS_EPS = 1e-6


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), allow_nan=False, default=str)


class LineageStore:
    def __init__(self, path: Path, *, retention_days: float) -> None:
        self.path = path
        self.retention_days = retention_days
        self.db: aiosqlite.Connection | None = None
        self.written = 0
        self.pruned = 0
        self._runs: dict[int, dict[str, Any]] = {}

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = await aiosqlite.connect(self.path, isolation_level=None)
        await self.db.execute("PRAGMA journal_mode=WAL")
        await self.db.execute("PRAGMA synchronous=NORMAL")
        await self.db.executescript(_SCHEMA)

    async def close(self) -> None:
        if self.db is not None:
            await self.db.close()
            self.db = None

    async def start_run(
        self,
        *,
        entity: str,
        started_at: float,
        source: str,
        system: dict[str, Any],
        fmus: list[Any],
    ) -> int:
        assert self.db is not None
        cur = await self.db.execute(
            "INSERT INTO runs (entity, started_at, source, system, fmus) VALUES (?,?,?,?,?)",
            (entity, started_at, source, _dumps(system), _dumps(fmus)),
        )
        run = cur.lastrowid
        assert run is not None
        return int(run)

    async def add(self, run: int, entity: str, points: Sequence[dict[str, Any]]) -> None:
        """Commit one batch of a run's points (one transaction)."""
        if not points:
            return
        assert self.db is not None
        rows = [
            (
                run,
                entity,
                p["telemetry"],
                p["source_ts"],
                p.get("model_time"),
                p["observation"],
                _dumps(p["inputs"]),
                1 if p["held"] else 0,
                _dumps(p.get("held_inputs", {})),
            )
            for p in points
        ]
        await self.db.execute("BEGIN")
        try:
            await self.db.executemany("INSERT INTO points VALUES (?,?,?,?,?,?,?,?,?)", rows)
            await self.db.execute("COMMIT")
        except BaseException:
            await self.db.execute("ROLLBACK")
            raise
        self.written += len(rows)

    async def _run(self, run: int) -> dict[str, Any]:
        cached = self._runs.get(run)
        if cached is None:
            assert self.db is not None
            rows = list(
                await self.db.execute_fetchall(
                    "SELECT run, started_at, source, system, fmus FROM runs WHERE run = ?", (run,)
                )
            )
            r = rows[0]
            cached = self._runs[run] = {
                "id": r[0],
                "started_at": r[1],
                "source": r[2],
                "system": json.loads(r[3]),
                "fmus": json.loads(r[4]),
            }
        return cached

    async def _points(self, sql: str, args: tuple[Any, ...]) -> list[dict[str, Any]]:
        assert self.db is not None
        out = []
        for r in await self.db.execute_fetchall(sql, args):
            out.append(
                {
                    "source_ts": r[3],
                    "telemetry": r[2],
                    "model_time": r[4],
                    "observation": r[5],
                    "inputs": json.loads(r[6]),
                    "held": bool(r[7]),
                    "held_inputs": json.loads(r[8]),
                    "run": await self._run(r[0]),
                }
            )
        return out

    async def at(self, entity: str, ts: float) -> list[dict[str, Any]]:
        """The points of ``entity`` at source time ``ts`` (every telemetry, every run)."""
        return await self._points(
            "SELECT * FROM points WHERE entity = ? AND source_ts BETWEEN ? AND ?"
            " ORDER BY source_ts, rowid",
            (entity, ts - _TS_EPS, ts + _TS_EPS),
        )

    async def latest(self, entity: str, n: int = 3) -> list[dict[str, Any]]:
        rows = await self._points(
            "SELECT * FROM points WHERE entity = ? ORDER BY source_ts DESC, rowid DESC LIMIT ?",
            (entity, n),
        )
        return rows[::-1]

    async def entities(self) -> set[str]:
        assert self.db is not None
        return {r[0] for r in await self.db.execute_fetchall("SELECT DISTINCT entity FROM runs")}

    async def prune(self, now: float) -> int:
        """Delete points older than the retention (by source time); returns how many."""
        assert self.db is not None
        cutoff = now - self.retention_days * _DAY
        cur = await self.db.execute("DELETE FROM points WHERE source_ts < ?", (cutoff,))
        n = max(cur.rowcount, 0)
        self.pruned += n
        return n
