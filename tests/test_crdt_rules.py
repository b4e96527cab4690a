"""``ReplicaState.apply`` refuses deltas that break the data model's rules.

A refused delta raises ``RemoteProtocolError`` (the peer is at fault) and
leaves the state exactly as it was — same digest, no half-created entity —
whether it arrives in memory or through the wire codec.
"""

from __future__ import annotations

import math
from typing import Any

import msgspec
import pytest
from crdt_strategies import ENTITY_IDS, MODEL, SCHEMAS, Simulation, Workload, scaled, workloads
from hypothesis import given

from twinmesh.crdt import (
    FLEET_HOME,
    CausalContext,
    Delta,
    Dot,
    GrowOnlyLog,
    HybridTime,
    LocalProtocolError,
    LWWRegister,
    MVRegister,
    ORSet,
    PNCounter,
    RemoteProtocolError,
    ReplicaState,
    Sibling,
    SingleWriterRegister,
    TextCrdt,
    decode_deltas,
    encode_deltas,
    state_digest,
)

HOME, OTHER = "plant-a", "plant-b"
TWIN = ENTITY_IDS[0]  # homed at plant-a
T = HybridTime(1_000, 0)


def _populated() -> ReplicaState:
    """A replica (central) holding the twin with a few fields written."""
    home, other, central = (ReplicaState(n, SCHEMAS) for n in (HOME, OTHER, "central"))
    deltas = [home.create(TWIN, MODEL, author="x")]
    other.apply(deltas[0])
    deltas += [
        home.write(TWIN, "owner", "alice", author="x", now_ms=1),
        other.write(TWIN, "owner", "bob", author="x", now_ms=1),
        home.write(TWIN, "serial", "SN-1", author="x", now_ms=1),
        other.add(TWIN, "tags", "seal", author="x"),
        other.increment(TWIN, "starts", 3, author="x"),
    ]
    for d in deltas:
        central.apply(d)
    return central


def _mv(origin: str, value: Any = "2026-05-10", writer: str | None = None) -> MVRegister:
    dot = Dot(writer or origin, 7)
    return MVRegister([Sibling(value=value, dot=dot, author="x", time=T)], CausalContext.of([dot]))


def _delta(**changes: Any) -> Delta:
    base = Delta(
        origin=OTHER,
        author="x",
        entity=TWIN,
        model=MODEL,
        home=HOME,
        field="maintenance_date",
        state=_mv(OTHER),
    )
    return msgspec.structs.replace(base, **changes)


BAD_DELTAS: dict[str, Delta] = {
    "unknown model": _delta(
        entity="x/y/new", model="dtmi:nope:Thing;1", field=None, state=None, origin=HOME
    ),
    "unknown model on a field delta": _delta(model="dtmi:nope:Thing;1"),
    "unknown field": _delta(field="colour"),
    "wrong kind: set state for a shared field": _delta(
        field="owner", state=ORSet({"x": [Dot(OTHER, 1)]})
    ),
    "wrong kind: register state for a set": _delta(field="tags"),
    "wrong kind: counter for a label": _delta(field="label", state=PNCounter({OTHER: 1})),
    "wrong kind: log for text": _delta(field="notes", state=GrowOnlyLog({"e": 1})),
    "wrong kind: text for a log": _delta(field="alerts", state=TextCrdt()),
    "reported write from non-home": _delta(
        field="serial", state=SingleWriterRegister("SN-9", 5, OTHER, T)
    ),
    "reported write relayed as if from home but written elsewhere": _delta(
        origin=HOME, field="serial", state=SingleWriterRegister("SN-9", 5, OTHER, T)
    ),
    "reported write claiming home as writer, sent by non-home": _delta(
        field="serial", state=SingleWriterRegister("SN-9", 5, HOME, T)
    ),
    "creation from non-home": _delta(entity="plant-a/line-9/pump-1", field=None, state=None),
    "creation carrying a field state": _delta(origin=HOME, field=None),
    "MV sibling not written by origin": _delta(state=_mv(OTHER, writer=HOME)),
    "MV sibling value of the wrong type": _delta(state=_mv(OTHER, value="next tuesday")),
    "MV sibling value NaN": _delta(field="vibration_limit", state=_mv(OTHER, value=math.nan)),
    "enum value not in the enum": _delta(field="lifecycle", state=_mv(OTHER, value="scrapped")),
    "counter delta touching another replica's total": _delta(
        field="starts", state=PNCounter({HOME: 50})
    ),
    "counter delta touching another replica's decrements": _delta(
        field="starts", state=PNCounter({OTHER: 1}, {HOME: 9})
    ),
    "label not written by origin": _delta(field="label", state=LWWRegister("P7", T, HOME)),
    "set add with another replica's dot": _delta(
        field="tags", state=ORSet({"seal": [Dot(HOME, 4)]})
    ),
    "set element of a forbidden type": _delta(field="tags", state=ORSet({1.5: [Dot(OTHER, 4)]})),
    "log event that is not plain data": _delta(field="alerts", state=GrowOnlyLog({"e": {1, 2}})),
    "mismatched header: other home": _delta(home=OTHER),
    "mismatched header: other model": msgspec.structs.replace(
        _delta(), model="dtmi:twinmesh:other;1"
    ),
}


