"""From a DTDL Interface to the CRDT core's :class:`EntitySchema`.

Each Property of the Interface, inherited ones included, becomes one field
(docs/dtdl-extension.md, "Mapping"):

* a twinmesh kind co-type (``Shared``, ``Reported``, ...) picks the CRDT;
* without one, a writable Property is ``shared`` (multi-value register,
  policy ``latest``) and a read-only one is ``reported`` (single writer, the
  asset's home), matching what DTDL's ``writable`` says about who writes;
* Telemetry is not replicated twin state (it is ingested, scored and
  summarised at home) and Commands and Relationships are not fields, so none
  of them appear;
* a Component's Properties appear as ``<component>.<property>`` (a dot never
  occurs in a DTDL name, so these cannot clash).
"""

from __future__ import annotations

from collections.abc import Callable

from twinmesh.crdt._errors import LocalProtocolError
from twinmesh.crdt._schema import EntitySchema, FieldKind, FieldSpec, Policy, ValueType

from ._model import (
    ArraySchema,
    EnumSchema,
    Interface,
    PrimitiveSchema,
    Property,
    Schema,
    Telemetry,
)
from ._units import UNIT_SYMBOLS

__all__ = ["entity_schema", "field_spec", "unit_symbol", "value_type"]

_PRIMITIVE_TYPES = {
    "boolean": ValueType.BOOLEAN,
    "date": ValueType.DATE,
    "dateTime": ValueType.DATETIME,
    "double": ValueType.DOUBLE,
    "float": ValueType.DOUBLE,
    "integer": ValueType.INTEGER,
    "long": ValueType.INTEGER,
    "string": ValueType.STRING,
}


def value_type(schema: Schema) -> ValueType:
    """The CRDT value type for a DTDL schema; ``ANY`` where the core has no closer one
    (time, duration, geospatial, Array, Map, Object, integer Enums)."""
    if isinstance(schema, PrimitiveSchema):
        return _PRIMITIVE_TYPES.get(schema.name, ValueType.ANY)
    if isinstance(schema, EnumSchema) and schema.value_schema == "string" and schema.enum_values:
        return ValueType.ENUM
    return ValueType.ANY


def _enum_values(schema: Schema) -> tuple[str, ...]:
    if isinstance(schema, EnumSchema) and schema.value_schema == "string":
        return tuple(str(v.value) for v in schema.enum_values)
    return ()


def field_spec(prop: Property) -> FieldSpec:
    """The field a twin keeps for ``prop``."""
    annotation = prop.twinmesh
    if annotation is None:
        kind = FieldKind.SHARED if prop.writable else FieldKind.REPORTED
        policy = Policy.LATEST
        strictness = "lower"
        order: tuple[str, ...] = ()
    else:
        kind = annotation.kind
        policy = annotation.policy or Policy.LATEST
        strictness = annotation.strictness or "lower"
        order = annotation.strictness_order

    schema = prop.schema
    if kind is FieldKind.SET and isinstance(schema, ArraySchema):
        schema = schema.element_schema  # a set field is typed by its elements
    vtype = ValueType.INTEGER if kind is FieldKind.COUNTER else value_type(schema)
    enum_values: tuple[str, ...] = ()
    if vtype is ValueType.ENUM:
        # FieldSpec lists enum values least strict first; the model's order
        # (strictnessOrder, else declaration order) is exactly that.
        enum_values = order or _enum_values(schema)
    return FieldSpec(
        kind=kind,
        value_type=vtype,
        policy=policy,
        enum_values=enum_values,
        strictness=strictness,
        description=prop.description.text,
    )


def entity_schema(
    interface: Interface, *, resolve: Callable[[str], Interface] | None = None
) -> EntitySchema:
    """The :class:`EntitySchema` of twins following ``interface``.

    ``resolve`` looks up Component schemas by DTMI (``ModelRegistry.get``); it
    is only needed when the Interface has Components.
    """
    fields: dict[str, FieldSpec] = {}
    for content in interface.all_contents:
        if isinstance(content, Property):
            fields[content.name] = field_spec(content)
    for component in interface.components:
        if resolve is None:
            raise LocalProtocolError(
                f"{interface.id} has Component {component.name!r}: pass resolve= to look "
                f"up {component.schema}"
            )
        for prop in resolve(component.schema).properties:
            fields[f"{component.name}.{prop.name}"] = field_spec(prop)
    return EntitySchema(model=interface.id, fields=fields)


def unit_symbol(element: Telemetry | Property) -> str | None:
    """The symbol of the unit ``element``'s values are in, for unit conversion.

    An ``ExpectedRange`` ``unitSymbol`` wins (it exists for units QuantitativeTypes
    cannot name, like ``mm/s``); else the symbol of the QuantitativeTypes ``unit``
    (``degreeCelsius`` -> ``°C``), else the DTDL unit name itself, else ``None``.
    """
    declared = element.expected_range.unit_symbol if element.expected_range else None
    if declared:
        return declared
    if element.unit is None:
        return None
    return UNIT_SYMBOLS.get(element.unit, element.unit)
