"""The alert lifecycle as a transition table (h11 style: anything missing is an error).

An alert opens, may escalate (severity rises), may be acknowledged by a
person, and clears — on its own when the condition falls below the policy's
clear level for long enough (hysteresis), or by a person. A condition that
returns within the suppression window reopens the same alert instead of
raising a new one (de-duplication of a flapping condition).
"""

from __future__ import annotations

from collections.abc import Mapping

from twinmesh.crdt import LocalProtocolError

__all__ = ["STATES", "TRANSITIONS", "AlertTransitionError", "next_state"]

STATES = ("open", "acknowledged", "cleared")

#: (state, event) -> state after. "new" is the state of an alert not yet raised.
TRANSITIONS: Mapping[tuple[str, str], str] = {
    ("new", "open"): "open",
    ("open", "escalate"): "open",
    ("open", "ack"): "acknowledged",
    ("open", "clear"): "cleared",
    ("acknowledged", "escalate"): "acknowledged",
    ("acknowledged", "clear"): "cleared",
    ("cleared", "reopen"): "open",
}


class AlertTransitionError(LocalProtocolError):
    """An event the alert's state does not allow (names the state and the event)."""


def next_state(state: str, event: str) -> str:
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        allowed = sorted(e for (s, e) in TRANSITIONS if s == state)
        raise AlertTransitionError(
            f"an alert in state {state!r} cannot take {event!r}"
            + (f" (allowed: {', '.join(allowed)})" if allowed else "")
        ) from None
