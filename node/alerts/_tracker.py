"""From scored frames to alert events: hysteresis, de-duplication, escalation (pure).

One *condition* per (asset, finding key). A condition raises when its score
stays at or above the policy's ``raise`` level for ``raise_frames`` frames,
and clears when it stays below ``clear`` for ``clear_frames`` (hysteresis:
Montgomery's "alarm deadband" — raise and clear at different levels so a
score hovering at the limit does not chatter). While it is raised, further
frames of the same condition only *escalate* the severity, never raise it
again (de-duplication). A condition returning within ``suppress_seconds``
of its clear reopens the same alert. Events are plain dicts, ready for the
replicated log; the tracker itself holds no IO.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..scoring._diagnosis import Finding
from ..scoring._engine import FrameResult
from ._lifecycle import next_state
from ._policy import SEVERITIES, AlertPolicy

__all__ = ["AlertTracker", "alert_id"]


def alert_id(node: str, entity: str, key: str, ts: float) -> str:
    digest = hashlib.sha256(f"{node}|{entity}|{key}|{ts:.6f}".encode()).hexdigest()[:16]
    return f"{node}-{digest}"


@dataclass(slots=True)
class _Condition:
    entity: str
    key: str
    alert: str | None = None
    state: str = "new"
    severity: str = "info"
    above: int = 0
    below: int = 0
    cleared_at: float | None = None
    peak: float = 0.0
    last: Finding | None = None


class AlertTracker:
    def __init__(
        self,
        *,
        node: str,
        policy: Callable[[], AlertPolicy],
        model_of: Callable[[str], str],
        plant_of: Callable[[str], str] = lambda e: e.split("/", 1)[0],
    ) -> None:
        self.node = node
        self.policy = policy
        self.model_of = model_of
        self.plant_of = plant_of
        self.conditions: dict[tuple[str, str], _Condition] = {}

    def observe(
        self,
        result: FrameResult,
        *,
        now: float,
        lineage: Callable[[FrameResult, Finding], dict[str, Any]],
    ) -> list[dict[str, Any]]:
        policy = self.policy()
        model = self.model_of(result.entity)
        rules = policy.rules(model)
        events: list[dict[str, Any]] = []
        seen = {f.key: f for f in result.findings}
        for f in result.findings:
            self.conditions.setdefault((result.entity, f.key), _Condition(result.entity, f.key))
        for (entity, key), c in self.conditions.items():
            if entity != result.entity:
                continue
            f = seen.get(key)
            score = f.score if f is not None else 0.0
            if f is not None:
                c.last = f
            raised = c.state in ("open", "acknowledged")
            if score >= rules.raise_level:
                c.above += 1
                c.below = 0
            elif score < rules.clear_level:
                c.below += 1
                c.above = 0
            else:
                c.above = 0
                c.below = 0
            if not raised and f is not None and c.above >= rules.raise_frames:
                sev = rules.severity(score, f.kind)
                reopen = (
                    c.alert is not None
                    and c.state == "cleared"
                    and c.cleared_at is not None
                    and result.ts - c.cleared_at <= rules.suppress_seconds
                )
                kind = "reopen" if reopen else "open"
                if not reopen:
                    c.alert = alert_id(self.node, entity, key, result.ts)
                    c.state = "new"
                c.state = next_state(c.state, kind)
                c.severity = sev
                c.peak = score
                events.append(self._event(kind, c, f, result, now, policy, model, lineage))
            elif raised and f is not None:
                c.peak = max(c.peak, score)
                sev = rules.severity(score, f.kind)
                if SEVERITIES.index(sev) > SEVERITIES.index(c.severity):
                    c.severity = sev
                    c.state = next_state(c.state, "escalate")
                    events.append(
                        self._event("escalate", c, f, result, now, policy, model, lineage)
                    )
            elif raised and c.below >= rules.clear_frames:
                c.state = next_state(c.state, "clear")
                c.cleared_at = result.ts
                assert c.last is not None
                events.append(self._event("clear", c, c.last, result, now, policy, model, lineage))
        return events

    def external(self, event: Mapping[str, Any]) -> None:
        """A person's ack or clear (from any node): keep the condition in step."""
        for c in self.conditions.values():
            if c.alert == event.get("alert"):
                if event.get("type") == "ack" and c.state == "open":
                    c.state = "acknowledged"
                elif event.get("type") == "clear" and c.state in ("open", "acknowledged"):
                    c.state = "cleared"
                    c.cleared_at = float(event.get("at", 0.0))
                    c.above = 0

    def _event(
        self,
        kind: str,
        c: _Condition,
        f: Finding,
        result: FrameResult,
        now: float,
        policy: AlertPolicy,
        model: str,
        lineage: Callable[[FrameResult, Finding], dict[str, Any]],
    ) -> dict[str, Any]:
        assert c.alert is not None
        rules = policy.rules(model)
        plant = self.plant_of(c.entity)
        event: dict[str, Any] = {
            "alert": c.alert,
            "type": kind,
            "state": c.state,
            "at": round(result.ts, 6),
            "recorded_at": round(now, 6),
            "node": self.node,
            "by": "scoring",
            "entity": c.entity,
            "plant": plant,
            "model": model,
            "key": c.key,
            "severity": c.severity,
            "score": round(f.score if kind != "clear" else c.peak, 4),
            "rule": (
                f"score >= {rules.raise_level} for {rules.raise_frames} frames"
                if kind != "clear"
                else f"score < {rules.clear_level} for {rules.clear_frames} frames"
            ),
            "policy_version": policy.version,
            "owner": policy.owner(plant=plant, model=model),
            "runbook": rules.runbook.replace("{label}", f.label),
            "diagnosis": {
                "kind": f.kind,
                "label": f.label,
                "tag": f.tag,
                "confidence": f.confidence,
                "evidence": f.evidence,
                "action": f.action,
                "detectors": dict(f.detectors),
            },
        }
        if kind != "clear":
            event["lineage"] = lineage(result, f)
        event["id"] = f"{c.alert}:{kind}:{result.ts:.6f}"
        return event
