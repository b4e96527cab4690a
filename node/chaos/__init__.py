"""Chaos on real processes: scenario faults on a local fleet, a Jepsen-style
history of client operations, and a checker over the history and every
node's final state (``twinmesh chaos run scenarios/X.toml``; docs/chaos.md)."""

from ._check import CHAOS_CHECKERS, Convergence, FieldFinal, NodeFinal, Outcome, check
from ._history import Event, History, HistoryError, Op
from ._plan import Plan, Step, compile_plan

__all__ = [
    "CHAOS_CHECKERS",
    "Convergence",
    "Event",
    "FieldFinal",
    "History",
    "HistoryError",
    "NodeFinal",
    "Op",
    "Outcome",
    "Plan",
    "Step",
    "check",
    "compile_plan",
]
