"""The co-simulation's residuals in scoring (pure): each warm-up frame carries its
own residual, and a temperature running hotter than its thermal FMU expects is
a lost cooling even when its level and slope say nothing."""

from __future__ import annotations

import numpy as np

from twinmesh.node.scoring._diagnosis import diagnose
from twinmesh.node.scoring._engine import EngineConfig, ScoringEngine

ENTITY = "plant-x/line-1/motor-9"
MOTOR = ("load", "windingTemperature", "windingTemperature:slope", "windingTemperature.residual")
MOTOR_ROLES = ("process", "thermal", "slope", "residual")


def diagnosis_inputs(
    features: tuple[str, ...], roles: tuple[str, ...], **given: object
) -> dict[str, object]:
    """diagnose()'s arguments for one frame: unit scales, nothing else amiss."""
    n = len(features)
    return dict(
        features=features,
        roles=roles,
        level_by={},
        consistency=np.zeros(n),
        iforest=0.0,
        hypotheses=lambda: [],
        scale=np.ones(n),
        stuck=[],
        missing={},
        dropout_frames=6,
        **given,
    )


def test_each_warm_up_frame_keeps_the_residual_it_was_closed_with() -> None:
    # Found on heldout-plant-c with the motors co-simulated: the warm-up rows were
    # built when the warm-up ended, all with the residual of that moment, so the
    # residual's learned spread was 1e-5 K and every later value an alarm.
    rng = np.random.default_rng(4)
    engine = ScoringEngine(config=EngineConfig(warmup=120), seed=1)
    for n in range(130):
        ts = 1000.0 + n * 0.5
        values = {
            "windingTemperature": 70.0 + rng.normal(0, 0.15),
            "load": 60.0 + rng.normal(0, 0.3),
            "windingTemperature.residual": rng.normal(0, 0.2),
        }
        for name, v in values.items():
            engine.add(
                seq=n,
                sample_id=f"{name}/{n}",
                entity=ENTITY,
                name=name,
                value=v,
                source_ts=ts,
                received_ts=ts,
                quality=0,
            )
        engine.flush()
        engine.process(ts)
    b = engine.assets[ENTITY].baseline
    assert b is not None
    i = b.features.index("windingTemperature.residual")
    assert 0.1 < b.scale[i] < 1.0  # noise 0.2 K, widened to half the warm-up range


def test_a_temperature_hotter_than_its_model_is_a_lost_cooling() -> None:
    common = diagnosis_inputs(
        MOTOR,
        MOTOR_ROLES,
        x=np.array([60.0, 80.0, 0.0, 4.5]),
        center=np.array([60.0, 80.0, 0.0, 0.0]),
        level=np.array([0.0, 0.3, 0.1, 0.0]),  # the level and slope look ordinary
    )
    found = diagnose(residual=np.array([0.0, 0.0, 0.0, 1.6]), **common)
    assert [x.key for x in found] == ["machine:cooling_failure:windingTemperature"]
    assert found[0].score >= 1.0
    assert found[0].evidence["hotter_than_modelled"] is True
    # Cooler than the model expects is not a fault of the cooling.
    assert diagnose(residual=np.array([0.0, 0.0, 0.0, -1.6]), **common) == []


def test_residuals_are_no_evidence_until_the_model_has_followed_its_inputs_again() -> None:
    # While an input is stuck the co-simulation holds (outputs marked HELD, no
    # residual); afterwards its state lags the machine for about a time constant.
    from twinmesh.adapters import Quality
    from twinmesh.node.scoring._features import FrameAssembler

    fa = FrameAssembler(resync=100.0)

    def feed(ts: float, *, held: bool = False) -> list:
        out = []
        for name, v, q in (
            ("windingTemperature.expected", 70.0, Quality.HELD if held else Quality.GOOD),
            ("windingTemperature.residual", 0.3, Quality.GOOD),
            ("windingTemperature", 70.3, Quality.GOOD),
            ("load", 60.0, Quality.GOOD),
        ):
            if held and name.endswith(".residual"):
                continue  # the coupling emits none while it holds
            out += fa.add(
                seq=0,
                sample_id=f"{name}/{ts}",
                entity=ENTITY,
                name=name,
                value=v,
                source_ts=ts,
                received_ts=ts,
                quality=q.value,
            )
        return out

    closed = feed(0.0) + fa.flush()  # the asset's tags are known: frames close when complete
    for n in range(1, 40):
        closed += feed(float(n), held=10 <= n < 20)
    closed += fa.flush()
    has = {round(f.ts): bool(f.residuals) for f in closed}
    assert has[5]  # before the hold
    assert not has[25] and not has[38]  # within resync after it (last held at 19)
    for n in range(40, 130):
        closed += feed(float(n))
    closed += fa.flush()
    has = {round(f.ts): bool(f.residuals) for f in closed}
    assert not has[118] and has[119] and has[125]


def test_the_tail_of_a_mended_cooling_is_not_heating() -> None:
    # After the fault the winding stays hotter than its model for a few time
    # constants while the residual decays: that keeps an alert open, never raises.
    common = diagnosis_inputs(
        MOTOR[1:],
        MOTOR_ROLES[1:],
        x=np.array([75.0, 0.0, 9.7]),
        center=np.array([60.0, 0.0, 0.0]),
        level=np.array([0.4, -0.1, 0.0]),
        residual=np.array([0.0, 0.0, 2.0]),
    )
    rising = diagnose(residual_trend_t={"windingTemperature.residual": 2.0}, **common)
    assert rising[0].score >= 1.0 and rising[0].evidence["heating"] is True
    decaying = diagnose(residual_trend_t={"windingTemperature.residual": -15.0}, **common)
    assert decaying[0].score < 1.0 and decaying[0].evidence["heating"] is False


def test_a_hot_temperature_its_model_explains_raises_no_lost_cooling() -> None:
    # heldout-plant-d seed 301: a motor on a 500 s load cycle ran 2 scales past its
    # one-minute warm-up and rising, with its residual at noise: the heat input
    # explains it. Only a residual that is not trusted leaves the level to decide.
    common = diagnosis_inputs(
        MOTOR,
        MOTOR_ROLES,
        x=np.array([80.0, 84.0, 0.3, 0.1]),
        center=np.array([60.0, 80.0, 0.0, 0.0]),
        level=np.array([0.0, 2.2, 1.4, 0.2]),  # hot, and its short slope steep
        residual=np.array([0.0, 0.0, 0.0, 0.3]),
    )
    explained = diagnose(**common)
    assert [x.key for x in explained] == ["machine:cooling_failure:windingTemperature"]
    assert explained[0].score < 1.0  # keeps an open alert open, raises none
    assert explained[0].evidence["heating"] is False
    untrusted = diagnose(trust_residuals=False, **common)
    assert untrusted[0].score >= 1.0 and untrusted[0].evidence["heating"] is True
