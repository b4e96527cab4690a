"""The work-order lifecycle as a transition table: draft -> approved -> scheduled ->
done | cancelled. A person approves before anything leaves for the maintenance
system; completing records the outcome, which is the label detectors are
measured against."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from twinmesh.crdt import LocalProtocolError

__all__ = [
    "ACTIONS",
    "OUTCOMES",
    "STATES",
    "TRANSITIONS",
    "WorkOrderTransitionError",
    "check_outcome",
    "next_state",
]

STATES = ("draft", "approved", "scheduled", "done", "cancelled")
OUTCOMES = ("fault_confirmed", "no_fault_found", "sensor_fault")
TRANSITIONS: Mapping[tuple[str, str], str] = {
    ("draft", "approve"): "approved",
    ("draft", "cancel"): "cancelled",
    ("approved", "schedule"): "scheduled",
    ("approved", "cancel"): "cancelled",
    ("scheduled", "complete"): "done",
    ("scheduled", "cancel"): "cancelled",
}
ACTIONS = tuple(sorted({a for _, a in TRANSITIONS}))


class WorkOrderTransitionError(LocalProtocolError):
    """A transition the work order's state does not allow (names state and action)."""


def next_state(state: str, action: str) -> str:
    try:
        return TRANSITIONS[(state, action)]
    except KeyError:
        allowed = sorted(a for (s, a) in TRANSITIONS if s == state)
        raise WorkOrderTransitionError(
            f"a work order in state {state!r} cannot {action!r}"
            + (f" (allowed: {', '.join(allowed)})" if allowed else " (it is closed)")
        ) from None


def check_outcome(raw: Any) -> dict[str, str]:
    """The outcome of a completed work order; raises with the key at fault."""
    if not isinstance(raw, dict):
        raise WorkOrderTransitionError("outcome: expected an object {result, parts, notes}")
    unknown = sorted(set(raw) - {"result", "parts", "notes"})
    if unknown:
        raise WorkOrderTransitionError(f"outcome.{unknown[0]}: unknown key")
    result = raw.get("result")
    if result not in OUTCOMES:
        raise WorkOrderTransitionError(
            f"outcome.result: expected one of {list(OUTCOMES)}, got {result!r}"
        )
    out = {"result": str(result)}
    for k in ("parts", "notes"):
        v = raw.get(k, "")
        if not isinstance(v, str) or len(v) > 4000:
            raise WorkOrderTransitionError(
                f"outcome.{k}: expected a string of at most 4000 characters"
            )
        out[k] = v
    return out
