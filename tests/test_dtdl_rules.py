"""Every validation rule has a failing example; errors name the element and the rule."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from typing import Any

import pytest

from twinmesh.node.dtdl import (
    DtdlError,
    DtdlValidationError,
    GeospatialSchema,
    ParseResult,
    Property,
    parse_model,
)

QT = "dtmi:dtdl:extension:quantitativeTypes;1"
TM = "dtmi:twinmesh:extension;1"
ID = "dtmi:test:Thing;1"


def interface(*contents: dict[str, Any], **extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "@context": ["dtmi:dtdl:context;3", QT, TM],
        "@id": ID,
        "@type": "Interface",
        "contents": list(contents),
    }
    doc.update(extra)
    return doc


def prop(name: str = "p", schema: Any = "double", /, **extra: Any) -> dict[str, Any]:
    return {"@type": "Property", "name": name, "schema": schema, **extra}


def tel(name: str = "t", schema: Any = "double", /, **extra: Any) -> dict[str, Any]:
    return {"@type": "Telemetry", "name": name, "schema": schema, **extra}


def setpoint(**extra: Any) -> dict[str, Any]:
    """A Command co-typed twinmesh ``Setpoint`` (the command path's safety lives here)."""
    return {
        "@type": ["Command", "Setpoint"],
        "name": "go",
        "request": {"name": "v", "schema": "double"},
        **extra,
    }


def limit(**extra: Any) -> dict[str, Any]:
    """A writable Property co-typed twinmesh ``AlarmLimit`` on Telemetry ``t``."""
    return {
        "@type": ["Property", "AlarmLimit"],
        "name": "tLimit",
        "schema": "double",
        "writable": True,
        "limits": "t",
        **extra,
    }


def rules(result: ParseResult) -> list[tuple[str, str]]:
    return [(e.rule, e.path) for e in result.errors]


def nested_arrays(levels: int) -> Any:
    schema: Any = "double"
    for _ in range(levels):
        schema = {"@type": "Array", "elementSchema": schema}
    return schema


# (case id, document, rule expected, substring of the expected path)
CASES: list[tuple[str, Any, str, str]] = [
    ("not-an-object", 42, "document.shape", "(document)"),
    ("empty-array", [], "document.shape", "(document)"),
    (
        "no-context",
        {k: v for k, v in interface().items() if k != "@context"},
        "context.missing",
        f"{ID} / @context",
    ),
    ("v2-context", interface(**{"@context": "dtmi:dtdl:context;2"}), "context.version", "@context"),
    (
        "extension-first",
        interface(**{"@context": [QT, "dtmi:dtdl:context;3"]}),
        "context.version",
        "@context",
    ),
    (
        "local-context",
        interface(**{"@context": ["dtmi:dtdl:context;3", {"x": "dtmi:a;1"}]}),
        "context.local",
        "@context / [1]",
    ),
    (
        "context-not-dtmi",
        interface(**{"@context": ["dtmi:dtdl:context;3", "http://x.org"]}),
        "context.invalid",
        "@context / [1]",
    ),
    ("interface-type", interface(**{"@type": "Interfaces"}), "type.invalid", f"{ID} / @type"),
    (
        "no-type",
        interface({"name": "p", "schema": "double"}),
        "type.missing",
        'contents[0] (name "p") / @type',
    ),
    (
        "two-classes",
        interface(prop(**{"@type": ["Property", "Telemetry"]})),
        "type.invalid",
        'contents[0] (name "p") / @type',
    ),
    (
        "schema-as-content",
        interface({"@type": "Object", "name": "o"}),
        "type.invalid",
        "contents[0]",
    ),
    (
        "unknown-cotype",
        interface(prop(**{"@type": ["Property", "Fancy"]})),
        "type.unknown",
        "@type",
    ),
    (
        "cotype-without-context",
        interface(
            tel(**{"@type": ["Telemetry", "Temperature"]}, unit="kelvin"),
            **{"@context": "dtmi:dtdl:context;3"},
        ),
        "type.context",
        'contents[0] (name "t") / @type',
    ),
    (
        "semantic-on-command",
        interface({"@type": ["Command", "Temperature"], "name": "c", "unit": "kelvin"}),
        "type.placement",
        "@type",
    ),
    (
        "undefined-property",
        interface(prop(colour="red")),
        "property.unknown",
        'contents[0] (name "p") / colour',
    ),
    ("keyword", interface(**{"@language": "en"}), "property.unknown", f"{ID} / @language"),
    (
        "no-schema",
        interface({"@type": "Telemetry", "name": "t"}),
        "property.missing",
        'contents[0] (name "t") / schema',
    ),
    (
        "no-name",
        interface({"@type": "Property", "schema": "double"}),
        "property.missing",
        "contents[0] / name",
    ),
    (
        "no-interface-id",
        {k: v for k, v in interface().items() if k != "@id"},
        "property.missing",
        "@id",
    ),
    ("writable-not-bool", interface(prop(writable="yes")), "property.type", "writable"),
    ("comment-not-string", interface(comment=5), "property.type", f"{ID} / comment"),
    ("display-name-type", interface(displayName=["x"]), "property.type", "displayName"),
    (
        "bad-version",
        interface(**{"@id": "dtmi:test:Thing;01"}),
        "dtmi.syntax",
        "dtmi:test:Thing;01 / @id",
    ),
    (
        "interface-id-too-long",
        interface(**{"@id": "dtmi:" + "a" * 124 + ";1"}),
        "dtmi.length",
        "@id",
    ),
    (
        "system-dtmi",
        interface(prop(**{"@id": "dtmi:test:_p;1"})),
        "dtmi.syntax",
        'contents[0] (name "p") / @id',
    ),
    ("reserved-prefix", interface(**{"@id": "dtmi:dtdl:Thing;1"}), "dtmi.reserved", "@id"),
    (
        "duplicate-element-id",
        interface(prop("a", **{"@id": "dtmi:test:x;1"}), prop("b", **{"@id": "dtmi:test:x;1"})),
        "id.duplicate",
        'contents[1] (name "b") / @id',
    ),
    ("name-starts-with-digit", interface(prop("1p")), "name.pattern", "/ name"),
    ("name-ends-with-underscore", interface(prop("p_")), "name.pattern", "/ name"),
    ("name-with-dash", interface(prop("a-b")), "name.pattern", "/ name"),
    ("name-too-long", interface(prop("a" * 65)), "name.length", "/ name"),
    (
        "duplicate-name",
        interface(prop("p"), tel("p")),
        "name.duplicate",
        'contents[1] (name "p") / name',
    ),
    ("display-name-too-long", interface(displayName="x" * 65), "text.length", "displayName"),
    ("description-too-long", interface(prop(description="x" * 513)), "text.length", "description"),
    ("comment-too-long", interface(comment="x" * 513), "text.length", "comment"),
    (
        "localized-too-long",
        interface(displayName={"en": "ok", "it": "x" * 65}),
        "text.length",
        "displayName / it",
    ),
    ("v4-primitive", interface(prop(schema="uuid")), "schema.unknown", "/ schema"),
    ("unknown-primitive", interface(prop(schema="number")), "schema.unknown", "/ schema"),
    ("schema-not-string-or-object", interface(prop(schema=3)), "schema.unknown", "/ schema"),
    (
        "unresolved-schema",
        interface(prop(schema="dtmi:test:Nope;1")),
        "schema.unresolved",
        "/ schema",
    ),
    (
        "schema-too-deep",
        interface(prop(schema=nested_arrays(6))),
        "schema.depth",
        "elementSchema / elementSchema / elementSchema / elementSchema / elementSchema",
    ),
    (
        "self-referencing-schema",
        interface(
            prop(schema="dtmi:test:s;1"),
            schemas=[{"@id": "dtmi:test:s;1", "@type": "Array", "elementSchema": "dtmi:test:s;1"}],
        ),
        "schema.cycle",
        f"{ID} / schemas[0]",
    ),
    (
        "reusable-schema-without-id",
        interface(schemas=[{"@type": "Array", "elementSchema": "double"}]),
        "property.missing",
        "schemas[0] / @id",
    ),
    (
        "array-without-element",
        interface(prop(schema={"@type": "Array"})),
        "property.missing",
        "schema / elementSchema",
    ),
    (
        "enum-double",
        interface(prop(schema={"@type": "Enum", "valueSchema": "double"})),
        "enum.value-schema",
        "schema / valueSchema",
    ),
    (
        "enum-value-type",
        interface(
            prop(
                schema={
                    "@type": "Enum",
                    "valueSchema": "integer",
                    "enumValues": [{"name": "a", "enumValue": "a"}],
                }
            )
        ),
        "enum.value-type",
        'enumValues[0] (name "a") / enumValue',
    ),
    (
        "enum-duplicate-value",
        interface(
            prop(
                schema={
                    "@type": "Enum",
                    "valueSchema": "integer",
                    "enumValues": [{"name": "a", "enumValue": 1}, {"name": "b", "enumValue": 1}],
                }
            )
        ),
        "enum.duplicate-value",
        'enumValues[1] (name "b")',
    ),
    (
        "enum-duplicate-name",
        interface(
            prop(
                schema={
                    "@type": "Enum",
                    "valueSchema": "integer",
                    "enumValues": [{"name": "a", "enumValue": 1}, {"name": "a", "enumValue": 2}],
                }
            )
        ),
        "name.duplicate",
        'enumValues[1] (name "a") / name',
    ),
    (
        "map-key-integer",
        interface(
            prop(
                schema={
                    "@type": "Map",
                    "mapKey": {"name": "k", "schema": "integer"},
                    "mapValue": {"name": "v", "schema": "string"},
                }
            )
        ),
        "map.key-schema",
        "schema / mapKey / schema",
    ),
    (
        "map-without-value",
        interface(prop(schema={"@type": "Map", "mapKey": {"name": "k", "schema": "string"}})),
        "property.missing",
        "schema / mapValue",
    ),
    (
        "object-duplicate-field",
        interface(
            prop(
                schema={
                    "@type": "Object",
                    "fields": [{"name": "x", "schema": "double"}, {"name": "x", "schema": "long"}],
                }
            )
        ),
        "name.duplicate",
        'fields[1] (name "x") / name',
    ),
    (
        "min-multiplicity",
        interface({"@type": "Relationship", "name": "r", "minMultiplicity": 1}),
        "relationship.multiplicity",
        'contents[0] (name "r") / minMultiplicity',
    ),
    (
        "max-multiplicity",
        interface({"@type": "Relationship", "name": "r", "maxMultiplicity": 0}),
        "relationship.multiplicity",
        "maxMultiplicity",
    ),
    (
        "relationship-target",
        interface({"@type": "Relationship", "name": "r", "target": "x"}),
        "relationship.target",
        "/ target",
    ),
    (
        "relationship-duplicate-property",
        interface({"@type": "Relationship", "name": "r", "properties": [prop("a"), prop("a")]}),
        "name.duplicate",
        'properties[1] (name "a") / name',
    ),
    (
        "component-schema-not-dtmi",
        interface({"@type": "Component", "name": "c", "schema": "x"}),
        "dtmi.syntax",
        'contents[0] (name "c") / schema',
    ),
    (
        "command-type",
        interface({"@type": "Command", "name": "c", "commandType": "sometimes"}),
        "property.type",
        "commandType",
    ),
    (
        "request-without-schema",
        interface({"@type": "Command", "name": "c", "request": {"name": "x"}}),
        "property.missing",
        "request / schema",
    ),
    (
        "unit-of-wrong-type",
        interface(tel(**{"@type": ["Telemetry", "Temperature"]}, unit="metre")),
        "semantic.unit",
        'contents[0] (name "t") / unit',
    ),
    (
        "semantic-type-on-string",
        interface(tel(**{"@type": ["Telemetry", "Temperature"]}, schema="string", unit="kelvin")),
        "semantic.schema",
        "/ schema",
    ),
    (
        "semantic-type-without-unit",
        interface(tel(**{"@type": ["Telemetry", "Temperature"]})),
        "property.missing",
        "/ unit",
    ),
    (
        "semantic-field-unit",
        interface(
            tel(
                schema={
                    "@type": "Object",
                    "fields": [
                        {
                            "@type": ["Field", "Pressure"],
                            "name": "p",
                            "schema": "double",
                            "unit": "kelvin",
                        }
                    ],
                }
            )
        ),
        "semantic.unit",
        'fields[0] (name "p") / unit',
    ),
    (
        "streaming-writable",
        interface(
            prop(**{"@type": ["Property", "Streaming"]}, writable=True),
            **{"@context": ["dtmi:dtdl:context;3", "dtmi:dtdl:extension:streaming;1"]},
        ),
        "streaming.writable",
        "writable",
    ),
    (
        "annotation-without-annotates",
        interface(
            tel("a", **{"@type": ["Telemetry", "ValueAnnotation"]}),
            **{"@context": ["dtmi:dtdl:context;3", "dtmi:dtdl:extension:annotation;1"]},
        ),
        "property.missing",
        "annotates",
    ),
    (
        "annotation-target",
        interface(
            tel("a", **{"@type": ["Telemetry", "ValueAnnotation"]}, annotates="ghost"),
            **{"@context": ["dtmi:dtdl:context;3", "dtmi:dtdl:extension:annotation;1"]},
        ),
        "annotation.target",
        'contents[0] (name "a") / annotates',
    ),
    ("bad-language-tag", interface(description={"e n": "x"}), "property.type", "description"),
    ("setpoint-no-confirm", interface(setpoint()), "property.missing", "confirmedBy"),
    (
        "setpoint-confirm-target",
        interface(tel("label", "string"), setpoint(confirmedBy="label")),
        "twinmesh.setpoint",
        'contents[1] (name "go") / confirmedBy',
    ),
    (
        "setpoint-confirm-ghost",
        interface(setpoint(confirmedBy="ghost")),
        "twinmesh.setpoint",
        "confirmedBy",
    ),
    (
        "setpoint-rate",
        interface(tel("s"), setpoint(confirmedBy="s", maxRate=0)),
        "twinmesh.setpoint",
        "maxRate",
    ),
    (
        "setpoint-high-risk",
        interface(tel("s"), setpoint(confirmedBy="s", highRisk="yes")),
        "twinmesh.setpoint",
        "highRisk",
    ),
    (
        "setpoint-envelope",
        interface(tel("s"), setpoint(confirmedBy="s", minValue=5, maxValue=1)),
        "twinmesh.setpoint",
        "maxValue",
    ),
    (
        "setpoint-request",
        interface(tel("s"), setpoint(confirmedBy="s", request={"name": "v", "schema": "string"})),
        "twinmesh.setpoint",
        "request",
    ),
    (
        "limit-no-limits",
        interface(tel(), {k: v for k, v in limit().items() if k != "limits"}),
        "property.missing",
        "limits",
    ),
    ("limit-empty", interface(tel(), limit(limits="")), "twinmesh.alarm-limit", "limits"),
    (
        "limit-target",
        interface(tel("label", "string"), limit(limits="label")),
        "twinmesh.alarm-limit",
        'contents[1] (name "tLimit") / limits',
    ),
    ("limit-ghost", interface(limit(limits="ghost")), "twinmesh.alarm-limit", "limits"),
    (
        "limit-direction",
        interface(tel(), limit(direction="up")),
        "twinmesh.alarm-limit",
        "direction",
    ),
    (
        "limit-severity",
        interface(tel(), limit(severity="dire")),
        "twinmesh.alarm-limit",
        "severity",
    ),
    (
        "limit-hysteresis",
        interface(tel(), limit(hysteresis=-1)),
        "twinmesh.alarm-limit",
        "hysteresis",
    ),
    (
        "limit-read-only",
        interface(tel(), limit(writable=False)),
        "twinmesh.alarm-limit",
        "writable",
    ),
    (
        "limit-not-a-number",
        interface(tel(), limit(schema="string")),
        "twinmesh.alarm-limit",
        "schema",
    ),
    (
        "limit-unit",
        interface(
            tel("t", **{"@type": ["Telemetry", "Temperature"]}, unit="kelvin"),
            limit(**{"@type": ["Property", "Temperature", "AlarmLimit"]}, unit="degreeCelsius"),
        ),
        "twinmesh.alarm-limit",
        "unit",
    ),
    (
        "setpoint-placement",
        interface(tel("s", **{"@type": ["Telemetry", "Setpoint"]}, confirmedBy="s")),
        "type.placement",
        "@type",
    ),
]


@pytest.mark.parametrize(
    ("doc", "rule", "where"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_each_rule_has_a_failing_example(doc: Any, rule: str, where: str) -> None:
    result = parse_model(doc, source="case.json")
    assert not result.ok
    found = rules(result)
    assert any(r == rule and where in p for r, p in found), found
    for error in result.errors:
        assert error.source == "case.json"
        assert f"[{error.rule}]" in error.message
        assert f"expected {error.expected}" in error.message
        assert f"found {error.found}" in error.message


def test_v4_primitive_is_named_as_such() -> None:
    result = parse_model(interface(prop(schema="decimal")))
    assert "DTDL v4 schema" in result.errors[0].message


def test_a_valid_interface_has_no_errors() -> None:
    doc = interface(
        prop("setPoint", writable=True, comment="c", description={"en": "d", "de": "e"}),
        tel("temp", **{"@type": ["Telemetry", "Temperature"]}, unit="degreeCelsius"),
        {
            "@type": "Command",
            "name": "reboot",
            "commandType": "synchronous",
            "request": {"name": "at", "schema": "dateTime"},
            "response": {"@type": "CommandResponse", "name": "ok", "schema": "boolean"},
        },
        {
            "@type": "Relationship",
            "name": "next",
            "minMultiplicity": 0,
            "maxMultiplicity": 1,
            "target": "dtmi:test:Other;1",
            "writable": True,
            "properties": [prop("since", "date")],
        },
        prop("where", "point"),
        prop("route", "dtmi:standard:schema:geospatial:lineString;3"),
        prop(
            "m",
            {
                "@type": "Map",
                "mapKey": {"name": "k", "schema": "string"},
                "mapValue": {
                    "@type": ["MapValue", "Mass"],
                    "name": "v",
                    "schema": "float",
                    "unit": "kilogram",
                },
            },
        ),
        prop("e", {"@type": "Enum", "valueSchema": "string", "enumValues": []}),
        prop("o", {"@type": "Object"}),
        prop("nest", nested_arrays(5)),
        prop("ref", "dtmi:test:Thing:xyz;1"),
        schemas=[
            {
                "@id": "dtmi:test:Thing:xyz;1",
                "@type": "Object",
                "fields": [
                    {
                        "@type": ["Field", "Velocity"],
                        "name": "x",
                        "schema": "double",
                        "unit": "metrePerSecond",
                    }
                ],
            }
        ],
    )
    result = parse_model(doc)
    assert result.errors == ()
    thing = result.model(ID)
    assert [c.name for c in thing.all_contents][:3] == ["setPoint", "temp", "reboot"]
    where, route = thing.content("where"), thing.content("route")
    assert isinstance(where, Property) and where.schema == GeospatialSchema(name="point")
    assert isinstance(route, Property) and route.schema == GeospatialSchema(name="lineString")


def test_validation_collects_all_errors_not_just_the_first() -> None:
    doc = interface(
        prop("1bad", schema="byte", colour="red"),
        tel("t", **{"@type": ["Telemetry", "Temperature"]}, unit="metre"),
        {"@type": "Relationship", "name": "r", "minMultiplicity": 2},
        prop("x" * 70),
        displayName="y" * 100,
    )
    found = {r for r, _ in rules(parse_model(doc))}
    assert {
        "name.pattern",
        "schema.unknown",
        "property.unknown",
        "semantic.unit",
        "relationship.multiplicity",
        "name.length",
        "text.length",
    } <= found


def test_errors_across_files_keep_their_sources() -> None:
    from twinmesh.node.dtdl import SourceDocument, parse_models

    result = parse_models(
        [
            SourceDocument(source="a.json", content=interface(prop("1a"))),
            SourceDocument(
                source="b.json", content=interface(prop("2b"), **{"@id": "dtmi:test:Other;1"})
            ),
        ]
    )
    assert [(e.source, e.rule) for e in result.errors] == [
        ("a.json", "name.pattern"),
        ("b.json", "name.pattern"),
    ]


def test_the_error_message_reads_like_a_compiler() -> None:
    result = parse_model(interface(tel("speed", schema="byte")), source="pump.json")
    (error,) = result.errors
    assert str(error) == (
        f'pump.json: {ID} / contents[0] (name "speed") / schema: '
        "'byte' is a DTDL v4 schema, not available in DTDL v3: "
        'expected a DTDL v3 primitive schema, found "byte" [schema.unknown]'
    )


def test_dtdl_error_is_a_frozen_keyword_only_dataclass() -> None:
    error = DtdlError(path="p", rule="r", expected="e", found="f", message="m")
    with pytest.raises(dataclasses.FrozenInstanceError):
        error.rule = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        DtdlError("p", "r", "e", "f", "m")  # type: ignore[call-arg]


def test_raise_for_errors_carries_the_whole_list() -> None:
    result = parse_model(interface(prop("1a"), prop("2b")))
    with pytest.raises(DtdlValidationError) as info:
        result.raise_for_errors()
    assert len(info.value.errors) == 2
    assert "2 DTDL errors" in str(info.value)
    parse_model(interface(prop("a"))).raise_for_errors()


def test_unknown_extension_context_is_tolerated() -> None:
    # DTDL.Extensions.md: a tool ignores extensions it does not recognise.
    doc = interface(
        prop(**{"@type": ["Property", "Fancy"]}, fanciness=3),
        **{"@context": ["dtmi:dtdl:context;3", "dtmi:example:extension:fancy;1"]},
    )
    assert parse_model(doc).errors == ()
    # ...but a property without such a co-type is still undefined.
    doc["contents"].append(prop("plain", fanciness=3))
    assert rules(parse_model(doc)) == [
        ("property.unknown", f'{ID} / contents[1] (name "plain") / fanciness')
    ]


def test_single_values_stand_for_sets() -> None:
    # JSON-LD lets a set-valued property hold one value instead of an array.
    result = parse_model(interface(contents=prop("only")))
    assert result.ok and [c.name for c in result.model(ID).contents] == ["only"]


def test_json_text_with_errors_is_reported() -> None:
    result = parse_model('{"@id": ', source="broken.json")
    assert [(e.rule, e.source) for e in result.errors] == [("json", "broken.json")]
    assert parse_model("[NaN]").errors[0].rule == "json"


def test_an_array_document_names_interfaces_by_id_or_index() -> None:
    good = interface(prop("a"))
    bad = copy.deepcopy(good)
    del bad["@id"]
    bad["contents"][0]["name"] = "1"
    found = rules(parse_model([good, bad]))
    assert ("name.pattern", '[1] / contents[0] (name "1") / name') in found


MUTATIONS: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    ("drop-first-context", lambda d: d.__setitem__("@context", [QT]), "context.version"),
    ("v3-twice", lambda d: d["@context"].append("dtmi:dtdl:context;2"), "context.version"),
]


@pytest.mark.parametrize(
    ("mutate", "rule"), [m[1:] for m in MUTATIONS], ids=[m[0] for m in MUTATIONS]
)
def test_context_order_rules(mutate: Callable[[dict[str, Any]], None], rule: str) -> None:
    doc = interface(prop())
    mutate(doc)
    assert rule in {r for r, _ in rules(parse_model(doc))}


def test_a_setpoint_command_carries_its_safety_in_the_model() -> None:
    result = parse_model(
        interface(
            tel("s", **{"@type": ["Telemetry", "ExpectedRange"]}, minValue=0, maxValue=10),
            setpoint(confirmedBy="s", maxRate=2, highRiskAbove=8, tolerance=0.5),
        )
    )
    assert result.ok, result.errors
    (command,) = result.models[0].commands
    assert command.setpoint is not None
    assert (command.setpoint.confirmed_by, command.setpoint.max_rate) == ("s", 2.0)
    assert command.setpoint.high_risk_above == 8.0 and not command.setpoint.high_risk
