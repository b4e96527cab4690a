"""Schema value checks and the provisional-value policies.

Value checks guard what enters a replica (a local write or a decoded message);
policies pick the value work goes on with while a conflict awaits review, and
must pick the same sibling on every replica, whatever order it holds them in.
"""

from __future__ import annotations

import itertools
import math
import random
import re
from typing import Any

import pytest
from crdt_strategies import plain_values
from hypothesis import given
from hypothesis import strategies as st

from twinmesh.crdt import (
    CausalContext,
    Dot,
    Entity,
    EntityHeader,
    EntitySchema,
    FieldKind,
    FieldSpec,
    HybridTime,
    LocalProtocolError,
    MVRegister,
    Policy,
    Sibling,
    ValueType,
    check_plain_value,
    conflicts,
    provisional,
)


def _spec(vt: ValueType, **kw: Any) -> FieldSpec:
    return FieldSpec(kind=FieldKind.SHARED, value_type=vt, **kw)


LIFECYCLE = ("in-service", "degraded", "out-of-service")

ACCEPTED: list[tuple[FieldSpec, Any]] = [
    (_spec(ValueType.DATE), "2026-05-10"),
    (_spec(ValueType.DATE), "2024-02-29"),
    (_spec(ValueType.DATETIME), "2026-05-10T08:00:00+00:00"),
    (_spec(ValueType.DATETIME), "2026-05-10T08:00:00Z"),
    (_spec(ValueType.DATETIME), "2026-05-10T10:00:00.250+02:00"),
    (_spec(ValueType.STRING), ""),
    (_spec(ValueType.STRING), "pump ✓"),
    (_spec(ValueType.INTEGER), -(2**63)),
    (_spec(ValueType.INTEGER), 2**64 - 1),
    (_spec(ValueType.DOUBLE), 4.5),
    (_spec(ValueType.DOUBLE), 7),
    (_spec(ValueType.BOOLEAN), False),
    (_spec(ValueType.ENUM, enum_values=LIFECYCLE), "degraded"),
    (_spec(ValueType.ANY), {"a": [1, {"b": None}], "c": b"\x00"}),
    (_spec(ValueType.ANY), [[[[[[[["depth 8"]]]]]]]]),
]

REFUSED: list[tuple[FieldSpec, Any]] = [
    (_spec(ValueType.DATE), "2025-02-29"),
    (_spec(ValueType.DATE), "2026-13-01"),
    (_spec(ValueType.DATE), "2026-5-10"),
    (_spec(ValueType.DATE), "20260510"),
    (_spec(ValueType.DATE), "2026-05-10T08:00:00+00:00"),
    (_spec(ValueType.DATE), "2026-05-10\n"),
    (_spec(ValueType.DATE), "２０２６-05-10"),
    (_spec(ValueType.DATE), 20260510),
    (_spec(ValueType.DATETIME), "2026-05-10T08:00:00"),
    (_spec(ValueType.DATETIME), "2026-05-10"),
    (_spec(ValueType.DATETIME), "yesterday"),
    (_spec(ValueType.STRING), 5),
    (_spec(ValueType.STRING), "\ud800"),
    (_spec(ValueType.INTEGER), True),
    (_spec(ValueType.INTEGER), 1.0),
    (_spec(ValueType.INTEGER), 2**64),
    (_spec(ValueType.INTEGER), -(2**63) - 1),
    (_spec(ValueType.DOUBLE), math.nan),
    (_spec(ValueType.DOUBLE), math.inf),
    (_spec(ValueType.DOUBLE), -math.inf),
    (_spec(ValueType.DOUBLE), True),
    (_spec(ValueType.DOUBLE), "4.5"),
    (_spec(ValueType.BOOLEAN), 1),
    (_spec(ValueType.ENUM, enum_values=LIFECYCLE), "Degraded"),
    (_spec(ValueType.ENUM, enum_values=LIFECYCLE), None),
    (_spec(ValueType.ANY), [[[[[[[[["depth 9"]]]]]]]]]),
    (_spec(ValueType.ANY), {1: "int key"}),
    (_spec(ValueType.ANY), {"k": {"\udc00": 1}}),
    (_spec(ValueType.ANY), {"nan": [math.nan]}),
    (_spec(ValueType.ANY), {1, 2}),
    (_spec(ValueType.ANY), object()),
    (_spec(ValueType.ANY), 1 + 2j),
]


