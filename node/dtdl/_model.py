"""Parsed DTDL v3 models: immutable values, one class per metamodel class.

Names follow DTDL.v3.md. Complex schemas referenced by DTMI from an
Interface's ``schemas`` are resolved into the objects here, so a consumer
never looks anything up. ``Interface.contents`` holds what the Interface
itself declares; ``Interface.all_contents`` adds what ``extends`` imports
(DTDL.v3.md, "Interface": inheritance imports ``contents``), filled in once
the whole set of models is known.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from twinmesh.crdt._schema import FieldKind, Policy

from ._dtmi import Dtmi, parse_dtmi

__all__ = [
    "AlarmLimitAnnotation",
    "ArraySchema",
    "Command",
    "CommandPayload",
    "CommandRequest",
    "CommandResponse",
    "Component",
    "Content",
    "Element",
    "EnumSchema",
    "EnumValue",
    "ExpectedRange",
    "Field",
    "GeospatialSchema",
    "Interface",
    "Localized",
    "MapKey",
    "MapSchema",
    "MapValue",
    "ObjectSchema",
    "PrimitiveSchema",
    "Property",
    "Relationship",
    "Schema",
    "SetpointAnnotation",
    "Telemetry",
    "TwinmeshAnnotation",
    "describe_schema",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Localized:
    """A localizable string (DTDL.v3.md, "Display string localization").

    ``values`` pairs a BCP 47 language tag with text; a plain JSON string is
    stored under ``"en"``, DTDL's default language.
    """

    values: tuple[tuple[str, str], ...] = ()

    @property
    def text(self) -> str:
        """English if present, else the first language given, else ``""``."""
        for lang, text in self.values:
            if lang.lower() == "en" or lang.lower().startswith("en-"):
                return text
        return self.values[0][1] if self.values else ""

    def __bool__(self) -> bool:
        return bool(self.values)


_NO_TEXT = Localized()


@dataclass(frozen=True, slots=True, kw_only=True)
class Element:
    """What every DTDL element may carry."""

    id: str | None = None
    display_name: Localized = _NO_TEXT
    description: Localized = _NO_TEXT
    comment: str = ""
    co_types: tuple[str, ...] = ()  # the @type entries beyond the element's class


# --- schemas ---------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class PrimitiveSchema:
    """``boolean``, ``date``, ``dateTime``, ``double``, ``duration``, ``float``,
    ``integer``, ``long``, ``string`` or ``time`` (DTDL.v3.md, "Primitive schema")."""

    name: str


@dataclass(frozen=True, slots=True, kw_only=True)
class GeospatialSchema:
    """A GeoJSON geometry: ``point``, ``lineString``, ``polygon`` and their multi-forms."""

    name: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ArraySchema(Element):
    element_schema: Schema


@dataclass(frozen=True, slots=True, kw_only=True)
class EnumValue(Element):
    name: str
    value: int | str


@dataclass(frozen=True, slots=True, kw_only=True)
class EnumSchema(Element):
    value_schema: str  # "integer" or "string"
    enum_values: tuple[EnumValue, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class MapKey(Element):
    name: str
    schema: str = "string"


@dataclass(frozen=True, slots=True, kw_only=True)
class MapValue(Element):
    name: str
    schema: Schema
    semantic_types: tuple[str, ...] = ()
    unit: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class MapSchema(Element):
    map_key: MapKey
    map_value: MapValue


@dataclass(frozen=True, slots=True, kw_only=True)
class Field(Element):
    name: str
    schema: Schema
    semantic_types: tuple[str, ...] = ()
    unit: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ObjectSchema(Element):
    fields: tuple[Field, ...] = ()


Schema: TypeAlias = (
    PrimitiveSchema | GeospatialSchema | ArraySchema | EnumSchema | MapSchema | ObjectSchema
)


def describe_schema(schema: Schema | None) -> str:
    """A schema as error messages name it: ``'double'``, ``'point'``, ``an Array``."""
    if schema is None:
        return "an invalid schema"
    if isinstance(schema, PrimitiveSchema | GeospatialSchema):
        return repr(schema.name)
    kind = type(schema).__name__.removesuffix("Schema")
    return f"{'an' if kind[0] in 'AEIOU' else 'a'} {kind}"


# --- twinmesh extension ----------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class TwinmeshAnnotation:
    """How a Property replicates (``dtmi:twinmesh:extension;1``, docs/dtdl-extension.md).

    ``policy``, ``strictness`` and ``strictness_order`` only apply to
    ``shared`` fields; ``strictness_order`` lists enum values from least to
    most strict.
    """

    kind: FieldKind
    policy: Policy | None = None
    strictness: str | None = None
    strictness_order: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class ExpectedRange:
    """The physically plausible range of a numeric value, for data-quality checks.

    ``unit_symbol`` is the symbol of the unit value and bounds are in, when the
    model states one (``mm/s``); see ``unit_symbol()`` for the effective one.
    """

    minimum: float | None = None
    maximum: float | None = None
    unit_symbol: str | None = None

    def contains(self, value: float) -> bool:
        if self.minimum is not None and value < self.minimum:
            return False
        return not (self.maximum is not None and value > self.maximum)


# --- contents --------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Content(Element):
    """An element of an Interface's ``contents``."""

    name: str
    defined_in: str = ""  # DTMI of the Interface that declares it (matters once inherited)


