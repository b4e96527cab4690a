"""Helpers for the scoring tests: an asset's healthy readings from the synthetic plant."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from twinmesh.adapters.synthetic import AssetSimulator, load_config


def healthy_rows(plant: Path, frames: int, seed: int) -> tuple[list[str], np.ndarray]:
    """The first asset of ``plant``, its faults removed: tag names and frames x tags."""
    cfg = load_config(plant)
    asset = dataclasses.replace(cfg.assets[0], faults=())
    sim = AssetSimulator(asset, seed=seed, time_scale=1.0, ambient=cfg.ambient_temperature)
    ticks = [sim.tick().values for _ in range(frames)]
    names = sorted(ticks[0])
    return names, np.array([[t[n] for n in names] for t in ticks])
