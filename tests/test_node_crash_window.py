"""Issue 17 against a real node process: ``kill -9`` inside the commit window.

The interleaving: a write is joined in memory and its commit is held open
(the ``TWINMESH_TEST_COMMIT_HOLD`` hook, node/_test_hooks.py: the commit waits
on a file, so the kill lands in the window by construction, not by timing); a
concurrent read asks for the field; the node is killed with SIGKILL; it
restarts from its store (the held write never reached it); a new write to the
same field is acknowledged; then a client writes back with the newest token a
reader got before the crash. The acknowledged write must survive, as the value
or as a sibling in the review queue.

Two ways a node can keep that promise, each tested alone:

* ``settled``: the read waits until the commit is durable (``Node.settled``),
  so it never returns a token covering the held write; the kill ends it
  unanswered, and the newest token out there is from before.
* ``unsettled`` (the hook turns that wait off, as the code was before it):
  the read returns a token covering the held write's dot. The restarted node
  is in a new epoch and issues its dots as a new actor (crdt/_clocks.py), so
  the token cannot cover the new write, and the node refuses it (422) as
  naming a write it never made durable: the client reads again. Before the
  epoch, the new write reused the held write's dot and the write back
  silently removed it.

On the parent of the commit that added ``Node.settled`` (53c581a^, with only
the hold hook wired in) both cases fail: the read answers with the held value,
and the write back removes the acknowledged write.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from node_helpers import PUMP, Fleet, Response, running_fleet, wait_until

from twinmesh.node._config import load_config
from twinmesh.node._test_hooks import ENV_COMMIT_HOLD

FIELD = "responsibleTeam"  # a shared string field of the pump model


@pytest.fixture(scope="module")
def hooks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hooks")


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, hooks: Path) -> Iterator[Fleet]:
    """A fleet whose processes have the hook on (inert until a file says otherwise)."""
    mp = pytest.MonkeyPatch()
    mp.setenv(ENV_COMMIT_HOLD, str(hooks))  # inherited by every node process started
    try:
        with running_fleet(tmp_path_factory.mktemp("crash-window"), plants=1) as fleet:
            yield fleet
    finally:
        mp.undo()


def _meta(fleet: Fleet, node: str, key: str) -> bytes | None:
    """A row of the node's store ``meta`` table, read from its SQLite file."""
    db = load_config(Path(fleet.nodes[node]["config"])).data_dir / "node.sqlite"
    with contextlib.closing(sqlite3.connect(db)) as conn:
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return None if row is None else bytes(row[0])


def _in_thread(call: Any) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []

    def run() -> None:
        try:
            out.append(call())
        except OSError as exc:  # the node was killed under the request
            out.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


def _field(fleet: Fleet, entity: str) -> dict[str, Any]:
    return fleet.entity("plant-a", entity)["fields"][FIELD]  # type: ignore[no-any-return]


def _sibling_values(fleet: Fleet, node: str, entity: str) -> list[Any]:
    field = fleet.entity(node, entity)["fields"][FIELD]
    if not field["conflict"]:
        return [field["value"]]
    resp = fleet.ok(
        node, "GET", f"/v1/conflict?entity={quote(entity, safe='')}&field={FIELD}", role="viewer"
    )
    return [s["value"] for s in resp["siblings"]]