@dataclass(frozen=True, slots=True, kw_only=True)
class Telemetry(Content):
    schema: Schema
    semantic_types: tuple[str, ...] = ()
    unit: str | None = None
    expected_range: ExpectedRange | None = None
    annotates: str | None = None  # Annotation extension: name of the annotated sibling


@dataclass(frozen=True, slots=True, kw_only=True)
class AlarmLimitAnnotation:
    """A writable Property co-typed ``AlarmLimit`` (``dtmi:twinmesh:extension;1``):
    its value is a limit on the Telemetry ``limits`` of the same Interface. The
    home plant raises an alert while a reading is beyond it and clears it once a
    reading is back by ``hysteresis`` (docs/dtdl-extension.md)."""

    limits: str
    direction: str = "above"  # "above": alarm when reading > limit; "below": < limit
    hysteresis: float = 0.0  # in the telemetry's unit
    severity: str = "warning"  # "warning" | "high"


@dataclass(frozen=True, slots=True, kw_only=True)
class Property(Content):
    schema: Schema
    writable: bool = False
    semantic_types: tuple[str, ...] = ()
    unit: str | None = None
    twinmesh: TwinmeshAnnotation | None = None
    expected_range: ExpectedRange | None = None
    annotates: str | None = None
    alarm_limit: AlarmLimitAnnotation | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandPayload(Element):
    name: str
    schema: Schema
    semantic_types: tuple[str, ...] = ()
    unit: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandRequest(CommandPayload):
    """The input of a Command."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandResponse(CommandPayload):
    """The output of a Command."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SetpointAnnotation:
    """What a Command co-typed ``Setpoint`` (``dtmi:twinmesh:extension;1``) asks of
    the command path: the telemetry that confirms it, its safe envelope and rate,
    and whether a second person must approve it (docs/dtdl-extension.md).

    ``minimum``/``maximum`` None: the confirming telemetry's ExpectedRange."""

    confirmed_by: str
    tolerance: float = 0.0
    minimum: float | None = None
    maximum: float | None = None
    max_rate: float | None = None  # request units per second
    high_risk: bool = False
    high_risk_above: float | None = None
    confirm_timeout: float = 10.0  # seconds beyond the ramp before it is failed
    divergence_grace: float = 3.0  # seconds out of tolerance before an alert


@dataclass(frozen=True, slots=True, kw_only=True)
class Command(Content):
    request: CommandRequest | None = None
    response: CommandResponse | None = None
    setpoint: SetpointAnnotation | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Component(Content):
    schema: str  # DTMI of the Interface included by value


@dataclass(frozen=True, slots=True, kw_only=True)
class Relationship(Content):
    target: str | None = None  # any Interface when absent
    min_multiplicity: int = 0
    max_multiplicity: int | None = None  # unbounded when absent
    properties: tuple[Property, ...] = ()
    writable: bool = False


# --- interface -------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Interface(Element):
    """A DTDL Interface.

    ``canonical_json`` is the Interface's JSON with sorted keys and no
    whitespace: two documents are "the same model" exactly when it is equal.
    """

    id: str  # required here, optional on other elements
    contexts: tuple[str, ...] = ()
    contents: tuple[Content, ...] = ()
    extends: tuple[str, ...] = ()
    schemas: tuple[Schema, ...] = ()
    all_contents: tuple[Content, ...] = ()
    ancestors: tuple[str, ...] = ()  # every Interface in the extends hierarchy
    element_count: int = 0  # elements under its own contents
    canonical_json: str = ""
    source: str = ""

    @property
    def dtmi(self) -> Dtmi:
        return parse_dtmi(self.id)

    def content(self, name: str) -> Content:
        """The element of ``all_contents`` called ``name``; ``KeyError`` if none."""
        for item in self.all_contents:
            if item.name == name:
                return item
        raise KeyError(f"{self.id} has no content named {name!r}")

    @property
    def properties(self) -> tuple[Property, ...]:
        return tuple(c for c in self.all_contents if isinstance(c, Property))

    @property
    def telemetries(self) -> tuple[Telemetry, ...]:
        return tuple(c for c in self.all_contents if isinstance(c, Telemetry))

    @property
    def commands(self) -> tuple[Command, ...]:
        return tuple(c for c in self.all_contents if isinstance(c, Command))

    @property
    def components(self) -> tuple[Component, ...]:
        return tuple(c for c in self.all_contents if isinstance(c, Component))

    @property
    def relationships(self) -> tuple[Relationship, ...]:
        return tuple(c for c in self.all_contents if isinstance(c, Relationship))
