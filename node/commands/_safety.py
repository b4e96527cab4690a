"""What a command may do: its envelope, its rate limit, whether it is high risk.

A ``CommandSpec`` joins the DTDL Command (name, request schema and unit) with
the telemetry that confirms it and a safety table (``command-safety.toml``
beside the plant models): the envelope is the confirming telemetry's
``ExpectedRange`` unless the table narrows it. DTDL v3 has no place for a rate
limit or a risk class on a Command, and the twinmesh extension has no Command
co-type yet, so those live in the table, keyed by model and command — never by
asset. Every refusal is a sentence a plant engineer can act on.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..dtdl import ModelRegistry, PrimitiveSchema, Telemetry, unit_symbol
from ._record import CommandError

__all__ = ["CommandSpec", "check_request", "load_specs"]

_ROOT = Path(__file__).resolve().parent.parent.parent
SAFETY_FILE = _ROOT / "adapters" / "synthetic" / "command-safety.toml"
if not SAFETY_FILE.is_file():
    SAFETY_FILE = _ROOT / "plant-adapters" / "synthetic" / "command-safety.toml"

_KEYS = {
    "command",
    "confirm",
    "tolerance",
    "minimum",
    "maximum",
    "max_rate",
    "high_risk",
    "high_risk_above",
    "confirm_timeout",
    "divergence_grace",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandSpec:
    model: str
    name: str
    label: str
    unit: str
    confirm: str
    minimum: float
    maximum: float
    max_rate: float | None
    tolerance: float
    high_risk: bool = False
    high_risk_above: float | None = None
    confirm_timeout: float = 10.0
    divergence_grace: float = 3.0

    def is_high_risk(self, value: float) -> bool:
        return self.high_risk or (self.high_risk_above is not None and value > self.high_risk_above)


def check_request(
    spec: CommandSpec, value: float, *, reported: float | None, ramp_s: float
) -> None:
    """Refuse (``CommandError``) a value outside the envelope or a change too fast."""
    if not math.isfinite(value):
        raise CommandError(f"{spec.name}: the value must be a finite number")
    if not spec.minimum <= value <= spec.maximum:
        raise CommandError(
            f"{spec.name} {value:g} {spec.unit} is outside the safe envelope "
            f"{spec.minimum:g}..{spec.maximum:g} {spec.unit}"
        )
    if spec.max_rate is not None and reported is not None:
        change = abs(value - reported)
        rate = math.inf if ramp_s <= 0 else change / ramp_s
        if change > spec.tolerance and rate > spec.max_rate:
            raise CommandError(
                f"{spec.name}: going from {reported:g} to {value:g} {spec.unit} in "
                f"{ramp_s:g} s is {rate:.0f} {spec.unit}/s; the limit is "
                f"{spec.max_rate:g} {spec.unit}/s (allow at least "
                f"{change / spec.max_rate:.1f} s)"
            )


def _num(table: dict[str, Any], key: str, where: str, default: Any = None) -> Any:
    value = table.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise CommandError(f"{where}.{key}: expected a number, found {value!r}")
    return float(value)


def load_specs(
    registry: ModelRegistry, path: Path = SAFETY_FILE
) -> dict[tuple[str, str], CommandSpec]:
    """Every (model, command) the safety table covers and the model defines."""
    try:
        raw = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise CommandError(f"{path}: {exc}") from None
    specs: dict[tuple[str, str], CommandSpec] = {}
    for model, entries in raw.items():
        if not isinstance(entries, list):
            raise CommandError(f'{path}: [["{model}"]] must be an array of tables')
        iface = registry.models.get(model)
        if iface is None:
            continue  # a model this node does not know
        for i, t in enumerate(entries):
            where = f"{path.name}: {model}[{i}]"
            unknown = set(t) - _KEYS
            if unknown:
                raise CommandError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
            name = t.get("command")
            command = next((c for c in iface.commands if c.name == name), None)
            if command is None:
                raise CommandError(f"{where}: model has no command {name!r}")
            confirm = t.get("confirm")
            telemetry = next(
                (c for c in iface.all_contents if isinstance(c, Telemetry) and c.name == confirm),
                None,
            )
            if telemetry is None:
                raise CommandError(f"{where}: model has no telemetry {confirm!r} to confirm with")
            request = command.request
            if request is None or not (
                isinstance(request.schema, PrimitiveSchema)
                and request.schema.name in ("double", "float", "integer", "long")
            ):
                raise CommandError(f"{where}: only commands with a numeric request are supported")
            rng = telemetry.expected_range
            low = _num(t, "minimum", where, rng.minimum if rng else None)
            high = _num(t, "maximum", where, rng.maximum if rng else None)
            if low is None or high is None or high < low:
                raise CommandError(f"{where}: the envelope needs minimum <= maximum")
            specs[(model, command.name)] = CommandSpec(
                model=model,
                name=command.name,
                label=command.display_name.text or command.name,
                unit=unit_symbol(telemetry) or "",
                confirm=telemetry.name,
                minimum=low,
                maximum=high,
                max_rate=_num(t, "max_rate", where),
                tolerance=_num(t, "tolerance", where, 0.0),
                high_risk=bool(t.get("high_risk", False)),
                high_risk_above=_num(t, "high_risk_above", where),
                confirm_timeout=_num(t, "confirm_timeout", where, 10.0),
                divergence_grace=_num(t, "divergence_grace", where, 3.0),
            )
    return specs
