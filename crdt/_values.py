"""Canonical plain values.

Values are normalised once, when they enter (a local write or a decoded
message): dict keys sorted, tuples as lists. Two equal values then always
encode to the same msgpack bytes, which is what makes a hash of a state's
encoding a state digest.
"""

from __future__ import annotations

from typing import Any

import msgpack

__all__ = ["canonical", "value_bytes", "value_sort_key"]


def canonical(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: canonical(value[k]) for k in sorted(value)}
    if isinstance(value, list | tuple):
        return [canonical(v) for v in value]
    return value


def value_bytes(value: Any) -> bytes:
    """The canonical encoding of one (already canonical) value."""
    return msgpack.packb(value, use_bin_type=True)  # type: ignore[no-any-return]


_TYPE_RANK = {type(None): 0, bool: 1, int: 2, float: 2, str: 3, bytes: 4, list: 5, dict: 6}


def value_sort_key(value: Any) -> tuple[int, Any]:
    """A total order over plain values, for min/max policies and tie-breaks.

    Numbers compare numerically, strings lexically (ISO dates therefore
    chronologically); values of different types order by type, and values
    that are not comparable fall back to their canonical bytes.
    """
    rank = _TYPE_RANK.get(type(value), 7)
    if rank in (2, 3, 4) or rank == 1:
        return (rank, value)
    return (rank, value_bytes(value))