@pytest.mark.parametrize("name", list(BAD_DELTAS))
def test_rule_breaking_delta_is_refused_and_changes_nothing(name: str) -> None:
    """Each rule of the data model, broken once: refused with a reason, digest
    and entity set unchanged."""
    state = _populated()
    if "other model" in name:
        state.schemas = {**SCHEMAS, "dtmi:twinmesh:other;1": SCHEMAS[MODEL]}
    before, ids = state_digest(state), set(state.entities)
    with pytest.raises(RemoteProtocolError) as refused:
        state.apply(BAD_DELTAS[name])
    assert refused.value.reason
    assert state_digest(state) == before
    assert set(state.entities) == ids


# Left out: what the wire cannot even express (a creation row has no state;
# non-plain values and float set elements do not encode).
WIRE_SAFE = [
    n
    for n in BAD_DELTAS
    if not any(w in n for w in ("not plain data", "forbidden type", "carrying a field state"))
]


@pytest.mark.parametrize("name", WIRE_SAFE)
def test_rule_breaking_delta_is_refused_after_the_wire_too(name: str) -> None:
    """The codec checks form, ``apply`` checks rules: a well-formed batch that
    breaks a rule decodes, then is refused by ``apply`` (or by the decoder)."""
    state = _populated()
    before = state_digest(state)
    with pytest.raises(RemoteProtocolError):
        for delta in decode_deltas(encode_deltas([BAD_DELTAS[name]])):
            state.apply(delta)
    assert state_digest(state) == before


def test_creation_is_accepted_from_home_and_field_deltas_may_precede_it() -> None:
    """The positive side of the rules: a home's creation, and a field delta that
    arrives before the creation (deltas are self-describing), both apply."""
    state = ReplicaState("central", SCHEMAS)
    state.apply(_delta())
    state.apply(_delta(origin=HOME, field=None, state=None))
    assert state.entity(TWIN).value("maintenance_date") == "2026-05-10"


def test_fleet_wide_entities_are_created_anywhere_and_concurrent_creations_join() -> None:
    """A replicated model document is owned by no node: two plants may create it
    at once (the same header), and the creations join instead of colliding."""
    a, b, central = (ReplicaState(n, SCHEMAS) for n in (HOME, OTHER, "central"))
    da = a.create("_fleet/x", MODEL, author="ann", home=FLEET_HOME)
    db = b.create("_fleet/x", MODEL, author="bob", home=FLEET_HOME)
    for delta in (da, db):
        central.apply(decode_deltas(encode_deltas([delta]))[0])
    assert central.entity("_fleet/x").header.home == FLEET_HOME
    with pytest.raises(LocalProtocolError, match="at home here or fleet-wide"):
        a.create("_fleet/y", MODEL, author="ann", home=OTHER)
    # A creation claiming a real home is still accepted only from that home.
    with pytest.raises(RemoteProtocolError, match="only the home replica"):
        central.apply(msgspec.structs.replace(da, entity="_fleet/z", home=OTHER))


def _reoriginated(delta: Delta, impostor: str) -> Delta | None:
    """``delta`` claimed by another replica, if a rule ties it to its origin."""
    state = delta.state
    bound = (
        (delta.field is None)
        or isinstance(state, MVRegister | SingleWriterRegister | LWWRegister)
        or (isinstance(state, ORSet) and bool(state.entries))
        or (isinstance(state, PNCounter) and bool(state.pos or state.neg))
    )
    return msgspec.structs.replace(delta, origin=impostor) if bound else None


@scaled(0.75)
@given(workloads(text=False))
def test_a_relay_cannot_pass_off_another_replicas_write_as_its_own(workload: Workload) -> None:
    """For every delta a workload produced whose validity depends on who wrote
    it (creations, register writes, set adds, counter totals), the same delta
    claimed by a different origin is refused and changes nothing."""
    sim = Simulation(workload.replicas).run(workload.ops)
    target = sim.replicas[0]
    before = state_digest(target)
    for delta in sim.log:
        forged = _reoriginated(delta, "impostor")
        if forged is None:
            continue
        with pytest.raises(RemoteProtocolError):
            target.apply(forged)
        assert state_digest(target) == before
