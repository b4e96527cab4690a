"""The twinmesh extension and the mapping of Properties to CRDT fields."""

from __future__ import annotations

from typing import Any

import pytest

from twinmesh.crdt._errors import LocalProtocolError
from twinmesh.crdt._schema import FieldKind, Policy, ValueType
from twinmesh.node.dtdl import (
    ExpectedRange,
    Interface,
    ParseResult,
    Property,
    TwinmeshAnnotation,
    entity_schema,
    parse_model,
    unit_symbol,
)

CTX = [
    "dtmi:dtdl:context;3",
    "dtmi:dtdl:extension:quantitativeTypes;1",
    "dtmi:twinmesh:extension;1",
]
ID = "dtmi:test:Machine;1"
LIFECYCLE = {
    "@type": "Enum",
    "valueSchema": "string",
    "enumValues": [
        {"name": "inService", "enumValue": "in-service"},
        {"name": "degraded", "enumValue": "degraded"},
        {"name": "outOfService", "enumValue": "out-of-service"},
    ],
}


def model(*contents: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"@context": CTX, "@id": ID, "@type": "Interface", "contents": list(contents), **extra}


def prop(name: str, schema: Any = "double", *co_types: str, **extra: Any) -> dict[str, Any]:
    return {"@type": ["Property", *co_types], "name": name, "schema": schema, **extra}


def parsed(*contents: dict[str, Any]) -> Interface:
    result = parse_model(model(*contents))
    assert result.ok, result.errors
    return result.model(ID)


def rules(result: ParseResult) -> list[tuple[str, str]]:
    return [(e.rule, e.path) for e in result.errors]


def test_defaults_without_annotations() -> None:
    schema = entity_schema(
        parsed(
            prop("setPoint", writable=True),
            prop("serial", "string"),
            {"@type": "Telemetry", "name": "temp", "schema": "double"},
            {"@type": "Command", "name": "reboot"},
            {"@type": "Relationship", "name": "next"},
        )
    )
    assert schema.model == ID
    assert list(schema.fields) == ["setPoint", "serial"]  # Telemetry etc. are not state
    set_point, serial = schema.fields["setPoint"], schema.fields["serial"]
    assert (set_point.kind, set_point.policy) == (FieldKind.SHARED, Policy.LATEST)
    assert serial.kind is FieldKind.REPORTED


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        ("date", ValueType.DATE),
        ("dateTime", ValueType.DATETIME),
        ("integer", ValueType.INTEGER),
        ("long", ValueType.INTEGER),
        ("double", ValueType.DOUBLE),
        ("float", ValueType.DOUBLE),
        ("boolean", ValueType.BOOLEAN),
        ("string", ValueType.STRING),
        ("time", ValueType.ANY),
        ("duration", ValueType.ANY),
        ("point", ValueType.ANY),
        (LIFECYCLE, ValueType.ENUM),
        (
            {
                "@type": "Enum",
                "valueSchema": "integer",
                "enumValues": [{"name": "a", "enumValue": 1}],
            },
            ValueType.ANY,
        ),
        ({"@type": "Enum", "valueSchema": "string", "enumValues": []}, ValueType.ANY),
        ({"@type": "Array", "elementSchema": "double"}, ValueType.ANY),
        ({"@type": "Object", "fields": [{"name": "x", "schema": "double"}]}, ValueType.ANY),
    ],
)
def test_value_types(schema: Any, expected: ValueType) -> None:
    spec = entity_schema(parsed(prop("f", schema, writable=True))).fields["f"]
    assert spec.value_type is expected
    if expected is ValueType.ENUM:
        assert spec.enum_values == ("in-service", "degraded", "out-of-service")


