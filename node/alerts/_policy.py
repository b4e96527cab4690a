"""Alert policy: versioned, replicated shared state, one document per fleet.

The policy lives in a fleet-wide entity ``_policy/alerts`` (model
:data:`POLICY_MODEL`) whose ``document`` field is a shared register holding
the policy's JSON. It replicates like any other shared setting: a write at
central reaches every plant; two concurrent edits become a conflict in the
review queue, with the latest as the provisional value. Every alert event
records the policy version it was raised under.

A policy has per-class rules (``"*"`` is the default; a class is a model
DTMI): severity ``bands`` (score -> severity), hysteresis (``raise`` /
``clear`` levels, each held for ``raise_frames`` / ``clear_frames`` frames),
the suppression window (``suppress_seconds``: a condition returning within it
reopens the same alert), ``sensor_max`` (the highest severity a sensor fault
gets: a transmitter is not an emergency), ``work_order_at`` (the severity at
which a machine alert drafts a work order), ``runbook`` (a URL template with
``{label}``), and ``routing`` rules (first match on plant, class and
criticality names the owner).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from twinmesh.crdt import EntitySchema, FieldKind, FieldSpec, Policy, ValueType

__all__ = [
    "DEFAULT_POLICY",
    "POLICY_ENTITY",
    "POLICY_MODEL",
    "POLICY_SCHEMA",
    "SEVERITIES",
    "AlertPolicy",
    "ClassRules",
    "PolicyError",
    "parse_policy",
]

POLICY_MODEL = "dtmi:twinmesh:fleet:AlertPolicy;1"
POLICY_ENTITY = "_policy/alerts"
POLICY_SCHEMA = EntitySchema(
    model=POLICY_MODEL,
    fields={
        "document": FieldSpec(
            kind=FieldKind.SHARED,
            value_type=ValueType.STRING,
            policy=Policy.LATEST,
            description="the alert policy as JSON (versioned)",
        )
    },
)
SEVERITIES = ("info", "warning", "high", "critical")


class PolicyError(ValueError):
    """A policy document is wrong; the message names the key path."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ClassRules:
    raise_level: float = 1.0
    clear_level: float = 0.5
    raise_frames: int = 3
    clear_frames: int = 20
    bands: tuple[tuple[float, str], ...] = ((1.0, "warning"), (2.0, "high"), (4.0, "critical"))
    sensor_max: str = "warning"
    suppress_seconds: float = 300.0
    work_order_at: str = "high"
    runbook: str = "https://runbooks.twinmesh.example/{label}"

    def severity(self, score: float, kind: str) -> str:
        sev = "info"
        for level, name in self.bands:
            if score >= level:
                sev = name
        if kind == "sensor" and SEVERITIES.index(sev) > SEVERITIES.index(self.sensor_max):
            sev = self.sensor_max
        return sev


