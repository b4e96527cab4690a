"""The group commit's statement shape (node/_store.py ``_statements``/``_commit``):
multi-row INSERTs must leave a real SQLite file exactly as ``executemany``
row by row would — same rows, same AUTOINCREMENT order, same conflict
handling — and a failing group must leave nothing behind."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from twinmesh.node._store import _ROWS_PER_STATEMENT, _SCHEMA, _commit, _open_writer, _runs

OP = (
    "INSERT OR IGNORE INTO ops (origin, seq, entity, field, author, applied_ms, body)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)
META = "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)"


def _db(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.executescript(_SCHEMA)
    return conn


def _rows(n: int, start: int = 1) -> list[tuple[str, tuple[object, ...]]]:
    return [
        (OP, ("plant-a", s, f"e{s % 7}", "f", "ann", 1000 + s, bytes([s % 256])))
        for s in range(start, start + n)
    ]


def _dump(conn: sqlite3.Connection) -> list[tuple[object, ...]]:
    return (
        conn.execute("SELECT * FROM ops ORDER BY id").fetchall()
        + conn.execute("SELECT * FROM meta ORDER BY key").fetchall()
    )


@pytest.mark.parametrize("n", [1, 2, 9, _ROWS_PER_STATEMENT + 3])
def test_multi_row_group_leaves_what_executemany_leaves(tmp_path: Path, n: int) -> None:
    # Duplicates (OR IGNORE) and a replaced meta key in the middle of the group.
    group = (
        _rows(n)
        + _rows(2, start=1)
        + [(META, ("k", b"1")), (META, ("k", b"2"))]
        + _rows(3, start=n + 1)
    )
    ours, ref = _db(tmp_path / "ours.db"), _db(tmp_path / "ref.db")
    writer = _open_writer(tmp_path / "ours.db")
    assert _commit(writer, _runs(group)) == len(group)
    ref.execute("BEGIN")
    for sql, params in group:
        ref.execute(sql, params)
    ref.execute("COMMIT")
    assert _dump(ours) == _dump(ref)
    assert len(_dump(ours)) == n + 3 + 1


def test_a_failing_group_commits_nothing(tmp_path: Path) -> None:
    conn = _db(tmp_path / "x.db")
    writer = _open_writer(tmp_path / "x.db")
    bad = (OP.replace(" OR IGNORE", ""), ("plant-a", 1, "e", "f", "ann", 1, None))  # body NOT NULL
    for group in ([*_rows(5), bad], [_rows(1)[0], bad, bad], [bad, bad]):
        with pytest.raises(sqlite3.IntegrityError):
            _commit(writer, _runs(group))
        assert _dump(conn) == []
        assert not writer.in_transaction
