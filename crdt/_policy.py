"""Provisional values: which sibling work goes on with while a person reviews.

The choice must be a pure function of the siblings (and the field's schema and
the entity's home) so that every replica shows the same provisional value for
the same conflict. Ties always fall back to the sibling's dot, which is unique.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ._errors import LocalProtocolError
from ._mvregister import Sibling
from ._schema import FieldSpec, Policy, ValueType
from ._values import value_sort_key

__all__ = ["provisional"]


def _by_time(s: Sibling) -> tuple[Any, ...]:
    return (s.time, s.dot)


def provisional(siblings: Sequence[Sibling], spec: FieldSpec, home: str) -> Sibling:
    """The sibling the field's policy picks; ``siblings`` must not be empty."""
    if not siblings:
        raise LocalProtocolError("no siblings to choose from")
    policy = spec.policy
    if policy is Policy.LATEST:
        return max(siblings, key=_by_time)
    if policy is Policy.EARLIEST:
        return min(siblings, key=_by_time)
    if policy is Policy.MAX:
        return max(siblings, key=lambda s: (value_sort_key(s.value), s.dot))
    if policy is Policy.MIN:
        return min(siblings, key=lambda s: (value_sort_key(s.value), s.dot))
    if policy is Policy.HOME_WINS:
        at_home = [s for s in siblings if s.origin == home]
        return max(at_home or siblings, key=_by_time)
    # STRICTER: enums by their declared order (last is strictest); numbers by direction.
    if spec.value_type is ValueType.ENUM:
        rank = {v: i for i, v in enumerate(spec.enum_values)}
        return max(siblings, key=lambda s: (rank.get(s.value, -1), s.dot))
    if spec.strictness == "lower":
        return min(siblings, key=lambda s: (value_sort_key(s.value), s.dot))
    return max(siblings, key=lambda s: (value_sort_key(s.value), s.dot))
