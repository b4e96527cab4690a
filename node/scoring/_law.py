"""What every physical law among an asset's relations shares (pure, numpy).

A law (``_pump_curve``, ``_spindle_power``) is written in the readings' own
units, not in the baseline's standardised ones, so it carries the baseline's
centre and scale and reads raw values back from standardised rows. It is judged
over the whole operating range (``extrapolates``: no envelope), except on
frames where one of its ``guards`` (impulsive vibration indicators: a bearing's
impacts are in the RMS a law may use) is more than ``guard`` scales high.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["PhysicalLaw", "find_tag", "impulsive_tags"]


@dataclass(frozen=True, slots=True, kw_only=True)
class PhysicalLaw:
    target: int  # the feature its residual is reported on (a process variable)
    guards: tuple[int, ...]
    center: np.ndarray
    scale: np.ndarray
    sigma: float  # residual spread in the warm-up, in the law's own units
    r2: float
    guard: float = 2.0
    #: A physical law, not a local line: judged over the whole operating range.
    extrapolates: bool = True

    def _raw(self, z: np.ndarray, i: int) -> np.ndarray:
        return np.asarray(z[:, i] * self.scale[i] + self.center[i])

    def valid(self, z: np.ndarray) -> np.ndarray:
        """Rows the law may judge: no guard beyond ``guard`` scales."""
        if not self.guards:
            return np.ones(len(z), dtype=bool)
        return np.asarray(np.all(z[:, list(self.guards)] <= self.guard, axis=1))


def find_tag(features: Sequence[str], roles: Sequence[str], pattern: str, role: str) -> int | None:
    """The one telemetry feature of ``role`` whose name matches, or None (none or several)."""
    hits = [
        i
        for i, (f, r) in enumerate(zip(features, roles, strict=True))
        if r == role and ":" not in f and "." not in f and re.search(pattern, f)
    ]
    return hits[0] if len(hits) == 1 else None


def impulsive_tags(
    features: Sequence[str], roles: Sequence[str], impulsive: str
) -> tuple[int, ...]:
    """The vibration indicators of bearing impacts (the guards of a law using the RMS)."""
    return tuple(
        i
        for i, (f, r) in enumerate(zip(features, roles, strict=True))
        if r == "vibration" and re.search(impulsive, f)
    )