@pytest.mark.parametrize(("spec", "value"), ACCEPTED, ids=lambda x: repr(x)[:40])
def test_value_fitting_its_type_is_accepted(spec: FieldSpec, value: Any) -> None:
    """Calendar dates, offset date-times, 64-bit integers, enums, nested data."""
    spec.check_value(value, where="t.f")


# Ids without memory addresses (repr of object()): pytest-xdist workers must collect alike.
@pytest.mark.parametrize(
    ("spec", "value"), REFUSED, ids=lambda x: re.sub(r" at 0x[0-9a-f]+", "", repr(x))[:40]
)
def test_value_not_fitting_its_type_is_refused(spec: FieldSpec, value: Any) -> None:
    """Impossible dates, naive date-times, bools posing as numbers, NaN and
    infinities (not equal to themselves: would break 'equal states encode
    equal'), too-deep nesting, non-string keys, unencodable strings."""
    with pytest.raises(LocalProtocolError) as refused:
        spec.check_value(value, where="t.f")
    assert refused.value.reason.startswith("t.f")


@given(plain_values(12))
def test_generated_plain_values_are_accepted(value: Any) -> None:
    """Everything the shared strategies call a plain value passes the check
    (so the other suites exercise real values, not ones the model refuses)."""
    check_plain_value(value, where="v")


def test_field_spec_refuses_inconsistent_declarations() -> None:
    """An enum needs values, strictness is lower/higher, text holds strings."""
    with pytest.raises(LocalProtocolError):
        FieldSpec(kind=FieldKind.SHARED, value_type=ValueType.ENUM)
    with pytest.raises(LocalProtocolError):
        FieldSpec(kind=FieldKind.SHARED, strictness="sideways")
    with pytest.raises(LocalProtocolError):
        FieldSpec(kind=FieldKind.TEXT, value_type=ValueType.INTEGER)
    with pytest.raises(LocalProtocolError, match="no field 'colour'"):
        EntitySchema(model="m", fields={}).spec("colour")


# ---------------------------------------------------------------- policies

HOME = "plant-a"


def _sibling(replica: str, counter: int, value: Any, wall: int, logical: int = 0) -> Sibling:
    return Sibling(
        value=value, dot=Dot(replica, counter), author="u", time=HybridTime(wall, logical)
    )


def _siblings(values: st.SearchStrategy[Any]) -> st.SearchStrategy[list[Sibling]]:
    """1-6 siblings with distinct dots; times collide often, to exercise tie-breaks."""
    one = st.tuples(
        st.sampled_from((HOME, "plant-b", "central")),
        st.integers(1, 4),
        values,
        st.integers(0, 3),
        st.integers(0, 1),
    )
    return st.lists(one, min_size=1, max_size=6, unique_by=lambda t: (t[0], t[1])).map(
        lambda rows: [_sibling(*row) for row in rows]
    )


def _by_time(s: Sibling) -> tuple[Any, ...]:
    return (s.time.wall_ms, s.time.logical, s.dot.replica, s.dot.counter)


def _expected(policy: Policy, spec: FieldSpec, sibs: list[Sibling]) -> Sibling:
    """The policies restated independently: sort, then take an end."""

    def by_value(s: Sibling) -> tuple[Any, ...]:
        return (s.value, s.dot.replica, s.dot.counter)

    if policy is Policy.LATEST:
        return sorted(sibs, key=_by_time)[-1]
    if policy is Policy.EARLIEST:
        return sorted(sibs, key=_by_time)[0]
    if policy is Policy.HOME_WINS:
        at_home = [s for s in sibs if s.dot.replica == HOME]
        return sorted(at_home or sibs, key=_by_time)[-1]
    if policy is Policy.MAX:
        return sorted(sibs, key=by_value)[-1]
    if policy is Policy.MIN:
        return sorted(sibs, key=by_value)[0]
    if spec.value_type is ValueType.ENUM:
        return sorted(
            sibs, key=lambda s: (spec.enum_values.index(s.value), s.dot.replica, s.dot.counter)
        )[-1]
    ranked = sorted(sibs, key=by_value)
    return ranked[0] if spec.strictness == "lower" else ranked[-1]


