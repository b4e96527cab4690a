"""Data-quality checks as pure code: flags, events, unit table (no IO, explicit ``now``)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twinmesh.adapters import Provenance, Quality, Sample, make_sample_id
from twinmesh.node.telemetry import (
    UNITS,
    EventKind,
    QualityChecker,
    QualityConfig,
    TagSpec,
    UnitError,
    convert,
    unit_dimension,
)

E, N = "plant-a/line-1/pump-7", "vibration_rms"
T0 = 1_800_000_000.0


def mk(
    value: float | int | bool | str,
    ts: float,
    *,
    unit: str | None = None,
    name: str = N,
    quality: Quality = Quality.GOOD,
    sid: str | None = None,
) -> Sample:
    return Sample(
        entity=E,
        name=name,
        value=value,
        unit=unit,
        source_ts=ts,
        received_ts=ts,
        quality=quality,
        provenance=Provenance(adapter="test", source=f"t/{name}"),
        sample_id=sid or make_sample_id("test", name, source_ts=ts, value=value),
    )


# -- units -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "src", "dst", "expected"),
    [
        (212.0, "°F", "°C", 100.0),
        (32.0, "degF", "degC", 0.0),
        (273.15, "K", "°C", 0.0),
        (-40.0, "°C", "°F", -40.0),
        (1.0, "bar", "Pa", 1e5),
        (14.503773773, "psi", "kPa", 100.0),
        (250.0, "kPa", "bar", 2.5),
        (1500.0, "rpm", "Hz", 25.0),
        (50.0, "Hz", "rpm", 3000.0),
        (1.0, "in/s", "mm/s", 25.4),
        (1.0, "g", "m/s2", 9.80665),
        (60.0, "L/min", "m3/h", 3.6),
        (50.0, "%", "1", 0.5),
    ],
)
def test_conversion_table(value: float, src: str, dst: str, expected: float) -> None:
    assert convert(value, src, dst) == pytest.approx(expected, rel=1e-9, abs=1e-9)


def test_incompatible_and_unknown_units_raise() -> None:
    with pytest.raises(UnitError, match="pressure"):
        convert(1.0, "bar", "°C")
    with pytest.raises(UnitError, match="unknown"):
        convert(1.0, "furlong/fortnight", "m/s")
    assert unit_dimension("psi") == "pressure"
    assert unit_dimension("parsec") is None


@settings(max_examples=200, deadline=None)
@given(
    pair=st.sampled_from(
        [(a, b) for a in UNITS for b in UNITS if UNITS[a][0] == UNITS[b][0] and a != b]
    ),
    value=st.floats(min_value=-1e9, max_value=1e9, allow_nan=False),
)
def test_conversion_round_trips(pair: tuple[str, str], value: float) -> None:
    a, b = pair
    assert convert(convert(value, a, b), b, a) == pytest.approx(value, rel=1e-9, abs=1e-6)


# -- per-sample flags ---------------------------------------------------------------------------


def test_unit_normalised_to_model_unit_and_flagged() -> None:
    qc = QualityChecker({(E, N): TagSpec(unit="mm/s", minimum=0, maximum=50)})
    r = qc.check(mk(0.5, T0, unit="in/s"), now=T0)
    assert r.sample.value == pytest.approx(12.7)
    assert r.sample.unit == "mm/s"
    assert r.sample.quality == Quality.UNIT_CONVERTED
    # No unit in the payload: taken to be the model's unit, nothing flagged.
    r = qc.check(mk(3.0, T0 + 1), now=T0 + 1)
    assert (r.sample.value, r.sample.unit, r.sample.quality) == (3.0, "mm/s", Quality.GOOD)
    # Another spelling of the model's unit is not a conversion.
    qc.set_spec(E, "t", TagSpec(unit="°C"))
    r = qc.check(mk(20.0, T0, unit="degC", name="t"), now=T0)
    assert (r.sample.unit, r.sample.quality) == ("°C", Quality.GOOD)


def test_unit_mismatch_and_type_mismatch_keep_the_value() -> None:
    qc = QualityChecker({(E, N): TagSpec(unit="mm/s")})
    r = qc.check(mk(3.0, T0, unit="bar"), now=T0)
    assert (r.sample.value, r.sample.unit) == (3.0, "bar")
    assert r.sample.quality == Quality.UNIT_MISMATCH
    r = qc.check(mk("RUNNING", T0 + 1), now=T0 + 1)
    assert r.sample.value == "RUNNING" and Quality.TYPE_MISMATCH in r.sample.quality


def test_range_is_checked_after_conversion() -> None:
    qc = QualityChecker({(E, "t"): TagSpec(unit="°C", minimum=-20, maximum=150)})
    ok = qc.check(mk(212.0, T0, unit="°F", name="t"), now=T0)  # 100 °C
    hot = qc.check(mk(400.0, T0 + 1, unit="°F", name="t"), now=T0 + 1)  # 204 °C
    nan = qc.check(mk(math.nan, T0 + 2, name="t"), now=T0 + 2)
    assert Quality.OUT_OF_RANGE not in ok.sample.quality
    assert hot.sample.quality == Quality.UNIT_CONVERTED | Quality.OUT_OF_RANGE
    assert Quality.OUT_OF_RANGE in nan.sample.quality
    # A Bad reading without a value (stored as NaN) is already flagged by its source.
    bad = qc.check(mk(math.nan, T0 + 3, name="t", quality=Quality.BAD_STATUS), now=T0 + 3)
    assert bad.sample.quality == Quality.BAD_STATUS


def test_order_duplicate_and_future() -> None:
    qc = QualityChecker(config=QualityConfig(future_tolerance=5.0))
    assert qc.check(mk(1.0, T0 + 10), now=T0 + 10).sample.quality == Quality.GOOD
    assert qc.check(mk(2.0, T0 + 5), now=T0 + 11).sample.quality == Quality.OUT_OF_ORDER
    # A different reading at the newest instant: DUPLICATE (kept, flagged).
    assert qc.check(mk(3.0, T0 + 10), now=T0 + 12).sample.quality == Quality.DUPLICATE
    fut = qc.check(mk(4.0, T0 + 100), now=T0 + 13)
    assert fut.sample.quality == Quality.FUTURE_TIMESTAMP
    # The future timestamp did not move the tag's clock: the next good sample is in order.
    assert qc.check(mk(5.0, T0 + 14), now=T0 + 14).sample.quality == Quality.GOOD
    assert qc.flag_counts == {"OUT_OF_ORDER": 1, "DUPLICATE": 1, "FUTURE_TIMESTAMP": 1}


def test_exact_redelivery_is_recognised_and_does_not_move_state() -> None:
    spec = TagSpec(unit="mm/s", varies=True)
    qc = QualityChecker({(E, N): spec}, QualityConfig(stuck_count=3, stuck_window=0))
    s = mk(1.0, T0, unit="in/s")
    first = qc.check(s, now=T0)
    again = qc.check(s, now=T0 + 1)
    assert again.redelivery and not first.redelivery
    # Still normalised (the first copy may never have committed) ...
    assert again.sample.value == pytest.approx(25.4) and again.sample.unit == "mm/s"
    # ... but not counted towards a stuck run: two more equal readings make three.
    qc.check(mk(1.0, T0 + 1, unit="in/s"), now=T0 + 1)
    r = qc.check(mk(1.0, T0 + 2, unit="in/s"), now=T0 + 2)
    assert Quality.STUCK in r.sample.quality
    assert qc.redeliveries == 1


def test_stuck_sensor_flags_and_events() -> None:
    qc = QualityChecker(
        {(E, N): TagSpec(varies=True), (E, "setpoint"): TagSpec()},
        QualityConfig(stuck_count=5, stuck_window=4.0),
    )
    flags, events = [], []
    for i in range(8):
        r = qc.check(mk(7.0, T0 + i), now=T0 + i)
        flags.append(Quality.STUCK in r.sample.quality)
        events.extend(r.events)
    # The 5th reading spans 4 s: flagged from there on, one STUCK event.
    assert flags == [False] * 4 + [True] * 4
    assert [e.kind for e in events] == [EventKind.STUCK]
    r = qc.check(mk(7.5, T0 + 9), now=T0 + 9)
    assert Quality.STUCK not in r.sample.quality
    assert [e.kind for e in r.events] == [EventKind.STUCK_CLEARED]
    # A tag that is allowed to hold its value is never stuck.
    for i in range(20):
        r = qc.check(mk(1.0, T0 + i, name="setpoint"), now=T0 + i)
        assert Quality.STUCK not in r.sample.quality


def test_stale_tags_raise_one_event_per_silence() -> None:
    qc = QualityChecker(
        {(E, N): TagSpec(expected_interval=1.0), (E, "never"): TagSpec(expected_interval=10.0)},
        QualityConfig(stale_factor=3.0),
    )
    qc.check(mk(1.0, T0), now=T0)
    assert qc.sweep(T0 + 2.9) == []
    stale = qc.sweep(T0 + 3.5)
    assert [(e.kind, e.name) for e in stale] == [(EventKind.STALE, N)]
    assert qc.sweep(T0 + 10) == []  # already stale: no second event
    r = qc.check(mk(2.0, T0 + 12), now=T0 + 12)
    assert [e.kind for e in r.events] == [EventKind.STALE_CLEARED]
    # The never-seen tag counts its silence from the checker's first ``now``.
    assert [e.name for e in qc.sweep(T0 + 31)] == [N, "never"]
    assert qc.event_counts == {"stale": 3, "stale-cleared": 1}


def test_a_hole_in_source_time_seen_after_the_fact_is_stale() -> None:
    """A dropout while the node was down: readings either side arrive together."""
    qc = QualityChecker({(E, N): TagSpec(expected_interval=1.0)}, QualityConfig(stale_factor=3.0))
    qc.check(mk(1.0, T0), now=T0 + 10)
    assert qc.check(mk(2.0, T0 + 3), now=T0 + 10).events == ()  # exactly the limit: fine
    late = qc.check(mk(3.0, T0 + 10), now=T0 + 10.1).events  # a 7 s hole
    assert [(e.kind, e.at) for e in late] == [
        (EventKind.STALE, T0 + 6),  # dated where the tag went stale, in source time
        (EventKind.STALE_CLEARED, T0 + 10),
    ]
    # Out-of-order readings and untimed tags raise nothing.
    assert qc.check(mk(4.0, T0 + 5), now=T0 + 10.2).events == ()
    other = QualityChecker({(E, N): TagSpec()})
    other.check(mk(1.0, T0), now=T0)
    assert other.check(mk(2.0, T0 + 100), now=T0).events == ()
    # Live-detected silence is not reported twice when the data resumes.
    live = QualityChecker({(E, N): TagSpec(expected_interval=1.0)}, QualityConfig(stale_factor=3.0))
    live.check(mk(1.0, T0), now=T0)
    assert [e.kind for e in live.sweep(T0 + 4)] == [EventKind.STALE]
    assert [e.kind for e in live.check(mk(2.0, T0 + 10), now=T0 + 10).events] == [
        EventKind.STALE_CLEARED
    ]


def test_prime_restores_order_state() -> None:
    qc = QualityChecker()
    qc.prime([mk(1.0, T0 + 100)])
    assert qc.check(mk(2.0, T0 + 50), now=T0 + 200).sample.quality == Quality.OUT_OF_ORDER


def test_source_flags_are_kept() -> None:
    qc = QualityChecker({(E, N): TagSpec(unit="mm/s", maximum=10)})
    r = qc.check(mk(11.0, T0, quality=Quality.BAD_STATUS), now=T0)
    assert r.sample.quality == Quality.BAD_STATUS | Quality.OUT_OF_RANGE
    assert r.sample.quality.names() == ("BAD_STATUS", "OUT_OF_RANGE")


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.floats(min_value=-1e3, max_value=1e3, allow_nan=False),
            st.floats(min_value=0, max_value=1e4),
            st.sampled_from([None, "mm/s", "in/s", "bar"]),
        ),
        max_size=60,
    )
)
def test_nothing_is_dropped_and_ids_are_kept(
    readings: list[tuple[float, float, str | None]],
) -> None:
    qc = QualityChecker(
        {(E, N): TagSpec(unit="mm/s", minimum=0, maximum=100, varies=True)},
        QualityConfig(stuck_count=3, stuck_window=1.0),
    )
    batch = [mk(v, T0 + t, unit=u) for v, t, u in readings]
    out, _events = qc.check_batch(batch, now=T0 + 5000)
    assert [s.sample_id for s in out] == [s.sample_id for s in batch]
    for before, after in zip(batch, out, strict=True):
        assert after.quality & before.quality == before.quality  # flags only added
        assert after.source_ts == before.source_ts
        if before.unit == "bar":
            assert Quality.UNIT_MISMATCH in after.quality and after.value == before.value
