"""Restarts of a real node process (issue 10): the hybrid clock survives, and
every size limit is refused before acknowledgement so replay never wedges.

Replay used to join the op log without observing its timestamps, so a
restarted node's hybrid clock began at (0, 0): its next label write was
stamped with the wall clock alone and lost to a write the node had already
seen whose stamp was ahead (a peer with a fast clock). Here the write that is
ahead is made by plant-a itself, in-process on its own store with a wall
clock an hour fast (what a peer's fast clock would have left in the log),
then the real plant-a process restarts and writes the label again through
the API: the later write must win, at plant-a and at central.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from node_helpers import PUMP, Fleet, running_fleet, wait_until

from twinmesh.node._config import load_config
from twinmesh.node._node import Node

ENTITY = "plant-a/clock-pump"
FIELD = "displayLabel"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    with running_fleet(tmp_path_factory.mktemp("hlc"), plants=1) as fleet:
        yield fleet


def _label(fleet: Fleet, node: str) -> object:
    resp = fleet.request(node, "GET", "/v1/entities/" + quote(ENTITY), None)
    return resp.json["fields"][FIELD]["value"] if resp.status == 200 else None


def test_a_label_written_after_a_restart_wins_over_one_seen_before(fleet: Fleet) -> None:
    fleet.create("plant-a", ENTITY, PUMP)
    fleet.stop("plant-a")
    config = load_config(Path(fleet.nodes["plant-a"]["config"]))

    async def write_ahead() -> None:
        node = Node(config, clock=lambda: time.time() + 3600.0)
        await node.open()
        try:
            await node.write(
                lambda s: s.write(
                    ENTITY, FIELD, "seen-before", author="t", now_ms=int(node.clock() * 1000)
                )
            )
        finally:
            await node.close()

    asyncio.run(write_ahead())
    fleet.start("plant-a")
    assert _label(fleet, "plant-a") == "seen-before"
    fleet.kill("plant-a")  # kill -9: the clock must come back from the log alone
    fleet.start("plant-a")
    fleet.ok(
        "plant-a",
        "PUT",
        f"/v1/entities/{quote(ENTITY)}/fields/{FIELD}",
        {"value": "written-after"},
    )
    assert _label(fleet, "plant-a") == "written-after"
    wait_until(
        lambda: _label(fleet, "central") == "written-after",
        15.0,
        what="central to hold the later label",
    )


# ------------------------------------------------------------------ size limits

SHARED = "responsibleTeam"  # a shared string field


def _put(fleet: Fleet, value: str) -> tuple[int, dict[str, object]]:
    resp = fleet.request(
        "plant-a",
        "PUT",
        f"/v1/entities/{quote(ENTITY)}/fields/{SHARED}",
        {"value": value, "context": None},
    )
    return resp.status, resp.json


def _shared(fleet: Fleet, node: str) -> object:
    resp = fleet.request(node, "GET", "/v1/entities/" + quote(ENTITY), None)
    if resp.status != 200:
        return None
    return resp.json["fields"].get(SHARED, {}).get("value")


def test_a_value_over_the_limit_is_refused_and_one_at_it_replicates_and_survives_kill_9(
    fleet: Fleet,
) -> None:
    """The review's reproduction: a 65,534-character shared string (65,537
    bytes encoded) was acknowledged, never replicated, and after kill -9 the
    node did not come back. Now it is refused with the limit as the reason,
    and the largest value allowed (65,533 characters, 65,536 bytes) is
    acknowledged, reaches central, and survives kill -9 and replay."""
    for chars in (65_534, 70_000):
        status, body = _put(fleet, "x" * chars)
        assert status == 422, (status, body)
        assert "65536 bytes" in str(body["reason"]), body
    at_limit = "y" * 65_533
    status, body = _put(fleet, at_limit)
    assert status == 200, (status, str(body)[:300])
    wait_until(lambda: _shared(fleet, "central") == at_limit, 15.0, what="central to hold it")
    fleet.kill("plant-a")
    fleet.start("plant-a")
    assert _shared(fleet, "plant-a") == at_limit
    # A body over the HTTP limit is refused as such, before it is parsed.
    status, body = _put(fleet, "z" * (5 * 1024 * 1024))
    assert status == 413, (status, str(body)[:200])


def test_replay_reads_an_op_stored_under_the_old_looser_limits(
    fleet: Fleet, tmp_path: Path
) -> None:
    """A store that already holds a 65,537-byte value (acknowledged before the
    write path checked sizes) must not stop the node from starting: replay
    reads its own op log with room to spare, and an op that breaks today's
    rules is skipped with a logged reason (every peer had refused it), its
    sequence number kept. Real SQLite, in-process node."""
    import dataclasses

    from twinmesh.crdt import HybridTime, LWWRegister

    config = dataclasses.replace(
        load_config(Path(fleet.nodes["plant-a"]["config"])), data_dir=tmp_path / "data"
    )
    big = "x" * 65_534

    async def scenario() -> object:
        node = Node(config)
        await node.open()
        await node.write(lambda s: s.create("plant-a/big-pump", PUMP, author="t"))
        entity = node.state.entity("plant-a/big-pump")
        from twinmesh.crdt import Delta

        forged = Delta(
            origin="plant-a",
            author="t",
            entity=entity.id,
            model=PUMP,
            home="plant-a",
            field=FIELD,
            state=LWWRegister(big, HybridTime(int(time.time() * 1000), 0), "plant-a"),
        )
        assert node.store is not None and node.engine is not None
        seq = node.engine.vv["plant-a"] + 1
        await node.store.append_local_many("plant-a", [(seq, forged)], 0)
        await node.close()
        again = Node(config)
        await again.open()  # before: RemoteProtocolError from decode_deltas, no start
        try:
            assert again.engine is not None
            assert again.engine.vv["plant-a"] >= seq  # the dot is not reissued
            return again.state.entity("plant-a/big-pump").value(FIELD)
        finally:
            await again.close()

    assert asyncio.run(scenario()) is None


def test_a_read_waits_out_the_commit_window_of_a_local_write(fleet: Fleet, tmp_path: Path) -> None:
    """Issue 17: between joining a local write in memory and its commit, a
    read must not hand out a context covering it. The commit window is held
    open by a store whose commit waits on an event (real SQLite behind it);
    ``Node.settled`` — what every API GET awaits — returns only once the
    write is on disk, and the write's row is there when it does."""
    import dataclasses

    config = dataclasses.replace(
        load_config(Path(fleet.nodes["plant-a"]["config"])), data_dir=tmp_path / "data"
    )

    async def scenario() -> None:
        node = Node(config)
        await node.open()
        assert node.store is not None
        try:
            await node.write(lambda s: s.create("plant-a/window-pump", PUMP, author="t"))
            release = asyncio.Event()
            entered = asyncio.Event()
            real = node.store.append_local_nowait

            async def held(*args: object, **kw: object) -> None:
                entered.set()
                await release.wait()
                await real(*args, **kw)  # type: ignore[arg-type]

            def slow(*args: object, **kw: object) -> asyncio.Future[None]:
                return asyncio.ensure_future(held(*args, **kw))

            node.store.append_local_nowait = slow  # type: ignore[method-assign]
            write = asyncio.create_task(
                node.write(
                    lambda s: s.write(
                        "plant-a/window-pump", SHARED, "in-flight", author="t", now_ms=0
                    )
                )
            )
            await entered.wait()  # joined in memory, commit held open
            assert node.state.entity("plant-a/window-pump").value(SHARED) == "in-flight"
            reader = asyncio.create_task(node.settled())
            for _ in range(20):
                await asyncio.sleep(0)  # let the reader run as far as it can
            assert not reader.done(), "a read would see a write that is not durable"
            release.set()
            await asyncio.wait_for(reader, 10)
            assert write.done() and not write.exception()
            ops = await node.store.ops(entity="plant-a/window-pump")
            assert any(op.delta.field == SHARED for op in ops)
        finally:
            await node.close()

    asyncio.run(scenario())
