"""Cross-model rules and the language's limits: extends, Components, counts, sizes."""

from __future__ import annotations

from typing import Any

import pytest

from twinmesh.node.dtdl import (
    V3_LIMITS,
    Component,
    Limits,
    ParseResult,
    Property,
    SourceDocument,
    parse_model,
    parse_models,
)


def iface(dtmi: str, *contents: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "@context": "dtmi:dtdl:context;3",
        "@id": dtmi,
        "@type": "Interface",
        "contents": list(contents),
        **extra,
    }


def prop(name: str, schema: Any = "double", **extra: Any) -> dict[str, Any]:
    return {"@type": "Property", "name": name, "schema": schema, **extra}


def rules(result: ParseResult) -> list[tuple[str, str]]:
    return [(e.rule, e.path) for e in result.errors]


def chain(length: int) -> list[dict[str, Any]]:
    """I0 extends I1 extends ... extends I(length-1)."""
    docs = []
    for i in range(length):
        extra = {"extends": f"dtmi:t:I{i + 1};1"} if i + 1 < length else {}
        docs.append(iface(f"dtmi:t:I{i};1", prop(f"p{i}"), **extra))
    return docs


def test_the_limits_are_the_documented_ones() -> None:
    assert (
        V3_LIMITS.max_elements,
        V3_LIMITS.max_extends_count,
        V3_LIMITS.max_extends_depth,
        V3_LIMITS.max_schema_depth,
        V3_LIMITS.max_name_length,
        V3_LIMITS.max_display_name_length,
        V3_LIMITS.max_description_length,
        V3_LIMITS.max_comment_length,
        V3_LIMITS.max_interface_id_length,
        V3_LIMITS.max_element_id_length,
        V3_LIMITS.max_interface_bytes,
    ) == (100_000, 1024, 10, 5, 64, 64, 512, 512, 128, 2048, 1024 * 1024)


def test_extends_imports_contents_across_documents() -> None:
    result = parse_models(
        [
            SourceDocument(source="room.json", content=iface("dtmi:ex:Room;1", prop("occupied"))),
            SourceDocument(
                source="conf.json",
                content=iface(
                    "dtmi:ex:ConferenceRoom;1",
                    prop("capacity", "integer"),
                    extends="dtmi:ex:Room;1",
                ),
            ),
        ]
    )
    assert result.ok, result.errors
    conf = result.model("dtmi:ex:ConferenceRoom;1")
    assert [c.name for c in conf.contents] == ["capacity"]
    assert [c.name for c in conf.all_contents] == ["capacity", "occupied"]
    assert conf.content("occupied").defined_in == "dtmi:ex:Room;1"
    assert conf.ancestors == ("dtmi:ex:Room;1",)


def test_diamond_inheritance_imports_each_element_once() -> None:
    docs = [
        iface("dtmi:t:Top;1", prop("top")),
        iface("dtmi:t:L;1", prop("left"), extends="dtmi:t:Top;1"),
        iface("dtmi:t:R;1", prop("right"), extends="dtmi:t:Top;1"),
        iface("dtmi:t:Bottom;1", extends=["dtmi:t:L;1", "dtmi:t:R;1"]),
    ]
    result = parse_model(docs)
    assert result.ok, result.errors
    bottom = result.model("dtmi:t:Bottom;1")
    assert sorted(c.name for c in bottom.all_contents) == ["left", "right", "top"]
    assert bottom.ancestors == ("dtmi:t:L;1", "dtmi:t:Top;1", "dtmi:t:R;1")


def test_inline_extends_and_component_schema() -> None:
    doc = iface(
        "dtmi:t:Outer;1",
        {"@type": "Component", "name": "cam", "schema": iface("dtmi:t:Camera;1", prop("zoom"))},
        extends={"@id": "dtmi:t:Base;1", "@type": "Interface", "contents": [prop("base")]},
    )
    result = parse_model(doc)
    assert result.ok, result.errors
    assert {m.id for m in result.models} == {"dtmi:t:Outer;1", "dtmi:t:Camera;1", "dtmi:t:Base;1"}
    outer = result.model("dtmi:t:Outer;1")
    assert [c.name for c in outer.all_contents] == ["cam", "base"]
    component = outer.content("cam")
    assert isinstance(component, Component) and component.schema == "dtmi:t:Camera;1"