def test_every_kind_and_policy() -> None:
    schema = entity_schema(
        parsed(
            prop("maintenance", "date", "Shared", writable=True, mergePolicy="earliest"),
            prop(
                "vibrationLimit",
                "double",
                "Shared",
                writable=True,
                mergePolicy="stricter",
                strictness="lower",
            ),
            prop(
                "minPressure",
                "double",
                "Shared",
                writable=True,
                mergePolicy="stricter",
                strictness="higher",
            ),
            prop(
                "lifecycle",
                LIFECYCLE,
                "Shared",
                writable=True,
                mergePolicy="stricter",
                strictnessOrder=["in-service", "out-of-service", "degraded"],
            ),
            prop("lifecycle2", LIFECYCLE, "Shared", writable=True, mergePolicy="stricter"),
            prop("owner", "string", "Shared", writable=True, mergePolicy="home-wins"),
            prop("peak", "double", "Shared", writable=True, mergePolicy="max"),
            prop("floor", "dateTime", "Shared", writable=True, mergePolicy="min"),
            prop("serial", "string", "Reported"),
            prop("label", "string", "Label", writable=True),
            prop("tags", {"@type": "Array", "elementSchema": "string"}, "Set", writable=True),
            prop("starts", "long", "Counter", writable=True),
            prop("notes", "string", "Text", writable=True),
            prop(
                "alerts",
                {"@type": "Object", "fields": [{"name": "msg", "schema": "string"}]},
                "Log",
                writable=True,
            ),
            prop("events", "string", "Log", writable=True),
        )
    ).fields
    assert (
        schema["maintenance"].kind,
        schema["maintenance"].policy,
        schema["maintenance"].value_type,
    ) == (FieldKind.SHARED, Policy.EARLIEST, ValueType.DATE)
    assert (schema["vibrationLimit"].policy, schema["vibrationLimit"].strictness) == (
        Policy.STRICTER,
        "lower",
    )
    assert schema["minPressure"].strictness == "higher"
    # FieldSpec lists enum values least strict first, as strictnessOrder does...
    assert schema["lifecycle"].enum_values == ("in-service", "out-of-service", "degraded")
    # ...and without strictnessOrder the declaration order is the strictness order.
    assert schema["lifecycle2"].enum_values == ("in-service", "degraded", "out-of-service")
    assert schema["owner"].policy is Policy.HOME_WINS
    assert schema["peak"].policy is Policy.MAX and schema["floor"].policy is Policy.MIN
    assert schema["serial"].kind is FieldKind.REPORTED
    assert schema["label"].kind is FieldKind.LABEL
    assert (schema["tags"].kind, schema["tags"].value_type) == (FieldKind.SET, ValueType.STRING)
    assert (schema["starts"].kind, schema["starts"].value_type) == (
        FieldKind.COUNTER,
        ValueType.INTEGER,
    )
    assert (schema["notes"].kind, schema["notes"].value_type) == (FieldKind.TEXT, ValueType.STRING)
    assert (schema["alerts"].kind, schema["alerts"].value_type) == (FieldKind.LOG, ValueType.ANY)
    assert schema["events"].value_type is ValueType.STRING  # a log's schema types one event


def test_mapped_specs_check_values() -> None:
    spec = entity_schema(
        parsed(
            prop("lifecycle", LIFECYCLE, "Shared", writable=True, mergePolicy="stricter"),
        )
    ).fields["lifecycle"]
    spec.check_value("degraded", where="m.lifecycle")
    with pytest.raises(LocalProtocolError):
        spec.check_value("broken", where="m.lifecycle")


def test_annotation_objects() -> None:
    iface = parsed(
        prop(
            "limit", "double", "Shared", writable=True, mergePolicy="stricter", strictness="lower"
        ),
        {
            "@type": ["Telemetry", "Temperature", "ExpectedRange"],
            "name": "temp",
            "schema": "double",
            "unit": "degreeCelsius",
            "minValue": -20,
            "maxValue": 180,
        },
        {
            "@type": ["Telemetry", "ExpectedRange"],
            "name": "load",
            "schema": "integer",
            "maxValue": 150,
        },
    )
    limit = iface.content("limit")
    assert isinstance(limit, Property)
    assert limit.twinmesh == TwinmeshAnnotation(
        kind=FieldKind.SHARED, policy=Policy.STRICTER, strictness="lower"
    )
    temp = iface.telemetries[0]
    assert (temp.semantic_types, temp.unit) == (("Temperature",), "degreeCelsius")
    assert temp.expected_range == ExpectedRange(minimum=-20, maximum=180)
    assert temp.expected_range.contains(25.0) and not temp.expected_range.contains(181)
    load = iface.telemetries[1].expected_range
    assert load is not None and load.minimum is None and load.contains(-5)


def test_inherited_properties_are_fields() -> None:
    base = {
        "@context": CTX,
        "@id": "dtmi:test:Base;1",
        "@type": "Interface",
        "contents": [prop("serial", "string", "Reported")],
    }
    result = parse_model([base, model(prop("speed", writable=True), extends="dtmi:test:Base;1")])
    assert result.ok, result.errors
    assert list(entity_schema(result.model(ID)).fields) == ["speed", "serial"]


