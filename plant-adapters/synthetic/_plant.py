"""One asset's reading sequence: physics, then faults (pure, deterministic).

Theory of operation
-------------------
An :class:`AssetSimulator` produces the asset's readings tick by tick. Tick
``n`` is at simulated time ``t = n * sample_interval * time_scale``; the runner
publishes it at wall time ``start + n * sample_interval``. Time therefore
advances in fixed steps whatever the event loop's jitter, and a reading
depends only on the seed, the asset and ``n``: the same config and seed
replay the same plant (tests/test_plant_physics.py checks it).

Each asset draws from its own ``numpy.random.Generator``, seeded from the
plant seed and a CRC-32 of the entity id (Python's ``hash`` is salted per
process, so it would not do). Adding an asset does not change the others'
readings.

Per tick: the fault schedule gives the physical conditions; the kind's step
function (:mod:`._physics`) advances the machine and reads its sensors; then
the sensor faults (:func:`._faults.apply_sensor_faults`) alter or suppress
readings. ``values`` is what the asset publishes, ``true_values`` what its
sensors would have said if they were healthy.
"""

from __future__ import annotations

import dataclasses
import math
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np

from ._config import AssetConfig
from ._faults import apply_sensor_faults, conditions_at
from ._physics import cnc_init, cnc_step, motor_init, motor_step, pump_init, pump_step

__all__ = ["AssetSimulator", "Tick", "asset_rng"]

_MACHINES: Mapping[str, tuple[Callable[..., Any], Callable[..., Any]]] = {
    "motor": (motor_init, motor_step),
    "pump": (pump_init, pump_step),
    "cnc": (cnc_init, cnc_step),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Tick:
    """One reading of every tag of an asset."""

    n: int
    t: float  # simulated seconds since the start
    values: Mapping[str, float]  # as published; tags in a dropout are absent
    true_values: Mapping[str, float]  # before sensor faults
    active: tuple[str, ...]  # ids of the faults active at this tick


def asset_rng(seed: int, entity: str) -> np.random.Generator:
    """The asset's own generator: stable across processes and independent of other assets."""
    return np.random.default_rng([seed & 0xFFFFFFFFFFFFFFFF, zlib.crc32(entity.encode("utf-8"))])


class AssetSimulator:
    """The reading sequence of one asset; call :meth:`tick` for n = 0, 1, 2, ..."""

    def __init__(self, asset: AssetConfig, *, seed: int, time_scale: float, ambient: float) -> None:
        self.asset = asset
        self.dt = asset.sample_interval * time_scale
        self._ambient = ambient
        self._rng = asset_rng(seed, asset.entity)
        init, self._step = _MACHINES[asset.kind]
        self._state = init(asset.params, ambient=ambient)
        self._last: dict[str, float] = {}
        self._held: dict[str, float] = {}
        self.n = 0

    @property
    def state(self) -> Any:
        """The machine's physical state (a frozen dataclass of the kind)."""
        return self._state

    def set_setpoint(self, value: float) -> bool:
        """A command from the home plant (a motor's speed setpoint); False if ignored."""
        if not hasattr(self._state, "setpoint") or not math.isfinite(value):
            return False
        if self._state.setpoint != value:
            self._state = dataclasses.replace(self._state, setpoint=float(value))
        return True

    def tick(self) -> Tick:
        n = self.n
        t = n * self.dt
        faults = self.asset.faults
        self._state, readings = self._step(
            self.asset.params,
            self._state,
            conditions_at(faults, t),
            t=t,
            dt=self.dt,
            ambient=self._ambient,
            rng=self._rng,
        )
        values, self._held = apply_sensor_faults(
            faults, readings, t=t, last=self._last, held=self._held
        )
        self._last.update(values)
        self.n = n + 1
        return Tick(
            n=n,
            t=t,
            values=MappingProxyType(values),
            true_values=MappingProxyType(readings),
            active=tuple(f.id for f in faults if f.active(t)),
        )
