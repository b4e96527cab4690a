"""What the shipped DTDL models say about each machine kind's telemetry.

The simulator must publish exactly the telemetry the models declare, in the
models' units, inside their ``ExpectedRange`` while healthy (the node flags a
reading outside it ``OUT_OF_RANGE`` and a declared tag that never reports
``STALE``). Rather than copy those facts into code, this module reads them
from the model files shipped next to it (``models/*.json``), following
``extends`` between them. It reads only what it needs (name, unit, range) and
assumes the files are valid: ``twinmesh model validate`` and
tests/test_dtdl_plant_models.py check that. The adapters do not import the
node's DTDL parser (``node`` calls adapters, not the reverse).

Unit symbols are spelled as ``twinmesh.node.dtdl.unit_symbol`` spells them
(an ExpectedRange ``unitSymbol`` wins, else the QuantitativeTypes unit's
symbol), so a sample's unit equals the node's model unit and is never
converted. tests/test_plant_models.py checks the two agree.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "DEFAULT_MODELS",
    "MODELS_DIR",
    "Kind",
    "TelemetryInfo",
    "kind_telemetry",
    "model_telemetry",
]

Kind = Literal["motor", "pump", "cnc"]

MODELS_DIR = Path(__file__).resolve().parent / "models"

#: The DTMI each machine kind's twin uses unless an asset names another.
DEFAULT_MODELS: Mapping[str, str] = {
    "motor": "dtmi:twinmesh:plant:Motor;1",
    "pump": "dtmi:twinmesh:plant:Pump;1",
    "cnc": "dtmi:twinmesh:plant:CncMachine;1",
}

# QuantitativeTypes unit name -> symbol, for the units the plant models use
# (the same spellings as twinmesh.node.dtdl.UNIT_SYMBOLS).
_SYMBOLS: Mapping[str, str] = {
    "revolutionPerMinute": "rpm",
    "ampere": "A",
    "degreeCelsius": "°C",
    "cubicMetrePerHour": "m3/h",
    "bar": "bar",
    "millimetre": "mm",
    "percent": "%",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class TelemetryInfo:
    """One numeric telemetry of a model: its unit symbol and expected range."""

    name: str
    unit: str
    minimum: float
    maximum: float

    def contains(self, value: float) -> bool:
        return self.minimum <= value <= self.maximum


@functools.cache
def _documents() -> dict[str, dict[str, Any]]:
    docs: dict[str, dict[str, Any]] = {}
    for path in sorted(MODELS_DIR.glob("*.json")):
        doc = json.loads(path.read_text(encoding="utf-8"))
        docs[doc["@id"]] = doc
    return docs


def _types(element: Mapping[str, Any]) -> tuple[str, ...]:
    t = element.get("@type", ())
    return (t,) if isinstance(t, str) else tuple(t)


@functools.cache
def model_telemetry(dtmi: str) -> Mapping[str, TelemetryInfo]:
    """Telemetry of a shipped model (own and inherited), by name. ``KeyError`` if unknown."""
    docs = _documents()
    out: dict[str, TelemetryInfo] = {}
    stack = [dtmi]
    while stack:
        doc = docs[stack.pop()]
        parents = doc.get("extends", [])
        stack.extend([parents] if isinstance(parents, str) else parents)
        for element in doc.get("contents", []):
            if "Telemetry" not in _types(element):
                continue
            unit = element.get("unitSymbol") or _SYMBOLS.get(element.get("unit", ""), "")
            out[element["name"]] = TelemetryInfo(
                name=element["name"],
                unit=unit,
                minimum=float(element["minValue"]),
                maximum=float(element["maxValue"]),
            )
    return out


def kind_telemetry(kind: str) -> Mapping[str, TelemetryInfo]:
    """Telemetry of the default model of a machine kind."""
    return model_telemetry(DEFAULT_MODELS[kind])
