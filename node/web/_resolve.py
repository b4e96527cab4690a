"""Settling a conflict from the review page: the same rules and audit entry as
``POST /v1/conflict/resolve`` (node/_api.py), as a function the pages call."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twinmesh.crdt import CausalContext, Entity, MVRegister

from .._models import AUDIT_ENTITY

if TYPE_CHECKING:
    from .._node import Node

__all__ = ["ResolveError", "resolve_conflict"]


class ResolveError(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def _sibling(s: Any) -> dict[str, Any]:
    return {
        "value": s.value,
        "origin": s.origin,
        "dot": str(s.dot),
        "author": s.author,
        "wall_time_ms": s.time.wall_ms,
        "hlc": [s.time.wall_ms, s.time.logical],
    }


async def resolve_conflict(
    node: Node,
    entity: Entity,
    field: str,
    value: Any,
    ctx: CausalContext,
    reason: str,
    *,
    author: str,
) -> str:
    """Resolve and log in one durable unit; returns the audit entry's id."""
    reason = reason.strip()
    if not reason:
        raise ResolveError(400, "a resolution needs a reason for the audit log")
    if len(reason) > 2000:
        raise ResolveError(400, "keep the reason under 2000 characters")
    state = entity.fields.get(field)
    if not isinstance(state, MVRegister) or not state.is_conflict():
        raise ResolveError(404, f"{entity.id}.{field} has no open conflict")
    missing = [str(s.dot) for s in state.sorted_siblings() if s.dot not in ctx]
    if missing:
        raise ResolveError(
            409,
            f"a new value arrived while you decided ({', '.join(missing)}); "
            "look at the siblings again",
        )
    now_ms = int(node.clock() * 1000)
    me = node.config.name
    event = {
        "kind": "resolution",
        "entity": entity.id,
        "field": field,
        "value": value,
        "reason": reason,
        "by": author,
        "at_node": me,
        "at_ms": now_ms,
        "siblings": [_sibling(s) for s in state.sorted_siblings()],
    }
    ids: list[str] = []

    def log(s: Any, seqs: list[int]) -> Any:
        ids.append(f"{me}:{seqs[0]}")
        return s.append(AUDIT_ENTITY(me), "events", ids[0], event, author=author)

    await node.write_many(
        lambda s, _: s.resolve(entity.id, field, value, covering=ctx, author=author, now_ms=now_ms),
        log,
    )
    return ids[0]