def test_descriptions_carry_over() -> None:
    spec = entity_schema(parsed(prop("x", description={"de": "Drehzahl", "en": "speed"})))
    assert spec.fields["x"].description == "speed"


def test_components_need_a_resolver() -> None:
    leaf = {
        "@context": CTX,
        "@id": "dtmi:test:Leaf;1",
        "@type": "Interface",
        "contents": [prop("wear", writable=True)],
    }
    result = parse_model(
        [leaf, model({"@type": "Component", "name": "seal", "schema": "dtmi:test:Leaf;1"})]
    )
    machine = result.model(ID)
    with pytest.raises(LocalProtocolError, match="pass resolve="):
        entity_schema(machine)
    fields = entity_schema(machine, resolve=result.model).fields
    assert list(fields) == ["seal.wear"] and fields["seal.wear"].kind is FieldKind.SHARED


# Extension rules: (case id, contents, rule, path substring)
BAD: list[tuple[str, list[dict[str, Any]], str, str]] = [
    (
        "two-kinds",
        [prop("x", "double", "Shared", "Label", writable=True)],
        "twinmesh.kind",
        'contents[0] (name "x") / @type',
    ),
    (
        "kind-on-telemetry",
        [{"@type": ["Telemetry", "Shared"], "name": "t", "schema": "double"}],
        "type.placement",
        "@type",
    ),
    (
        "kind-on-relationship-property",
        [
            {
                "@type": "Relationship",
                "name": "r",
                "properties": [prop("x", "double", "Shared", writable=True)],
            }
        ],
        "twinmesh.placement",
        'properties[0] (name "x") / @type',
    ),
    (
        "reported-writable",
        [prop("x", "string", "Reported", writable=True)],
        "twinmesh.writable",
        "/ writable",
    ),
    ("shared-read-only", [prop("x", "double", "Shared")], "twinmesh.writable", "/ writable"),
    (
        "text-not-string",
        [prop("x", "double", "Text", writable=True)],
        "twinmesh.schema",
        "/ schema",
    ),
    (
        "counter-not-integer",
        [prop("x", "double", "Counter", writable=True)],
        "twinmesh.schema",
        "/ schema",
    ),
    ("set-not-array", [prop("x", "string", "Set", writable=True)], "twinmesh.schema", "/ schema"),
    (
        "set-of-objects",
        [prop("x", {"@type": "Array", "elementSchema": {"@type": "Object"}}, "Set", writable=True)],
        "twinmesh.schema",
        "/ schema",
    ),
    (
        "unknown-policy",
        [prop("x", "double", "Shared", writable=True, mergePolicy="newest")],
        "twinmesh.policy",
        "/ mergePolicy",
    ),
    (
        "policy-without-shared",
        [prop("x", "double", "Label", writable=True, mergePolicy="max")],
        "property.unknown",
        "/ mergePolicy",
    ),
    (
        "policy-without-annotation",
        [prop("x", "double", writable=True, mergePolicy="max")],
        "property.unknown",
        "/ mergePolicy",
    ),
    (
        "max-on-string",
        [prop("x", "string", "Shared", writable=True, mergePolicy="max")],
        "twinmesh.policy-schema",
        "/ schema",
    ),
    (
        "stricter-on-boolean",
        [prop("x", "boolean", "Shared", writable=True, mergePolicy="stricter")],
        "twinmesh.policy-schema",
        "/ schema",
    ),
    (
        "stricter-on-integer-enum",
        [
            prop(
                "x",
                {
                    "@type": "Enum",
                    "valueSchema": "integer",
                    "enumValues": [{"name": "a", "enumValue": 1}],
                },
                "Shared",
                writable=True,
                mergePolicy="stricter",
            )
        ],
        "twinmesh.policy-schema",
        "/ schema",
    ),
    (
        "stricter-number-without-direction",
        [prop("x", "double", "Shared", writable=True, mergePolicy="stricter")],
        "twinmesh.strictness",
        "/ strictness",
    ),
    (
        "stricter-bad-direction",
        [prop("x", "double", "Shared", writable=True, mergePolicy="stricter", strictness="down")],
        "twinmesh.strictness",
        "/ strictness",
    ),
    (
        "order-not-a-permutation",
        [
            prop(
                "x",
                LIFECYCLE,
                "Shared",
                writable=True,
                mergePolicy="stricter",
                strictnessOrder=["in-service", "degraded"],
            )
        ],
        "twinmesh.strictness",
        "/ strictnessOrder",
    ),
    (
        "order-for-number",
        [
            prop(
                "x",
                "double",
                "Shared",
                writable=True,
                mergePolicy="stricter",
                strictness="lower",
                strictnessOrder=["a"],
            )
        ],
        "twinmesh.strictness",
        "/ strictnessOrder",
    ),
    (
        "strictness-without-stricter",
        [prop("x", "double", "Shared", writable=True, strictness="lower")],
        "twinmesh.strictness",
        "/ strictness",
    ),
    (
        "range-inverted",
        [
            {
                "@type": ["Telemetry", "ExpectedRange"],
                "name": "t",
                "schema": "double",
                "minValue": 5,
                "maxValue": 1,
            }
        ],
        "twinmesh.range",
        "/ maxValue",
    ),
    (
        "range-on-string",
        [{"@type": ["Telemetry", "ExpectedRange"], "name": "t", "schema": "string", "minValue": 0}],
        "twinmesh.range",
        "/ schema",
    ),
    (
        "range-without-bounds",
        [{"@type": ["Telemetry", "ExpectedRange"], "name": "t", "schema": "double"}],
        "twinmesh.range",
        "/ @type",
    ),
    (
        "range-symbol-disagrees",
        [
            {
                "@type": ["Telemetry", "Temperature", "ExpectedRange"],
                "name": "t",
                "schema": "double",
                "unit": "degreeCelsius",
                "maxValue": 200,
                "unitSymbol": "K",
            }
        ],
        "twinmesh.range",
        "/ unitSymbol",
    ),
    (
        "range-symbol-empty",
        [
            {
                "@type": ["Telemetry", "ExpectedRange"],
                "name": "t",
                "schema": "double",
                "maxValue": 5,
                "unitSymbol": "",
            }
        ],
        "twinmesh.range",
        "/ unitSymbol",
    ),
    (
        "range-bound-not-number",
        [
            {
                "@type": ["Telemetry", "ExpectedRange"],
                "name": "t",
                "schema": "double",
                "minValue": "0",
            }
        ],
        "twinmesh.range",
        "/ minValue",
    ),
]


