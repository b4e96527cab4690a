"""Alert events as plain data the replicated log accepts (pure).

The log refuses anything that is not plain data (``crdt.check_plain_value``:
finite floats, str-keyed maps, ...), and a refused mutation inside a
multi-write unit stops the node (crash-only, ``Node.write_many``). Detector
evidence is numpy-made and may hold ``inf`` (e.g. "no relation without this
variable could be checked") or numpy scalars, so every event passes through
:func:`plain_event` first: numpy scalars become Python numbers, a non-finite
number becomes ``None`` (JSON has no infinity; ``None`` reads "not
measurable"), tuples become lists. What still is not plain is refused here,
by the caller, one event at a time — never the batch, never the node.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from twinmesh.crdt import LocalProtocolError, check_plain_value

__all__ = ["plain", "plain_event"]

_DEPTH = 24


def plain(value: Any, _depth: int = 0) -> Any:
    """``value`` with numpy scalars, tuples and non-finite floats made plain."""
    if _depth > _DEPTH:
        return None
    if value is None or isinstance(value, bool | str | bytes):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):  # np.float64 is a float subclass: made a float
        return float(value) if math.isfinite(value) else None
    item = getattr(value, "item", None)  # numpy scalar (np.float64, np.bool_, ...)
    if callable(item) and getattr(value, "shape", None) == ():
        return plain(item(), _depth)
    if isinstance(value, Mapping):
        return {str(k): plain(v, _depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        seq = sorted(value, key=repr) if isinstance(value, set | frozenset) else value
        return [plain(v, _depth + 1) for v in seq]
    tolist = getattr(value, "tolist", None)  # a numpy array
    if callable(tolist):
        return plain(tolist(), _depth)
    return str(value)


def plain_event(event: Mapping[str, Any]) -> dict[str, Any]:
    """The event made plain; :class:`LocalProtocolError` if it still is not."""
    out = plain(event)
    check_plain_value(out, where=f"alert event {event.get('id')!r}")
    if not isinstance(out.get("id"), str):
        raise LocalProtocolError("alert event: no string id")
    return out  # type: ignore[no-any-return]
