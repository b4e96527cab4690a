"""ISO 23247 twin lifecycle: a transition table on the shared ``lifecycle`` field.

``node.lifecycle.state(entity_id)`` answers for scoring and commands (a missing
lifecycle is in service); a decommissioned twin is archived: the HTTP API and
the pages refuse writes to it, commands are refused, its history stays.
"""

from ._service import FIELD, Lifecycle
from ._table import DEFAULT, TRANSITIONS, LifecycleError, State, check_transition, parse_state

__all__ = [
    "DEFAULT",
    "FIELD",
    "TRANSITIONS",
    "Lifecycle",
    "LifecycleError",
    "State",
    "check_transition",
    "parse_state",
]
