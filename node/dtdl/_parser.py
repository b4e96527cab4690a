"""Parse one DTDL v3 document into Interfaces, checking every element as we go.

Theory of operation. A document is a JSON object (one Interface) or an array
of them (DTDL.v3.md, "Interface"). We walk it once, top-down, building the
immutable model objects of ``_model`` and reporting each broken rule with the
path to the element, so the caller sees all problems at once. What needs the
whole set of models (``extends``, Component schemas, names inherited from
elsewhere) is left to ``_linker``; this module checks what one Interface can
decide alone. Element basics live in ``_elements``, schemas in ``_schemas``;
this module adds documents, Interfaces and their contents:

* ``@context``: ``dtmi:dtdl:context;3`` first, then extension contexts
  (DTDL.v3.md, "Context"); no JSON-LD local term definitions.
* ``@type``: exactly one metamodel class per element, other entries are
  co-types from extensions whose context is present (DTDL.Extensions.md).
* properties: required ones present, nothing undefined (unless it may come
  from an extension we do not recognise), values of the right JSON type.
* content names unique within the Interface; Relationship ``minMultiplicity``
  exactly 0, ``maxMultiplicity`` at least 1, ``target`` a user DTMI;
  Component ``schema`` an Interface (by DTMI or inline);
* the 1 MiB Interface text limit, and the element count the linker sums up;
* the twinmesh extension (``_extension``) on Properties and Telemetry.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ._dtmi import dtmi_problem
from ._elements import CONTENT_CLASSES, Scope, Types
from ._errors import MISSING, Path, show
from ._extension import (
    DTDL_V3_CONTEXT,
    KIND_CO_TYPES,
    KNOWN_CONTEXTS,
    check_alarm_limit,
    check_expected_range,
    check_setpoint,
    check_twinmesh_kind,
)
from ._model import (
    ArraySchema,
    Command,
    CommandPayload,
    CommandRequest,
    CommandResponse,
    Component,
    Content,
    EnumSchema,
    ExpectedRange,
    Field,
    GeospatialSchema,
    Interface,
    MapSchema,
    MapValue,
    ObjectSchema,
    PrimitiveSchema,
    Property,
    Relationship,
    Schema,
    Telemetry,
    TwinmeshAnnotation,
)
from ._schemas import SchemaParser

__all__ = [
    "DocumentParser",
    "ParsedInterface",
    "SourceDocument",
    "canonical_json",
]

_P = TypeVar("_P", bound=CommandPayload)


def canonical_json(value: Any) -> str:
    """Key-sorted, whitespace-free JSON: equal documents give equal text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceDocument:
    """One JSON document (an Interface or an array of them) and where it came from."""

    source: str
    content: Any


@dataclass(slots=True, kw_only=True)
class ParsedInterface:
    """Parser output for one Interface, before linking."""

    interface: Interface
    path: Path
    element_ids: list[tuple[str, Path]] = field(default_factory=list)