NUMBERS = st.one_of(st.integers(-5, 5), st.sampled_from((0.5, 2.5, -1.5, 3.0)))
CASES: list[tuple[Policy, FieldSpec, st.SearchStrategy[Any]]] = [
    (
        Policy.LATEST,
        _spec(ValueType.DATE, policy=Policy.LATEST),
        st.sampled_from(("2026-01-01", "2026-06-30")),
    ),
    (
        Policy.EARLIEST,
        _spec(ValueType.DATE, policy=Policy.EARLIEST),
        st.sampled_from(("2026-01-01", "2026-06-30")),
    ),
    (Policy.MAX, _spec(ValueType.DOUBLE, policy=Policy.MAX), NUMBERS),
    (Policy.MIN, _spec(ValueType.DOUBLE, policy=Policy.MIN), NUMBERS),
    (
        Policy.MAX,
        _spec(ValueType.DATE, policy=Policy.MAX),
        st.sampled_from(("2025-12-31", "2026-01-01", "2026-06-30")),
    ),
    (
        Policy.MIN,
        _spec(ValueType.DATE, policy=Policy.MIN),
        st.sampled_from(("2025-12-31", "2026-01-01", "2026-06-30")),
    ),
    (
        Policy.HOME_WINS,
        _spec(ValueType.STRING, policy=Policy.HOME_WINS),
        st.sampled_from(("alice", "bob")),
    ),
    (
        Policy.STRICTER,
        _spec(ValueType.ENUM, policy=Policy.STRICTER, enum_values=LIFECYCLE),
        st.sampled_from(LIFECYCLE),
    ),
    (Policy.STRICTER, _spec(ValueType.DOUBLE, policy=Policy.STRICTER, strictness="lower"), NUMBERS),
    (
        Policy.STRICTER,
        _spec(ValueType.DOUBLE, policy=Policy.STRICTER, strictness="higher"),
        NUMBERS,
    ),
]


@pytest.mark.parametrize(
    ("policy", "spec", "values"),
    CASES,
    ids=[f"{p.value}-{s.value_type.value}-{s.strictness}" for p, s, _ in CASES],
)
@given(data=st.data(), seed=st.integers(0, 2**32 - 1))
def test_policy_picks_the_same_sibling_whatever_the_order(
    policy: Policy,
    spec: FieldSpec,
    values: st.SearchStrategy[Any],
    data: st.DataObject,
    seed: int,
) -> None:
    """Each policy picks what it promises (latest/earliest by hybrid time,
    max/min by value, home's latest, strictest by enum order or number
    direction), ties broken by dot, identically for every sibling order —
    directly and through an entity's conflict view."""
    sibs = data.draw(_siblings(values), label="siblings")
    expected = _expected(policy, spec, sibs)
    rng = random.Random(seed)
    for _ in range(4):
        shuffled = sibs[:]
        rng.shuffle(shuffled)
        assert provisional(shuffled, spec, HOME) == expected
    schema = EntitySchema(model="m", fields={"f": spec})
    entity = Entity(EntityHeader(id="e", model="m", home=HOME), schema)
    entity.fields["f"] = MVRegister(reversed(sibs), CausalContext.of(s.dot for s in sibs))
    assert entity.value("f") == expected.value
    if len(sibs) > 1:
        (conflict,) = conflicts(entity)
        assert conflict.provisional == expected and conflict.policy is policy


def test_home_wins_falls_back_to_latest_and_enum_stricter_ranks_unknowns_lowest() -> None:
    """Without a home sibling, home-wins is latest; an enum value not declared
    (an older model) ranks below every declared one."""
    home_spec = _spec(ValueType.STRING, policy=Policy.HOME_WINS)
    early, late = _sibling("plant-b", 1, "bob", 5), _sibling("central", 1, "carol", 9)
    assert provisional([late, early], home_spec, HOME) is late
    at_home = _sibling(HOME, 1, "alice", 1)
    assert provisional([late, at_home, early], home_spec, HOME) is at_home
    enum_spec = _spec(ValueType.ENUM, policy=Policy.STRICTER, enum_values=LIFECYCLE)
    legacy, ok = _sibling("plant-b", 1, "retired", 1), _sibling("central", 1, "in-service", 1)
    assert provisional([legacy, ok], enum_spec, HOME) is ok
    with pytest.raises(LocalProtocolError):
        provisional([], enum_spec, HOME)


def test_every_order_of_three_concurrent_dates_gives_the_earliest() -> None:
    """The demo's maintenance date (policy earliest): all 6 orders agree."""
    spec = _spec(ValueType.DATE, policy=Policy.EARLIEST)
    sibs = [
        _sibling("plant-a", 1, "2026-06-01", 30),
        _sibling("plant-b", 1, "2026-05-01", 10),
        _sibling("central", 1, "2026-07-01", 10),
    ]
    picks = {provisional(list(p), spec, HOME).dot for p in itertools.permutations(sibs)}
    assert picks == {Dot("central", 1)}
