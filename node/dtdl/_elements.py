"""Element basics shared by every DTDL v3 element: ``@type``, ``@id``, ``name``,
display strings, undefined properties, semantic types.

Rules enforced here, all from DTDL.v3.md unless noted:

* ``@type`` names exactly one metamodel class that fits the position; other
  entries are co-types, which must come from an extension whose context is in
  ``@context`` and which must be allowed on that class (DTDL.Extensions.md).
* No property outside the class's own and its co-types' (v3 metamodel:
  undefined terms are errors, unless they may belong to an extension this
  parser does not recognise); no JSON-LD keyword but ``@id``, ``@type``,
  ``@context``.
* ``@id`` is a user DTMI within the length limit and outside the reserved
  ``dtmi:dtdl:`` and ``dtmi:standard:`` prefixes ("Digital Twin Model Identifier").
* ``name`` matches ``^[A-Za-z](?:[A-Za-z0-9_]*[A-Za-z0-9])?$`` and has at most
  64 characters; ``displayName`` at most 64 and ``description``/``comment`` at
  most 512 characters, in every language.
* a QuantitativeTypes semantic co-type needs a ``unit`` of its unit type and a
  numeric ``schema`` (DTDL.quantitativeTypes.v1.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ._dtmi import RESERVED_PREFIXES, dtmi_problem
from ._errors import MISSING, Path, Reporter, show
from ._extension import ADJUNCT_TYPES, AdjunctType
from ._limits import NAME_PATTERN, Limits
from ._model import Localized, PrimitiveSchema, Schema, describe_schema
from ._units import NUMERIC_SCHEMAS, SEMANTIC_TYPES, allowed_units

__all__ = ["COMPLEX_CLASSES", "CONTENT_CLASSES", "ElementParser", "Scope", "Types"]

CONTENT_CLASSES = ("Telemetry", "Property", "Command", "Component", "Relationship")
COMPLEX_CLASSES = ("Array", "Enum", "Map", "Object")
_ALL_CLASSES = frozenset(
    {
        "Interface",
        *CONTENT_CLASSES,
        *COMPLEX_CLASSES,
        "CommandRequest",
        "CommandResponse",
        "EnumValue",
        "MapKey",
        "MapValue",
        "Field",
    }
)
_COMMON = frozenset({"@id", "@type", "comment", "description", "displayName"})
_CLASS_PROPERTIES: Mapping[str, frozenset[str]] = {
    "Interface": frozenset({"@context", "contents", "extends", "schemas"}),
    "Telemetry": frozenset({"name", "schema"}),
    "Property": frozenset({"name", "schema", "writable"}),
    "Command": frozenset({"name", "request", "response", "commandType"}),
    "CommandRequest": frozenset({"name", "schema"}),
    "CommandResponse": frozenset({"name", "schema"}),
    "Component": frozenset({"name", "schema"}),
    "Relationship": frozenset(
        {"name", "maxMultiplicity", "minMultiplicity", "properties", "target", "writable"}
    ),
    "Array": frozenset({"elementSchema"}),
    "Enum": frozenset({"enumValues", "valueSchema"}),
    "EnumValue": frozenset({"enumValue", "name"}),
    "Map": frozenset({"mapKey", "mapValue"}),
    "MapKey": frozenset({"name", "schema"}),
    "MapValue": frozenset({"name", "schema"}),
    "Object": frozenset({"fields"}),
    "Field": frozenset({"name", "schema"}),
}
_LANGUAGE_TAG_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-")


@dataclass(slots=True)
class Scope:
    """What is in force while parsing one Interface."""

    interface_id: str
    contexts: tuple[str, ...]  # in @context order, DTDL first
    unknown_context: bool
    schema_raw: dict[str, tuple[Any, Path]]
    schema_done: dict[str, Schema | None]
    schema_busy: set[str]
    element_ids: list[tuple[str, Path]]


@dataclass(slots=True)
class Types:
    cls: str | None
    co_types: tuple[str, ...]
    adjuncts: dict[str, AdjunctType]
    extra_properties: frozenset[str]
    # Undefined properties are not errors: the element carries a co-type from an
    # extension we do not recognise, or its class is unknown (already reported).
    unknown: bool


class ElementParser:
    """Checks common to all elements; subclasses parse the element classes."""

    def __init__(self, report: Reporter, limits: Limits) -> None:
        self._report = report
        self._limits = limits
        self._source = ""

    # -- reporting ------------------------------------------------------------

    def _err(self, path: Path, rule: str, expected: str, found: str, what: str) -> None:
        self._report.error(
            path, rule, expected=expected, found=found, what=what, source=self._source
        )

    # -- element basics -------------------------------------------------------

    def _types(
        self,
        obj: dict[str, Any],
        path: Path,
        expected: str | tuple[str, ...],
        scope: Scope,
        *,
        optional: bool,
    ) -> Types:
        """Read ``@type``: one class from ``expected`` plus extension co-types."""
        wanted = (expected,) if isinstance(expected, str) else expected
        raw = obj.get("@type")
        tpath = (*path, "@type")
        want_text = " or ".join(repr(w) for w in wanted)
        if raw is None:
            if optional:
                return Types(wanted[0], (), {}, frozenset(), False)
            self._err(tpath, "type.missing", want_text, MISSING, "element has no @type")
            return Types(None, (), {}, frozenset(), True)
        items = raw if isinstance(raw, list) else [raw]
        if not items or not all(isinstance(i, str) for i in items):
            self._err(tpath, "type.invalid", want_text, show(raw), "@type must be strings")
            return Types(None, (), {}, frozenset(), True)
        classes = [i for i in items if i in _ALL_CLASSES]
        co_types = [i for i in items if i not in _ALL_CLASSES]
        cls: str | None = None
        if len(classes) == 1 and classes[0] in wanted:
            cls = classes[0]
        elif len(classes) > 1:
            self._err(
                tpath,
                "type.invalid",
                f"exactly one of {want_text}",
                show(raw),
                "an element has one metamodel class",
            )
        else:
            self._err(tpath, "type.invalid", want_text, show(raw), "wrong kind of element here")
        adjuncts: dict[str, AdjunctType] = {}
        extra: set[str] = set()
        unknown = False
        if cls is None:
            # Without a class nothing else about the element can be judged; more
            # errors would only echo this one.
            return Types(None, tuple(co_types), adjuncts, frozenset(), True)
        for co_type in co_types:
            adjunct = ADJUNCT_TYPES.get(co_type)
            if adjunct is None:
                if scope.unknown_context:
                    unknown = True  # may belong to the extension we do not know
                else:
                    self._err(
                        tpath,
                        "type.unknown",
                        "a co-type defined by a context in @context",
                        show(co_type),
                        "undefined co-type",
                    )
                continue
            extra |= adjunct.properties  # avoid a second error for its properties
            if adjunct.context not in scope.contexts:
                self._err(
                    tpath,
                    "type.context",
                    f"@context to include {adjunct.context!r}",
                    show(co_type),
                    f"co-type {co_type!r} comes from an extension not in @context",
                )
                continue
            if cls not in adjunct.hosts:
                self._err(
                    tpath,
                    "type.placement",
                    f"{co_type!r} only on " + ", ".join(sorted(adjunct.hosts)),
                    f"a {cls}",
                    f"co-type {co_type!r} does not apply here",
                )
                continue
            adjuncts[co_type] = adjunct
        return Types(cls, tuple(co_types), adjuncts, frozenset(extra), unknown)

    def _common(
        self,
        obj: dict[str, Any],
        path: Path,
        scope: Scope,
        types: Types,
        *,
        id_required: bool = False,
        id_max: int | None = None,
    ) -> dict[str, Any]:
        """Check keys, ``@id``, ``displayName``, ``description``, ``comment``."""
        allowed = _COMMON | types.extra_properties
        if types.cls is not None:
            allowed |= _CLASS_PROPERTIES[types.cls]
        for key in obj:
            if key in allowed:
                continue
            if key.startswith("@"):
                self._err(
                    (*path, key),
                    "property.unknown",
                    "only @id, @type and @context keywords",
                    repr(key),
                    "JSON-LD keyword not allowed in DTDL v3",
                )
            elif not types.unknown:
                self._err(
                    (*path, key),
                    "property.unknown",
                    f"a property of {types.cls or 'this element'}",
                    repr(key),
                    "undefined property",
                )
        for name, adjunct in types.adjuncts.items():
            for key in sorted(adjunct.required - obj.keys()):
                self._err(
                    (*path, key),
                    "property.missing",
                    f"{key!r} for co-type {name!r}",
                    MISSING,
                    "required property missing",
                )
        element_id: str | None = None
        raw_id = obj.get("@id")
        if raw_id is None:
            if id_required:
                self._err(
                    (*path, "@id"),
                    "property.missing",
                    "a DTMI",
                    MISSING,
                    "an Interface needs an @id",
                )
        elif self._check_id(raw_id, path, scope, id_max or self._limits.max_element_id_length):
            element_id = raw_id
        comment = obj.get("comment", "")
        if not isinstance(comment, str):
            self._err((*path, "comment"), "property.type", "a string", show(comment), "comment")
            comment = ""
        elif len(comment) > self._limits.max_comment_length:
            self._err(
                (*path, "comment"),
                "text.length",
                f"at most {self._limits.max_comment_length} characters",
                f"{len(comment)}",
                "comment too long",
            )
        return {
            "id": element_id,
            "display_name": self._localized(
                obj, "displayName", path, self._limits.max_display_name_length
            ),
            "description": self._localized(
                obj, "description", path, self._limits.max_description_length
            ),
            "comment": comment,
            "co_types": types.co_types,
        }

    def _check_id(self, raw: Any, path: Path, scope: Scope, max_length: int) -> bool:
        ipath = (*path, "@id")
        problem = dtmi_problem(raw, max_length=max_length)
        if problem:
            too_long = isinstance(raw, str) and len(raw) > max_length
            rule = "dtmi.length" if too_long else "dtmi.syntax"
            self._err(
                ipath,
                rule,
                "a user DTMI (dtmi:<segment>(:<segment>)*[;<version>])",
                show(raw),
                problem,
            )
            return False
        if raw.startswith(RESERVED_PREFIXES):
            self._err(
                ipath,
                "dtmi.reserved",
                "a DTMI outside dtmi:dtdl: and dtmi:standard:",
                show(raw),
                "identifier prefix reserved by the DTDL language",
            )
            return False
        scope.element_ids.append((raw, path))
        return True

    def _localized(self, obj: dict[str, Any], key: str, path: Path, limit: int) -> Localized:
        raw = obj.get(key)
        if raw is None:
            return Localized()
        kpath = (*path, key)
        pairs: list[tuple[str, str]] = []
        if isinstance(raw, str):
            pairs.append(("en", raw))
        elif isinstance(raw, dict):
            for lang, text in raw.items():
                if not lang or not set(lang) <= _LANGUAGE_TAG_CHARS or not isinstance(text, str):
                    self._err(
                        (*kpath, repr(lang)),
                        "property.type",
                        "a language tag mapped to a string",
                        show({lang: text}),
                        f"{key} language map",
                    )
                    continue
                pairs.append((lang, text))
        else:
            self._err(kpath, "property.type", "a string or a language map", show(raw), key)
            return Localized()
        for lang, text in pairs:
            if len(text) > limit:
                where = kpath if isinstance(raw, str) else (*kpath, lang)
                self._err(
                    where,
                    "text.length",
                    f"at most {limit} characters",
                    f"{len(text)}",
                    f"{key} too long",
                )
        return Localized(values=tuple(pairs))

    def _name(self, obj: dict[str, Any], path: Path) -> str | None:
        raw = obj.get("name")
        npath = (*path, "name")
        if raw is None:
            self._err(npath, "property.missing", "a name", MISSING, "element needs a name")
            return None
        if not isinstance(raw, str):
            self._err(npath, "property.type", "a string", show(raw), "name")
            return None
        ok = True
        if not NAME_PATTERN.match(raw):
            self._err(
                npath,
                "name.pattern",
                "letters, digits and '_', starting with a letter, ending alphanumeric",
                show(raw),
                "invalid name",
            )
            ok = False
        if len(raw) > self._limits.max_name_length:
            self._err(
                npath,
                "name.length",
                f"at most {self._limits.max_name_length} characters",
                f"{len(raw)} characters",
                "name too long",
            )
            ok = False
        return raw if ok else None

    def _bool(self, obj: dict[str, Any], key: str, path: Path) -> bool:
        raw = obj.get(key, False)
        if not isinstance(raw, bool):
            self._err((*path, key), "property.type", "true or false", show(raw), key)
            return False
        return raw

    @staticmethod
    def _as_list(raw: Any) -> list[Any]:
        # JSON-LD lets a set-valued property hold a single value instead of an array.
        if raw is None:
            return []
        return raw if isinstance(raw, list) else [raw]

    @staticmethod
    def _label(key: str, index: int, item: Any) -> str:
        name = item.get("name") if isinstance(item, dict) else None
        return f'{key}[{index}] (name "{name}")' if isinstance(name, str) else f"{key}[{index}]"

    def _semantics(
        self, obj: dict[str, Any], path: Path, types: Types, schema: Schema | None
    ) -> tuple[tuple[str, ...], str | None]:
        """Check ``unit`` and numeric ``schema`` for QuantitativeTypes co-types."""
        semantic = tuple(t for t in types.adjuncts if t in SEMANTIC_TYPES)
        unit = obj.get("unit")
        if not semantic:
            return (), None
        if unit is not None and not isinstance(unit, str):
            self._err((*path, "unit"), "property.type", "a unit name", show(unit), "unit")
            unit = None
        for sem in semantic:
            allowed = allowed_units(sem)
            if unit is not None and unit not in allowed:
                self._err(
                    (*path, "unit"),
                    "semantic.unit",
                    f"a {SEMANTIC_TYPES[sem]} ({', '.join(sorted(allowed))})",
                    show(unit),
                    f"unit does not fit semantic type {sem!r}",
                )
        if schema is not None and not (
            isinstance(schema, PrimitiveSchema) and schema.name in NUMERIC_SCHEMAS
        ):
            self._err(
                (*path, "schema"),
                "semantic.schema",
                "a numeric schema (double, float, integer, long)",
                describe_schema(schema),
                f"semantic type {semantic[0]!r} describes a number",
            )
        return semantic, unit if isinstance(unit, str) else None