class DocumentParser(SchemaParser):
    """Parses documents into :class:`ParsedInterface` values, reporting into one Reporter."""

    def parse(self, document: SourceDocument) -> list[ParsedInterface]:
        self._source = document.source
        content = document.content
        out: list[ParsedInterface] = []
        if isinstance(content, dict):
            self._interface(content, ("(interface)",), (), out, top_level=True)
        elif isinstance(content, list):
            if not content:
                self._err(
                    (),
                    "document.shape",
                    "at least one Interface",
                    "an empty array",
                    "the document defines nothing",
                )
            for index, item in enumerate(content):
                self._interface(item, (f"[{index}]",), (), out, top_level=True)
        else:
            self._err(
                (),
                "document.shape",
                "an Interface object or an array of them",
                show(content),
                "not a DTDL document",
            )
        return out

    # -- interface ------------------------------------------------------------

    def _interface(
        self,
        obj: Any,
        path: Path,
        inherited: tuple[str, ...],
        out: list[ParsedInterface],
        *,
        top_level: bool,
    ) -> str | None:
        """Parse an Interface (top-level or inline); append it to ``out``; return its id."""
        if not isinstance(obj, dict):
            self._err(path, "element.shape", "an Interface object", show(obj), "not an Interface")
            return None
        raw_id = obj.get("@id")
        if isinstance(raw_id, str) and raw_id:
            # Errors read best under the Interface's own DTMI, wherever it was written.
            path = (raw_id,)
        contexts, unknown_ctx = self._contexts(obj, path, inherited, top_level=top_level)
        scope = Scope(
            interface_id=raw_id if isinstance(raw_id, str) else "",
            contexts=contexts,
            unknown_context=unknown_ctx,
            schema_raw={},
            schema_done={},
            schema_busy=set(),
            element_ids=[],
        )
        types = self._types(obj, path, "Interface", scope, optional=False)
        common = self._common(
            obj,
            path,
            scope,
            types,
            id_required=True,
            id_max=self._limits.max_interface_id_length,
        )
        iface_id: str | None = common["id"]

        # Reusable schemas first, so contents can refer to them in any order.
        raw_schemas = self._as_list(obj.get("schemas"))
        for index, item in enumerate(raw_schemas):
            spath = (*path, f"schemas[{index}]")
            if not isinstance(item, dict):
                self._err(
                    spath,
                    "element.shape",
                    "a complex schema object",
                    show(item),
                    "not a schema definition",
                )
                continue
            sid = item.get("@id")
            if sid is None:
                self._err(
                    (*spath, "@id"),
                    "property.missing",
                    "a DTMI",
                    MISSING,
                    "an Interface schema needs an @id to be referenced",
                )
                continue
            if not isinstance(sid, str) or sid in scope.schema_raw:
                if isinstance(sid, str):
                    self._err(
                        (*spath, "@id"),
                        "id.duplicate",
                        "a unique @id",
                        show(sid),
                        "schema defined twice",
                    )
                else:
                    self._check_id(sid, spath, scope, self._limits.max_element_id_length)
                continue
            scope.schema_raw[sid] = (item, spath)
        schemas: list[Schema] = []
        for sid in scope.schema_raw:
            parsed = self._reusable_schema(sid, scope)
            if parsed is not None:
                schemas.append(parsed)

        extends: list[str] = []
        for index, item in enumerate(self._as_list(obj.get("extends"))):
            epath = (*path, f"extends[{index}]")
            if isinstance(item, dict):
                inline_id = self._interface(item, epath, contexts, out, top_level=False)
                if inline_id is not None:
                    extends.append(inline_id)
            elif isinstance(item, str):
                problem = dtmi_problem(item, max_length=self._limits.max_interface_id_length)
                if problem:
                    self._err(epath, "dtmi.syntax", "the DTMI of an Interface", show(item), problem)
                else:
                    extends.append(item)
            else:
                self._err(
                    epath,
                    "property.type",
                    "an Interface DTMI or inline Interface",
                    show(item),
                    "cannot extend this",
                )

        contents: list[Content] = []
        seen_names: dict[str, int] = {}
        for index, item in enumerate(self._as_list(obj.get("contents"))):
            cpath = (*path, self._label("contents", index, item))
            content = self._content(item, cpath, scope, out)
            if content is None:
                continue
            if content.name in seen_names:
                self._err(
                    (*cpath, "name"),
                    "name.duplicate",
                    "a name unique among the Interface's contents",
                    f"{content.name!r} again (first at contents[{seen_names[content.name]}])",
                    "duplicate content name",
                )
                continue
            seen_names[content.name] = index
            contents.append(content)

        size = len(canonical_json(_without_inline_parts(obj)).encode())
        if size > self._limits.max_interface_bytes:
            self._err(
                path,
                "interface.size",
                f"at most {self._limits.max_interface_bytes} bytes of Interface text",
                f"{size} bytes",
                "Interface too large",
            )

        if iface_id is None:
            return None
        interface = Interface(
            id=iface_id,
            display_name=common["display_name"],
            description=common["description"],
            comment=common["comment"],
            co_types=common["co_types"],
            contexts=contexts,
            contents=tuple(contents),
            extends=tuple(extends),
            schemas=tuple(schemas),
            all_contents=tuple(contents),
            element_count=_count_elements(contents),
            canonical_json=canonical_json(obj),
            source=self._source,
        )
        out.append(
            ParsedInterface(
                interface=interface,
                path=path,
                element_ids=scope.element_ids,
            )
        )
        return iface_id

    def _contexts(
        self, obj: dict[str, Any], path: Path, inherited: tuple[str, ...], *, top_level: bool
    ) -> tuple[tuple[str, ...], bool]:
        """The contexts in force, DTDL's first; and whether any is one we do not know."""
        raw = obj.get("@context")
        cpath = (*path, "@context")
        if raw is None:
            if top_level:
                self._err(
                    cpath,
                    "context.missing",
                    repr(DTDL_V3_CONTEXT),
                    MISSING,
                    "every DTDL document names its language version",
                )
            contexts = inherited or (DTDL_V3_CONTEXT,)
            return contexts, any(c not in KNOWN_CONTEXTS for c in contexts)
        items = raw if isinstance(raw, list) else [raw]
        found: dict[str, None] = dict.fromkeys((DTDL_V3_CONTEXT, *inherited))
        if not items or items[0] != DTDL_V3_CONTEXT:
            first = items[0] if items else raw
            what = "the DTDL context must come first, and this parser reads DTDL v3"
            if isinstance(first, str) and first.startswith("dtmi:dtdl:context;"):
                what = f"DTDL version {first.rsplit(';', 1)[-1]} is not DTDL v3"
            self._err(cpath, "context.version", repr(DTDL_V3_CONTEXT), show(first), what)
        for index, item in enumerate(items):
            ipath = (*cpath, f"[{index}]") if isinstance(raw, list) else cpath
            if isinstance(item, dict):
                self._err(
                    ipath,
                    "context.local",
                    "a context DTMI",
                    "a local context object",
                    "DTDL v3 does not allow local term definitions",
                )
                continue
            if not isinstance(item, str):
                self._err(
                    ipath,
                    "context.invalid",
                    "a context DTMI",
                    show(item),
                    "not a context specifier",
                )
                continue
            problem = dtmi_problem(item, max_length=self._limits.max_context_length)
            if problem:
                self._err(ipath, "context.invalid", "a context DTMI", show(item), problem)
                continue
            if item.startswith("dtmi:dtdl:context;") and item != DTDL_V3_CONTEXT:
                if index:
                    self._err(
                        ipath,
                        "context.version",
                        "one DTDL context",
                        show(item),
                        "two DTDL language versions in one model",
                    )
                continue
            found[item] = None
        return tuple(found), any(c not in KNOWN_CONTEXTS for c in found)

    # -- contents -------------------------------------------------------------

    def _content(
        self, obj: Any, path: Path, scope: Scope, out: list[ParsedInterface]
    ) -> Content | None:
        if not isinstance(obj, dict):
            self._err(path, "element.shape", "a content object", show(obj), "not an element")
            return None
        types = self._types(obj, path, CONTENT_CLASSES, scope, optional=False)
        common = self._common(obj, path, scope, types)
        name = self._name(obj, path)
        if types.cls is None:
            return None
        # Keep checking the element even when its name is bad: every error counts.
        base = dict(common, name=name or "", defined_in=scope.interface_id)
        content: Content | None
        if types.cls == "Telemetry":
            content = self._telemetry(obj, path, scope, types, base)
        elif types.cls == "Property":
            content = self._property(obj, path, scope, types, base, in_relationship=False)
        elif types.cls == "Command":
            content = self._command(obj, path, scope, types, base)
        elif types.cls == "Component":
            content = self._component(obj, path, scope, base, out)
        else:
            content = self._relationship(obj, path, scope, base)
        return content if name is not None else None

    def _annotation_extras(
        self,
        obj: dict[str, Any],
        path: Path,
        types: Types,
        schema: Schema | None,
        unit: str | None,
    ) -> tuple[ExpectedRange | None, str | None]:
        expected: ExpectedRange | None = None
        if "ExpectedRange" in types.adjuncts:
            expected = check_expected_range(
                obj, schema=schema, unit=unit, path=path, report=self._report, source=self._source
            )
        annotates: str | None = None
        if "ValueAnnotation" in types.adjuncts:
            raw = obj.get("annotates")
            if isinstance(raw, str):
                annotates = raw
            elif raw is not None:
                self._err(
                    (*path, "annotates"),
                    "property.type",
                    "the name of a sibling",
                    show(raw),
                    "annotates",
                )
        return expected, annotates

    def _telemetry(
        self,
        obj: dict[str, Any],
        path: Path,
        scope: Scope,
        types: Types,
        base: dict[str, Any],
    ) -> Telemetry | None:
        schema = self._required_schema(obj, path, scope)
        semantic, unit = self._semantics(obj, path, types, schema)
        expected, annotates = self._annotation_extras(obj, path, types, schema, unit)
        if schema is None:
            return None
        return Telemetry(
            **base,
            schema=schema,
            semantic_types=semantic,
            unit=unit,
            expected_range=expected,
            annotates=annotates,
        )

    def _property(
        self,
        obj: dict[str, Any],
        path: Path,
        scope: Scope,
        types: Types,
        base: dict[str, Any],
        *,
        in_relationship: bool,
    ) -> Property | None:
        schema = self._required_schema(obj, path, scope)
        writable = self._bool(obj, "writable", path)
        semantic, unit = self._semantics(obj, path, types, schema)
        expected, annotates = self._annotation_extras(obj, path, types, schema, unit)
        if "Streaming" in types.adjuncts and writable:
            # DTDL.streaming.v1.md: "the value of the writable property must not be true".
            self._err(
                (*path, "writable"),
                "streaming.writable",
                "false or absent",
                "true",
                "a Streaming property is not writable",
            )
        kinds = [t for t in types.co_types if t in KIND_CO_TYPES]
        twinmesh: TwinmeshAnnotation | None = None
        if kinds and all(k in types.adjuncts for k in kinds):
            twinmesh = check_twinmesh_kind(
                obj,
                kinds=kinds,
                schema=schema,
                writable=writable,
                in_relationship=in_relationship,
                path=path,
                report=self._report,
                source=self._source,
            )
        alarm_limit = None
        if "AlarmLimit" in types.adjuncts:
            alarm_limit = check_alarm_limit(
                obj,
                schema=schema,
                writable=writable,
                path=path,
                report=self._report,
                source=self._source,
            )
        if schema is None:
            return None
        return Property(
            **base,
            schema=schema,
            writable=writable,
            semantic_types=semantic,
            unit=unit,
            twinmesh=twinmesh,
            expected_range=expected,
            annotates=annotates,
            alarm_limit=alarm_limit,
        )

    def _command(
        self, obj: dict[str, Any], path: Path, scope: Scope, types: Types, base: dict[str, Any]
    ) -> Command:
        command_type = obj.get("commandType")
        if command_type is not None and command_type not in ("synchronous", "asynchronous"):
            # Deprecated in v3 but still defined (v3 metamodel, Command:commandType).
            self._err(
                (*path, "commandType"),
                "property.type",
                "'synchronous' or 'asynchronous'",
                show(command_type),
                "commandType",
            )
        request = self._payload(obj, "request", CommandRequest, path, scope)
        response = self._payload(obj, "response", CommandResponse, path, scope)
        setpoint = None
        if "Setpoint" in types.adjuncts:
            setpoint = check_setpoint(
                obj,
                request=request.schema if request is not None else None,
                path=path,
                report=self._report,
                source=self._source,
            )
        return Command(**base, request=request, response=response, setpoint=setpoint)

    def _payload(
        self,
        obj: dict[str, Any],
        key: str,
        cls: type[_P],
        path: Path,
        scope: Scope,
    ) -> _P | None:
        raw = obj.get(key)
        if raw is None:
            return None
        ppath = (*path, key)
        if not isinstance(raw, dict):
            self._err(ppath, "element.shape", f"a {cls.__name__} object", show(raw), key)
            return None
        types = self._types(raw, ppath, cls.__name__, scope, optional=True)
        common = self._common(raw, ppath, scope, types)
        name = self._name(raw, ppath)
        schema = self._required_schema(raw, ppath, scope)
        semantic, unit = self._semantics(raw, ppath, types, schema)
        if name is None or schema is None or types.cls is None:
            return None
        return cls(**common, name=name, schema=schema, semantic_types=semantic, unit=unit)

    def _component(
        self,
        obj: dict[str, Any],
        path: Path,
        scope: Scope,
        base: dict[str, Any],
        out: list[ParsedInterface],
    ) -> Component | None:
        raw = obj.get("schema")
        spath = (*path, "schema")
        if raw is None:
            self._err(
                spath,
                "property.missing",
                "an Interface DTMI",
                MISSING,
                "a Component needs a schema",
            )
            return None
        if isinstance(raw, dict):
            inline = self._interface(raw, spath, scope.contexts, out, top_level=False)
            return None if inline is None else Component(**base, schema=inline)
        problem = dtmi_problem(raw, max_length=self._limits.max_interface_id_length)
        if problem:
            self._err(spath, "dtmi.syntax", "the DTMI of an Interface", show(raw), problem)
            return None
        return Component(**base, schema=raw)

    def _relationship(
        self, obj: dict[str, Any], path: Path, scope: Scope, base: dict[str, Any]
    ) -> Relationship:
        target = obj.get("target")
        if target is not None:
            problem = dtmi_problem(target, max_length=self._limits.max_element_id_length)
            if problem:
                self._err(
                    (*path, "target"),
                    "relationship.target",
                    "a user DTMI naming an Interface",
                    show(target),
                    problem,
                )
                target = None
        minimum = obj.get("minMultiplicity", 0)
        if isinstance(minimum, bool) or not isinstance(minimum, int) or minimum != 0:
            # DTDL.v3.md, "Relationship": minMultiplicity "must be = 0".
            self._err(
                (*path, "minMultiplicity"),
                "relationship.multiplicity",
                "0",
                show(minimum),
                "minMultiplicity is always 0 in DTDL v3",
            )
            minimum = 0
        maximum = obj.get("maxMultiplicity")
        if maximum is not None and (
            isinstance(maximum, bool) or not isinstance(maximum, int) or maximum < 1
        ):
            self._err(
                (*path, "maxMultiplicity"),
                "relationship.multiplicity",
                "an integer >= 1",
                show(maximum),
                "maxMultiplicity",
            )
            maximum = None
        writable = self._bool(obj, "writable", path)
        properties: list[Property] = []
        names: set[str] = set()
        for index, item in enumerate(self._as_list(obj.get("properties"))):
            ppath = (*path, self._label("properties", index, item))
            if not isinstance(item, dict):
                self._err(ppath, "element.shape", "a Property object", show(item), "not a Property")
                continue
            types = self._types(item, ppath, "Property", scope, optional=False)
            common = self._common(item, ppath, scope, types)
            name = self._name(item, ppath)
            if types.cls is None:
                continue
            prop = self._property(
                item,
                ppath,
                scope,
                types,
                dict(common, name=name or "", defined_in=scope.interface_id),
                in_relationship=True,
            )
            if prop is None or name is None:
                continue
            if name in names:
                self._err(
                    (*ppath, "name"),
                    "name.duplicate",
                    "a name unique among the Relationship's properties",
                    show(name),
                    "duplicate property name",
                )
                continue
            names.add(name)
            properties.append(prop)
        return Relationship(
            **base,
            target=target,
            min_multiplicity=minimum,
            max_multiplicity=maximum,
            properties=tuple(properties),
            writable=writable,
        )


