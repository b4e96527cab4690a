"""Limit rules from the models, and the open/clear decision (pure).

A writable Property co-typed ``AlarmLimit`` (docs/dtdl-extension.md) holds a
limit on one Telemetry of its Interface. Its value is shared state: anyone with
the operator role sets it anywhere in the fleet, it replicates like any other
shared field, and under concurrent edits its merge policy's provisional value
holds (``stricter`` for the shipped models: a split never loosens an alarm).
The home plant checks its own readings against the value it holds now, so the
check goes on through a WAN outage with the last limit it heard of.

Hysteresis (ISA-18.2's *deadband*): an alert opens on the first good reading
beyond the limit and clears on the first one back inside it by ``hysteresis``,
so a reading that hovers at the limit does not open and clear on every sample.
A limit that is removed (unset) clears its open alert.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from ..dtdl import ModelRegistry, Property, Telemetry
from ..dtdl._mapping import unit_symbol

__all__ = ["LimitRule", "LimitTracker", "Transition", "load_rules"]


@dataclass(frozen=True, slots=True, kw_only=True)
class LimitRule:
    model: str
    prop: str  # the Property holding the limit
    telemetry: str  # the Telemetry it limits
    direction: str  # "above" | "below"
    hysteresis: float
    severity: str
    unit: str
    label: str  # the Property's display name

    @property
    def key(self) -> str:
        return f"limit:{self.prop}"

    def beyond(self, value: float, limit: float) -> bool:
        return value > limit if self.direction == "above" else value < limit

    def back(self, value: float, limit: float) -> bool:
        if self.direction == "above":
            return value <= limit - self.hysteresis
        return value >= limit + self.hysteresis

    def describe(self, limit: float) -> str:
        sign = ">" if self.direction == "above" else "<"
        return f"{self.telemetry} {sign} {limit:g} {self.unit}".rstrip()


def load_rules(registry: ModelRegistry) -> dict[tuple[str, str], list[LimitRule]]:
    """(model, telemetry) -> the limits on it, for every model (inherited
    Properties count for each model that inherits them). The validator has
    checked that ``limits`` names a numeric Telemetry and that units agree."""
    out: dict[tuple[str, str], list[LimitRule]] = {}
    for model, iface in sorted(registry.models.items()):
        telemetry = {c.name: c for c in iface.all_contents if isinstance(c, Telemetry)}
        for c in iface.all_contents:
            if not isinstance(c, Property) or c.alarm_limit is None:
                continue
            a = c.alarm_limit
            t = telemetry.get(a.limits)
            if t is None:
                continue
            rule = LimitRule(
                model=model,
                prop=c.name,
                telemetry=t.name,
                direction=a.direction,
                hysteresis=a.hysteresis,
                severity=a.severity,
                unit=unit_symbol(t) or "",
                label=c.display_name.text or c.name,
            )
            out.setdefault((model, t.name), []).append(rule)
    return out


class Transition(enum.Enum):
    OPEN = "open"
    CLEAR = "clear"


@dataclass(slots=True)
class LimitTracker:
    """Which (entity, limit Property) alerts are open, and when they turn."""

    open: dict[tuple[str, str], str] = field(default_factory=dict)  # -> alert id

    def observe(
        self, entity: str, rule: LimitRule, value: float, limit: float | None
    ) -> Transition | None:
        k = (entity, rule.prop)
        if k in self.open:
            if limit is None or rule.back(value, limit):
                return Transition.CLEAR
            return None
        if limit is not None and rule.beyond(value, limit):
            return Transition.OPEN
        return None

    def restore(self, opened: Mapping[tuple[str, str], str]) -> None:
        self.open.update(opened)
