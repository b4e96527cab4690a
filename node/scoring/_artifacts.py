"""Detector models as versioned artifacts in the node's data directory.

Every baseline the engine learns (warm-up, measured input drift, an
operator's request) is one artifact: the asset, the model version, the
feature-set version, the reason, the frame count, and the fitted state —
the baseline and every detector, fitted forest included — serialised, with
its SHA-256. Artifacts are kept (an audit trail of what scored when, the
lineage's ``model_version`` points into it), never rewritten; a restart loads
each asset's newest one, so a node resumes scoring at once instead of
warming up again.

The blob is a pickle of our own classes, written by this node into its own
data directory (the same trust as its SQLite state) and checked against its
hash before loading; an artifact from another feature-set version, or one
that fails to load, is skipped with a warning and the asset warms up anew.
"""

from __future__ import annotations

import hashlib
import logging
import pickle
from pathlib import Path
from typing import Any

import aiosqlite

__all__ = ["ArtifactStore"]

log = logging.getLogger("twinmesh.node.scoring")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS artifacts (
    entity TEXT NOT NULL, version INTEGER NOT NULL, feature_set TEXT NOT NULL,
    reason TEXT NOT NULL, frames INTEGER NOT NULL, trained_at REAL NOT NULL,
    sha256 TEXT NOT NULL, blob BLOB NOT NULL,
    PRIMARY KEY (entity, version)
);
"""


class ArtifactStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.db: aiosqlite.Connection | None = None

    async def open(self) -> None:
        self.db = await aiosqlite.connect(self.path)
        await self.db.execute("PRAGMA journal_mode=WAL")
        await self.db.executescript(_SCHEMA)
        await self.db.commit()

    async def close(self) -> None:
        if self.db is not None:
            await self.db.close()
            self.db = None

    async def save(
        self,
        *,
        entity: str,
        version: int,
        feature_set: str,
        reason: str,
        frames: int,
        trained_at: float,
        state: Any,
    ) -> None:
        assert self.db is not None
        blob = pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)
        await self.db.execute(
            "INSERT OR REPLACE INTO artifacts VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                entity,
                version,
                feature_set,
                reason,
                frames,
                trained_at,
                hashlib.sha256(blob).hexdigest(),
                blob,
            ),
        )
        await self.db.commit()

    async def newest(self, feature_set: str) -> dict[str, tuple[int, Any]]:
        """entity -> (version, state) of its newest artifact; state is None when that
        artifact is of another feature set or does not load (the asset warms up, and
        its next model is numbered after this version, never over it)."""
        assert self.db is not None
        rows = await self.db.execute_fetchall(
            "SELECT a.entity, a.version, a.feature_set, a.sha256, a.blob FROM artifacts a"
            " JOIN (SELECT entity, MAX(version) AS version FROM artifacts GROUP BY entity) m"
            " ON a.entity = m.entity AND a.version = m.version"
        )
        out: dict[str, tuple[int, Any]] = {}
        for entity, version, fs, sha, blob in rows:
            out[entity] = (version, self._load(entity, version, fs, sha, blob, feature_set))
        return out

    async def latest(self, feature_set: str) -> dict[str, tuple[int, Any]]:
        """entity -> (version, state) of its newest artifact, where that one loads."""
        return {e: v for e, v in (await self.newest(feature_set)).items() if v[1] is not None}

    @staticmethod
    def _load(entity: str, version: int, fs: str, sha: str, blob: bytes, feature_set: str) -> Any:
        if fs != feature_set:
            log.warning(
                "scoring model %s v%s is of feature set %s, not %s: warming up",
                entity,
                version,
                fs,
                feature_set,
            )
            return None
        if hashlib.sha256(blob).hexdigest() != sha:
            log.warning("scoring model %s v%s fails its hash: warming up", entity, version)
            return None
        try:
            return pickle.loads(blob)
        except Exception as exc:  # an artifact of an older code version
            log.warning("scoring model %s v%s does not load (%s): warming up", entity, version, exc)
            return None

    async def history(self, entity: str) -> list[dict[str, Any]]:
        assert self.db is not None
        rows = await self.db.execute_fetchall(
            "SELECT version, feature_set, reason, frames, trained_at, sha256 FROM artifacts"
            " WHERE entity = ? ORDER BY version",
            (entity,),
        )
        keys = ("version", "feature_set", "reason", "frames", "trained_at", "sha256")
        return [dict(zip(keys, r, strict=True)) for r in rows]