def test_unresolved_extends() -> None:
    result = parse_model(iface("dtmi:t:A;1", extends="dtmi:t:Missing;1"))
    assert rules(result) == [("extends.unresolved", "dtmi:t:A;1 / extends[0]")]


@pytest.mark.parametrize("size", [1, 2, 3])
def test_extends_cycles_are_found_and_spelled_out(size: int) -> None:
    docs = [
        iface(f"dtmi:t:C{i};1", prop(f"p{i}"), extends=f"dtmi:t:C{(i + 1) % size};1")
        for i in range(size)
    ]
    result = parse_model(docs)
    cycles = [e for e in result.errors if e.rule == "extends.cycle"]
    assert len(cycles) == 1, result.errors  # one report per cycle, not per member
    names = " -> ".join(f"dtmi:t:C{i % size};1" for i in range(size + 1))
    assert cycles[0].found == names
    assert cycles[0].path.endswith("/ extends[0]")


def test_extends_depth_limit_is_ten_levels() -> None:
    assert parse_model(chain(11)).ok  # I0 sits 10 levels above I10
    result = parse_model(chain(12))
    assert ("extends.depth", "dtmi:t:I0;1 / extends") in rules(result)
    assert [r for r, _ in rules(result)] == ["extends.depth"]


def test_extends_count_limit() -> None:
    limits = Limits(max_extends_count=3)
    docs = [iface(f"dtmi:t:B{i};1", prop(f"b{i}")) for i in range(4)]
    docs.append(iface("dtmi:t:Wide;1", extends=[f"dtmi:t:B{i};1" for i in range(4)]))
    result = parse_model(docs, limits=limits)
    assert rules(result) == [("extends.count", "dtmi:t:Wide;1 / extends")]
    three = [*docs[:3], iface("dtmi:t:Wide;1", extends=[f"dtmi:t:B{i};1" for i in range(3)])]
    assert parse_model(three, limits=limits).ok


def test_inherited_name_clash() -> None:
    docs = [
        iface("dtmi:t:Base;1", prop("speed")),
        iface("dtmi:t:Derived;1", prop("speed", "integer"), extends="dtmi:t:Base;1"),
    ]
    result = parse_model(docs)
    assert rules(result) == [("name.duplicate", "dtmi:t:Derived;1 / extends")]
    assert "'speed' in both dtmi:t:Derived;1 and dtmi:t:Base;1" in result.errors[0].found


def test_duplicate_interface_definitions() -> None:
    a = iface("dtmi:t:A;1", prop("x"))
    # The identical document twice is harmless (a file given twice).
    assert parse_models(
        [SourceDocument(source="1", content=a), SourceDocument(source="2", content=a)]
    ).ok
    b = iface("dtmi:t:A;1", prop("y"))
    result = parse_models(
        [SourceDocument(source="1", content=a), SourceDocument(source="2", content=b)]
    )
    assert [(e.rule, e.source) for e in result.errors] == [("id.duplicate", "2")]


def test_component_rules() -> None:
    inner = iface(
        "dtmi:t:Inner;1", {"@type": "Component", "name": "deep", "schema": "dtmi:t:Leaf;1"}
    )
    leaf = iface("dtmi:t:Leaf;1", prop("x"))
    outer = iface(
        "dtmi:t:Outer;1",
        {"@type": "Component", "name": "inner", "schema": "dtmi:t:Inner;1"},
        {"@type": "Component", "name": "ghost", "schema": "dtmi:t:Ghost;1"},
    )
    result = parse_model([inner, leaf, outer])
    assert rules(result) == [
        ("component.nested", 'dtmi:t:Outer;1 / contents[0] (name "inner") / schema'),
        ("component.unresolved", 'dtmi:t:Outer;1 / contents[1] (name "ghost") / schema'),
    ]


def test_component_cycle_is_refused() -> None:
    a = iface("dtmi:t:A;1", {"@type": "Component", "name": "b", "schema": "dtmi:t:B;1"})
    b = iface("dtmi:t:B;1", {"@type": "Component", "name": "a", "schema": "dtmi:t:A;1"})
    assert {r for r, _ in rules(parse_model([a, b]))} == {"component.nested"}


