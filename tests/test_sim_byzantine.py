"""The Byzantine-relay fault (issue 10): a member that lies in snapshots and
digests is contained, and the checkers would see it if it were not."""

from __future__ import annotations

from pathlib import Path

import pytest

import twinmesh.sync._engine as engine_module
from twinmesh.crdt import decode_state
from twinmesh.sim import parse_scenario
from twinmesh.sim._runner import Simulation
from twinmesh.sync import SnapshotApplied

SCENARIO = Path(__file__).parent.parent / "scenarios" / "byzantine-relay.toml"


def _run() -> Simulation:
    sc = parse_scenario(SCENARIO.read_text(), str(SCENARIO)).scaled(0.5)
    sim = Simulation(sc, 2)
    sim.result = sim.run()  # type: ignore[attr-defined]
    return sim


def test_the_lies_are_refused_and_nothing_forged_is_visible() -> None:
    sim = _run()
    result = sim.result  # type: ignore[attr-defined]
    assert result.ok, [v for v in result.verdicts if not v.ok]
    assert sim.lies_told > 10
    refused = {v.name: v for v in result.verdicts}["byzantine-refused"]
    assert refused.checks > sim.lies_told  # refusals seen, plus the final scans
    assert result.snapshots > 0  # honest snapshots still caught plant-b up


def test_an_engine_that_believed_snapshots_would_fail_the_checkers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The old acceptance (merge whatever a member sends, raise vv and floor
    to its claim): the fault must make the checkers fail."""

    def believe(self, member, message, wall_ms):  # type: ignore[no-untyped-def]
        snap = decode_state(message.state, replica=self.replica, schemas=self.state.schemas)
        self.state.merge(snap, now_ms=0)
        self.vv = self.vv.merge(message.vv)
        for origin, n in message.vv.items():
            self.floor[origin] = max(self.floor.get(origin, 0), n)
        return [SnapshotApplied(sender=message.sender, vv=message.vv)]

    monkeypatch.setattr(engine_module.SyncEngine, "_apply_snapshot", believe)
    result = _run().result  # type: ignore[attr-defined]
    failed = {v.name for v in result.verdicts if not v.ok}
    assert {"byzantine-refused", "vv-accounting", "no-lost-writes"} <= failed
