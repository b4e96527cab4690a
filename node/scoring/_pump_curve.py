"""The pump curve as a relation between a centrifugal pump's transmitters (pure, numpy).

Theory of operation
-------------------
A centrifugal pump at speed ratio ``s`` delivering flow ``Q`` raises the
pressure by

    discharge - suction = a * s^2 - b * Q^2

(the pump curve scaled by the affinity laws, Q ~ s and H ~ s^2: Gülich,
*Centrifugal Pumps*, 3rd ed., 2014, §3.4; Karassik et al., *Pump Handbook*,
4th ed., §2.3). Whatever the valves (the system curve) and the tank (the
suction head) do, this holds, so it is the one relation between a pump's
readings that a change of operating point keeps. It has **no constant term**:
a pump at rest raises no pressure. That is what lets a relation learned in a
one-minute warm-up judge the rest of the duty cycle. A ridge line through the
same readings with an intercept, fitted on the warm-up (which sees a sixth of
a drive's 420 s speed cycle), is off by 9-14 of its own sigmas later in the
cycle (measured on bench/plants/heldout-plant-c.toml and plant.toml, seeds
301-306: the linear relations never reached the r2 of 0.9 to be kept, and
every pump pressure and flow drift was missed).

The two coefficients are not equally well seen. ``a`` is fixed by the level
(the pressure rise over the speed term, since nothing is subtracted), but
``b`` only by how far the flow moves in the warm-up, which is little: fitted
alone it came out 0.2-0.9 of the plant's true value, and the error grew with
every m3/h the demand cycle later moved the flow (healthy 20-frame residuals
up to 0.2 bar). Radial impellers shut off at 1.1-1.3 times their rated head
(Karassik §2.3), i.e. ``b * Q^2`` is about a fifth of the rise near the duty
point. So ``b`` has that as a Gaussian prior: a share of 0.2, one sigma
``droop_spread`` = 0.02. That is tighter than the physical range, on purpose:
the warm-up's own estimate is not merely uncertain but biased low (the
proxy's noise floor below), so it must not pull far. Measured over an hour
of healthy operation on 20 pumps (three plants, seeds 301-304): the largest
5-frame residual 2.2-4.1 sigmas (limit 6), 20-frame residuals 0.06-0.11 bar;
with a spread of 0.05 up to 5.7 sigmas, with none (the fit alone) up to 6.6.

The speed: a pump that reports its speed gives ``s^2`` directly. Ours report
none; the vibration velocity RMS stands in, because the forces behind its
tonal lines (unbalance at 1x, misalignment at 2x, vane pass) grow with speed
squared (correlation with s^2 0.997 on the synthetic plant). It is a proxy
with two known faults: a noise floor (a share of the RMS that does not scale
with speed, the residual's remaining error), and a bearing defect adds
impacts that are not speed at all. So the relation abstains while any
impulsive indicator (kurtosis, bearing band) is beyond ``guard`` scales of
its healthy centre; a bearing finding then stands on its own.

One relation cannot say which transmitter broke it: a discharge reading high,
a suction reading low and a flow reading low all move its residual the same
way (parallel fault signatures; Gertler 1998, ch. 7, structural isolability).
``Consistency.hypotheses`` ranks them by the operating point each implies;
diagnosis says when they cannot be told apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ._law import PhysicalLaw, find_tag, impulsive_tags

__all__ = ["PumpCurve", "PumpCurveTags", "fit_pump_curve", "locate_pump_curve"]

#: b * Q^2 as a share of the pressure rise near the duty point: a shutoff
#: head of 1.2 times the rated head (radial impellers: 1.1-1.3).
_DROOP_SHARE = 0.2


@dataclass(frozen=True, slots=True, kw_only=True)
class PumpCurveTags:
    """Which telemetry of an asset plays which part of the pump curve (name patterns)."""

    outlet: str = r"(?i)discharge.?pressure"
    inlet: str = r"(?i)suction.?pressure"
    flow: str = r"(?i)flow"
    speed: str = r"(?i)speed"  # a reported speed: squared
    #: Without a speed tag: a reading that already grows with speed squared.
    speed_squared: str = r"(?i)vibration.?rms"


@dataclass(frozen=True, slots=True, kw_only=True)
class PumpCurve(PhysicalLaw):
    """outlet - inlet = head * v - droop * flow^2, v = speed^2 or its proxy.

    ``target`` is the outlet (discharge) pressure; ``sigma`` is in pressure units.
    """

    inlet: int | None
    flow: int
    speed: int
    speed_power: int  # 2: a speed tag; 1: a reading that goes with speed^2
    head: float  # pressure rise per unit of v
    droop: float  # pressure lost per flow^2

    @property
    def inputs(self) -> tuple[int, ...]:
        return tuple(i for i in (self.inlet, self.flow, self.speed) if i is not None)

    def _v(self, z: np.ndarray) -> np.ndarray:
        return np.asarray(np.maximum(self._raw(z, self.speed), 0.0) ** self.speed_power)

    def _rise(self, z: np.ndarray) -> np.ndarray:
        rise = self._raw(z, self.target)
        return rise - self._raw(z, self.inlet) if self.inlet is not None else rise

    def residual(self, z: np.ndarray) -> np.ndarray:
        """Standardised residual (sigmas) for rows of standardised features ``z``."""
        q = self._raw(z, self.flow)
        pred = self.head * self._v(z) - self.droop * q * q
        return np.asarray((self._rise(z) - pred) / self.sigma)

    def sensitivity(self, j: int, zrow: np.ndarray) -> float:
        """d residual / d z_j at the standardised row ``zrow`` (the fault signature)."""
        row = zrow[None, :]
        if j == self.target:
            d = 1.0
        elif j == self.inlet:
            d = -1.0
        elif j == self.flow:
            d = 2.0 * self.droop * float(self._raw(row, self.flow)[0])
        elif j == self.speed:
            s = max(float(self._raw(row, self.speed)[0]), 0.0)
            d = -self.head * self.speed_power * s ** (self.speed_power - 1)
        else:
            return 0.0
        return d * float(self.scale[j]) / self.sigma

    def refit(self, z: np.ndarray) -> PumpCurve | None:
        """The same curve fitted on more rows (the envelope grew)."""
        return fit_pump_curve(
            z,
            self.center,
            self.scale,
            target=self.target,
            inlet=self.inlet,
            flow=self.flow,
            speed=self.speed,
            speed_power=self.speed_power,
            guards=self.guards,
        )

    def describe(self, features: Sequence[str]) -> str:
        rise = features[self.target] + (
            f" - {features[self.inlet]}" if self.inlet is not None else ""
        )
        v = features[self.speed] + ("^2" if self.speed_power == 2 else "")
        return f"{rise} = {self.head:.4g} * {v} - {self.droop:.4g} * {features[self.flow]}^2"


def locate_pump_curve(
    features: Sequence[str], roles: Sequence[str], tags: PumpCurveTags, impulsive: str
) -> dict[str, object] | None:
    """The feature indices of a pump curve on this asset, or None if it has not one."""

    def find(pattern: str, role: str) -> int | None:
        return find_tag(features, roles, pattern, role)

    outlet = find(tags.outlet, "process")
    flow = find(tags.flow, "process")
    if outlet is None or flow is None:
        return None
    speed, power = find(tags.speed, "process"), 2
    if speed is None:
        speed, power = find(tags.speed_squared, "vibration"), 1
    if speed is None:
        return None
    # Only the RMS proxy hears a bearing; a reported speed needs no guard.
    guards = impulsive_tags(features, roles, impulsive) if power == 1 else ()
    return {
        "target": outlet,
        "inlet": find(tags.inlet, "process"),
        "flow": flow,
        "speed": speed,
        "speed_power": power,
        "guards": guards,
    }


def fit_pump_curve(
    z: np.ndarray,
    center: np.ndarray,
    scale: np.ndarray,
    *,
    target: int,
    inlet: int | None,
    flow: int,
    speed: int,
    speed_power: int,
    guards: tuple[int, ...],
    droop_spread: float = 0.02,
    max_cost: float = 2.5,
) -> PumpCurve | None:
    """The curve through the origin over standardised rows ``z``, or None if the
    readings do not follow one (see the module doc for the prior on ``droop``)."""
    raw = z * scale + center
    rise = raw[:, target] - (raw[:, inlet] if inlet is not None else 0.0)
    v = np.maximum(raw[:, speed], 0.0) ** speed_power
    q2 = raw[:, flow] ** 2
    n = len(rise)
    if n < 10 or float(np.mean(rise)) <= 0.0 or float(np.mean(q2)) <= 0.0:
        return None
    # Columns scaled to their means: head and droop then weigh alike in the prior.
    vm, qm, rm = float(np.mean(v)), float(np.mean(q2)), float(np.mean(rise))
    if vm <= 0.0:
        return None
    a = np.c_[v / vm, q2 / qm]
    # The prior: the droop's share of the rise, droop * mean(q2) / mean(rise), is
    # _DROOP_SHARE give or take droop_spread (one sigma). As one more row of the
    # least squares, weighted by the residual spread of the fit without it
    # (Gauss-Markov with a Gaussian prior: ridge towards the prior's mean).
    alone, *_ = np.linalg.lstsq(a, rise, rcond=None)
    spread = max(float(np.std(rise - a @ alone)), 1e-9)
    w = spread / (droop_spread * rm)
    aa = np.vstack([a, [0.0, w]])
    yy = np.r_[rise, w * (-_DROOP_SHARE * rm)]
    coef, *_ = np.linalg.lstsq(aa, yy, rcond=None)
    head, droop = float(coef[0]) / vm, -float(coef[1]) / qm
    if head <= 0.0:
        return None
    res = rise - (head * v - droop * q2)
    # The origin must cost little against the same terms with a constant: if it
    # does, these readings do not follow a pump curve (or the proxy is no proxy).
    free, *_ = np.linalg.lstsq(np.c_[a, np.ones(n)], rise, rcond=None)
    res_free = rise - np.c_[a, np.ones(n)] @ free
    if float(np.std(res)) > max_cost * max(float(np.std(res_free)), 1e-12):
        return None
    sigma = float(np.std(res)) * float(np.sqrt(n / max(n - 2, 1)))
    sigma = max(sigma, float(np.max(np.abs(res))) / 3.0, 1e-6 * max(abs(rm), 1.0))
    var = float(np.var(rise))
    return PumpCurve(
        target=target,
        inlet=inlet,
        flow=flow,
        speed=speed,
        speed_power=speed_power,
        guards=guards,
        center=np.asarray(center, dtype=float).copy(),
        scale=np.asarray(scale, dtype=float).copy(),
        head=head,
        droop=droop,
        sigma=sigma,
        r2=1.0 - float(np.var(res)) / var if var > 0 else 0.0,
    )
