"""A slow, steady heating is a cooling failure (pure): the long trend and its t
statistic, and the diagnosis that calls a clearly hot, steadily rising
temperature heating although its short slope is within its noise."""

from __future__ import annotations

import numpy as np

from twinmesh.node.scoring._baseline import learn_baseline
from twinmesh.node.scoring._diagnosis import diagnose
from twinmesh.node.scoring._features import CycleMeanRise, TrendTracker


def test_the_trend_matches_a_least_squares_fit_over_its_window() -> None:
    rng = np.random.default_rng(5)
    y = 40.0 + 0.02 * np.arange(500) + rng.normal(0.0, 0.15, 500)
    tracker = TrendTracker(120)
    got = [tracker.push(float(v)) for v in y]
    for end in (130, 239, 240, 241, 499):  # across the sums' rebuilds too
        w = y[end - 119 : end + 1]
        i = np.arange(120)
        (slope, icept) = np.polyfit(i, w, 1)
        res = w - (slope * i + icept)
        se = np.sqrt(res @ res / 118 / (120 * (120**2 - 1) / 12))
        assert abs(got[end][0] - slope) < 1e-9
        assert abs(got[end][1] - slope / se) < 1e-6 * abs(slope / se)


def test_the_rise_covers_only_the_frames_the_window_holds() -> None:
    # In the first minutes the window is not full: slope * window would
    # overstate the rise a temperature made since the node started.
    tracker = TrendTracker(120)
    for k in range(30):
        slope, _ = tracker.push(40.0 + 0.05 * k)
    assert tracker.span == 29
    assert abs(slope * tracker.span - 0.05 * 29) < 1e-9
    for k in range(30, 300):
        tracker.push(40.0 + 0.05 * k)
    assert tracker.span == 119


def test_noise_alone_has_no_significant_trend() -> None:
    rng = np.random.default_rng(6)
    tracker = TrendTracker(120)
    ts = [tracker.push(float(v))[1] for v in 40.0 + rng.normal(0.0, 0.15, 2000)]
    assert max(abs(t) for t in ts[120:]) < 6.0


def _raised(features: tuple[str, ...], roles: tuple[str, ...], **given: object) -> list[str]:
    """Keys of the findings that raise (score >= 1), nothing else amiss."""
    n = len(features)
    lv = given.pop("level")
    found = diagnose(
        features=features,
        roles=roles,
        level=lv,
        level_by={"rolling-z": lv},
        consistency=np.zeros(n),
        residual=np.zeros(n),
        iforest=0.0,
        hypotheses=lambda: [],
        stuck=[],
        missing={},
        dropout_frames=6,
        **given,  # type: ignore[arg-type]
    )
    return [x.key for x in found if x.score >= 1.0]


def _findings(
    *,
    level: float,
    trend: tuple[float, float] | None,
    warmup_t: float = 0.0,
    cycle_rise: float | None = None,
) -> list[str]:
    return _raised(
        ("bearingTemperature", "bearingTemperature:slope", "flowRate"),
        ("thermal", "slope", "process"),
        level=np.array([level, 0.1, 0.0]),
        # The short slope (0.015 K a frame) is well under its spread (0.05).
        x=np.array([50.0, 0.015, 100.0]),
        center=np.array([41.0, 0.0, 100.0]),
        scale=np.array([0.6, 0.05, 5.0]),
        trend={} if trend is None else {"bearingTemperature": trend},
        warmup_trend_t={"bearingTemperature": warmup_t},
        cycle_rise={} if cycle_rise is None else {"bearingTemperature": cycle_rise},
    )


def test_a_clearly_hot_steadily_rising_temperature_is_heating() -> None:
    # 1.8 K over the window (three scales), t = 40: a cooling failure raises.
    assert _findings(level=12.0, trend=(1.8, 40.0)) == [
        "machine:cooling_failure:bearingTemperature"
    ]
    # Without the trend the short slope alone says "not heating": held under 1.
    assert _findings(level=12.0, trend=None) == []
    # A trend inside the noise, or a rise under the healthy spread, is not heating.
    assert _findings(level=12.0, trend=(1.8, 3.0)) == []
    assert _findings(level=12.0, trend=(0.3, 40.0)) == []
    # Just past the healthy range (a load cycle's peak), a steady rise is not enough.
    assert _findings(level=1.1, trend=(1.8, 40.0)) == []


