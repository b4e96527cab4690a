"""``node.work_orders``: shared work-order entities drafted from alerts.

A work order is an entity of model :data:`WORK_ORDER_MODEL` (DTDL in
``models/WorkOrder.json``), id ``<plant>/workorders/<id>``, homed at the node
that drafted it; its fields are shared settings, so an approval at central
reaches the plant, and two people approving and cancelling at once in a
partition leave a conflict in the review queue (provisional: the latest).
Every transition also appends to the ``history`` log. A high-severity
machine alert drafts one work order (once per alert); sensor faults never do
(``sensor_max`` in the policy keeps them below ``work_order_at``), so a
drifting transmitter never sends a crew to the machine.

Completing records the outcome, the label: :meth:`WorkOrderService.precision`
is, per detector that fired on the alert, the share of labelled outcomes that
confirmed the fault.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from twinmesh.crdt import LocalProtocolError

from ..alerts._policy import SEVERITIES
from ._lifecycle import check_outcome, next_state

if TYPE_CHECKING:
    from .._node import Node

__all__ = ["WORK_ORDER_MODEL", "WorkOrderService", "work_order_entity"]

WORK_ORDER_MODEL = "dtmi:twinmesh:WorkOrder;1"


def work_order_entity(plant: str, wo: str) -> str:
    return f"{plant}/workorders/{wo}"


class WorkOrderService:
    def __init__(self, node: Node) -> None:
        self.node = node
        self.drafted = 0

    # -- reads -----------------------------------------------------------------------

    def _json(self, entity: Any) -> dict[str, Any]:
        v = entity.value
        history = sorted(
            (dict(e, id=k) for k, e in entity.value("history").items()),
            key=lambda e: (e.get("at", 0.0), e["id"]),
        )
        reg = entity.field("state")
        return {
            "id": entity.id,
            "home": entity.header.home,
            "state": v("state"),
            "conflict": bool(reg.is_conflict()),
            "alert": v("alert"),
            "asset": v("asset"),
            "title": v("title"),
            "action": v("action"),
            "priority": v("priority"),
            "scheduled_for": v("scheduledFor"),
            "outcome": v("outcome"),
            "history": history,
            "delivered": any(e.get("type") == "delivered" for e in history),
        }

    def list(self, *, state: str | None = None, asset: str | None = None) -> list[dict[str, Any]]:
        out = [
            self._json(e)
            for e in self.node.state.entities.values()
            if e.header.model == WORK_ORDER_MODEL
        ]
        return sorted(
            (
                w
                for w in out
                if (state is None or w["state"] == state) and (asset is None or w["asset"] == asset)
            ),
            key=lambda w: w["id"],
        )

    def get(self, wo_id: str) -> dict[str, Any] | None:
        e = self.node.state.entities.get(wo_id)
        if e is None or e.header.model != WORK_ORDER_MODEL:
            return None
        return self._json(e)

    def for_alert(self, alert_id: str) -> str | None:
        for e in self.node.state.entities.values():
            if e.header.model == WORK_ORDER_MODEL and e.value("alert") == alert_id:
                return e.id
        return None

    # -- writes ----------------------------------------------------------------------

    def _history(self, wo_id: str, entry: dict[str, Any]) -> Any:
        key = f"{entry['type']}:{self.node.config.name}:{entry['at']:.6f}"
        return lambda s, _q: s.append(wo_id, "history", key, entry, author=str(entry["by"]))

    async def on_alert_event(self, event: dict[str, Any]) -> None:
        """Hook on every alert event this node records: draft when the policy says so."""
        if event.get("type") not in ("open", "reopen", "escalate"):
            return
        diag = event.get("diagnosis") or {}
        if diag.get("kind") != "machine":
            return
        alerts = getattr(self.node, "alerts", None)
        policy = alerts.policy() if alerts is not None else None
        threshold = policy.rules(str(event.get("model", ""))).work_order_at if policy else "high"
        sev = str(event.get("severity", "info"))
        if sev not in SEVERITIES or SEVERITIES.index(sev) < SEVERITIES.index(threshold):
            return
        if self.for_alert(str(event["alert"])) is not None:
            return
        await self.draft(
            alert=str(event["alert"]),
            asset=str(event["entity"]),
            title=f"{diag.get('label', 'anomaly')} on {event['entity']}",
            action=str(diag.get("action", "")),
            priority=sev,
            by="scoring",
        )

    async def draft(
        self, *, alert: str, asset: str, title: str, action: str, priority: str, by: str
    ) -> dict[str, Any]:
        plant = asset.split("/", 1)[0]
        wo = "wo-" + hashlib.sha256(f"{alert}|{asset}".encode()).hexdigest()[:12]
        wo_id = work_order_entity(plant, wo)
        if wo_id in self.node.state.entities:
            got = self.get(wo_id)
            assert got is not None
            return got
        now = self.node.clock()
        ms = int(now * 1000)
        fields = {
            "state": "draft",
            "alert": alert,
            "asset": asset,
            "title": title[:500],
            "action": action[:2000],
            "priority": priority,
        }
        muts: list[Any] = [lambda s, _q: s.create(wo_id, WORK_ORDER_MODEL, author=by)]
        for k, v in fields.items():
            muts.append(lambda s, _q, k=k, v=v: s.write(wo_id, k, v, author=by, now_ms=ms))
        muts.append(
            self._history(
                wo_id,
                {
                    "type": "draft",
                    "to": "draft",
                    "at": round(now, 6),
                    "by": by,
                    "node": self.node.config.name,
                },
            )
        )
        await self.node.write_many(*muts)
        self.drafted += 1
        got = self.get(wo_id)
        assert got is not None
        return got

    async def transition(
        self,
        wo_id: str,
        action: str,
        *,
        by: str,
        outcome: Any = None,
        note: str = "",
        scheduled_for: str | None = None,
    ) -> dict[str, Any]:
        wo = self.get(wo_id)
        if wo is None:
            raise KeyError(wo_id)
        if wo["conflict"]:
            raise LocalProtocolError(
                f"{wo_id}.state has concurrent values;"
                " resolve the conflict in the review queue first"
            )
        after = next_state(str(wo["state"]), action)
        if not isinstance(note, str) or len(note) > 2000:
            raise LocalProtocolError("note: expected a string of at most 2000 characters")
        now = self.node.clock()
        ms = int(now * 1000)
        muts: list[Any] = [lambda s, _q: s.write(wo_id, "state", after, author=by, now_ms=ms)]
        if action == "complete":
            out = check_outcome(outcome)
            muts.append(lambda s, _q: s.write(wo_id, "outcome", out, author=by, now_ms=ms))
        elif outcome is not None:
            raise LocalProtocolError("outcome: only completing a work order records one")
        if scheduled_for is not None:
            if (
                action != "schedule"
                or not isinstance(scheduled_for, str)
                or len(scheduled_for) > 64
            ):
                raise LocalProtocolError("scheduled_for: a string given when scheduling")
            muts.append(
                lambda s, _q: s.write(wo_id, "scheduledFor", scheduled_for, author=by, now_ms=ms)
            )
        entry = {
            "type": action,
            "from": wo["state"],
            "to": after,
            "at": round(now, 6),
            "by": by,
            "node": self.node.config.name,
        }
        if note:
            entry["note"] = note
        muts.append(self._history(wo_id, entry))
        await self.node.write_many(*muts)
        got = self.get(wo_id)
        assert got is not None
        return got

    async def record_delivery(self, wo_id: str, *, key: str, status: int) -> None:
        now = self.node.clock()
        await self.node.write_many(
            self._history(
                wo_id,
                {
                    "type": "delivered",
                    "at": round(now, 6),
                    "by": "outbox",
                    "node": self.node.config.name,
                    "note": f"HTTP {status}, idempotency key {key}",
                },
            )
        )

    # -- labels ----------------------------------------------------------------------

    def precision(self) -> dict[str, dict[str, Any]]:
        """Per detector: confirmed / labelled over completed work orders."""
        alerts = getattr(self.node, "alerts", None)
        stats: dict[str, dict[str, Any]] = {}
        for wo in self.list(state="done"):
            outcome = wo.get("outcome") or {}
            result = outcome.get("result")
            alert = alerts.get(wo["alert"]) if alerts is not None and wo["alert"] else None
            if alert is None or result is None:
                continue
            detectors = (alert.get("diagnosis") or {}).get("detectors") or {"unknown": 0}
            for d in detectors:
                s = stats.setdefault(d, {"labelled": 0, "confirmed": 0})
                s["labelled"] += 1
                s["confirmed"] += result == "fault_confirmed"
        for s in stats.values():
            s["precision"] = s["confirmed"] / s["labelled"] if s["labelled"] else None
        return stats
