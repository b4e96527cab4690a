"""Machine physics for the synthetic plant: induction motor, centrifugal pump, CNC spindle.

Theory of operation
-------------------
Every model is a pure step function::

    state', readings = step(params, state, conditions, t=..., dt=..., ambient=..., rng=...)

``t`` is simulated seconds since the run started, ``dt`` the simulated time
since the previous reading, ``rng`` a seeded ``numpy.random.Generator``; no
clock, no global state. The same seed and the same ``(t, dt)`` sequence give
the same readings. ``conditions`` carries the physical faults (bearing wear,
loss of cooling) from :mod:`._faults`; sensor faults are applied to the
readings afterwards and never reach the physics.

Readings are named and dimensioned as in the DTDL models (``models/*.json``)
and every analog reading carries measurement noise, so that a value repeated
exactly means a stuck sensor, never a quiet machine. Quantities that cannot
be negative and sit at zero (a stopped spindle's speed) read ``|x + noise|``,
which is what a rectifying transmitter shows.

Thermal model (all three machines): one lumped first-order body,

    C dT/dt = P_loss - (T - T_ambient) / R_th   =>   tau = R_th * C,
    T_ss = T_ambient + R_th * P_loss,

stepped with the exact solution ``T' = T_ss + (T - T_ss) * exp(-dt / tau)`` so
any ``dt`` is stable. Losses are scaled so that rated operation gives the
rated temperature rise. A cooling failure (fan, chiller or cooling water lost)
removes a share ``c`` of the cooling: ``R_th`` and with it ``tau`` grow by
``1 / (1 - c)``, and the temperature drifts towards a far higher steady state
(IEC 60034-1 thermal classes: class F insulation allows 155 °C, class H
180 °C, the motor model's maximum).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from ._vibration import VibrationSource, VibrationSpec, bpfo_hz, measure

__all__ = [
    "CNC_PROGRAM",
    "CNC_VIBRATION",
    "MOTOR_VIBRATION",
    "PUMP_VIBRATION",
    "CncParams",
    "CncState",
    "Conditions",
    "MotorParams",
    "MotorState",
    "Operation",
    "PumpParams",
    "PumpState",
    "cnc_init",
    "cnc_step",
    "motor_init",
    "motor_step",
    "pump_init",
    "pump_operating_point",
    "pump_step",
    "taylor_tool_life",
]

_RHO_WATER = 998.2  # kg/m3 at 20 °C
_G = 9.80665  # m/s2, standard gravity


@dataclass(frozen=True, slots=True, kw_only=True)
class Conditions:
    """Physical fault levels at one instant (0 = healthy)."""

    bearing_wear: float = 0.0  # 0..1: share of the worst bearing damage modelled
    cooling_loss: float = 0.0  # 0..<1: share of the cooling capacity lost

    @property
    def thermal_gain(self) -> float:
        """How much R_th (and tau) grew: 1 / (1 - cooling_loss)."""
        return 1.0 / (1.0 - min(self.cooling_loss, 0.99))


def _first_order(value: float, target: float, dt: float, tau: float) -> float:
    return target + (value - target) * math.exp(-dt / tau)


def _ou(x: float, *, sigma: float, tau: float, dt: float, rng: np.random.Generator) -> float:
    """Exact Ornstein-Uhlenbeck step: mean 0, stationary std ``sigma``, correlation time ``tau``."""
    a = math.exp(-dt / tau)
    return x * a + sigma * math.sqrt(1.0 - a * a) * float(rng.standard_normal())


def _noisy(value: float, sigma: float, rng: np.random.Generator) -> float:
    return value + sigma * float(rng.standard_normal())


def _noisy_positive(value: float, sigma: float, rng: np.random.Generator) -> float:
    return abs(_noisy(value, sigma, rng))


def _vibration_readings(
    source: VibrationSource, spec: VibrationSpec, t: float, rng: np.random.Generator
) -> dict[str, float]:
    f = measure(source, spec, t0=t, rng=rng)
    return {
        "vibrationRms": f.rms,
        "vibrationKurtosis": f.kurtosis,
        "vibrationBand1x": f.band_1x,
        "vibrationBand2x": f.band_2x,
        "vibrationBandBearing": f.band_bearing,
    }


# -- induction motor -------------------------------------------------------------------

MOTOR_VIBRATION = VibrationSpec()


@dataclass(frozen=True, slots=True, kw_only=True)
class MotorParams:
    """A 15 kW, 400 V, 4-pole, 50 Hz TEFC induction motor (IE3 nameplate values)."""

    rated_current: float = 28.5  # A
    magnetising_current: float = 0.35  # share of rated current drawn at no load
    supply_frequency: float = 50.0  # Hz
    poles: int = 4
    rated_slip: float = 0.027  # slip at rated load
    #: Average winding temperature rise at rated load, K. IEC 60034-1 allows
    #: 105 K for class F; motors are often class F insulated, class B (80 K) rise.
    rated_temperature_rise: float = 75.0
    constant_loss_share: float = 0.3  # core + friction share of rated-load losses
    #: Winding thermal time constant, s: 15-40 min for small TEFC motors.
    thermal_time_constant: float = 900.0
    load_mean: float = 70.0  # % of rated load
    load_swing: float = 15.0  # % amplitude of the duty cycle
    load_period: float = 300.0  # s per duty cycle
    load_noise: float = 3.0  # % stationary std of the load fluctuation
    load_correlation: float = 20.0  # s
    unbalance: float = 1.4  # mm/s peak at 1x (ISO 21940-11 G2.5 class rotor)
    misalignment: float = 0.5  # mm/s peak at 2x
    bearing_balls: float = 9.0
    bearing_ratio: float = 0.25  # ball / pitch diameter
    contact_angle: float = 0.0  # degrees (deep-groove ball bearing)
    bearing_impact: float = 30.0  # mm/s peak ring-down per impact at full wear
    bearing_line: float = 2.0  # mm/s peak at BPFO at full wear
    speed_noise: float = 0.5  # rpm
    current_noise: float = 0.1  # A
    temperature_noise: float = 0.15  # K (PT100 class A: 0.15 K + 0.002 |T|)
    load_reading_noise: float = 0.3  # %
    #: How fast the variable-frequency drive moves the synchronous speed toward
    #: a setpoint, rpm/s (a drive's acceleration ramp; 1500 rpm in 15 s).
    drive_ramp: float = 100.0


@dataclass(frozen=True, slots=True, kw_only=True)
class MotorState:
    load_deviation: float  # % (Ornstein-Uhlenbeck part of the load)
    winding_temperature: float  # °C
    #: Shaft speed setpoint written by the home plant (OPC UA); None: line-fed.
    setpoint: float | None = None
    #: Synchronous speed the drive outputs now, rpm; None: the line frequency's.
    drive_speed: float | None = None


def _motor_current(p: MotorParams, load: float) -> float:
    # Equivalent circuit, simplified: the magnetising current is in quadrature
    # with the load (active) current, which grows in proportion to the load
    # (Chapman, Electric Machinery Fundamentals, 5th ed., ch. 6).
    i_m = p.magnetising_current * p.rated_current
    i_a = math.sqrt(p.rated_current**2 - i_m**2) * load / 100.0
    return math.hypot(i_m, i_a)


def _motor_temperature_target(p: MotorParams, current: float, ambient: float, gain: float) -> float:
    # Copper losses go with I^2; core and friction losses do not depend on load.
    losses = (
        p.constant_loss_share + (1.0 - p.constant_loss_share) * (current / p.rated_current) ** 2
    )
    return ambient + gain * p.rated_temperature_rise * losses


def motor_init(p: MotorParams, *, ambient: float) -> MotorState:
    """A motor that has been running at its mean load long enough to be warm."""
    current = _motor_current(p, p.load_mean)
    return MotorState(
        load_deviation=0.0,
        winding_temperature=_motor_temperature_target(p, current, ambient, 1.0),
    )


def motor_step(
    p: MotorParams,
    state: MotorState,
    conditions: Conditions,
    *,
    t: float,
    dt: float,
    ambient: float,
    rng: np.random.Generator,
) -> tuple[MotorState, dict[str, float]]:
    deviation = _ou(
        state.load_deviation, sigma=p.load_noise, tau=p.load_correlation, dt=dt, rng=rng
    )
    duty = p.load_swing * math.sin(2.0 * math.pi * t / p.load_period)
    load = min(max(p.load_mean + duty + deviation, 5.0), 110.0)
    # Slip grows linearly with load in the normal operating region of the
    # torque-speed curve; synchronous speed is 120 f / p.
    synchronous = 120.0 * p.supply_frequency / p.poles
    drive = state.drive_speed
    if state.setpoint is not None:
        # The drive ramps its output frequency so that the shaft (synchronous
        # speed less slip at this load) reaches the setpoint.
        target = state.setpoint / (1.0 - p.rated_slip * load / 100.0)
        now = synchronous if drive is None else drive
        step = p.drive_ramp * dt
        drive = now + max(-step, min(step, target - now))
    if drive is not None:
        synchronous = drive
    speed = synchronous * (1.0 - p.rated_slip * load / 100.0)
    current = _motor_current(p, load)
    gain = conditions.thermal_gain
    target = _motor_temperature_target(p, current, ambient, gain)
    temperature = _first_order(
        state.winding_temperature, target, dt, p.thermal_time_constant * gain
    )
    running_hz = speed / 60.0
    wear = conditions.bearing_wear
    source = VibrationSource(
        running_hz=running_hz,
        # Wear opens the bearing clearance: the rotor moves more at 1x too.
        unbalance=p.unbalance * (1.0 + 0.5 * wear),
        misalignment=p.misalignment,
        bpfo=bpfo_hz(
            running_hz, balls=p.bearing_balls, ratio=p.bearing_ratio, contact_angle=p.contact_angle
        ),
        impact=p.bearing_impact * wear,
        defect_line=p.bearing_line * wear,
    )
    readings = {
        "speed": _noisy(speed, p.speed_noise, rng),
        "current": _noisy_positive(current, p.current_noise, rng),
        "windingTemperature": _noisy(
            temperature, p.temperature_noise + 0.002 * abs(temperature), rng
        ),
        "load": _noisy_positive(load, p.load_reading_noise, rng),
        **_vibration_readings(source, MOTOR_VIBRATION, t, rng),
    }
    return (
        MotorState(
            load_deviation=deviation,
            winding_temperature=temperature,
            setpoint=state.setpoint,
            drive_speed=drive,
        ),
        readings,
    )


# -- centrifugal pump ------------------------------------------------------------------

PUMP_VIBRATION = VibrationSpec(resonance=1100.0, damping=0.08, noise=0.3)


@dataclass(frozen=True, slots=True, kw_only=True)
class PumpParams:
    """An end-suction water pump on a variable-speed drive, 120 m3/h at 50 m."""

    rated_speed: float = 2950.0  # rpm (2-pole, 50 Hz)
    speed_swing: float = 0.06  # share of rated speed the drive trims with demand
    speed_period: float = 420.0  # s
    rated_flow: float = 120.0  # m3/h at the best efficiency point
    rated_head: float = 50.0  # m
    shutoff_head: float = 1.25  # x rated head at zero flow (radial impellers: 1.1-1.3)
    demand_swing: float = 0.15  # share the system resistance (valves) varies
    demand_period: float = 600.0  # s
    demand_noise: float = 0.03
    demand_correlation: float = 30.0  # s
    tank_pressure: float = 1.5  # bar(g) at the suction flange, zero flow
    tank_swing: float = 0.1  # bar, with the tank level
    tank_period: float = 1800.0  # s
    suction_loss: float = 0.2  # bar of suction line loss at rated flow
    bearing_temperature_rise: float = 30.0  # K at rated speed
    bearing_time_constant: float = 600.0  # s
    wear_heating: float = 0.4  # extra bearing friction heat at full wear (share)
    vanes: float = 6.0
    unbalance: float = 1.2  # mm/s peak at 1x, rated speed
    misalignment: float = 0.4  # mm/s peak at 2x
    vane_pass: float = 0.5  # mm/s peak at vanes x running speed
    bearing_balls: float = 8.0
    bearing_ratio: float = 0.22
    contact_angle: float = 0.0
    bearing_impact: float = 30.0
    bearing_line: float = 2.0
    flow_noise: float = 0.4  # m3/h
    pressure_noise: float = 0.01  # bar
    temperature_noise: float = 0.15  # K
    #: Under flow control (a setpoint from the home plant), how fast the drive
    #: moves the speed, share of rated speed per second (3 %/s: about 3.6 m3/h/s).
    drive_ramp: float = 0.03
    max_speed_ratio: float = 1.1  # the drive's limit, share of rated speed
    min_speed_ratio: float = 0.2


@dataclass(frozen=True, slots=True, kw_only=True)
class PumpState:
    demand_deviation: float
    bearing_temperature: float  # °C
    #: Flow setpoint (m3/h) from the home plant (MQTT command); None: the drive
    #: trims speed with demand on its own, as before any command.
    setpoint: float | None = None
    #: The drive's speed as a share of rated, once a setpoint has taken over.
    speed_ratio: float | None = None


def _pump_bearing_target(
    p: PumpParams, speed_ratio: float, wear: float, ambient: float, gain: float
) -> float:
    # Rolling-bearing friction torque is nearly constant over speed (Palmgren),
    # so the friction heat grows about in proportion to speed.
    heat = (0.3 + 0.7 * speed_ratio) * (1.0 + p.wear_heating * wear)
    return ambient + gain * p.bearing_temperature_rise * heat


def pump_operating_point(
    p: PumpParams, *, speed_ratio: float, demand: float
) -> tuple[float, float]:
    """Flow (m3/h) and head (m) where the pump curve meets the system curve.

    Pump curve H = H0 s^2 - k Q^2 (the affinity laws: Q ~ s, H ~ s^2; Karassik et
    al., *Pump Handbook*, 4th ed., §2.3) against a friction system curve
    H = K Q^2. In units of the rated point k = H0 - 1 and K = ``demand`` (1: the
    rated duty; more: valves throttled). A purely frictional system keeps the
    affinity laws exact: Q = s sqrt(H0 / (H0 - 1 + K)), H = K Q^2.
    """
    q = speed_ratio * math.sqrt(p.shutoff_head / (p.shutoff_head - 1.0 + demand))
    return q * p.rated_flow, demand * q * q * p.rated_head


def pump_init(p: PumpParams, *, ambient: float) -> PumpState:
    return PumpState(
        demand_deviation=0.0,
        bearing_temperature=_pump_bearing_target(p, 1.0 - p.speed_swing / 2, 0.0, ambient, 1.0),
    )


def pump_step(
    p: PumpParams,
    state: PumpState,
    conditions: Conditions,
    *,
    t: float,
    dt: float,
    ambient: float,
    rng: np.random.Generator,
) -> tuple[PumpState, dict[str, float]]:
    deviation = _ou(
        state.demand_deviation, sigma=p.demand_noise, tau=p.demand_correlation, dt=dt, rng=rng
    )
    s = 1.0 - p.speed_swing * (0.5 + 0.5 * math.sin(2.0 * math.pi * t / p.speed_period))
    demand = max(
        1.0 + p.demand_swing * math.sin(2.0 * math.pi * t / p.demand_period) + deviation, 0.3
    )
    if state.setpoint is not None:
        # Flow control: the drive seeks the speed at which the pump curve meets
        # this system curve at the setpoint (Q ~ s, the affinity laws), moving at
        # most drive_ramp per second and never past its speed limits.
        q_per_s, _ = pump_operating_point(p, speed_ratio=1.0, demand=demand)
        target = min(max(state.setpoint / q_per_s, p.min_speed_ratio), p.max_speed_ratio)
        now_s = s if state.speed_ratio is None else state.speed_ratio
        step = p.drive_ramp * dt
        s = now_s + max(-step, min(step, target - now_s))
    flow, head = pump_operating_point(p, speed_ratio=s, demand=demand)
    q = flow / p.rated_flow
    level = p.tank_swing * math.sin(2.0 * math.pi * t / p.tank_period)
    suction = p.tank_pressure + level - p.suction_loss * q * q
    discharge = suction + _RHO_WATER * _G * head / 1e5
    gain = conditions.thermal_gain
    wear = conditions.bearing_wear
    target = _pump_bearing_target(p, s, wear, ambient, gain)
    temperature = _first_order(
        state.bearing_temperature, target, dt, p.bearing_time_constant * gain
    )
    running_hz = s * p.rated_speed / 60.0
    # Forces from unbalance grow with speed squared.
    s2 = s * s
    source = VibrationSource(
        running_hz=running_hz,
        unbalance=p.unbalance * s2 * (1.0 + 0.5 * wear),
        misalignment=p.misalignment * s2,
        tones=((p.vanes * running_hz, p.vane_pass * s2),),
        bpfo=bpfo_hz(
            running_hz, balls=p.bearing_balls, ratio=p.bearing_ratio, contact_angle=p.contact_angle
        ),
        impact=p.bearing_impact * wear,
        defect_line=p.bearing_line * wear,
    )
    readings = {
        "flowRate": _noisy_positive(q * p.rated_flow, p.flow_noise, rng),
        "dischargePressure": _noisy(discharge, p.pressure_noise, rng),
        "suctionPressure": _noisy(suction, p.pressure_noise, rng),
        "bearingTemperature": _noisy(temperature, p.temperature_noise, rng),
        **_vibration_readings(source, PUMP_VIBRATION, t, rng),
    }
    after = PumpState(
        demand_deviation=deviation,
        bearing_temperature=temperature,
        setpoint=state.setpoint,
        speed_ratio=s if state.setpoint is not None else None,
    )
    return after, readings


# -- CNC machining centre --------------------------------------------------------------

#: Spindle bearings are angular-contact and stiff: the mode their defects ring
#: is higher, so the band and sample rate are too.
CNC_VIBRATION = VibrationSpec(
    sample_rate=16384.0,
    samples=4096,
    bearing_band=(2000.0, 6000.0),
    resonance=3200.0,
    damping=0.1,
    noise=0.25,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Operation:
    """One step of the part program."""

    name: str
    speed: float  # rpm spindle setpoint (0: spindle stopped)
    load: float  # % cutting load with a sharp tool
    duration: float  # s
    monitored: bool = False  # cut with the monitored (wear-tracked) tool


#: A milling cycle of 115 s: load, rough, finish, drill, unload.
CNC_PROGRAM: tuple[Operation, ...] = (
    Operation(name="load part", speed=0.0, load=0.0, duration=12.0),
    Operation(name="rough mill", speed=6000.0, load=65.0, duration=45.0, monitored=True),
    Operation(name="finish mill", speed=10000.0, load=30.0, duration=30.0),
    Operation(name="drill", speed=2500.0, load=45.0, duration=18.0),
    Operation(name="unload part", speed=0.0, load=0.0, duration=10.0),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class CncParams:
    """A vertical machining centre; the roughing end mill's flank wear is monitored."""

    max_speed: float = 12000.0  # rpm
    spindle_response: float = 0.6  # s, speed time constant (drive acceleration)
    tool_diameter: float = 12.0  # mm
    #: Taylor tool life V * T^n = C (V m/min, T min); carbide on steel n = 0.2-0.3.
    taylor_exponent: float = 0.25
    taylor_constant: float = 350.0  # m/min
    #: Flank wear land VB at which the tool is changed (ISO 8688-2: 0.3 mm uniform wear).
    wear_limit: float = 0.3  # mm
    new_tool_wear: float = 0.02  # mm after the break-in of a fresh edge
    #: Cutting force grows with flank wear: load share added at the wear limit.
    wear_load_gain: float = 0.6
    friction_load: float = 2.0  # % at max speed, spindle bearings and seals
    spindle_temperature_rise: float = 25.0  # K at max speed and full load
    thermal_time_constant: float = 300.0  # s
    flutes: float = 4.0
    unbalance: float = 0.8  # mm/s peak at 1x at max speed
    misalignment: float = 0.3
    tooth_pass: float = 1.2  # mm/s peak at flutes x running speed at 100 % load
    bearing_balls: float = 15.0
    bearing_ratio: float = 0.2
    contact_angle: float = 15.0
    bearing_impact: float = 25.0
    bearing_line: float = 2.0
    speed_noise: float = 2.0  # rpm
    load_noise: float = 0.4  # %
    temperature_noise: float = 0.15  # K
    wear_noise: float = 0.004  # mm, in-process tool measurement