def test_a_duty_cycle_that_heats_in_the_warm_up_needs_the_long_trend_far_hotter() -> None:
    rng = np.random.default_rng(7)
    n = 120
    steady = 40.0 + rng.normal(0.0, 0.15, n)
    # A part program: 45 s of cutting heats the spindle 0.7 K, then it cools.
    cycle = 40.0 + np.minimum(np.arange(n), 90) * 0.008 - np.maximum(np.arange(n) - 90, 0) * 0.01
    x = np.c_[steady, cycle + rng.normal(0.0, 0.15, n)]
    b = learn_baseline(
        x,
        ("bearingTemperature", "spindleTemperature"),
        ("thermal", "thermal"),
        version=1,
        trained_at=0.0,
        reason="test",
        trend_window=120,
    )
    assert b.warmup_trend_t[0] < 6.0 <= b.warmup_trend_t[1]
    assert "warmup_trend_t" in b.describe()["features"]["spindleTemperature"]  # type: ignore[index]
    # Four scales hot and rising (a duty cycle's heating goes 2-3 past a one-minute
    # warm-up): that raises only where the warm-up never rose steadily.
    assert _findings(level=4.0, trend=(1.8, 40.0), warmup_t=b.warmup_trend_t[0]) != []
    assert _findings(level=4.0, trend=(1.8, 40.0), warmup_t=b.warmup_trend_t[1]) == []
    # Twelve scales hot and still rising is a lost cooling on either machine.
    assert _findings(level=12.0, trend=(1.8, 40.0), warmup_t=b.warmup_trend_t[1]) != []


def test_vibration_lines_rising_by_one_speed_factor_are_not_a_fault() -> None:
    f = ("vibrationBand1x", "vibrationBand2x", "vibrationKurtosis", "vibrationRms")
    center = np.array([0.724, 0.242, 3.0, 0.843])

    def keys(x: np.ndarray, lv: np.ndarray) -> list[str]:
        return _raised(
            f,
            ("vibration",) * 4,
            level=lv,
            x=x,
            center=center,
            scale=np.ones(4),
            speed_lines=r"(?i)1x|2x",
        )

    # A pump 10 % faster than its warm-up saw: 1x, 2x and RMS all up ~11 %.
    faster = np.array([0.806, 0.272, 3.0, 0.929])
    assert keys(faster, np.array([1.2, 1.1, 0.0, 1.4])) == []
    # Unbalance: 1x alone up 50 %, the 2x line where it was: a fault.
    unbalance = np.array([1.09, 0.245, 3.0, 1.05])
    assert keys(unbalance, np.array([3.0, 0.0, 0.0, 1.5])) == ["machine:vibration"]


def test_the_cycle_mean_rise_takes_a_duty_cycle_out_and_keeps_a_heating() -> None:
    # A 115 s program swinging 2 K, sampled every 0.5 s, over a 150 s window.
    ts = np.arange(0.0, 1200.0, 0.5)
    cycle = 40.0 + 2.0 * np.sin(2 * np.pi * ts / 115.0)
    steady = CycleMeanRise(150.0)
    rises = [steady.push(float(t), float(v)) for t, v in zip(ts, cycle, strict=True)]
    assert all(np.isnan(r) for r in rises[: int(285 / 0.5)])  # both windows not yet full
    # What is left is the part of a cycle the window does not hold a whole number
    # of times: a third of the swing's amplitude here, a tenth of its range.
    assert max(abs(r) for r in rises[int(300 / 0.5) :]) < 0.7
    # The same cycle on a heating of 0.02 K/s: the means 150 s apart differ by 3 K.
    heating = CycleMeanRise(150.0)
    got = [heating.push(float(t), float(v + 0.02 * t)) for t, v in zip(ts, cycle, strict=True)]
    assert all(abs(r - 3.0) < 0.7 for r in got[int(300 / 0.5) :])
    # A value older than the last one (a replay) is no step of the series.
    assert np.isnan(heating.push(10.0, 50.0))


def test_the_cycle_mean_spans_time_not_samples() -> None:
    # Readings that stop for a while leave the windows emptier, not shorter.
    r = CycleMeanRise(100.0)
    for t in range(0, 150):
        r.push(float(t), 40.0)
    for t in range(201, 300):
        r.push(float(t), 44.0)
    assert abs(r.push(300.0, 44.0) - 4.0) < 1e-9  # both windows hold 100 s of readings


def test_a_duty_cycle_mean_rising_several_scales_is_heating_where_no_model_covers_it() -> None:
    cycling = 12.0  # the warm-up saw the temperature rise steadily (a program's cutting)
    # Twice hot (under the far-hotter bar for a cycling temperature), and the mean
    # over the last window 3.5 scales (2.1 K) above the one before: heating.
    assert _findings(level=2.0, trend=None, warmup_t=cycling, cycle_rise=2.1) == [
        "machine:cooling_failure:bearingTemperature"
    ]
    # A healthy program settling or a tool wearing moves the mean about one scale.
    assert _findings(level=2.0, trend=None, warmup_t=cycling, cycle_rise=0.6) == []
    # A temperature the warm-up saw steady has the long trend; this rule is not for it.
    assert _findings(level=2.0, trend=None, warmup_t=0.0, cycle_rise=2.1) == []
