"""The safe command path: desired state, signed commands, execution at home only.

DTDL Commands become desired state on a twin; the reported state comes only
from the asset's telemetry at its home plant. ``CommandService``
(``_service.py``, imported by the node directly) issues, approves, executes
and reconciles; ``_record.py`` signs and verifies, ``_safety.py`` holds the
envelope, rate limit and risk class, ``_states.py`` the transition table.
"""

from ._log import COMMANDS_ENTITY, COMMANDS_MODEL, COMMANDS_SCHEMA
from ._record import Approval, CommandError, CommandRecord, new_command_id
from ._safety import CommandSpec, check_request, load_specs
from ._states import FINAL, TRANSITIONS, CommandState, check_step

__all__ = [
    "COMMANDS_ENTITY",
    "COMMANDS_MODEL",
    "COMMANDS_SCHEMA",
    "FINAL",
    "TRANSITIONS",
    "Approval",
    "CommandError",
    "CommandRecord",
    "CommandSpec",
    "CommandState",
    "check_request",
    "check_step",
    "load_specs",
    "new_command_id",
]
