"""``twinmesh crdt demo``: two replicas edit a pump's maintenance date while
apart, merge, see the conflict, resolve it, and end equal.

Pure: it returns the lines to print, so the walkthrough doubles as a test.
"""

from __future__ import annotations

from ._codec import decode_deltas, encode_deltas, state_digest
from ._entity import Conflict
from ._state import Delta, ReplicaState
from .demo_models import PUMP, PUMP_SCHEMAS

__all__ = ["run_demo"]

PUMP_ID = "plant-a/line-1/pump-7"


def _ship(deltas: list[Delta], to: ReplicaState, now_ms: int) -> int:
    """Send deltas through the real wire format, as gossip would."""
    wire = encode_deltas(deltas)
    for delta in decode_deltas(wire):
        to.apply(delta, now_ms=now_ms)
    return len(wire)


def _describe(conflict: Conflict) -> list[str]:
    lines = [f"  conflict on {conflict.entity} . {conflict.field}"]
    for s in conflict.siblings:
        mark = "  <- provisional" if s.dot == conflict.provisional.dot else ""
        lines.append(
            f"    sibling {s.value!r:14} written at {s.origin:8} by {s.author:6} "
            f"(dot {s.dot}, hlc {s.time.wall_ms}.{s.time.logical}){mark}"
        )
    lines.append(
        f"    provisional value {conflict.provisional.value!r} chosen by policy "
        f"'{conflict.policy.value}' so work goes on until a reviewer decides"
    )
    return lines


def run_demo() -> list[str]:
    out: list[str] = []
    plant = ReplicaState("plant-a", PUMP_SCHEMAS)
    central = ReplicaState("central", PUMP_SCHEMAS)
    t = 1_780_000_000_000  # a fixed wall clock in ms: the demo is deterministic

    created = plant.create(PUMP_ID, PUMP.model, author="installer")
    first = plant.write(PUMP_ID, "maintenance_date", "2026-05-01", author="ana", now_ms=t)
    size = _ship([created, first], central, t)
    out.append(
        f"1. plant-a creates {PUMP_ID}, sets maintenance_date 2026-05-01; "
        f"gossip carries it to central ({size} bytes)."
    )
    out.append(f"   both agree: digest {state_digest(plant)[:16]} == {state_digest(central)[:16]}")

    out.append("2. The WAN goes down. Both edit the same date, neither sees the other:")
    at_plant = plant.write(
        PUMP_ID, "maintenance_date", "2026-05-10", author="ana", now_ms=t + 60_000
    )
    at_central = central.write(
        PUMP_ID, "maintenance_date", "2026-06-15", author="olaf", now_ms=t + 90_000
    )
    out.append("   plant-a (ana)  -> 2026-05-10")
    out.append("   central (olaf) -> 2026-06-15")

    out.append("3. The WAN returns; each side receives the other's delta and merges.")
    _ship([at_central], plant, t + 120_000)
    _ship([at_plant], central, t + 120_000)
    for name, replica in (("plant-a", plant), ("central", central)):
        out.append(f"   at {name}:")
        for conflict in replica.conflicts():
            out.extend("  " + line for line in _describe(conflict))
    out.append(
        f"   same review queue and state on both: {state_digest(plant) == state_digest(central)}"
    )

    out.append("4. A reviewer at central settles it: 2026-05-12, covering both siblings.")
    conflict = central.conflicts()[0]
    resolution = central.resolve(
        PUMP_ID,
        "maintenance_date",
        "2026-05-12",
        covering=conflict.context,
        author="rita",
        now_ms=t + 180_000,
    )
    _ship([resolution], plant, t + 180_000)
    for name, replica in (("plant-a", plant), ("central", central)):
        value = replica.entity(PUMP_ID).value("maintenance_date")
        out.append(
            f"   {name}: maintenance_date = {value}, open conflicts: "
            f"{len(replica.conflicts())}, digest {state_digest(replica)[:16]}"
        )
    equal = state_digest(plant) == state_digest(central)
    out.append(f"5. Replicas equal: {equal}")
    return out
