"""The ``[cosim]`` part of a node's config file.

Example (``twinmesh plant simulate`` writes ``node-cosim.toml`` for its motors)::

    [cosim]
    fmu_dir = "fmus"                   # our own FMUs are built here (under data_dir)
    input_timeout = 5.0                # s without an input sample: hold the co-simulation
    whatif_max_horizon = 86400.0       # s of model time a what-if may ask for
    whatif_cpu_seconds = 10.0
    whatif_wall_seconds = 20.0
    lineage_days = 7.0                 # lineage of expected values kept on disk

    [[cosim.asset]]
    entity = "plant-a/line-1/motor-2"
    system = "motor"                   # a shipped system (node/cosim/systems), or a path
    time_scale = 1.0                   # model seconds per second of source time
    parameters = { "thermal.tau" = 120.0, "thermal.ambient" = 25.0 }

Every key is checked, with its key path in the message.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["SHIPPED_SYSTEMS", "CosimAsset", "CosimConfigError", "CosimSettings", "parse_cosim"]

SHIPPED_SYSTEMS = Path(__file__).parent / "systems"
_KEYS = {
    "fmu_dir",
    "input_timeout",
    "whatif_max_horizon",
    "whatif_cpu_seconds",
    "whatif_wall_seconds",
    "lineage_kept",
    "lineage_days",
    "asset",
}
_ASSET_KEYS = {"entity", "system", "time_scale", "parameters"}


class CosimConfigError(ValueError):
    """A [cosim] setting is wrong; the message names the key."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CosimAsset:
    entity: str
    system: Path
    time_scale: float = 1.0
    parameters: tuple[tuple[str, str, float], ...] = ()  # (fmu, variable, value)


@dataclass(frozen=True, slots=True, kw_only=True)
class CosimSettings:
    fmu_dir: Path
    assets: tuple[CosimAsset, ...]
    input_timeout: float = 5.0
    whatif_max_horizon: float = 86400.0
    whatif_cpu_seconds: float = 10.0
    whatif_wall_seconds: float = 20.0
    lineage_kept: int = 2000  # points kept in memory (status); all are in the store
    lineage_days: float = 7.0  # points kept in <data_dir>/cosim-lineage.sqlite


def _num(
    table: dict[str, Any], key: str, default: float, where: str, lo: float, hi: float
) -> float:
    v = table.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise CosimConfigError(f"{where}.{key}: expected a number, found {v!r}")
    if not lo <= v <= hi:
        raise CosimConfigError(f"{where}.{key}: expected {lo:g}..{hi:g}, found {v}")
    return float(v)


def parse_cosim(
    raw: dict[str, Any], *, rel: Callable[[str], Path], data_dir: Path
) -> CosimSettings | None:
    """The [cosim] table of a parsed node config, or None when there is none."""
    table = raw.get("cosim")
    if table is None:
        return None
    if not isinstance(table, dict):
        raise CosimConfigError("[cosim] must be a table")
    for key in sorted(set(table) - _KEYS):
        raise CosimConfigError(
            f"cosim.{key}: unknown key (expected one of {', '.join(sorted(_KEYS))})"
        )
    fmu_dir_raw = table.get("fmu_dir", "cosim-fmus")
    if not isinstance(fmu_dir_raw, str):
        raise CosimConfigError(f"cosim.fmu_dir: expected a path, found {fmu_dir_raw!r}")
    fmu_dir = Path(fmu_dir_raw) if Path(fmu_dir_raw).is_absolute() else data_dir / fmu_dir_raw
    assets_raw = table.get("asset", [])
    if not isinstance(assets_raw, list):
        raise CosimConfigError("cosim.asset: expected an array of tables [[cosim.asset]]")
    assets: list[CosimAsset] = []
    seen: set[str] = set()
    for i, a in enumerate(assets_raw):
        where = f"cosim.asset[{i}]"
        if not isinstance(a, dict):
            raise CosimConfigError(f"{where}: expected a table")
        for key in sorted(set(a) - _ASSET_KEYS):
            raise CosimConfigError(
                f"{where}.{key}: unknown key (expected {', '.join(sorted(_ASSET_KEYS))})"
            )
        entity = a.get("entity")
        if not isinstance(entity, str) or not entity:
            raise CosimConfigError(f"{where}.entity: required, an entity id")
        if entity in seen:
            raise CosimConfigError(f"{where}.entity: {entity} is co-simulated twice")
        seen.add(entity)
        system = a.get("system")
        if not isinstance(system, str) or not system:
            raise CosimConfigError(f"{where}.system: required, a shipped system name or a path")
        shipped = SHIPPED_SYSTEMS / f"{system}.toml"
        path = shipped if "/" not in system and not system.endswith(".toml") else rel(system)
        if not path.exists():
            raise CosimConfigError(
                f"{where}.system: {system!r} is neither a shipped system"
                f" ({', '.join(sorted(p.stem for p in SHIPPED_SYSTEMS.glob('*.toml')))}) nor a file"
            )
        params_raw = a.get("parameters", {})
        if not isinstance(params_raw, dict):
            raise CosimConfigError(
                f'{where}.parameters: expected a table of "fmu.variable" = number'
            )
        params = []
        for ref, value in params_raw.items():
            fmu, dot, var = ref.partition(".")
            if not dot or not fmu or not var:
                raise CosimConfigError(f'{where}.parameters.{ref}: expected "fmu.variable"')
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
            ):
                raise CosimConfigError(
                    f"{where}.parameters.{ref}: expected a number, found {value!r}"
                )
            params.append((fmu, var, float(value)))
        assets.append(
            CosimAsset(
                entity=entity,
                system=path,
                time_scale=_num(a, "time_scale", 1.0, where, 1e-3, 1e4),
                parameters=tuple(params),
            )
        )
    lineage = table.get("lineage_kept", 2000)
    if isinstance(lineage, bool) or not isinstance(lineage, int) or not 1 <= lineage <= 10**6:
        raise CosimConfigError(f"cosim.lineage_kept: expected 1..1000000, found {lineage!r}")
    return CosimSettings(
        fmu_dir=fmu_dir,
        assets=tuple(assets),
        input_timeout=_num(table, "input_timeout", 5.0, "cosim", 0.01, 86400.0),
        whatif_max_horizon=_num(table, "whatif_max_horizon", 86400.0, "cosim", 1.0, 1e8),
        whatif_cpu_seconds=_num(table, "whatif_cpu_seconds", 10.0, "cosim", 0.01, 3600.0),
        whatif_wall_seconds=_num(table, "whatif_wall_seconds", 20.0, "cosim", 0.01, 3600.0),
        lineage_kept=lineage,
        lineage_days=_num(table, "lineage_days", 7.0, "cosim", 0.0, 36500.0),
    )
