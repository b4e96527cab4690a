"""Version vectors, causal contexts and the hybrid logical clock against set oracles.

A version vector stands for a set of dots ``{(r, 1..n)}`` and a causal context
for an arbitrary set of dots; every query is checked against plain Python sets
of ``(replica, counter)`` pairs, which are obviously right.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from twinmesh.crdt import (
    CausalContext,
    Dot,
    HybridClock,
    HybridTime,
    LocalProtocolError,
    Order,
    VersionVector,
)

REPLICAS = st.sampled_from(("a", "b", "c", "d"))
VECTORS = st.dictionaries(REPLICAS, st.integers(0, 6), max_size=4)
DOT_SETS = st.sets(st.builds(Dot, REPLICAS, st.integers(1, 9)), max_size=20)


def _dots_of_vv(vv: dict[str, int]) -> set[Dot]:
    return {Dot(r, k) for r, n in vv.items() for k in range(1, n + 1)}


def _dots_of_ctx(ctx: CausalContext) -> set[Dot]:
    return _dots_of_vv(dict(ctx.vv_items())) | set(ctx.cloud)


# ---------------------------------------------------------------- version vectors


@given(VECTORS, VECTORS)
def test_compare_agrees_with_set_inclusion_of_the_dots_summarised(
    x: dict[str, int], y: dict[str, int]
) -> None:
    """before/after/equal/concurrent is exactly proper-subset / superset /
    equality / neither of the dot sets the two vectors stand for."""
    dx, dy = _dots_of_vv(x), _dots_of_vv(y)
    expected = (
        Order.EQUAL
        if dx == dy
        else Order.BEFORE
        if dx < dy
        else Order.AFTER
        if dx > dy
        else Order.CONCURRENT
    )
    vx, vy = VersionVector(x), VersionVector(y)
    assert vx.compare(vy) is expected
    mirrored = {Order.BEFORE: Order.AFTER, Order.AFTER: Order.BEFORE}.get(expected, expected)
    assert vy.compare(vx) is mirrored


@given(VECTORS, VECTORS, st.builds(Dot, REPLICAS, st.integers(1, 9)))
def test_merge_contains_and_equality_follow_the_dot_sets(
    x: dict[str, int], y: dict[str, int], dot: Dot
) -> None:
    """merge is union, ``contains`` is membership, zero entries are not stored
    (so equal dot sets give equal, equally hashed vectors)."""
    vx, vy = VersionVector(x), VersionVector(y)
    merged = vx.merge(vy)
    assert _dots_of_vv(dict(merged.items())) == _dots_of_vv(x) | _dots_of_vv(y)
    assert vx.contains(dot) == (dot in _dots_of_vv(x))
    same = VersionVector({r: n for r, n in x.items() if n})
    assert same == vx and hash(same) == hash(vx) and 0 not in vx.values()
    assert merged.total() == len(_dots_of_vv(dict(merged.items())))


@given(VECTORS, VECTORS)
def test_missing_from_names_exactly_the_dots_a_peer_must_send(
    x: dict[str, int], y: dict[str, int]
) -> None:
    """``missing_from`` ranges (have, want] cover exactly the dots y has and x lacks."""
    ranges = VersionVector(x).missing_from(VersionVector(y))
    sent = {Dot(r, k) for r, (lo, hi) in ranges.items() for k in range(lo + 1, hi + 1)}
    assert sent == _dots_of_vv(y) - _dots_of_vv(x)


def test_with_dot_refuses_gaps_and_vectors_refuse_negative_entries() -> None:
    """A vector only advances by the next dot; anything else is our misuse."""
    vv = VersionVector({"a": 2})
    assert vv.with_dot(Dot("a", 3)) == VersionVector({"a": 3})
    with pytest.raises(LocalProtocolError):
        vv.with_dot(Dot("a", 5))
    with pytest.raises(LocalProtocolError):
        VersionVector({"a": -1})
    with pytest.raises(LocalProtocolError):
        Dot("a", 0)


# ---------------------------------------------------------------- causal contexts


def _build(dots: set[Dot], how: int, rng: random.Random) -> CausalContext:
    """The same dot set built five different ways."""
    ordered = list(dots)
    rng.shuffle(ordered)
    if how == 0:
        return CausalContext.of(ordered)
    if how == 1:
        ctx = CausalContext()
        for d in ordered:
            ctx.add(d)
        return ctx
    if how == 2:  # union of two halves
        half = len(ordered) // 2
        return CausalContext.of(ordered[:half]).union(CausalContext.of(ordered[half:]))
    if how == 3:  # contiguous prefixes as a vector, the rest as a cloud
        prefix: dict[str, int] = {}
        for r in {d.replica for d in dots}:
            n = 0
            while Dot(r, n + 1) in dots:
                n += 1
            prefix[r] = n
        rest = [d for d in ordered if d.counter > prefix.get(d.replica, 0)]
        return CausalContext(prefix, rest)
    ctx = CausalContext()  # via add_vv of the prefix, then update with the rest
    ctx.update(CausalContext.of(ordered))
    ctx.add_vv({})
    return ctx


@given(DOT_SETS, st.integers(0, 2**32 - 1))
def test_equal_dot_sets_give_equal_contexts_however_built(dots: set[Dot], seed: int) -> None:
    """Canonical form: whatever order or route the dots came by, the context is
    the same object value (contiguous prefixes folded into the vector, the
    cloud holding only dots beyond a gap), and it stands for exactly the set."""
    rng = random.Random(seed)
    built = [_build(dots, how, rng) for how in range(5)]
    for ctx in built:
        assert ctx == built[0]
        assert _dots_of_ctx(ctx) == dots
        for d in ctx.cloud:
            assert d.counter > dict(ctx.vv_items()).get(d.replica, 0) + 1
        assert all(d in ctx for d in dots)
        assert ctx.replicas() == {d.replica for d in dots}
        for r in ("a", "b", "c", "d"):
            assert ctx.max_counter(r) == max((d.counter for d in dots if d.replica == r), default=0)


@given(DOT_SETS, DOT_SETS)
def test_issubset_and_union_agree_with_sets(x: set[Dot], y: set[Dot]) -> None:
    """``issubset`` is ⊆ and ``union`` is ∪ on the dot sets, and neither
    mutates its operands (contexts held by deltas must never change)."""
    cx, cy = CausalContext.of(x), CausalContext.of(y)
    assert cx.issubset(cy) == (x <= y)
    assert cy.issubset(cx) == (y <= x)
    assert _dots_of_ctx(cx.union(cy)) == x | y
    assert _dots_of_ctx(cx) == x and _dots_of_ctx(cy) == y


@given(st.lists(st.integers(1, 12), max_size=30), st.integers(0, 2**32 - 1))
def test_add_compacts_once_the_gaps_fill(counters: list[int], seed: int) -> None:
    """Adding dots in any order: the cloud holds exactly the dots beyond the
    first gap, and once every dot 1..n has arrived the context is the plain
    vector {r: n} with an empty cloud."""
    rng = random.Random(seed)
    ctx = CausalContext()
    seen: set[int] = set()
    for c in counters:
        ctx.add(Dot("a", c))
        seen.add(c)
        prefix = 0
        while prefix + 1 in seen:
            prefix += 1
        assert dict(ctx.vv_items()).get("a", 0) == prefix
        assert {d.counter for d in ctx.cloud} == {c for c in seen if c > prefix}
    everything = list(range(1, 13))
    rng.shuffle(everything)
    for c in everything:
        ctx.add(Dot("a", c))
    assert ctx.vv_items() == [("a", 12)] and not ctx.cloud
    assert ctx == CausalContext({"a": 12})


def test_copy_is_independent() -> None:
    """Contexts are mutable; a copy must not share state with its source."""
    ctx = CausalContext({"a": 1}, [Dot("a", 3)])
    twin = ctx.copy()
    twin.add(Dot("a", 2))
    assert ctx == CausalContext({"a": 1}, [Dot("a", 3)])
    assert twin == CausalContext({"a": 3})


# ---------------------------------------------------------------- hybrid clock


@given(
    st.lists(st.tuples(st.booleans(), st.integers(0, 10**7), st.integers(0, 10**7)), max_size=60)
)
def test_hybrid_clock_is_monotonic_and_passes_what_it_observed(
    events: list[tuple[bool, int, int]],
) -> None:
    """Whatever the wall clock does (jumps back, stands still), every tick is
    strictly greater than the last, than every timestamp observed, and never
    behind the wall clock it was given (Kulkarni et al. 2014)."""
    clock = HybridClock()
    last = clock.last
    observed = HybridTime(0, 0)
    for is_receive, wall, remote_wall in events:
        if is_receive:
            remote = HybridTime(remote_wall, wall % 5)
            clock.observe(remote, wall)
            observed = max(observed, remote)
            assert clock.last > remote and clock.last >= last
        else:
            t = clock.tick(wall)
            assert t > last and t > observed and t.wall_ms >= wall
        last = clock.last


def test_hybrid_clock_steps_back_without_going_back() -> None:
    """A wall clock stepped back an hour: the HLC stays at the old wall time
    and counts logically, so a later write still sorts after an earlier one."""
    clock = HybridClock()
    first = clock.tick(10_000_000)
    second = clock.tick(10_000_000 - 3_600_000)
    assert second == HybridTime(10_000_000, 1) > first