@pytest.mark.parametrize(
    ("contents", "rule", "where"), [b[1:] for b in BAD], ids=[b[0] for b in BAD]
)
def test_extension_rules(contents: list[dict[str, Any]], rule: str, where: str) -> None:
    result = parse_model(model(*contents))
    assert any(r == rule and where in p for r, p in rules(result)), rules(result)


def test_extension_needs_its_context() -> None:
    doc = model(prop("x", "double", "Shared", writable=True, mergePolicy="max"))
    doc["@context"] = "dtmi:dtdl:context;3"
    assert rules(parse_model(doc)) == [("type.context", f'{ID} / contents[0] (name "x") / @type')]


def test_unit_symbols() -> None:
    iface = parsed(
        {
            "@type": ["Telemetry", "Temperature"],
            "name": "temp",
            "schema": "double",
            "unit": "degreeCelsius",
        },
        {
            "@type": ["Telemetry", "ExpectedRange"],
            "name": "vib",
            "schema": "double",
            "maxValue": 50,
            "unitSymbol": "mm/s",
        },
        {
            "@type": ["Telemetry", "Temperature", "ExpectedRange"],
            "name": "oil",
            "schema": "double",
            "unit": "kelvin",
            "maxValue": 400,
            "unitSymbol": "K",
        },
        {
            "@type": ["Telemetry", "Luminance"],
            "name": "glow",
            "schema": "double",
            "unit": "candelaPerSquareMetre",
        },
        {"@type": "Telemetry", "name": "plain", "schema": "double"},
    )
    symbols = {t.name: unit_symbol(t) for t in iface.telemetries}
    assert symbols == {
        "temp": "°C",
        "vib": "mm/s",
        "oil": "K",
        "glow": "candelaPerSquareMetre",
        "plain": None,
    }
    vib = iface.telemetries[1]
    assert vib.expected_range == ExpectedRange(maximum=50, unit_symbol="mm/s")
