"""Language extensions this parser understands, and the twinmesh extension itself.

DTDL v3 adds vocabulary through *language extensions*: a model lists the
extension's context DTMI in ``@context`` after ``dtmi:dtdl:context;3`` and may
then co-type elements with the extension's *adjunct types*, which bring their
own properties (DTDL.Extensions.md). We understand:

* QuantitativeTypes v1 (semantic types with ``unit``; see ``_units``),
* Historization v1 (``Historized``), Annotation v1 (``ValueAnnotation`` with
  ``annotates``), Streaming v1 (``Streaming``, never writable),
* twinmesh v1, ``dtmi:twinmesh:extension;1`` (docs/dtdl-extension.md):
  one *kind* co-type per Property chooses its CRDT (``Shared``, ``Reported``,
  ``Label``, ``Set``, ``Counter``, ``Text``, ``Log``); ``Shared`` takes
  ``mergePolicy`` and, for ``stricter``, ``strictness`` or
  ``strictnessOrder``; ``ExpectedRange`` adds ``minValue``/``maxValue`` to a
  numeric Telemetry or Property for data-quality range checks, and
  ``unitSymbol`` for units QuantitativeTypes cannot name (``mm/s``);
  ``Setpoint`` on a Command makes it a setpoint the home plant writes and the
  machine's telemetry confirms, and carries its safety: ``confirmedBy``,
  ``tolerance``, the envelope ``minValue``/``maxValue``, ``maxRate``,
  ``highRisk``/``highRiskAbove``, ``confirmTimeout``, ``divergenceGrace``.
  DTDL v3 lets an extension's adjunct types co-type a Command (the DTDL Mqtt
  extension's ``Idempotent`` does), so the model is the one place that says
  what a command may do. ``AlarmLimit`` on a writable numeric Property makes
  its value a limit on a Telemetry (``limits``, ``direction``,
  ``hysteresis``, ``severity``) that the home plant alerts on.

A context we do not recognise is not an error: per DTDL.Extensions.md a tool
ignores extensions it does not know, so the parser then tolerates unknown
co-types, and unknown properties on elements that carry one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from twinmesh.crdt._schema import FieldKind, Policy

from ._errors import MISSING, Path, Reporter, show
from ._model import (
    AlarmLimitAnnotation,
    ArraySchema,
    EnumSchema,
    ExpectedRange,
    PrimitiveSchema,
    Schema,
    SetpointAnnotation,
    TwinmeshAnnotation,
    describe_schema,
)
from ._units import (
    NUMERIC_SCHEMAS,
    QUANTITATIVE_TYPES_CONTEXT,
    SEMANTIC_TYPE_HOSTS,
    SEMANTIC_TYPES,
    UNIT_SYMBOLS,
)

__all__ = [
    "ADJUNCT_TYPES",
    "ALARM_LIMIT_PROPERTIES",
    "ANNOTATION_CONTEXT",
    "DTDL_V3_CONTEXT",
    "HISTORIZATION_CONTEXT",
    "KIND_CO_TYPES",
    "KNOWN_CONTEXTS",
    "SETPOINT_PROPERTIES",
    "STREAMING_CONTEXT",
    "TWINMESH_CONTEXT",
    "AdjunctType",
    "check_alarm_limit",
    "check_expected_range",
    "check_setpoint",
    "check_twinmesh_kind",
]

DTDL_V3_CONTEXT = "dtmi:dtdl:context;3"
HISTORIZATION_CONTEXT = "dtmi:dtdl:extension:historization;1"
ANNOTATION_CONTEXT = "dtmi:dtdl:extension:annotation;1"
STREAMING_CONTEXT = "dtmi:dtdl:extension:streaming;1"
TWINMESH_CONTEXT = "dtmi:twinmesh:extension;1"

KNOWN_CONTEXTS = frozenset(
    {
        DTDL_V3_CONTEXT,
        QUANTITATIVE_TYPES_CONTEXT,
        HISTORIZATION_CONTEXT,
        ANNOTATION_CONTEXT,
        STREAMING_CONTEXT,
        TWINMESH_CONTEXT,
    }
)


@dataclass(frozen=True, slots=True, kw_only=True)
class AdjunctType:
    """A co-type from an extension: where it may go and what properties it adds."""

    name: str
    context: str
    hosts: frozenset[str]
    properties: frozenset[str] = frozenset()
    required: frozenset[str] = frozenset()


#: twinmesh kind co-type -> the CRDT it selects.
KIND_CO_TYPES: Mapping[str, FieldKind] = MappingProxyType(
    {
        "Shared": FieldKind.SHARED,
        "Reported": FieldKind.REPORTED,
        "Label": FieldKind.LABEL,
        "Set": FieldKind.SET,
        "Counter": FieldKind.COUNTER,
        "Text": FieldKind.TEXT,
        "Log": FieldKind.LOG,
    }
)

_PROPERTY = frozenset({"Property"})
_PROPERTY_OR_TELEMETRY = frozenset({"Property", "Telemetry"})


def _adjuncts() -> dict[str, AdjunctType]:
    table: dict[str, AdjunctType] = {}
    for name in SEMANTIC_TYPES:
        table[name] = AdjunctType(
            name=name,
            context=QUANTITATIVE_TYPES_CONTEXT,
            hosts=SEMANTIC_TYPE_HOSTS,
            properties=frozenset({"unit"}),
            required=frozenset({"unit"}),
        )
    table["Historized"] = AdjunctType(
        name="Historized", context=HISTORIZATION_CONTEXT, hosts=_PROPERTY_OR_TELEMETRY
    )
    table["ValueAnnotation"] = AdjunctType(
        name="ValueAnnotation",
        context=ANNOTATION_CONTEXT,
        hosts=_PROPERTY_OR_TELEMETRY,
        properties=frozenset({"annotates"}),
        required=frozenset({"annotates"}),
    )
    table["Streaming"] = AdjunctType(name="Streaming", context=STREAMING_CONTEXT, hosts=_PROPERTY)
    for name in KIND_CO_TYPES:
        extra = frozenset({"mergePolicy", "strictness", "strictnessOrder"})
        table[name] = AdjunctType(
            name=name,
            context=TWINMESH_CONTEXT,
            hosts=_PROPERTY,
            properties=extra if name == "Shared" else frozenset(),
        )
    table["ExpectedRange"] = AdjunctType(
        name="ExpectedRange",
        context=TWINMESH_CONTEXT,
        hosts=_PROPERTY_OR_TELEMETRY,
        properties=frozenset({"minValue", "maxValue", "unitSymbol"}),
    )
    table["Setpoint"] = AdjunctType(
        name="Setpoint",
        context=TWINMESH_CONTEXT,
        hosts=frozenset({"Command"}),
        properties=SETPOINT_PROPERTIES,
        required=frozenset({"confirmedBy"}),
    )
    table["AlarmLimit"] = AdjunctType(
        name="AlarmLimit",
        context=TWINMESH_CONTEXT,
        hosts=frozenset({"Property"}),
        properties=ALARM_LIMIT_PROPERTIES,
        required=frozenset({"limits"}),
    )
    return table


#: Setpoint property -> (SetpointAnnotation field, kind): "number" >= 0 unless an
#: envelope bound, "bool", or "name" (a Telemetry of the same Interface).
_SETPOINT_KEYS: Mapping[str, tuple[str, str]] = MappingProxyType(
    {
        "confirmedBy": ("confirmed_by", "name"),
        "tolerance": ("tolerance", "number"),
        "minValue": ("minimum", "bound"),
        "maxValue": ("maximum", "bound"),
        "maxRate": ("max_rate", "positive"),
        "highRisk": ("high_risk", "bool"),
        "highRiskAbove": ("high_risk_above", "bound"),
        "confirmTimeout": ("confirm_timeout", "positive"),
        "divergenceGrace": ("divergence_grace", "number"),
    }
)
SETPOINT_PROPERTIES = frozenset(_SETPOINT_KEYS)
ALARM_LIMIT_PROPERTIES = frozenset({"limits", "direction", "hysteresis", "severity"})
_DIRECTIONS = ("above", "below")
_SEVERITIES = ("warning", "high")


ADJUNCT_TYPES: Mapping[str, AdjunctType] = MappingProxyType(_adjuncts())

_POLICIES = {p.value: p for p in Policy}

_MAX_SYMBOL_LENGTH = 32

#: Reports one error below the element: (sub-path, rule, expected, found, what).
_Report = Callable[[Path, str, str, str, str], None]
_ORDERED_PRIMITIVES = NUMERIC_SCHEMAS | {"date", "dateTime", "time"}


def _is_primitive(schema: Schema | None, names: frozenset[str]) -> bool:
    return isinstance(schema, PrimitiveSchema) and schema.name in names


def check_twinmesh_kind(
    obj: Mapping[str, Any],
    *,
    kinds: list[str],
    schema: Schema | None,
    writable: bool,
    in_relationship: bool,
    path: Path,
    report: Reporter,
    source: str,
) -> TwinmeshAnnotation | None:
    """Validate the twinmesh kind co-type of a Property and build its annotation."""

    def err(sub: Path, rule: str, expected: str, found: str, what: str) -> None:
        report.error(path + sub, rule, expected=expected, found=found, what=what, source=source)

    if in_relationship:
        err(
            ("@type",),
            "twinmesh.placement",
            "a twinmesh kind only on a Property in an Interface's contents",
            f"{kinds} on a Relationship property",
            "relationship properties are not replicated twin fields",
        )
        return None
    if len(kinds) > 1:
        err(
            ("@type",),
            "twinmesh.kind",
            "at most one of " + ", ".join(KIND_CO_TYPES),
            show(kinds),
            "a Property has one CRDT kind",
        )
        return None
    kind = KIND_CO_TYPES[kinds[0]]
    ok = True
    # Reported state is written only at home; anything else is written by any node,
    # which is what DTDL's ``writable`` says (DTDL.v3.md, "Property").
    if kind is FieldKind.REPORTED and writable:
        err(
            ("writable",),
            "twinmesh.writable",
            "writable false (or absent) for a Reported property",
            "true",
            "reported state is written only by the asset's home node",
        )
        ok = False
    elif kind is not FieldKind.REPORTED and not writable:
        err(
            ("writable",),
            "twinmesh.writable",
            f"writable true for a {kinds[0]} property",
            "false" if "writable" in obj else MISSING,
            f"a {kinds[0]} property is written by any node",
        )
        ok = False
    ok = _check_kind_schema(kind, schema, err) and ok

    policy: Policy | None = None
    strictness: str | None = None
    order: tuple[str, ...] = ()
    if kind is FieldKind.SHARED:
        policy, strictness, order, policy_ok = _check_policy(obj, schema, err)
        ok = ok and policy_ok
    if not ok:
        return None
    return TwinmeshAnnotation(
        kind=kind, policy=policy, strictness=strictness, strictness_order=order
    )


def _check_kind_schema(kind: FieldKind, schema: Schema | None, err: _Report) -> bool:
    if schema is None:
        return False
    if kind is FieldKind.TEXT and not _is_primitive(schema, frozenset({"string"})):
        err(
            ("schema",),
            "twinmesh.schema",
            "'string' for a Text property",
            describe_schema(schema),
            "collaborative text holds a string",
        )
        return False
    if kind is FieldKind.COUNTER and not _is_primitive(schema, frozenset({"integer", "long"})):
        err(
            ("schema",),
            "twinmesh.schema",
            "'integer' or 'long' for a Counter property",
            describe_schema(schema),
            "a PN-counter holds an integer",
        )
        return False
    if kind is FieldKind.SET:
        element = schema.element_schema if isinstance(schema, ArraySchema) else None
        if not isinstance(element, PrimitiveSchema | EnumSchema):
            err(
                ("schema",),
                "twinmesh.schema",
                "an Array of a primitive or Enum schema for a Set property",
                describe_schema(schema)
                if element is None
                else f"an Array of {describe_schema(element)}",
                "an add-wins set holds plain, comparable elements",
            )
            return False
    return True


def _check_policy(
    obj: Mapping[str, Any], schema: Schema | None, err: _Report
) -> tuple[Policy | None, str | None, tuple[str, ...], bool]:
    raw = obj.get("mergePolicy", Policy.LATEST.value)
    policy = _POLICIES.get(raw) if isinstance(raw, str) else None
    if policy is None:
        err(
            ("mergePolicy",),
            "twinmesh.policy",
            "one of " + ", ".join(_POLICIES),
            show(raw),
            "unknown merge policy",
        )
        return None, None, (), False
    strictness = obj.get("strictness")
    order_raw = obj.get("strictnessOrder")
    ok = True
    if policy is not Policy.STRICTER:
        for key in ("strictness", "strictnessOrder"):
            if key in obj:
                err(
                    (key,),
                    "twinmesh.strictness",
                    f"{key} only with mergePolicy 'stricter'",
                    f"mergePolicy {policy.value!r}",
                    f"{key} has no meaning here",
                )
                ok = False
        if policy in (Policy.MAX, Policy.MIN) and not _is_primitive(schema, _ORDERED_PRIMITIVES):
            err(
                ("schema",),
                "twinmesh.policy-schema",
                f"a numeric, date, dateTime or time schema for mergePolicy {policy.value!r}",
                describe_schema(schema),
                "max/min need ordered values",
            )
            ok = False
        return policy, None, (), ok

    if _is_primitive(schema, NUMERIC_SCHEMAS):
        if "strictnessOrder" in obj:
            err(
                ("strictnessOrder",),
                "twinmesh.strictness",
                "strictnessOrder only for an Enum schema",
                "a numeric schema",
                "numbers are ordered by 'strictness'",
            )
            ok = False
        if strictness not in ("lower", "higher"):
            err(
                ("strictness",),
                "twinmesh.strictness",
                "'lower' or 'higher'",
                MISSING if strictness is None else show(strictness),
                "a numeric 'stricter' field must say which direction is stricter",
            )
            ok = False
        return policy, strictness if ok else None, (), ok

    if isinstance(schema, EnumSchema) and schema.value_schema == "string" and schema.enum_values:
        if "strictness" in obj:
            err(
                ("strictness",),
                "twinmesh.strictness",
                "strictnessOrder for an Enum schema",
                show(strictness),
                "an enum is ordered by 'strictnessOrder'",
            )
            ok = False
        values = [str(v.value) for v in schema.enum_values]
        if order_raw is None:
            return policy, None, tuple(values), ok  # declaration order, least strict first
        if (
            not isinstance(order_raw, list)
            or not all(isinstance(v, str) for v in order_raw)
            or sorted(order_raw) != sorted(values)
        ):
            err(
                ("strictnessOrder",),
                "twinmesh.strictness",
                f"every enum value exactly once, least strict first: {values}",
                show(order_raw),
                "strictnessOrder must order the enum's values",
            )
            return policy, None, (), False
        return policy, None, tuple(order_raw), ok

    err(
        ("schema",),
        "twinmesh.policy-schema",
        "a numeric schema or a non-empty string Enum for mergePolicy 'stricter'",
        describe_schema(schema),
        "'stricter' needs an order of strictness",
    )
    return policy, None, (), False


def check_expected_range(
    obj: Mapping[str, Any],
    *,
    schema: Schema | None,
    unit: str | None,
    path: Path,
    report: Reporter,
    source: str,
) -> ExpectedRange | None:
    """Validate ``ExpectedRange`` (``minValue``, ``maxValue``, ``unitSymbol``) on a
    numeric element whose QuantitativeTypes ``unit`` (if any) is ``unit``."""
    ok = True
    symbol = obj.get("unitSymbol")
    if symbol is not None:
        known = UNIT_SYMBOLS.get(unit) if unit else None
        if not isinstance(symbol, str) or not 0 < len(symbol) <= _MAX_SYMBOL_LENGTH:
            expected = f"a unit symbol of 1 to {_MAX_SYMBOL_LENGTH} characters"
            what = "unitSymbol of an expected range"
        elif known is not None and symbol != known:
            expected, what = repr(known), f"unitSymbol disagrees with unit {unit!r}"
        else:
            expected = ""
        if expected:
            report.error(
                (*path, "unitSymbol"),
                "twinmesh.range",
                expected=expected,
                found=show(symbol),
                what=what,
                source=source,
            )
            ok = False
    bounds: dict[str, float | None] = {}
    for key in ("minValue", "maxValue"):
        value = obj.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            report.error(
                (*path, key),
                "twinmesh.range",
                expected="a number",
                found=show(value),
                what=f"{key} of an expected range",
                source=source,
            )
            ok = False
            value = None
        bounds[key] = value
    low, high = bounds["minValue"], bounds["maxValue"]
    if ok and low is None and high is None:
        report.error(
            (*path, "@type"),
            "twinmesh.range",
            expected="minValue and/or maxValue",
            found=MISSING,
            what="ExpectedRange without bounds",
            source=source,
        )
        ok = False
    if low is not None and high is not None and low > high:
        report.error(
            (*path, "maxValue"),
            "twinmesh.range",
            expected=f"maxValue >= minValue ({low})",
            found=show(high),
            what="empty expected range",
            source=source,
        )
        ok = False
    if schema is not None and not _is_primitive(schema, NUMERIC_SCHEMAS):
        report.error(
            (*path, "schema"),
            "twinmesh.range",
            expected="a numeric schema (double, float, integer, long)",
            found=describe_schema(schema),
            what="ExpectedRange on a non-numeric value",
            source=source,
        )
        ok = False
    if not ok:
        return None
    return ExpectedRange(minimum=low, maximum=high, unit_symbol=symbol)


def check_setpoint(
    obj: Mapping[str, Any],
    *,
    request: Schema | None,
    path: Path,
    report: Reporter,
    source: str,
) -> SetpointAnnotation | None:
    """Validate a Command's ``Setpoint`` properties (types and ranges; that
    ``confirmedBy`` names a numeric Telemetry is the linker's check, since the
    Telemetry may be inherited)."""
    ok = True
    values: dict[str, Any] = {}

    def err(key: str, expected: str, found: Any, what: str) -> None:
        nonlocal ok
        ok = False
        report.error(
            (*path, key),
            "twinmesh.setpoint",
            expected=expected,
            found=show(found),
            what=what,
            source=source,
        )

    for key, (field_name, kind) in _SETPOINT_KEYS.items():
        if key not in obj:
            continue
        value = obj[key]
        if kind == "name":
            if not isinstance(value, str) or not value:
                err(key, "the name of a Telemetry", value, "what confirms the command")
                continue
        elif kind == "bool":
            if not isinstance(value, bool):
                err(key, "true or false", value, key)
                continue
        else:
            if isinstance(value, bool) or not isinstance(value, int | float):
                err(key, "a number", value, key)
                continue
            if kind == "number" and value < 0:
                err(key, "a number >= 0", value, key)
                continue
            if kind == "positive" and value <= 0:
                err(key, "a number > 0", value, key)
                continue
            value = float(value)
        values[field_name] = value
    low, high = values.get("minimum"), values.get("maximum")
    if low is not None and high is not None and low > high:
        err("maxValue", f"maxValue >= minValue ({low:g})", high, "empty safe envelope")
    if not _is_primitive(request, NUMERIC_SCHEMAS):
        report.error(
            (*path, "request"),
            "twinmesh.setpoint",
            expected="a request with a numeric schema (double, float, integer, long)",
            found=describe_schema(request) if request is not None else MISSING,
            what="a Setpoint command sets a number",
            source=source,
        )
        ok = False
    if not ok or "confirmed_by" not in values:
        return None
    return SetpointAnnotation(**values)


def check_alarm_limit(
    obj: Mapping[str, Any],
    *,
    schema: Schema | None,
    writable: bool,
    path: Path,
    report: Reporter,
    source: str,
) -> AlarmLimitAnnotation | None:
    """Validate a Property's ``AlarmLimit`` properties (that ``limits`` names a
    numeric Telemetry of the Interface is the linker's check: it may be
    inherited)."""
    ok = True

    def err(key: str, expected: str, found: Any, what: str) -> None:
        nonlocal ok
        ok = False
        report.error(
            (*path, key),
            "twinmesh.alarm-limit",
            expected=expected,
            found=show(found),
            what=what,
            source=source,
        )

    limits = obj.get("limits")
    if not isinstance(limits, str) or not limits:
        err("limits", "the name of a Telemetry", limits, "what the limit applies to")
    direction = obj.get("direction", "above")
    if direction not in _DIRECTIONS:
        err("direction", '"above" or "below"', direction, "which side of the limit alarms")
    severity = obj.get("severity", "warning")
    if severity not in _SEVERITIES:
        err("severity", '"warning" or "high"', severity, "the alert's severity")
    hysteresis = obj.get("hysteresis", 0.0)
    if isinstance(hysteresis, bool) or not isinstance(hysteresis, int | float) or hysteresis < 0:
        err("hysteresis", "a number >= 0", hysteresis, "how far back a reading must come")
    if not writable:
        err("writable", "true", writable, "a limit is set by people, so it is writable")
    if not _is_primitive(schema, NUMERIC_SCHEMAS):
        err(
            "schema",
            "a numeric schema (double, float, integer, long)",
            describe_schema(schema) if schema is not None else MISSING,
            "a limit is a number",
        )
    if not ok:
        return None
    return AlarmLimitAnnotation(
        limits=str(limits),
        direction=str(direction),
        hysteresis=float(hysteresis),
        severity=str(severity),
    )
