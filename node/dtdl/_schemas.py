"""DTDL v3 schemas: primitives, geospatial, Array, Enum, Map, Object.

Rules (DTDL.v3.md unless noted):

* primitives are ``boolean date dateTime double duration float integer long
  string time``; ``byte``, ``decimal``, ``uuid`` and friends only arrive in
  DTDL v4 and are refused with a message that says so;
* geospatial schemas by term (``point``) or IRI
  (``dtmi:standard:schema:geospatial:point;3``), "Geospatial Schemas";
* complex schemas nest at most 5 levels ("Complex schema"), counted through
  references to reusable schemas too; references never recurse (no
  self-referencing schemas in v3);
* a schema DTMI refers to the same Interface's ``schemas``: "an inheriting
  Interface cannot reuse schemas defined in the Interface it extends"
  ("Interface schemas");
* Enum ``valueSchema`` is ``integer`` or ``string`` and every ``enumValue``
  has that type; names and values unique; Map keys are ``string``; Object
  field names unique.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._elements import COMPLEX_CLASSES, ElementParser, Scope
from ._errors import MISSING, Path, show
from ._model import (
    ArraySchema,
    EnumSchema,
    EnumValue,
    Field,
    GeospatialSchema,
    MapKey,
    MapSchema,
    MapValue,
    ObjectSchema,
    PrimitiveSchema,
    Schema,
)

__all__ = ["GEOSPATIAL_SCHEMAS", "PRIMITIVE_SCHEMAS", "SchemaParser", "schema_height"]

PRIMITIVE_SCHEMAS = frozenset(
    {
        "boolean",
        "date",
        "dateTime",
        "double",
        "duration",
        "float",
        "integer",
        "long",
        "string",
        "time",
    }
)
#: Added by DTDL v4 (DTDL.v4.md, "Primitive schema"); named so the error can say so.
_V4_ONLY_PRIMITIVES = frozenset(
    {
        "byte",
        "bytes",
        "decimal",
        "short",
        "unsignedByte",
        "unsignedShort",
        "unsignedInteger",
        "unsignedLong",
        "uuid",
        "scaledDecimal",
    }
)
#: DTDL.v3.md, "Geospatial Schemas": term -> IRI.
GEOSPATIAL_SCHEMAS: Mapping[str, str] = {
    name: f"dtmi:standard:schema:geospatial:{name};3"
    for name in ("point", "multiPoint", "lineString", "multiLineString", "polygon", "multiPolygon")
}
_GEOSPATIAL_BY_IRI = {iri: name for name, iri in GEOSPATIAL_SCHEMAS.items()}


def schema_height(schema: Schema | None) -> int:
    """How many complex schemas nest here (a primitive is 0, ``Array<double>`` is 1)."""
    if isinstance(schema, ArraySchema):
        return 1 + schema_height(schema.element_schema)
    if isinstance(schema, MapSchema):
        return 1 + schema_height(schema.map_value.schema)
    if isinstance(schema, ObjectSchema):
        return 1 + max((schema_height(f.schema) for f in schema.fields), default=0)
    if isinstance(schema, EnumSchema):
        return 1
    return 0


class SchemaParser(ElementParser):
    """Parses schema values; reusable ones once per Interface, on first use."""

    def _required_schema(
        self, obj: dict[str, Any], path: Path, scope: Scope, depth: int = 0
    ) -> Schema | None:
        if "schema" not in obj:
            self._err(
                (*path, "schema"), "property.missing", "a schema", MISSING, "element needs a schema"
            )
            return None
        return self._schema(obj["schema"], (*path, "schema"), scope, depth)

    def _schema(self, raw: Any, path: Path, scope: Scope, depth: int) -> Schema | None:
        """Parse a schema value at ``depth`` complex schemas deep."""
        if isinstance(raw, str):
            return self._named_schema(raw, path, scope, depth)
        if isinstance(raw, dict):
            return self._complex(raw, path, scope, depth)
        self._err(
            path,
            "schema.unknown",
            "a schema name, DTMI or complex schema object",
            show(raw),
            "not a schema",
        )
        return None

    def _named_schema(self, raw: str, path: Path, scope: Scope, depth: int) -> Schema | None:
        if raw in PRIMITIVE_SCHEMAS:
            return PrimitiveSchema(name=raw)
        if raw in GEOSPATIAL_SCHEMAS:
            return GeospatialSchema(name=raw)
        if raw in _GEOSPATIAL_BY_IRI:
            return GeospatialSchema(name=_GEOSPATIAL_BY_IRI[raw])
        if raw in _V4_ONLY_PRIMITIVES:
            self._err(
                path,
                "schema.unknown",
                "a DTDL v3 primitive schema",
                show(raw),
                f"{raw!r} is a DTDL v4 schema, not available in DTDL v3",
            )
            return None
        if raw.startswith("dtmi:"):
            if raw not in scope.schema_raw:
                self._err(
                    path,
                    "schema.unresolved",
                    "a complex schema defined in this Interface's 'schemas'",
                    show(raw),
                    "unknown schema (an Interface cannot reuse another's schemas)",
                )
                return None
            schema = self._reusable_schema(raw, scope)
            if schema is None:
                return None
            height = schema_height(schema)
            if depth + height > self._limits.max_schema_depth:
                self._err(
                    path,
                    "schema.depth",
                    f"at most {self._limits.max_schema_depth} levels of nested complex schemas",
                    f"{depth + height} (via {raw})",
                    "complex schemas nested too deeply",
                )
                return None
            return schema
        self._err(
            path,
            "schema.unknown",
            "a DTDL v3 primitive ("
            + ", ".join(sorted(PRIMITIVE_SCHEMAS))
            + "), geospatial schema or schema DTMI",
            show(raw),
            "unknown schema",
        )
        return None

    def _reusable_schema(self, sid: str, scope: Scope) -> Schema | None:
        if sid in scope.schema_done:
            return scope.schema_done[sid]
        raw, spath = scope.schema_raw[sid]
        if sid in scope.schema_busy:
            self._err(
                spath,
                "schema.cycle",
                "schemas that do not contain themselves",
                show(sid),
                "recursive schema (DTDL v3 has no self-referencing schemas)",
            )
            return None
        scope.schema_busy.add(sid)
        schema = self._complex(raw, spath, scope, 0)
        scope.schema_busy.discard(sid)
        scope.schema_done[sid] = schema
        return schema

    def _complex(self, raw: dict[str, Any], path: Path, scope: Scope, depth: int) -> Schema | None:
        types = self._types(raw, path, COMPLEX_CLASSES, scope, optional=False)
        level = depth + 1
        if level > self._limits.max_schema_depth:
            self._err(
                path,
                "schema.depth",
                f"at most {self._limits.max_schema_depth} levels of nested complex schemas",
                f"level {level}",
                "complex schemas nested too deeply",
            )
            return None
        common = self._common(raw, path, scope, types)
        if types.cls is None:
            return None
        if types.cls == "Array":
            if "elementSchema" not in raw:
                self._err(
                    (*path, "elementSchema"),
                    "property.missing",
                    "a schema",
                    MISSING,
                    "an Array needs an elementSchema",
                )
                return None
            element = self._schema(raw["elementSchema"], (*path, "elementSchema"), scope, level)
            return None if element is None else ArraySchema(**common, element_schema=element)
        if types.cls == "Enum":
            return self._enum(raw, path, scope, common)
        if types.cls == "Map":
            return self._map(raw, path, scope, common, level)
        return self._object(raw, path, scope, common, level)

    def _enum(
        self, raw: dict[str, Any], path: Path, scope: Scope, common: dict[str, Any]
    ) -> EnumSchema | None:
        value_schema = raw.get("valueSchema")
        if value_schema not in ("integer", "string"):
            self._err(
                (*path, "valueSchema"),
                "enum.value-schema",
                "'integer' or 'string'",
                MISSING if value_schema is None else show(value_schema),
                "an Enum's values are integers or strings",
            )
            value_schema = None
        values: list[EnumValue] = []
        names: set[str] = set()
        seen: set[int | str] = set()
        for index, item in enumerate(self._as_list(raw.get("enumValues"))):
            vpath = (*path, self._label("enumValues", index, item))
            if not isinstance(item, dict):
                self._err(
                    vpath, "element.shape", "an EnumValue object", show(item), "not an EnumValue"
                )
                continue
            types = self._types(item, vpath, "EnumValue", scope, optional=True)
            vcommon = self._common(item, vpath, scope, types)
            name = self._name(item, vpath)
            if "enumValue" not in item:
                self._err(
                    (*vpath, "enumValue"),
                    "property.missing",
                    "an integer or string",
                    MISSING,
                    "EnumValue needs an enumValue",
                )
                continue
            value = item["enumValue"]
            is_int = isinstance(value, int) and not isinstance(value, bool)
            if (
                (value_schema == "integer" and not is_int)
                or (value_schema == "string" and not isinstance(value, str))
                or (value_schema is None and not (is_int or isinstance(value, str)))
            ):
                self._err(
                    (*vpath, "enumValue"),
                    "enum.value-type",
                    f"{value_schema or 'integer or string'} (the Enum's valueSchema)",
                    show(value),
                    "enumValue of the wrong type",
                )
                continue
            if name is None or types.cls is None:
                continue
            if name in names:
                self._err(
                    (*vpath, "name"),
                    "name.duplicate",
                    "a name unique among the Enum's values",
                    show(name),
                    "duplicate enum value name",
                )
                continue
            if value in seen:
                self._err(
                    (*vpath, "enumValue"),
                    "enum.duplicate-value",
                    "a value unique among the Enum's values",
                    show(value),
                    "duplicate enum value",
                )
                continue
            names.add(name)
            seen.add(value)
            values.append(EnumValue(**vcommon, name=name, value=value))
        if value_schema is None:
            return None
        return EnumSchema(**common, value_schema=value_schema, enum_values=tuple(values))

    def _map(
        self,
        raw: dict[str, Any],
        path: Path,
        scope: Scope,
        common: dict[str, Any],
        level: int,
    ) -> MapSchema | None:
        key_raw = raw.get("mapKey")
        kpath = (*path, "mapKey")
        map_key: MapKey | None = None
        if not isinstance(key_raw, dict):
            self._err(
                kpath,
                "property.missing" if key_raw is None else "element.shape",
                "a MapKey object",
                show(key_raw) if key_raw is not None else MISSING,
                "a Map needs a mapKey",
            )
        else:
            types = self._types(key_raw, kpath, "MapKey", scope, optional=True)
            kcommon = self._common(key_raw, kpath, scope, types)
            name = self._name(key_raw, kpath)
            if key_raw.get("schema") != "string":
                self._err(
                    (*kpath, "schema"),
                    "map.key-schema",
                    "'string'",
                    show(key_raw.get("schema")) if "schema" in key_raw else MISSING,
                    "Map keys are strings",
                )
            elif name is not None and types.cls is not None:
                map_key = MapKey(**kcommon, name=name)
        value_raw = raw.get("mapValue")
        vpath = (*path, "mapValue")
        map_value: MapValue | None = None
        if not isinstance(value_raw, dict):
            self._err(
                vpath,
                "property.missing" if value_raw is None else "element.shape",
                "a MapValue object",
                show(value_raw) if value_raw is not None else MISSING,
                "a Map needs a mapValue",
            )
        else:
            types = self._types(value_raw, vpath, "MapValue", scope, optional=True)
            vcommon = self._common(value_raw, vpath, scope, types)
            name = self._name(value_raw, vpath)
            schema = self._required_schema(value_raw, vpath, scope, level)
            semantic, unit = self._semantics(value_raw, vpath, types, schema)
            if name is not None and schema is not None and types.cls is not None:
                map_value = MapValue(
                    **vcommon, name=name, schema=schema, semantic_types=semantic, unit=unit
                )
        if map_key is None or map_value is None:
            return None
        return MapSchema(**common, map_key=map_key, map_value=map_value)

    def _object(
        self,
        raw: dict[str, Any],
        path: Path,
        scope: Scope,
        common: dict[str, Any],
        level: int,
    ) -> ObjectSchema | None:
        fields: list[Field] = []
        names: set[str] = set()
        ok = True
        for index, item in enumerate(self._as_list(raw.get("fields"))):
            fpath = (*path, self._label("fields", index, item))
            if not isinstance(item, dict):
                self._err(fpath, "element.shape", "a Field object", show(item), "not a Field")
                ok = False
                continue
            types = self._types(item, fpath, "Field", scope, optional=True)
            fcommon = self._common(item, fpath, scope, types)
            name = self._name(item, fpath)
            schema = self._required_schema(item, fpath, scope, level)
            semantic, unit = self._semantics(item, fpath, types, schema)
            if name is None or schema is None or types.cls is None:
                ok = False
                continue
            if name in names:
                self._err(
                    (*fpath, "name"),
                    "name.duplicate",
                    "a name unique among the Object's fields",
                    show(name),
                    "duplicate field name",
                )
                ok = False
                continue
            names.add(name)
            fields.append(
                Field(**fcommon, name=name, schema=schema, semantic_types=semantic, unit=unit)
            )
        return ObjectSchema(**common, fields=tuple(fields)) if ok else None
