"""The detector interface: every detector is a small class behind it, one file each.

A detector is fitted per asset on the warm-up rows and then scores
micro-batches of frames. Its output is normalised so that detectors can be
compared and combined by the alert policy: ``score`` per frame and, where the
detector can attribute, ``contrib`` per frame and feature, signed, where
``|value| >= 1`` means "at this detector's alarm limit". A new detector is a
new file with a subclass registered in ``DETECTORS``.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ._baseline import Baseline

__all__ = ["Batch", "Detector", "Scores"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Batch:
    """A micro-batch of one asset's frames: raw values, standardised values, validity."""

    x: np.ndarray  # frames x features
    z: np.ndarray  # (x - center) / scale
    valid: np.ndarray  # bool, frames x features (False: the tag was missing)


@dataclass(frozen=True, slots=True, kw_only=True)
class Scores:
    detector: str
    version: str
    score: np.ndarray  # per frame, 1.0 = the detector's alarm limit
    contrib: np.ndarray | None  # per frame and feature, signed; None: no attribution


class Detector(abc.ABC):
    name: ClassVar[str]
    version: ClassVar[str]

    @abc.abstractmethod
    def fit(self, baseline: Baseline, train: Batch, rng: np.random.Generator) -> None:
        """Learn from the warm-up (the batch the baseline was learned from)."""

    @abc.abstractmethod
    def score(self, batch: Batch) -> Scores:
        """Score frames in order; stateful detectors carry state across batches."""

    def describe(self) -> dict[str, object]:
        return {"name": self.name, "version": self.version}
