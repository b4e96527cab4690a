"""What the fleet page shows: each node's connection state and how stale its data is.

"Reachable" uses the same rule as ``GET /v1/fleet`` (heard from within three
gossip rounds plus two seconds). A node that is not reachable is *split*
since its last contact. Freshness is the age of the newest thing this node has
from that plant: for this node's own plant the newest telemetry sample (raw
telemetry never leaves the plant, ARCHITECTURE.md), for every other node the
newest change of shared state received from it, which is what central can
know about a plant's data while it cannot see the plant's buffer.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._optional import alerts_for

if TYPE_CHECKING:
    from .._node import Node

__all__ = ["FleetRow", "FleetWatch", "fleet_rows"]


@dataclass(frozen=True, slots=True, kw_only=True)
class FleetRow:
    name: str
    is_self: bool
    reachable: bool
    last_contact: float | None  # epoch seconds
    split_since: float | None
    they_lack: int
    we_lack: int
    fresh_at: float | None  # epoch seconds of the newest data we hold from it
    fresh_what: str
    open_alerts: int | None  # None: this node has no alert service
    open_conflicts: int


class FleetWatch:
    """Keeps, per origin, when this node last received a change from it, by
    listening to the node's live feed (the same events ``/v1/feed`` streams)."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.changed_at: dict[str, float] = {}
        self.version = 0  # bumps on every event: live pages re-render when it moves
        self.changed = asyncio.Event()
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        store = self.node.store
        if store is not None:
            # One query at start-up so a restarted node does not show "never".
            async with store._db.execute(
                "SELECT origin, MAX(applied_ms) FROM ops GROUP BY origin"
            ) as cur:
                async for origin, ms in cur:
                    self.changed_at[origin] = ms / 1000
        self.node.feed.add(self._queue)
        self._task = asyncio.create_task(self._run(), name="web-fleet-watch")

    async def _run(self) -> None:
        while True:
            event = await self._queue.get()
            origin = event.get("origin")
            if isinstance(origin, str):
                self.changed_at[origin] = self.node.clock()
            self.version += 1
            self.changed.set()

    async def stop(self) -> None:
        self.node.feed.discard(self._queue)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task


def _newest_sample(node: Node) -> float | None:
    svc = node.telemetry
    if svc is None or not svc.latest:
        return None
    return max(s.source_ts for s in svc.latest.values())


def fleet_rows(node: Node, watch: FleetWatch) -> list[FleetRow]:
    engine = node.engine
    assert engine is not None
    now = node.clock()
    lag = engine.lag()
    conflicts: dict[str, int] = {}
    for c in node.state.conflicts():
        conflicts[c.home] = conflicts.get(c.home, 0) + 1

    def open_alerts(plant: str) -> int | None:
        found = alerts_for(node, plant=plant, state="open")
        return None if found is None else len(found)

    me = node.config.name
    own_fresh = _newest_sample(node)
    rows = [
        FleetRow(
            name=me,
            is_self=True,
            reachable=True,
            last_contact=now,
            split_since=None,
            they_lack=0,
            we_lack=0,
            fresh_at=own_fresh if own_fresh is not None else watch.changed_at.get(me),
            fresh_what="newest telemetry sample" if own_fresh is not None else "newest change",
            open_alerts=open_alerts(me),
            open_conflicts=conflicts.get(me, 0),
        )
    ]
    window = 3 * node.config.gossip_interval + 2
    # The engine's contact times are monotonic (timers never jump with the
    # wall clock); the page shows wall times, so each is dated by its age.
    mono = node.monotonic()
    for name, heard in engine.last_contact().items():
        reachable = heard is not None and mono - heard < window
        last = None if heard is None else now - (mono - heard)
        they_lack, we_lack = lag.get(name, (0, 0))
        rows.append(
            FleetRow(
                name=name,
                is_self=False,
                reachable=reachable,
                last_contact=last,
                split_since=None if reachable else last,
                they_lack=they_lack,
                we_lack=we_lack,
                fresh_at=watch.changed_at.get(name),
                fresh_what="newest change received",
                open_alerts=open_alerts(name),
                open_conflicts=conflicts.get(name, 0),
            )
        )
    return rows