_CLASS_KEYS = {
    "raise": "raise_level",
    "clear": "clear_level",
    "raise_frames": "raise_frames",
    "clear_frames": "clear_frames",
    "bands": "bands",
    "sensor_max": "sensor_max",
    "suppress_seconds": "suppress_seconds",
    "work_order_at": "work_order_at",
    "runbook": "runbook",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertPolicy:
    version: int
    classes: Mapping[str, ClassRules]
    routing: tuple[Mapping[str, str], ...]
    document: str

    def rules(self, model: str) -> ClassRules:
        return self.classes.get(model) or self.classes.get("*") or ClassRules()

    def owner(self, *, plant: str, model: str, criticality: str = "normal") -> str:
        for rule in self.routing:
            if all(
                rule.get(k, "*") in ("*", v)
                for k, v in (("plant", plant), ("class", model), ("criticality", criticality))
            ):
                return rule.get("owner", "maintenance")
        return "maintenance"


def _num(v: Any, where: str, *, integer: bool = False) -> Any:
    if (
        isinstance(v, bool)
        or not isinstance(v, int | float)
        or (integer and not isinstance(v, int))
    ):
        raise PolicyError(f"{where}: expected {'an integer' if integer else 'a number'}, got {v!r}")
    return v


def _class(raw: Any, where: str) -> ClassRules:
    if not isinstance(raw, dict):
        raise PolicyError(f"{where}: expected an object")
    unknown = sorted(set(raw) - set(_CLASS_KEYS))
    if unknown:
        raise PolicyError(f"{where}.{unknown[0]}: unknown key (known: {', '.join(_CLASS_KEYS)})")
    kw: dict[str, Any] = {}
    for key, attr in _CLASS_KEYS.items():
        if key not in raw:
            continue
        v = raw[key]
        w = f"{where}.{key}"
        if key in ("raise", "clear", "suppress_seconds"):
            kw[attr] = float(_num(v, w))
        elif key in ("raise_frames", "clear_frames"):
            n = _num(v, w, integer=True)
            if not 1 <= n <= 100000:
                raise PolicyError(f"{w}: expected 1..100000, got {n}")
            kw[attr] = n
        elif key == "bands":
            if not isinstance(v, list) or not v:
                raise PolicyError(f"{w}: expected a non-empty list of [score, severity]")
            bands = []
            for i, b in enumerate(v):
                if not (isinstance(b, list) and len(b) == 2 and b[1] in SEVERITIES):
                    raise PolicyError(f"{w}[{i}]: expected [score, one of {list(SEVERITIES)}]")
                bands.append((float(_num(b[0], f"{w}[{i}][0]")), str(b[1])))
            if [b[0] for b in bands] != sorted(b[0] for b in bands):
                raise PolicyError(f"{w}: bands must be in increasing score order")
            kw[attr] = tuple(bands)
        elif key in ("sensor_max", "work_order_at"):
            if v not in SEVERITIES:
                raise PolicyError(f"{w}: expected one of {list(SEVERITIES)}, got {v!r}")
            kw[attr] = v
        else:
            if not isinstance(v, str) or len(v) > 512:
                raise PolicyError(f"{w}: expected a string of at most 512 characters")
            kw[attr] = v
    rules = ClassRules(**kw)
    if rules.clear_level > rules.raise_level:
        raise PolicyError(
            f"{where}: clear ({rules.clear_level}) must not exceed raise"
            f" ({rules.raise_level}): hysteresis clears lower than it raises"
        )
    return rules


def parse_policy(doc: Any) -> AlertPolicy:
    """A policy from its JSON text or decoded object; :class:`PolicyError` names the key."""
    if isinstance(doc, str):
        try:
            raw = json.loads(doc)
        except json.JSONDecodeError as exc:
            raise PolicyError(f"policy: not JSON: {exc}") from None
    else:
        raw = doc
    if not isinstance(raw, dict):
        raise PolicyError("policy: expected an object")
    unknown = sorted(set(raw) - {"version", "classes", "routing"})
    if unknown:
        raise PolicyError(f"policy.{unknown[0]}: unknown key")
    version = _num(raw.get("version"), "policy.version", integer=True)
    if version < 1:
        raise PolicyError("policy.version: expected >= 1")
    classes_raw = raw.get("classes", {"*": {}})
    if not isinstance(classes_raw, dict):
        raise PolicyError("policy.classes: expected an object of class -> rules")
    classes = {str(k): _class(v, f"policy.classes[{k!r}]") for k, v in classes_raw.items()}
    routing_raw = raw.get("routing", [])
    if not isinstance(routing_raw, list):
        raise PolicyError("policy.routing: expected a list")
    routing = []
    for i, r in enumerate(routing_raw):
        if not isinstance(r, dict) or not all(
            k in ("plant", "class", "criticality", "owner") and isinstance(v, str)
            for k, v in r.items()
        ):
            raise PolicyError(
                f"policy.routing[{i}]: expected an object of plant/class/criticality/owner strings"
            )
        routing.append(dict(r))
    canonical = json.dumps(raw, sort_keys=True, separators=(",", ":"))
    return AlertPolicy(version=version, classes=classes, routing=tuple(routing), document=canonical)


DEFAULT_POLICY = parse_policy(
    {
        "version": 1,
        "classes": {"*": {}},
        "routing": [{"class": "*", "owner": "maintenance"}],
    }
)