def test_component_inheriting_a_component_is_nested() -> None:
    base = iface("dtmi:t:Base;1", {"@type": "Component", "name": "c", "schema": "dtmi:t:L;1"})
    mid = iface("dtmi:t:Mid;1", extends="dtmi:t:Base;1")
    leaf = iface("dtmi:t:L;1", prop("x"))
    top = iface("dtmi:t:Top;1", {"@type": "Component", "name": "m", "schema": "dtmi:t:Mid;1"})
    assert [r for r, _ in rules(parse_model([base, mid, leaf, top]))] == ["component.nested"]


def test_relationship_targets_need_not_resolve() -> None:
    # DTDL.v3.md: a Relationship has "by reference" semantics.
    doc = iface(
        "dtmi:t:Building;1",
        {"@type": "Relationship", "name": "contains", "target": "dtmi:t:Room;1"},
    )
    assert parse_model(doc).ok


def test_annotation_may_annotate_inherited_elements() -> None:
    ctx = ["dtmi:dtdl:context;3", "dtmi:dtdl:extension:annotation;1"]
    base = iface("dtmi:t:Base;1", {"@type": "Telemetry", "name": "temp", "schema": "double"})
    sensor = iface(
        "dtmi:t:Sensor;1",
        {
            "@type": ["Property", "ValueAnnotation"],
            "name": "tempCalibrated",
            "annotates": "temp",
            "schema": "date",
            "writable": True,
        },
        extends="dtmi:t:Base;1",
        **{"@context": ctx},
    )
    result = parse_model([base, sensor])
    assert result.ok, result.errors
    annotation = result.model("dtmi:t:Sensor;1").content("tempCalibrated")
    assert isinstance(annotation, Property) and annotation.annotates == "temp"


def test_schema_depth_is_five_levels_inline_and_through_references() -> None:
    def arrays(levels: int) -> Any:
        schema: Any = "double"
        for _ in range(levels):
            schema = {"@type": "Array", "elementSchema": schema}
        return schema

    assert parse_model(iface("dtmi:t:A;1", prop("a", arrays(5)))).ok
    assert [r for r, _ in rules(parse_model(iface("dtmi:t:A;1", prop("a", arrays(6)))))] == [
        "schema.depth"
    ]
    # A reusable 4-level schema used inside 2 more levels is 6 deep.
    doc = iface(
        "dtmi:t:A;1",
        prop(
            "a",
            {
                "@type": "Map",
                "mapKey": {"name": "k", "schema": "string"},
                "mapValue": {
                    "name": "v",
                    "schema": {
                        "@type": "Object",
                        "fields": [{"name": "f", "schema": "dtmi:t:A:four;1"}],
                    },
                },
            },
        ),
        prop("b", "dtmi:t:A:four;1"),
        schemas=[{"@id": "dtmi:t:A:four;1", **arrays(4)}],
    )
    assert rules(parse_model(doc)) == [
        (
            "schema.depth",
            'dtmi:t:A;1 / contents[0] (name "a") / schema / mapValue / schema / fields[0] '
            '(name "f") / schema',
        )
    ]


def test_element_count_limit_includes_inherited_contents() -> None:
    limits = Limits(max_elements=5)
    base = iface("dtmi:t:Base;1", prop("a"), prop("b"), prop("c"))
    enum = {
        "@type": "Enum",
        "valueSchema": "integer",
        "enumValues": [{"name": "x", "enumValue": 1}],
    }
    ok = iface("dtmi:t:Ok;1", prop("d", enum), extends="dtmi:t:Base;1")  # 3 + 3 elements
    assert parse_model([base, ok], limits=limits).errors[0].rule == "contents.count"
    small = iface("dtmi:t:Small;1", prop("d"), extends="dtmi:t:Base;1")  # 3 + 1
    assert parse_model([base, small], limits=limits).ok


def test_interface_size_limit() -> None:
    doc = iface("dtmi:t:A;1", prop("a", description="x" * 300))
    assert parse_model(doc, limits=Limits(max_interface_bytes=1000)).ok
    result = parse_model(doc, limits=Limits(max_interface_bytes=300))
    assert rules(result) == [("interface.size", "dtmi:t:A;1")]
