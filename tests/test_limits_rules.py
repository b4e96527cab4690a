"""Alarm limits, pure: the rules the shipped models declare and the open/clear
decision with hysteresis (node/limits/_rules.py)."""

from __future__ import annotations

from pathlib import Path

from twinmesh.node.dtdl import ModelRegistry
from twinmesh.node.limits import LimitRule, LimitTracker, Transition, load_rules

MODELS = Path(__file__).resolve().parents[1] / "plant-adapters" / "synthetic" / "models"


def rule(direction: str = "above", hysteresis: float = 0.5) -> LimitRule:
    return LimitRule(
        model="m",
        prop="lim",
        telemetry="t",
        direction=direction,
        hysteresis=hysteresis,
        severity="warning",
        unit="mm/s",
        label="Limit",
    )


def test_the_shipped_models_limit_their_readings() -> None:
    registry = ModelRegistry()
    registry.add_files(sorted(MODELS.glob("*.json")))
    rules = load_rules(registry)
    motor = "dtmi:twinmesh:plant:Motor;1"
    pump = "dtmi:twinmesh:plant:Pump;1"
    assert [r.prop for r in rules[(motor, "vibrationRms")]] == ["vibrationAlarmThreshold"]
    assert [r.prop for r in rules[(motor, "windingTemperature")]] == [
        "windingTemperatureAlarmThreshold"
    ]
    (suction,) = rules[(pump, "suctionPressure")]
    assert suction.prop == "minSuctionPressure" and suction.direction == "below"
    assert suction.unit == "bar"


def test_open_beyond_clear_only_back_by_the_hysteresis() -> None:
    r, t = rule(), LimitTracker()
    seen = []
    for v in (1.0, 2.1, 2.0, 1.8, 1.6, 1.5, 2.2):
        turn = t.observe("e", r, v, 2.0)
        if turn is Transition.OPEN:
            t.open[("e", "lim")] = "a1"
        elif turn is Transition.CLEAR:
            del t.open[("e", "lim")]
        seen.append(turn)
    # 2.1 opens; 2.0, 1.8, 1.6 hover inside the deadband; 1.5 clears; 2.2 reopens.
    assert seen == [None, Transition.OPEN, None, None, None, Transition.CLEAR, Transition.OPEN]


def test_below_limits_and_a_removed_limit_clears() -> None:
    r, t = rule("below", 0.1), LimitTracker()
    assert t.observe("e", r, 1.0, 0.8) is None
    assert t.observe("e", r, 0.7, 0.8) is Transition.OPEN
    t.open[("e", "lim")] = "a1"
    assert t.observe("e", r, 0.85, 0.8) is None  # back, but not by the hysteresis
    assert t.observe("e", r, 0.7, None) is Transition.CLEAR  # nobody limits it any more
    assert LimitTracker().observe("e", r, 0.1, None) is None  # no limit set: nothing opens
