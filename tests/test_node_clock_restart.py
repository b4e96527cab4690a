"""The hybrid clock survives a real process restart (issue 10).

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
