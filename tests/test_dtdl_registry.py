"""The per-node model registry: versions side by side, models never change in place."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from twinmesh.crdt._errors import LocalProtocolError
from twinmesh.crdt._schema import FieldKind
from twinmesh.node.dtdl import (
    DtdlValidationError,
    ModelConflictError,
    ModelRegistry,
    SourceDocument,
)


def pump(version: str, *names: str, **extra: Any) -> dict[str, Any]:
    return {
        "@context": "dtmi:dtdl:context;3",
        "@id": f"dtmi:x:Pump;{version}",
        "@type": "Interface",
        "contents": [{"@type": "Property", "name": n, "schema": "double"} for n in names],
        **extra,
    }


def test_versions_live_side_by_side() -> None:
    registry = ModelRegistry()
    registry.add(pump("1", "speed"))
    registry.add(pump("2", "speed", "flow"))
    registry.add(pump("1.5", "speed"))
    assert len(registry) == 3
    assert list(registry) == ["dtmi:x:Pump;1", "dtmi:x:Pump;1.5", "dtmi:x:Pump;2"]
    # A twin names its version and gets exactly that model.
    assert [c.name for c in registry.get("dtmi:x:Pump;1").all_contents] == ["speed"]
    assert [c.name for c in registry.get("dtmi:x:Pump;2").all_contents] == ["speed", "flow"]
    assert [m.id for m in registry.versions("dtmi:x:Pump")] == [
        "dtmi:x:Pump;1",
        "dtmi:x:Pump;1.5",
        "dtmi:x:Pump;2",
    ]
    assert registry.latest("dtmi:x:Pump;1").id == "dtmi:x:Pump;2"
    assert "dtmi:x:Pump;2" in registry and "dtmi:x:Pump;3" not in registry


def test_registering_the_same_document_again_is_a_no_op() -> None:
    registry = ModelRegistry()
    (first,) = registry.add(pump("1", "speed"))
    # Same model with other whitespace and key order: canonically identical.
    text = json.dumps(dict(reversed(list(pump("1", "speed").items()))), indent=4)
    (again,) = registry.add(text)
    assert again is first
    assert len(registry) == 1


def test_a_changed_document_under_a_registered_dtmi_is_refused() -> None:
    registry = ModelRegistry()
    registry.add(pump("1", "speed"), source="v1.json")
    with pytest.raises(ModelConflictError) as info:
        registry.add(pump("1", "speed", "flow"), source="edited.json")
    assert info.value.dtmis == ("dtmi:x:Pump;1",)
    (error,) = info.value.errors
    assert (error.rule, error.path, error.source) == (
        "registry.immutable",
        "dtmi:x:Pump;1",
        "edited.json",
    )
    assert "v1.json" in error.expected and "new version" in error.expected
    # Nothing changed; the new version is the way forward.
    assert [c.name for c in registry.get("dtmi:x:Pump;1").all_contents] == ["speed"]
    registry.add(pump("2", "speed", "flow"))
    assert len(registry) == 2


def test_a_batch_is_all_or_nothing() -> None:
    registry = ModelRegistry()
    bad = pump("3", "1nvalid")
    with pytest.raises(DtdlValidationError) as info:
        registry.add([pump("1", "speed"), bad])
    assert [e.rule for e in info.value.errors] == ["name.pattern"]
    assert len(registry) == 0


def test_references_resolve_into_registered_models() -> None:
    registry = ModelRegistry()
    registry.add(
        {
            "@context": "dtmi:dtdl:context;3",
            "@id": "dtmi:x:Asset;1",
            "@type": "Interface",
            "contents": [{"@type": "Property", "name": "serial", "schema": "string"}],
        }
    )
    registry.add_documents(
        [SourceDocument(source="pump.json", content=pump("1", "speed", extends="dtmi:x:Asset;1"))]
    )
    assert [c.name for c in registry.get("dtmi:x:Pump;1").all_contents] == ["speed", "serial"]
    # ...and a model whose base is unknown is refused with a useful error.
    with pytest.raises(DtdlValidationError) as info:
        registry.add(pump("2", "speed", extends="dtmi:x:Asset;7"))
    assert info.value.errors[0].rule == "extends.unresolved"


def test_components_resolve_through_the_registry_for_entity_schemas() -> None:
    registry = ModelRegistry()
    registry.add(
        {
            "@context": "dtmi:dtdl:context;3",
            "@id": "dtmi:x:Seal;1",
            "@type": "Interface",
            "contents": [{"@type": "Property", "name": "wear", "schema": "double"}],
        }
    )
    registry.add(
        pump(
            "1",
            "speed",
            contents=[{"@type": "Component", "name": "seal", "schema": "dtmi:x:Seal;1"}],
        )
    )
    schema = registry.entity_schema("dtmi:x:Pump;1")
    assert schema.model == "dtmi:x:Pump;1"
    assert list(schema.fields) == ["seal.wear"]
    assert schema.fields["seal.wear"].kind is FieldKind.REPORTED


def test_unknown_models_are_local_errors_that_list_known_versions() -> None:
    registry = ModelRegistry()
    registry.add(pump("1", "speed"))
    with pytest.raises(LocalProtocolError, match=r"versions of it known: dtmi:x:Pump;1"):
        registry.get("dtmi:x:Pump;9")
    with pytest.raises(LocalProtocolError):
        registry.latest("dtmi:x:Valve;1")
    assert registry.versions("not a dtmi") == ()


def test_models_view_is_read_only() -> None:
    registry = ModelRegistry()
    registry.add(pump("1", "speed"))
    with pytest.raises(TypeError):
        registry.models["dtmi:x:Pump;2"] = registry.get("dtmi:x:Pump;1")  # type: ignore[index]


def test_add_files(tmp_path: Path) -> None:
    (tmp_path / "asset.json").write_text(
        json.dumps(
            {"@context": "dtmi:dtdl:context;3", "@id": "dtmi:x:Asset;1", "@type": "Interface"}
        )
    )
    (tmp_path / "pump.json").write_text(json.dumps(pump("1", "speed", extends="dtmi:x:Asset;1")))
    registry = ModelRegistry()
    added = registry.add_files([tmp_path])
    assert sorted(m.id for m in added) == ["dtmi:x:Asset;1", "dtmi:x:Pump;1"]
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(DtdlValidationError) as info:
        ModelRegistry().add_files([tmp_path])
    assert [e.rule for e in info.value.errors] == ["json"]