def _without_inline_parts(obj: dict[str, Any]) -> dict[str, Any]:
    """The Interface minus inline extended Interfaces and Component schemas, which
    DTDL.v3.md excludes from the 1 MiB Interface size limit."""
    trimmed = dict(obj)
    extends = obj.get("extends")
    if isinstance(extends, list):
        trimmed["extends"] = [e.get("@id") if isinstance(e, dict) else e for e in extends]
    elif isinstance(extends, dict):
        trimmed["extends"] = extends.get("@id")
    contents = obj.get("contents")
    if isinstance(contents, list):
        trimmed["contents"] = [
            dict(c, schema=c["schema"].get("@id"))
            if isinstance(c, dict)
            and c.get("@type") == "Component"
            and isinstance(c.get("schema"), dict)
            else c
            for c in contents
        ]
    return trimmed


def _count_elements(contents: list[Content]) -> int:
    """Elements under ``contents`` (DTDL.v3.md, "Interface": the 100,000 limit counts
    contents, requests, responses, schemas, fields, enum values, map values and
    relationship properties). A reusable schema referenced twice counts once."""
    seen: set[int] = set()
    stack: list[Any] = list(contents)
    while stack:
        item = stack.pop()
        if item is None or isinstance(item, PrimitiveSchema | GeospatialSchema):
            continue
        if id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, Telemetry | Property | CommandPayload | Field | MapValue):
            stack.append(item.schema)
        if isinstance(item, Command):
            stack += [item.request, item.response]
        elif isinstance(item, Relationship):
            stack += item.properties
        elif isinstance(item, ArraySchema):
            stack.append(item.element_schema)
        elif isinstance(item, EnumSchema):
            stack += item.enum_values
        elif isinstance(item, MapSchema):
            stack += [item.map_key, item.map_value]
        elif isinstance(item, ObjectSchema):
            stack += item.fields
    return len(seen)