@dataclass(frozen=True, slots=True, kw_only=True)
class CncState:
    spindle_speed: float  # rpm, actual
    spindle_temperature: float  # °C
    tool_wear: float  # mm, true flank wear of the monitored tool
    tool_changes: int = 0


def taylor_tool_life(p: CncParams, speed_rpm: float) -> float:
    """Tool life in seconds at a spindle speed (Taylor, "On the art of cutting metals", 1907)."""
    cutting_speed = math.pi * p.tool_diameter * speed_rpm / 1000.0  # m/min
    return 60.0 * float((p.taylor_constant / cutting_speed) ** (1.0 / p.taylor_exponent))


def _operation_at(t: float) -> Operation:
    cycle = sum(op.duration for op in CNC_PROGRAM)
    into = t % cycle
    for op in CNC_PROGRAM:
        if into < op.duration:
            return op
        into -= op.duration
    return CNC_PROGRAM[-1]


def _cnc_temperature_target(
    p: CncParams, speed: float, load: float, ambient: float, gain: float
) -> float:
    heat = 0.5 * speed / p.max_speed + 0.5 * load / 100.0
    return ambient + gain * p.spindle_temperature_rise * heat


def cnc_init(p: CncParams, *, ambient: float) -> CncState:
    """A machine warm from earlier cycles, with a fresh tool."""
    return CncState(
        spindle_speed=0.0,
        spindle_temperature=_cnc_temperature_target(p, 0.45 * p.max_speed, 35.0, ambient, 1.0),
        tool_wear=p.new_tool_wear,
    )


