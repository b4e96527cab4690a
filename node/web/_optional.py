"""The services other packages add to a node, read defensively.

``node.alerts``, ``node.work_orders`` and ``node.cosim`` exist only on nodes
that run them (docs/architecture.md, "Plant lanes on the node"). A page asks
through these helpers: ``None`` means "not available on this node" (the page
says so), never an error page. A service that raises is reported the same
way, with its reason, so one broken service cannot take the fleet page down
with it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .._node import Node

__all__ = ["alerts_for", "cosim_status", "service", "work_orders_for"]

_log = logging.getLogger("twinmesh.node.web")


def service(node: Node, name: str) -> Any | None:
    return getattr(node, name, None)


def _call_list(svc: Any, **filters: Any) -> list[dict[str, Any]] | None:
    lister = getattr(svc, "list", None)
    if lister is None:
        return None
    wanted = {k: v for k, v in filters.items() if v is not None}
    try:
        found = lister(**wanted)
    except TypeError:
        # A list() without these keyword filters: filter here instead.
        try:
            found = [item for item in lister() if all(item.get(k) == v for k, v in wanted.items())]
        except Exception:
            _log.exception("web: %r.list() failed", svc)
            return None
    except Exception:
        _log.exception("web: %r.list() failed", svc)
        return None
    return [dict(item) for item in found if isinstance(item, dict)]


def alerts_for(node: Node, **filters: Any) -> list[dict[str, Any]] | None:
    svc = service(node, "alerts")
    return None if svc is None else _call_list(svc, **filters)


def work_orders_for(node: Node, **filters: Any) -> list[dict[str, Any]] | None:
    svc = service(node, "work_orders")
    return None if svc is None else _call_list(svc, **filters)


def cosim_status(node: Node, entity: str) -> dict[str, Any] | bool | None:
    """The asset's co-simulation status; ``False`` when the node runs no co-simulation."""
    svc = service(node, "cosim")
    if svc is None:
        return False
    try:
        status = svc.status(entity)
    except Exception:
        _log.exception("web: cosim.status(%r) failed", entity)
        return None
    return status if isinstance(status, dict) else None
