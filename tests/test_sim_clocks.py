"""One clock per purpose (issue 10): the engine's ``now`` is a monotonic reading
whose origin means nothing, so nothing may depend on where it starts."""

from __future__ import annotations

import random

import pytest

from twinmesh.crdt import ReplicaState
from twinmesh.crdt.demo_models import PUMP, PUMP_SCHEMAS
from twinmesh.sim import parse_scenario
from twinmesh.sim._runner import Simulation
from twinmesh.sync import FleetAuthority, MemberInfo, SyncConfig, SyncEngine

T_WALL = 1_770_000_000.0  # what time.time() said when the bug was found


def _pair_and_a_silent_member(t0: float) -> tuple[SyncEngine, SyncEngine]:
    rng = random.Random(7)
    authority = FleetAuthority(rng)
    ids = {n: authority.new_identity(n, rng) for n in ("a", "b", "c")}
    seeds = [
        MemberInfo(credential=i.credential, address=n, last_contact=-1.0) for n, i in ids.items()
    ]
    engines = [
        SyncEngine(
            identity=ids[n],
            state=ReplicaState(n, PUMP_SCHEMAS),
            fleet_public_key=authority.public_key,
            seeds=seeds,
            address=n,
            config=SyncConfig(evict_after=3600.0),
            rng=random.Random(n),
            now=t0,
        )
        for n in ("a", "b")
    ]
    return engines[0], engines[1]


@pytest.mark.parametrize("t0", [0.0, T_WALL])
def test_a_member_never_heard_from_holds_compaction_back_whatever_the_clock_origin(
    t0: float,
) -> None:
    """The review's reproduction: at t0 ~ 1.77e9 a member never heard from
    stopped holding compaction back at once (``now > evict_after``), so
    production emptied its log in the first rounds where the simulator kept it."""
    a, b = _pair_and_a_silent_member(t0)
    a.commit(a.state.create("a/pump-1", PUMP.model, author="t"))
    now = t0
    for _ in range(5):
        now += 1.0
        a.handle_timer(now)
        for out in a.messages_to_send():
            if out.peer == "b":  # c is down: what goes to it is lost
                b.receive(out.data, now=now, peer="a")
                for back in b.messages_to_send():
                    a.receive(back.data, now=now, peer="b")
    assert a.members["b"].known_vv["a"] == 1  # b has it; c never heard of it
    assert a.floor.get("a", 0) == 0, "c, silent for 5 s of an hour's grace, was evicted"
    a.handle_timer(now + 3601.0)
    assert a.floor.get("a", 0) == 1  # an hour later it no longer holds it back


_SCENARIO = """
[scenario]
name = "clock-origin"
duration = "90s"

[fleet]
plants = ["plant-a", "plant-b", "plant-c"]
central = "central"
assets_per_plant = 1

[sync]
gossip_interval = "1s"
evict_after = "20s"

[workload]
rate = "1/3s"

[[faults]]
kind = "isolate"
plant = "plant-c"
at = "10s"
for = "40s"

[[faults]]
kind = "crash"
plant = "plant-b"
at = "30s"
for = "15s"

[liveness]
timeout = "5m"
"""


def test_the_same_scenario_gives_the_same_verdicts_at_t0_0_and_at_a_wall_clock_reading() -> None:
    sc = parse_scenario(_SCENARIO, "<clock-origin>")
    runs = [Simulation(sc, 3, t0=t0).run() for t0 in (0.0, T_WALL)]
    verdicts = [[(v.name, v.ok) for v in r.verdicts] for r in runs]
    assert all(ok for _, ok in verdicts[0]), runs[0].verdicts
    assert verdicts[0] == verdicts[1]
    assert runs[0].snapshots == runs[1].snapshots
    assert runs[0].snapshots > 0  # the isolated plant was evicted and caught up by snapshot
    assert runs[0].writes == runs[1].writes
