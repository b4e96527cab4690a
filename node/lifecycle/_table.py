"""The twin lifecycle (ISO 23247-2 §6, the life of an observable manufacturing
element's digital twin) as a transition table.

States (the ``lifecycle`` enum of ``dtmi:twinmesh:plant:Entity;1``):

    design → commissioning → in-service ⇄ degraded
                    ↑            ↓           ↓
                    └──── out-of-service ←───┘
                              ↓
                        decommissioned  (final: archived, read-only)

"degraded" is ISO 23247's adaptation state: the element runs, with limits.
A twin without a lifecycle value is in service (scoring treats a
missing lifecycle as in service). A transition not in the table is refused
with both states named; "decommissioned" has no way out, because an archived
twin's history must stay as it was (seed 000: losing history is expensive).
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["DEFAULT", "TRANSITIONS", "LifecycleError", "State", "check_transition"]


class State(StrEnum):
    DESIGN = "design"
    COMMISSIONING = "commissioning"
    IN_SERVICE = "in-service"
    DEGRADED = "degraded"
    OUT_OF_SERVICE = "out-of-service"
    DECOMMISSIONED = "decommissioned"


DEFAULT = State.IN_SERVICE

TRANSITIONS: dict[State, frozenset[State]] = {
    State.DESIGN: frozenset({State.COMMISSIONING, State.DECOMMISSIONED}),
    State.COMMISSIONING: frozenset({State.IN_SERVICE, State.DESIGN, State.OUT_OF_SERVICE}),
    State.IN_SERVICE: frozenset({State.DEGRADED, State.OUT_OF_SERVICE}),
    State.DEGRADED: frozenset({State.IN_SERVICE, State.OUT_OF_SERVICE}),
    State.OUT_OF_SERVICE: frozenset({State.IN_SERVICE, State.COMMISSIONING, State.DECOMMISSIONED}),
    State.DECOMMISSIONED: frozenset(),
}


class LifecycleError(Exception):
    """A refused transition or an unknown state; ``reason`` says which and why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def parse_state(text: object) -> State:
    try:
        return State(str(text))
    except ValueError:
        names = ", ".join(s.value for s in State)
        raise LifecycleError(f"{text!r} is not a lifecycle state (states: {names})") from None


def check_transition(current: State, target: State) -> None:
    if target not in TRANSITIONS[current]:
        allowed = ", ".join(sorted(s.value for s in TRANSITIONS[current])) or "none: it is final"
        raise LifecycleError(
            f"a twin cannot go from {current.value} to {target.value} "
            f"(from {current.value}: {allowed})"
        )
