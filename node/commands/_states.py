"""A command's life at its home plant, as a transition table.

    issued ─→ awaiting-approval ─→ queued ─→ executing ─→ confirmed
       │              │              │           └──────→ failed
       └──────────────┴──────────────┴─→ refused | expired

The home writes each step to its outcome log before acting on it: "executing"
is durable before the device is written, so a crash in between leaves a
command that is marked failed on restart and never sent twice (at most once).
"""

from __future__ import annotations

from enum import StrEnum

from ._record import CommandError

__all__ = ["FINAL", "TRANSITIONS", "CommandState", "check_step"]


class CommandState(StrEnum):
    ISSUED = "issued"
    AWAITING_APPROVAL = "awaiting-approval"
    QUEUED = "queued"
    EXECUTING = "executing"
    CONFIRMED = "confirmed"
    FAILED = "failed"
    REFUSED = "refused"
    EXPIRED = "expired"


S = CommandState
TRANSITIONS: dict[CommandState, frozenset[CommandState]] = {
    S.ISSUED: frozenset({S.AWAITING_APPROVAL, S.QUEUED, S.REFUSED, S.EXPIRED}),
    S.AWAITING_APPROVAL: frozenset({S.QUEUED, S.REFUSED, S.EXPIRED}),
    S.QUEUED: frozenset({S.EXECUTING, S.REFUSED, S.EXPIRED}),
    S.EXECUTING: frozenset({S.CONFIRMED, S.FAILED}),
    S.CONFIRMED: frozenset(),
    S.FAILED: frozenset(),
    S.REFUSED: frozenset(),
    S.EXPIRED: frozenset(),
}
FINAL = frozenset(s for s, nxt in TRANSITIONS.items() if not nxt)


def check_step(current: CommandState, target: CommandState) -> None:
    if target not in TRANSITIONS[current]:
        raise CommandError(f"a command cannot go from {current.value} to {target.value}")
