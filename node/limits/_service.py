"""The home plant's limit checks: a telemetry-buffer consumer raising alerts.

Consumer ``limits`` of the telemetry buffer (write-before-read, like scoring):
each committed good reading of a Telemetry that some ``AlarmLimit`` Property
limits is compared with the limit the twin holds now (the field's value as a
reader sees it: the provisional value while a conflict waits for review). An
alert opens on a reading beyond it and clears on one back inside by the
hysteresis; both are ordinary events in this node's alert log, so they
replicate, show on the alert and asset pages, can be acknowledged, and a high
one drafts a work order. Event ids derive from the reading that caused them,
and the cursor is acknowledged only after the events are durable: a crash in
between re-reads the readings and writes the same events, not new ones.

Only readings of assets homed here count (a limit is enforced where the
machine is), only good ones (a reading the source called bad, or a stuck or
out-of-order one, does not open an alarm), and none of a decommissioned twin.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from twinmesh.adapters import Quality

from ..alerts._tracker import alert_id
from ._rules import LimitRule, LimitTracker, Transition, load_rules

if TYPE_CHECKING:
    from .._node import Node

__all__ = ["CONSUMER", "LimitService"]

log = logging.getLogger("twinmesh.node.limits")

CONSUMER = "limits"
_BATCH = 2000
_UNUSABLE = (
    Quality.BAD_STATUS
    | Quality.UNCERTAIN
    | Quality.DUPLICATE
    | Quality.OUT_OF_ORDER
    | Quality.STUCK
).value


class LimitService:
    def __init__(self, node: Node) -> None:
        self.node = node
        assert node.telemetry is not None
        self.models = {a.entity: a.model for a in node.telemetry.settings.assets}
        self.rules = load_rules(node.registry)
        self.tracker = LimitTracker()
        self.cursor = 0
        self.checked = 0  # readings compared with a limit
        self.errors = 0
        self._task: asyncio.Task[None] | None = None

    async def open(self) -> None:
        assert self.node.telemetry is not None
        self.cursor = await self.node.telemetry.buffer.register_consumer(CONSUMER)
        me = self.node.config.name
        alerts = self.node.alerts  # type: ignore[attr-defined]
        self.tracker.restore(
            {
                (a["entity"], a["key"].split(":", 1)[1]): a["id"]
                for a in alerts.list()
                if a.get("raised_by") == me
                and str(a.get("key", "")).startswith("limit:")
                and a["state"] != "cleared"
            }
        )

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="limits")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        tel = self.node.telemetry
        assert tel is not None
        while True:
            try:
                n = await self.step()
                if n < _BATCH:
                    await tel.buffer.wait_after(self.cursor, timeout=5.0)
            except asyncio.CancelledError:
                raise
            except Exception:
                self.errors += 1
                log.exception("limit check failed; retrying")
                await asyncio.sleep(1.0)

    async def step(self) -> int:
        """Check what is committed after the cursor; returns readings read."""
        tel = self.node.telemetry
        assert tel is not None
        batch = await tel.buffer.read_after(self.cursor, _BATCH)
        if not batch:
            return 0
        events: list[dict[str, Any]] = []
        for st in batch:
            s = st.sample
            rules = self.rules.get((self.models.get(s.entity, ""), s.name))
            if not rules or s.quality.value & _UNUSABLE:
                continue
            if isinstance(s.value, bool) or not isinstance(s.value, int | float):
                continue
            twin = self.node.state.entities.get(s.entity)
            if twin is None or twin.header.home != self.node.config.name:
                continue
            if self._decommissioned(s.entity):
                continue
            for rule in rules:
                limit = _number(twin.value(rule.prop) if rule.prop in twin.fields else None)
                self.checked += 1
                turn = self.tracker.observe(s.entity, rule, float(s.value), limit)
                if turn is not None:
                    events.append(self._event(turn, s, rule, limit))
        if events:
            alerts = self.node.alerts  # type: ignore[attr-defined]
            await alerts.ensure_log()
            await alerts.record(events)
        self.cursor = batch[-1].seq
        await tel.buffer.ack(CONSUMER, self.cursor)
        return len(batch)

    def _decommissioned(self, entity: str) -> bool:
        lifecycle = getattr(self.node, "lifecycle", None)
        if lifecycle is None:
            return False
        try:
            return bool(lifecycle.state(entity) == "decommissioned")
        except Exception:
            return False

    def _event(
        self, turn: Transition, s: Any, rule: LimitRule, limit: float | None
    ) -> dict[str, Any]:
        me = self.node.config.name
        k = (s.entity, rule.prop)
        if turn is Transition.OPEN:
            aid = alert_id(me, s.entity, rule.key, s.source_ts)
            self.tracker.open[k] = aid
        else:
            aid = self.tracker.open.pop(k)
        plant = s.entity.split("/", 1)[0]
        policy = self.node.alerts.policy()  # type: ignore[attr-defined]
        model = self.models.get(s.entity, "")
        if limit is None:
            rule_text = f"the limit {rule.prop} was removed"
        elif turn is Transition.OPEN:
            rule_text = rule.describe(limit)
        else:
            back = limit - rule.hysteresis if rule.direction == "above" else limit + rule.hysteresis
            sign = "<=" if rule.direction == "above" else ">="
            rule_text = f"{rule.telemetry} {sign} {back:g} {rule.unit}".rstrip()
        over = None if limit is None else abs(float(s.value) - limit)
        event: dict[str, Any] = {
            "id": f"{aid}:{turn.value}:{s.sample_id}",
            "alert": aid,
            "type": turn.value,
            "state": "open" if turn is Transition.OPEN else "cleared",
            "at": round(s.source_ts, 6),
            "recorded_at": round(self.node.clock(), 6),
            "node": me,
            "by": "limits",
            "entity": s.entity,
            "plant": plant,
            "model": model,
            "key": rule.key,
            "severity": rule.severity,
            # How far beyond (or back from) the limit, in the telemetry's unit.
            "score": None if over is None else round(over, 3),
            "rule": rule_text,
            "policy_version": policy.version,
            "owner": policy.owner(plant=plant, model=model),
            "runbook": f"{rule.label}: a limit people set on this twin (AlarmLimit {rule.prop}).",
            "diagnosis": {
                "kind": "limit",
                "label": f"{rule.telemetry} {rule.direction} its limit ({rule.label})",
                "tag": rule.telemetry,
                "confidence": 1.0,
                "evidence": f"{rule.telemetry} read {float(s.value):g} {rule.unit}".rstrip()
                + ("" if limit is None else f"; the limit is {limit:g}"),
                "action": "check the machine against its limit",
                "detectors": {},
            },
        }
        if turn is Transition.OPEN:
            event["lineage"] = {
                "source": f"alarm limit {rule.prop} on {rule.telemetry}",
                "limit": limit,
                "direction": rule.direction,
                "hysteresis": rule.hysteresis,
                "sensors": [
                    {
                        "tag": s.name,
                        "sample_id": s.sample_id,
                        "source_ts": s.source_ts,
                        "ingest_ts": s.received_ts,
                        "value": float(s.value),
                    }
                ],
            }
        return event


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)
