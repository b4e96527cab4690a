"""What a command may do: its envelope, its rate limit, whether it is high risk.

A ``CommandSpec`` is read from the model and nowhere else: a DTDL Command
co-typed ``Setpoint`` (the twinmesh extension, docs/dtdl-extension.md) names
the telemetry that confirms it (``confirmedBy``) and carries its envelope
(``minValue``/``maxValue``, else the confirming telemetry's ``ExpectedRange``),
its rate limit (``maxRate``) and its risk class (``highRisk``,
``highRiskAbove``). There is deliberately no per-plant file that could widen
them: whoever audits what a command may do reads one model. Never keyed by
asset. Every refusal is a sentence a plant engineer can act on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..dtdl import ModelRegistry, Telemetry, unit_symbol
from ._record import CommandError

__all__ = ["CommandSpec", "check_request", "load_specs"]


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


def load_specs(registry: ModelRegistry) -> dict[tuple[str, str], CommandSpec]:
    """Every (model, command) whose model marks the command ``Setpoint``.

    Inherited commands count for each model that inherits them. The validator
    (parser and linker) has already checked the properties' types and that
    ``confirmedBy`` names a numeric Telemetry; what is left to refuse here is an
    envelope neither the command nor its telemetry bounds."""
    specs: dict[tuple[str, str], CommandSpec] = {}
    for model, iface in sorted(registry.models.items()):
        for command in iface.commands:
            sp = command.setpoint
            if sp is None:
                continue
            where = f"{model} command {command.name}"
            telemetry = next(
                (
                    c
                    for c in iface.all_contents
                    if isinstance(c, Telemetry) and c.name == sp.confirmed_by
                ),
                None,
            )
            if telemetry is None:
                raise CommandError(f"{where}: no telemetry {sp.confirmed_by!r} confirms it")
            rng = telemetry.expected_range
            low = sp.minimum if sp.minimum is not None else (rng.minimum if rng else None)
            high = sp.maximum if sp.maximum is not None else (rng.maximum if rng else None)
            if low is None or high is None or high < low:
                raise CommandError(
                    f"{where}: the envelope needs minValue <= maxValue (on the command or "
                    f"the ExpectedRange of {telemetry.name})"
                )
            specs[(model, command.name)] = CommandSpec(
                model=model,
                name=command.name,
                label=command.display_name.text or command.name,
                unit=unit_symbol(telemetry) or "",
                confirm=telemetry.name,
                minimum=float(low),
                maximum=float(high),
                max_rate=sp.max_rate,
                tolerance=sp.tolerance,
                high_risk=sp.high_risk,
                high_risk_above=sp.high_risk_above,
                confirm_timeout=sp.confirm_timeout,
                divergence_grace=sp.divergence_grace,
            )
    return specs
