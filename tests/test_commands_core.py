"""Pure parts of the command path and the lifecycle: signing, safety, tables."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from twinmesh.node.commands import (
    FINAL,
    Approval,
    CommandError,
    CommandRecord,
    CommandSpec,
    CommandState,
    check_request,
    check_step,
    new_command_id,
)
from twinmesh.node.lifecycle import TRANSITIONS, LifecycleError, State, check_transition

SPEC = CommandSpec(
    model="m",
    name="setSpeedSetpoint",
    label="Set speed",
    unit="rpm",
    confirm="speed",
    minimum=300,
    maximum=1800,
    max_rate=100,
    tolerance=15,
    high_risk_above=1500,
)


def _record(**kw: object) -> CommandRecord:
    base = dict(
        id=new_command_id(),
        entity="plant-a/line-1/motor-1",
        command="setSpeedSetpoint",
        value=1200.0,
        ramp_s=10.0,
        issuer_node="central",
        by="op",
        role="operator",
        issued_ms=1,
        expires_ms=2,
        high_risk=False,
    )
    base.update(kw)
    return CommandRecord(**base)  # type: ignore[arg-type]


def test_signature_verifies_and_any_change_breaks_it() -> None:
    key = Ed25519PrivateKey.generate()
    pub = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    rec = _record()
    sig = rec.sign(key)
    parsed, psig = CommandRecord.from_event(rec.to_event(sig))
    assert parsed == rec and parsed.verify(pub, psig)
    for change in ({"value": 1800.0}, {"entity": "plant-a/line-1/motor-2"}, {"expires_ms": 99}):
        forged, fsig = CommandRecord.from_event({**rec.to_event(sig), **change})
        assert not forged.verify(pub, fsig)
    other = Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    assert not rec.verify(other, sig)
    # An approval's signature is not a command's (domain separation).
    appr = Approval(command_id=rec.id, by="ap", role="approver", at_node="central", at_ms=3)
    assert not appr.verify(pub, sig)


@pytest.mark.parametrize(
    "event",
    [None, {}, {"id": "x" * 32}, {"id": "0" * 32, "value": "1"}, {"id": "0" * 32, "value": 1e400}],
)
def test_malformed_records_are_refused_with_a_reason(event: object) -> None:
    with pytest.raises(CommandError) as exc:
        CommandRecord.from_event(event)
    assert exc.value.reason


def test_envelope_and_rate_limit_refuse_with_reasons() -> None:
    check_request(SPEC, 1200, reported=1470, ramp_s=10)
    with pytest.raises(CommandError, match=r"outside the safe envelope 300\.\.1800 rpm"):
        check_request(SPEC, 5000, reported=None, ramp_s=10)
    with pytest.raises(CommandError, match="the limit is 100 rpm/s"):
        check_request(SPEC, 1000, reported=1470, ramp_s=1)
    assert SPEC.is_high_risk(1600) and not SPEC.is_high_risk(1400)


def test_command_and_lifecycle_tables_refuse_illegal_steps_naming_states() -> None:
    check_step(CommandState.QUEUED, CommandState.EXECUTING)
    for final in FINAL:
        with pytest.raises(CommandError, match=final.value):
            check_step(final, CommandState.EXECUTING)
    check_transition(State.IN_SERVICE, State.DEGRADED)
    with pytest.raises(LifecycleError, match="from in-service to decommissioned"):
        check_transition(State.IN_SERVICE, State.DECOMMISSIONED)
    assert TRANSITIONS[State.DECOMMISSIONED] == frozenset()


def test_the_mqtt_device_desk_refuses_late_and_malformed_requests_and_runs_each_id_once() -> None:
    import json

    from twinmesh.adapters.synthetic._mqtt_publisher import CommandDesk

    applied: list[float] = []
    now = 1_800_000_000.0
    desk = CommandDesk(
        {"p/cmd/set": None},
        apply=lambda _t, v: applied.append(v) or None,  # type: ignore[func-returns-value]
        clock=lambda: now,
    )

    def ask(body: object, topic: str = "p/cmd/set") -> dict[str, object] | None:
        out = desk.handle(topic, json.dumps(body).encode())
        if out is None:
            return None
        assert out[0] == topic + "/ack"
        return json.loads(out[1])  # type: ignore[no-any-return]

    fresh = int(now * 1000) + 5000
    assert ask({"id": "a", "value": 90, "expires": fresh}) == {
        "id": "a",
        "accepted": True,
        "value": 90.0,
    }
    # A QoS 1 redelivery gets the same answer and does not act again.
    assert ask({"id": "a", "value": 90, "expires": fresh})["accepted"] is True  # type: ignore[index]
    assert applied == [90.0]
    late = ask({"id": "b", "value": 80, "expires": int(now * 1000) - 1})
    assert late == {"id": "b", "accepted": False, "reason": "expired before it arrived"}
    assert ask({"id": "c", "value": "80", "expires": fresh})["reason"] == (  # type: ignore[index]
        "value must be a finite number"
    )
    assert ask({"id": "d", "value": 80})["reason"] == "expires must be epoch milliseconds"  # type: ignore[index]
    assert ask({"value": 80, "expires": fresh}) is None  # no id: nobody to answer
    assert desk.handle("p/cmd/set", b"{not json") is None
    assert ask({"id": "e", "value": 1, "expires": fresh}, topic="other") is None
    assert applied == [90.0]


def test_next_maintenance_date_holds_the_sooner_date_whoever_wrote_first() -> None:
    """Two plants plan the next maintenance concurrently: until a reviewer settles
    it, the sooner date stands (``min``), not the one written first (``earliest``
    by hybrid time), so a split can never silently postpone maintenance."""
    from twinmesh.crdt import Dot, HybridTime, Policy
    from twinmesh.crdt._mvregister import Sibling
    from twinmesh.crdt._policy import provisional
    from twinmesh.node._models import load_schemas

    (spec,) = {
        s.fields["nextMaintenanceDate"]
        for s in load_schemas().values()
        if "nextMaintenanceDate" in s.fields
    }
    assert spec.policy is Policy.MIN
    later_date_written_first = Sibling(
        value="2027-03-01", dot=Dot("plant-a", 4), author="a", time=HybridTime(1000)
    )
    sooner_date_written_after = Sibling(
        value="2027-02-15", dot=Dot("central", 9), author="c", time=HybridTime(2000)
    )
    a, b = later_date_written_first, sooner_date_written_after
    assert provisional([a, b], spec, home="plant-a").value == "2027-02-15"
    assert provisional([b, a], spec, home="central").value == "2027-02-15"
