"""``node.alerts``: alert events into the replicated log, alerts out of it.

The :class:`AlertService` is the IO side of :class:`~._tracker.AlertTracker`:
the scoring service hands it scored frames; events the tracker emits are
written to this node's alert log (one durable write for a batch of frames),
and high-severity machine alerts are handed to the work-order service to
draft. Reads fold every replicated alert log (this node's and, at central,
every plant's), so the API shows the same alerts on every node once gossip
has delivered the logs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from twinmesh.crdt import FLEET_HOME, LocalProtocolError

from ._lifecycle import next_state
from ._log import ALERT_LOG_MODEL, alert_log_entity, fold_alerts
from ._plain import plain_event
from ._policy import (
    DEFAULT_POLICY,
    POLICY_ENTITY,
    POLICY_MODEL,
    AlertPolicy,
    PolicyError,
    parse_policy,
)
from ._tracker import AlertTracker

if TYPE_CHECKING:
    from .._node import Node
    from ..scoring._diagnosis import Finding
    from ..scoring._engine import FrameResult

__all__ = ["AlertService"]

log = logging.getLogger("twinmesh.node.alerts")


class AlertService:
    def __init__(self, node: Node, *, model_of: Callable[[str], str]) -> None:
        self.node = node
        self.tracker = AlertTracker(node=node.config.name, policy=self.policy, model_of=model_of)
        self.on_event: list[Callable[[dict[str, Any]], Any]] = []
        self.raised = 0
        self.refused = 0  # events that could not be made plain data (see record)
        self._policy_cache: tuple[str, AlertPolicy] | None = None

    # -- policy ----------------------------------------------------------------------

    def policy(self) -> AlertPolicy:
        entity = self.node.state.entities.get(POLICY_ENTITY)
        if entity is None:
            return DEFAULT_POLICY
        doc = entity.value("document")
        if not isinstance(doc, str):
            return DEFAULT_POLICY
        if self._policy_cache is not None and self._policy_cache[0] == doc:
            return self._policy_cache[1]
        try:
            policy = parse_policy(doc)
        except PolicyError as exc:  # a replicated bad document: keep alerting on the default
            log.warning("replicated alert policy refused: %s", exc)
            policy = DEFAULT_POLICY
        self._policy_cache = (doc, policy)
        return policy

    async def set_policy(self, raw: Any, *, author: str) -> AlertPolicy:
        policy = parse_policy(raw)  # PolicyError names the key
        current = self.policy()
        if policy.version <= current.version and self.node.state.entities.get(POLICY_ENTITY):
            raise PolicyError(
                f"policy.version: {policy.version} must be greater than"
                f" the current {current.version}"
            )
        muts = []
        if POLICY_ENTITY not in self.node.state.entities:
            muts.append(
                lambda s, _q: s.create(POLICY_ENTITY, POLICY_MODEL, author=author, home=FLEET_HOME)
            )
        muts.append(
            lambda s, _q: s.write(
                POLICY_ENTITY,
                "document",
                policy.document,
                author=author,
                now_ms=int(self.node.clock() * 1000),
            )
        )
        await self.node.write_many(*muts)
        return policy

    # -- events ----------------------------------------------------------------------

    async def ensure_log(self) -> None:
        eid = alert_log_entity(self.node.config.name)
        if eid not in self.node.state.entities:
            await self.node.write(lambda s: s.create(eid, ALERT_LOG_MODEL, author="node"))

    def observe(
        self,
        results: Sequence[FrameResult],
        lineage: Callable[[FrameResult, Finding], dict[str, Any]],
    ) -> list[dict[str, Any]]:
        now = self.node.clock()
        events: list[dict[str, Any]] = []
        for r in results:
            events += self.tracker.observe(r, now=now, lineage=lineage)
        return events

    async def record(self, events: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Make events durable in this node's log (one write for the batch).

        Each event is made plain first (:func:`~._plain.plain_event`); one that
        cannot be is refused alone, logged and counted in ``refused``, so a
        detector's odd evidence never costs the batch's other events."""
        clean: list[dict[str, Any]] = []
        for e in events:
            try:
                clean.append(plain_event(e))
            except LocalProtocolError as exc:
                self.refused += 1
                log.error("alert event refused: %s", exc.reason)
        events = clean
        if not events:
            return []
        eid = alert_log_entity(self.node.config.name)
        await self.node.write_many(
            *[
                (
                    lambda s, _q, e=e: s.append(
                        eid, "events", e["id"], e, author=str(e.get("by", "scoring"))
                    )
                )
                for e in events
            ]
        )
        self.raised += sum(1 for e in events if e["type"] == "open")
        for e in events:
            self.node.publish(
                {
                    "type": "alert",
                    "alert": e["alert"],
                    "event": e["type"],
                    "entity": e["entity"],
                    "severity": e.get("severity"),
                }
            )
            for hook in self.on_event:
                await hook(e)
        return events

    async def act(self, alert_id: str, action: str, *, by: str, note: str = "") -> dict[str, Any]:
        """A person acknowledges or clears an alert (at any node; the event is ours)."""
        alert = self.get(alert_id)
        if alert is None:
            raise KeyError(alert_id)
        after = next_state(alert["state"], action)  # AlertTransitionError names state and input
        now = self.node.clock()
        event = {
            "id": f"{alert_id}:{action}:{self.node.config.name}:{now:.6f}",
            "alert": alert_id,
            "type": action,
            "state": after,
            "at": round(now, 6),
            "recorded_at": round(now, 6),
            "node": self.node.config.name,
            "by": by,
            "entity": alert["entity"],
        }
        if note:
            if len(note) > 2000:
                raise LocalProtocolError("note: at most 2000 characters")
            event["note"] = note
        await self.ensure_log()
        await self.record([event])
        self.tracker.external(event)
        got = self.get(alert_id)
        assert got is not None
        return got

    # -- reads (node.alerts, used by the pages and the API) ---------------------------------------

    def events(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for entity in self.node.state.entities.values():
            if entity.header.model == ALERT_LOG_MODEL:
                out += [dict(v) for v in entity.value("events").values()]
        return out

    def _all(self) -> dict[str, dict[str, Any]]:
        alerts = fold_alerts(self.events())
        wo = getattr(self.node, "work_orders", None)
        if wo is not None:
            for a in alerts.values():
                a["work_order"] = wo.for_alert(a["id"])
        return alerts

    def list(
        self,
        *,
        entity: str | None = None,
        plant: str | None = None,
        severity: str | None = None,
        state: str | None = None,
    ) -> list[dict[str, Any]]:
        out = [
            a
            for a in self._all().values()
            if (entity is None or a["entity"] == entity)
            and (plant is None or a["plant"] == plant)
            and (severity is None or a["severity"] == severity)
            and (state is None or a["state"] == state)
        ]
        out.sort(key=lambda a: (a["opened_at"], a["id"]))
        return out

    def get(self, alert_id: str) -> dict[str, Any] | None:
        return self._all().get(alert_id)

    def counts(self) -> dict[str, int]:
        c: dict[str, int] = {"open": 0, "acknowledged": 0, "cleared": 0}
        for a in self._all().values():
            c[a["state"]] = c.get(a["state"], 0) + 1
        return c