def cnc_step(
    p: CncParams,
    state: CncState,
    conditions: Conditions,
    *,
    t: float,
    dt: float,
    ambient: float,
    rng: np.random.Generator,
) -> tuple[CncState, dict[str, float]]:
    op = _operation_at(t)
    speed = _first_order(state.spindle_speed, op.speed, dt, p.spindle_response)
    at_speed = min(speed / op.speed, 1.0) if op.speed > 0 else 0.0
    wear = state.tool_wear
    changes = state.tool_changes
    cutting = op.load * at_speed
    if op.monitored and speed > 0.0:
        # Steady (linear) region of the flank-wear curve: the tool reaches the
        # limit after one Taylor tool life of cutting at this speed.
        wear += (p.wear_limit - p.new_tool_wear) * dt / taylor_tool_life(p, speed)
        cutting *= 1.0 + p.wear_load_gain * (wear - p.new_tool_wear) / (
            p.wear_limit - p.new_tool_wear
        )
        if wear >= p.wear_limit:
            wear, changes = p.new_tool_wear, changes + 1  # the tool changer swaps it
    load = cutting + p.friction_load * speed / p.max_speed
    gain = conditions.thermal_gain
    target = _cnc_temperature_target(p, speed, load, ambient, gain)
    temperature = _first_order(
        state.spindle_temperature, target, dt, p.thermal_time_constant * gain
    )
    running_hz = speed / 60.0
    ratio2 = (speed / p.max_speed) ** 2
    bw = conditions.bearing_wear
    source = VibrationSource(
        running_hz=running_hz,
        unbalance=p.unbalance * ratio2 * (1.0 + 0.5 * bw),
        misalignment=p.misalignment * ratio2,
        tones=((p.flutes * running_hz, p.tooth_pass * cutting / 100.0),),
        bpfo=bpfo_hz(
            running_hz, balls=p.bearing_balls, ratio=p.bearing_ratio, contact_angle=p.contact_angle
        ),
        impact=p.bearing_impact * bw * min(speed / 3000.0, 1.0),
        defect_line=p.bearing_line * bw * min(speed / 3000.0, 1.0),
    )
    readings = {
        "spindleSpeed": _noisy_positive(speed, p.speed_noise, rng),
        "spindleLoad": _noisy_positive(load, p.load_noise, rng),
        "spindleTemperature": _noisy(temperature, p.temperature_noise, rng),
        "toolWear": _noisy_positive(wear, p.wear_noise, rng),
        **_vibration_readings(source, CNC_VIBRATION, t, rng),
    }
    new_state = replace(
        state,
        spindle_speed=speed,
        spindle_temperature=temperature,
        tool_wear=wear,
        tool_changes=changes,
    )
    return new_state, readings
