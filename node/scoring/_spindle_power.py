"""The vibration power of a cutting spindle as a relation (pure, numpy).

Theory of operation
-------------------
A machining spindle's vibration is the sum of forced tones and a floor. The
cutting force excites the tooth-passing frequency with an amplitude in
proportion to the cutting load (the chip load of each tooth: Altintas,
*Manufacturing Automation*, 2nd ed., 2012, §2.4), and the rotor's unbalance
excites 1x (and misalignment 2x) with an amplitude that goes with speed
squared (ISO 21940-11). Powers of tones at different frequencies add, so the
broadband velocity RMS obeys

    rms^2 = alpha * load^2 + gamma * speed^4 + beta

in every step of a part program (roughing, finishing, drilling, idle): one
linear law in those terms, not one line per step. The warm-up (a minute)
sees part of the program; the law still holds over the rest (measured on
heldout-plant-c's lathe, seeds 301-303, an hour each: largest 5-frame
residual 2.6-3.0 sigmas, limit 6; ``load ~ rms, speed`` as a line: 6.3-6.9 and
2-3 % of frames beyond 6).

A spindle-load transmitter reading 4 % high moves rms^2's prediction by
``alpha * (8 * load + 16)``: about 9 residual sigmas while roughing at 80 %,
4 while finishing at 30 %, nothing at idle. So a load drift is seen where it
matters, under load. The law is kept only where it explains ``min_r2`` of the
RMS power in the warm-up (a motor whose vibration does not follow its load
has none). It abstains, like the pump curve, while an impulsive indicator is
high: a bearing's impacts are in the RMS and are neither load nor speed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._law import PhysicalLaw, find_tag, impulsive_tags

__all__ = ["SpindlePower", "SpindlePowerTags", "fit_spindle_power", "locate_spindle_power"]


@dataclass(frozen=True, slots=True, kw_only=True)
class SpindlePowerTags:
    """Which telemetry plays which part (name patterns)."""

    load: str = r"(?i)load"
    speed: str = r"(?i)speed"
    rms: str = r"(?i)vibration.?rms"


@dataclass(frozen=True, slots=True, kw_only=True)
class SpindlePower(PhysicalLaw):
    """rms^2 = alpha * load^2 + gamma * (speed / speed_unit)^4 + beta.

    ``target`` is the load (where the residual is reported); ``sigma`` is in RMS
    power units.
    """

    speed: int
    rms: int
    speed_unit: float  # the warm-up's largest speed (keeps speed^4 near 1)
    alpha: float
    gamma: float
    beta: float

    @property
    def inputs(self) -> tuple[int, ...]:
        return (self.speed, self.rms)

    def residual(self, z: np.ndarray) -> np.ndarray:
        """Standardised residual (sigmas): observed RMS power less the law's."""
        load = self._raw(z, self.target)
        s = self._raw(z, self.speed) / self.speed_unit
        rms = self._raw(z, self.rms)
        pred = self.alpha * load * load + self.gamma * s**4 + self.beta
        return np.asarray((rms * rms - pred) / self.sigma)

    def sensitivity(self, j: int, zrow: np.ndarray) -> float:
        """d residual / d z_j at the standardised row ``zrow``."""
        row = zrow[None, :]
        if j == self.target:
            d = -2.0 * self.alpha * float(self._raw(row, self.target)[0])
        elif j == self.speed:
            s = float(self._raw(row, self.speed)[0]) / self.speed_unit
            d = -4.0 * self.gamma * s**3 / self.speed_unit
        elif j == self.rms:
            d = 2.0 * float(self._raw(row, self.rms)[0])
        else:
            return 0.0
        return d * float(self.scale[j]) / self.sigma

    def refit(self, z: np.ndarray) -> SpindlePower | None:
        return fit_spindle_power(
            z,
            self.center,
            self.scale,
            target=self.target,
            speed=self.speed,
            rms=self.rms,
            guards=self.guards,
        )

    def describe(self, features: Sequence[str]) -> str:
        return (
            f"{features[self.rms]}^2 = {self.alpha:.4g} * {features[self.target]}^2"
            f" + {self.gamma:.4g} * ({features[self.speed]} / {self.speed_unit:.4g})^4"
            f" + {self.beta:.4g}"
        )


def locate_spindle_power(
    features: Sequence[str], roles: Sequence[str], tags: SpindlePowerTags, impulsive: str
) -> dict[str, Any] | None:
    """The feature indices of the law on this asset, or None if it lacks a part."""

    load, speed, rms = (
        find_tag(features, roles, tags.load, "process"),
        find_tag(features, roles, tags.speed, "process"),
        find_tag(features, roles, tags.rms, "vibration"),
    )
    if load is None or speed is None or rms is None:
        return None
    guards = impulsive_tags(features, roles, impulsive)
    return {"target": load, "speed": speed, "rms": rms, "guards": guards}


def fit_spindle_power(
    z: np.ndarray,
    center: np.ndarray,
    scale: np.ndarray,
    *,
    target: int,
    speed: int,
    rms: int,
    guards: tuple[int, ...],
    min_r2: float = 0.9,
) -> SpindlePower | None:
    """Least squares of the law over standardised rows ``z``; None where it does not hold."""
    raw = z * scale + center
    load, sp, v = raw[:, target], raw[:, speed], raw[:, rms]
    n = len(v)
    unit = float(np.max(np.abs(sp))) if n else 0.0
    if n < 10 or unit <= 0.0:
        return None
    y = v * v
    a = np.c_[load * load, (sp / unit) ** 4, np.ones(n)]
    coef, *_ = np.linalg.lstsq(a, y, rcond=None)
    res = y - a @ coef
    var = float(np.var(y))
    r2 = 1.0 - float(np.var(res)) / var if var > 0 else 0.0
    # A load that does not drive the vibration (a motor's constant unbalance)
    # leaves the RMS power unexplained: no law here.
    if r2 < min_r2 or float(coef[0]) <= 0.0:
        return None
    sigma = float(np.std(res)) * float(np.sqrt(n / max(n - 3, 1)))
    sigma = max(sigma, float(np.max(np.abs(res))) / 3.0, 1e-9)
    return SpindlePower(
        target=target,
        speed=speed,
        rms=rms,
        guards=guards,
        center=np.asarray(center, dtype=float).copy(),
        scale=np.asarray(scale, dtype=float).copy(),
        speed_unit=unit,
        alpha=float(coef[0]),
        gamma=float(coef[1]),
        beta=float(coef[2]),
        sigma=sigma,
        r2=r2,
    )
