"""Where alert events live: each node's own grow-only log, folded into alerts.

Every node appends the events it raises (open, escalate, clear, reopen) and
the ones its people make (ack, clear) to the ``events`` log of its own entity
``<node>/_alerts`` — it is that entity's home, so no two nodes ever write the
same log, and an event id (alert id, type, source time) is unique by
construction. The logs replicate with the rest of the shared state; a log is
a grow-only map keyed by event id, so a heal after a WAN split delivers each
event once, and a redelivery is a no-op (ARCHITECTURE.md, "grow-only log").

An alert is a fold of its events in time order: the transition table decides
the state, the open (or latest escalation) carries the lineage.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from twinmesh.crdt import EntitySchema, FieldKind, FieldSpec

from ._lifecycle import TRANSITIONS

__all__ = ["ALERT_LOG_MODEL", "ALERT_LOG_SCHEMA", "alert_log_entity", "fold_alerts"]

ALERT_LOG_MODEL = "dtmi:twinmesh:fleet:AlertLog;1"
ALERT_LOG_SCHEMA = EntitySchema(
    model=ALERT_LOG_MODEL,
    fields={
        "events": FieldSpec(
            kind=FieldKind.LOG, description="alert events (open/escalate/ack/clear) with lineage"
        )
    },
)


def alert_log_entity(node: str) -> str:
    return f"{node}/_alerts"


def fold_alerts(events: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Alert id -> the alert as the events say (the alert dict of GET /v1/alerts/{id})."""
    alerts: dict[str, dict[str, Any]] = {}
    ordered = sorted(events, key=lambda e: (e.get("at", 0.0), e.get("recorded_at", 0.0), e["id"]))
    for e in ordered:
        aid = e.get("alert")
        if not isinstance(aid, str):
            continue
        a = alerts.get(aid)
        kind = e.get("type")
        if a is None:
            if kind != "open":
                continue  # an ack seen before its open (cannot happen once healed)
            a = {
                "id": aid,
                "entity": e.get("entity"),
                "plant": e.get("plant"),
                "model": e.get("model"),
                "key": e.get("key"),
                "state": "open",
                "severity": e.get("severity"),
                "rule": e.get("rule"),
                "score": e.get("score"),
                "opened_at": e.get("at"),
                "updated_at": e.get("at"),
                "raised_by": e.get("node"),
                "owner": e.get("owner"),
                "runbook": e.get("runbook"),
                "policy_version": e.get("policy_version"),
                "diagnosis": e.get("diagnosis"),
                "lineage": e.get("lineage", {}),
                "acknowledged_by": None,
                "events": [],
                "work_order": None,
            }
            alerts[aid] = a
        else:
            after = TRANSITIONS.get((a["state"], str(kind)))
            if after is None:
                # Two people cleared concurrently, or an ack crossed a clear in a
                # partition: the fold keeps the first and records the rest.
                a["events"].append({**_brief(e), "ignored": True})
                continue
            a["state"] = after
            if kind in ("escalate", "reopen"):
                a["severity"] = e.get("severity", a["severity"])
                a["score"] = e.get("score", a["score"])
                a["lineage"] = e.get("lineage", a["lineage"])
                a["diagnosis"] = e.get("diagnosis", a["diagnosis"])
                a["rule"] = e.get("rule", a["rule"])
            if kind == "ack":
                a["acknowledged_by"] = e.get("by")
            a["updated_at"] = max(a["updated_at"], e.get("at", 0.0))
        a["events"].append(_brief(e))
    return alerts


def _brief(e: Mapping[str, Any]) -> dict[str, Any]:
    return {
        k: e.get(k)
        for k in (
            "id",
            "type",
            "state",
            "at",
            "recorded_at",
            "node",
            "by",
            "severity",
            "score",
            "note",
        )
        if e.get(k) is not None
    }
