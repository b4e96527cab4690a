"""Where commands travel: one grow-only log entity per node, ``<node>/_commands``.

Each node appends only to its own (it is that entity's home, like the audit
log): the commands people issued there, the approvals given there, and — at a
home plant — the outcome of every command it ran or refused. Gossip carries
them everywhere, so central sees a command's fate after a heal and the home
sees a command issued at central.
"""

from __future__ import annotations

from twinmesh.crdt import EntitySchema, FieldKind, FieldSpec

__all__ = ["COMMANDS_ENTITY", "COMMANDS_MODEL", "COMMANDS_SCHEMA"]

COMMANDS_MODEL = "dtmi:twinmesh:fleet:Commands;1"
COMMANDS_SCHEMA = EntitySchema(
    model=COMMANDS_MODEL,
    fields={
        "events": FieldSpec(
            kind=FieldKind.LOG, description="signed commands, approvals, and outcomes at home"
        )
    },
)


def COMMANDS_ENTITY(node: str) -> str:
    return f"{node}/_commands"