@pytest.mark.parametrize("reads", ["settled", "unsettled"])
def test_a_write_back_after_kill_9_in_the_commit_window_keeps_the_new_write(
    fleet: Fleet, hooks: Path, reads: str
) -> None:
    entity = f"plant-a/window-{reads}"
    for name in ("hold", "held", "unsettled", "read-waiting"):
        (hooks / name).unlink(missing_ok=True)
    if reads == "unsettled":
        (hooks / "unsettled").touch()
    fleet.create("plant-a", entity, PUMP)
    first = fleet.put_field("plant-a", entity, FIELD, "before", None)
    assert first.status == 200, first.body
    token = _field(fleet, entity)["context"]  # the newest token, so far

    # 1. A write joined in memory whose commit is held open.
    (hooks / "hold").touch()
    writer, _ = _in_thread(lambda: fleet.put_field("plant-a", entity, FIELD, "in-flight", token))
    wait_until(lambda: (hooks / "held").exists(), 10, what="the write to reach its commit")
    # 2. A concurrent read.
    reader, read = _in_thread(lambda: fleet.entity("plant-a", entity))
    if reads == "settled":
        wait_until(lambda: (hooks / "read-waiting").exists() or read, 10, what="the read to wait")
        answer = read[0]["fields"][FIELD] if read and isinstance(read[0], dict) else read
        assert not read, f"the read answered while the write was not durable: {answer}"
    else:
        reader.join(10)
        seen = read[0]["fields"][FIELD]
        assert seen["value"] == "in-flight"  # it did see the write that is about to vanish
        token = seen["context"]
    # 3. kill -9 inside the window; restart from the store.
    epoch = int(_meta(fleet, "plant-a", "epoch") or b"0")
    fleet.kill("plant-a")
    writer.join(10)
    reader.join(10)
    assert not writer.is_alive() and not reader.is_alive()
    if reads == "settled":
        assert len(read) == 1 and isinstance(read[0], OSError), read
    (hooks / "hold").unlink()
    fleet.start("plant-a")
    after = _field(fleet, entity)
    assert after["value"] == "before", "the held write was never durable, so it is gone"
    # 4. A new write to the same field, acknowledged.
    new = fleet.put_field("plant-a", entity, FIELD, "acknowledged", after["context"])
    assert new.status == 200, new.body
    # Written by the new epoch's actor (its first write to the field).
    assert new.json["written"]["dot"] == f"plant-a~{epoch + 1}:1"
    # 5. A write back with the old token.
    back: Response = fleet.put_field("plant-a", entity, FIELD, "written-back", token)
    values = _sibling_values(fleet, "plant-a", entity)
    # The acknowledged write survives: the value, or a sibling beside the write back.
    assert "acknowledged" in values, f"the acknowledged write was lost: {values}"
    if reads == "settled":
        # A stale read from before the crash: a conflict, shown in the review queue.
        assert back.status == 200, back.body
        assert sorted(values) == ["acknowledged", "written-back"]
    else:
        # The token names a write the node never made durable: refused, read again.
        assert back.status == 422, back.body
        assert "read the field here before writing" in back.json["reason"]
        assert values == ["acknowledged"]
    fleet.wait_converged()
    assert "acknowledged" in _sibling_values(fleet, "central", entity)


def test_the_store_begins_a_new_epoch_only_after_an_unclean_stop(tmp_path: Path) -> None:
    """``Store.begin_epoch`` on a real SQLite file: a fresh store is epoch 0, a
    clean stop keeps the epoch, a stop without ``end_epoch`` (a kill) and a
    store from before epochs (history, no marker) begin a new one."""
    import asyncio

    from twinmesh.node._store import RUN_KEY, Store

    async def scenario() -> list[int]:
        path = tmp_path / "node.sqlite"
        seen = []
        store = await Store.open(path)
        seen.append(await store.begin_epoch(has_history=False))  # fresh
        await store.end_epoch()
        await store.close()
        store = await Store.open(path)
        seen.append(await store.begin_epoch(has_history=True))  # after a clean stop
        await store.close()  # no end_epoch: as if killed
        store = await Store.open(path)
        seen.append(await store.begin_epoch(has_history=True))
        await store.write_rows([("DELETE FROM meta WHERE key = ?", (RUN_KEY,))])
        await store.close()
        store = await Store.open(path)
        seen.append(await store.begin_epoch(has_history=True))  # written before epochs
        await store.close()
        return seen

    assert asyncio.run(scenario()) == [0, 0, 1, 2]


def test_a_clean_stop_keeps_the_epoch(fleet: Fleet) -> None:
    """SIGTERM records a clean stop (every local write durable), so the
    restarted node goes on counting as the same actor (kill -9 begins a new
    epoch: the write-back test checks the dot it hands out)."""
    entity = "plant-a/window-epochs"
    fleet.create("plant-a", entity, PUMP)

    def written() -> str:
        resp = fleet.put_field("plant-a", entity, FIELD, "x", None)
        assert resp.status == 200, resp.body
        return resp.json["written"]["dot"]  # type: ignore[no-any-return]

    epoch = int(_meta(fleet, "plant-a", "epoch") or b"0")
    actor = "plant-a" if epoch == 0 else f"plant-a~{epoch}"
    assert written() == f"{actor}:1"
    fleet.stop("plant-a")
    assert _meta(fleet, "plant-a", "run") == b"stopped"
    fleet.start("plant-a")
    assert _meta(fleet, "plant-a", "epoch") == str(epoch).encode()
    assert written() == f"{actor}:2"
