"""Entity schemas: which CRDT each field uses and how its values are typed.

A field's CRDT is chosen by its model, never ad hoc (ARCHITECTURE.md, "Data
model"). Models come from DTDL v3 interfaces (``twinmesh.node.dtdl`` maps a
DTDL property to a :class:`FieldSpec`); tests and the demo build schemas
directly.
"""

from __future__ import annotations

import datetime as _dt
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from ._errors import LocalProtocolError
from ._values import value_bytes

__all__ = [
    "MAX_VALUE_BYTES",
    "EntitySchema",
    "FieldKind",
    "FieldSpec",
    "Policy",
    "ValueType",
    "check_plain_value",
]

#: Upper bound on one encoded field value (canonical msgpack, value_bytes);
#: larger values belong in a blob store. The one limit the others follow:
#:
#: * a write whose value is larger is refused before it is acknowledged
#:   (FieldSpec.check_value: the API answers 422 with this reason);
#: * the codec refuses the same (DecodeLimits.max_value_bytes and
#:   max_string are this number), so nothing a replica accepts is refused by
#:   another: before, a 65,534-character string (65,537 bytes encoded) was
#:   acknowledged, refused by every peer and wedged replay at restart;
#: * a delta is one value plus ids, so a batch of one delta is at most a few
#:   hundred bytes over it; the engine sends a lone batch even when it is
#:   larger than ``max_message_bytes``, and a receiver accepts messages up to
#:   2 x max_message_bytes + 64 KiB, so such a batch always travels;
#: * the HTTP body limit (``max_body_bytes``, 4 MiB, 413 beyond) is far above.
MAX_VALUE_BYTES = 64 * 1024
_MAX_VALUE_DEPTH = 8


class FieldKind(StrEnum):
    """The CRDT behind a field (the table in ARCHITECTURE.md)."""

    SHARED = "shared"  # multi-value register over dotted version vectors; conflicts reviewed
    REPORTED = "reported"  # single-writer register, written only at the entity's home
    LABEL = "label"  # LWW register on a hybrid logical clock
    SET = "set"  # add-wins observed-remove set
    COUNTER = "counter"  # PN-counter
    TEXT = "text"  # collaborative text (pycrdt / Yrs)
    LOG = "log"  # grow-only log keyed by event id


class Policy(StrEnum):
    """How a shared field picks its *provisional* value while siblings await review."""

    LATEST = "latest"  # greatest hybrid timestamp
    EARLIEST = "earliest"  # smallest hybrid timestamp
    MAX = "max"  # greatest value
    MIN = "min"  # smallest value
    HOME_WINS = "home-wins"  # the sibling written at the entity's home, else latest
    STRICTER = "stricter"  # most conservative value by the field's strictness order


class ValueType(StrEnum):
    """Value types a field may hold. ``ANY`` is any plain msgpack-able value."""

    STRING = "string"
    INTEGER = "integer"
    DOUBLE = "double"
    BOOLEAN = "boolean"
    DATE = "date"  # ISO 8601 calendar date, "2026-05-10"
    DATETIME = "dateTime"  # ISO 8601 with offset, "2026-05-10T08:00:00+00:00"
    ENUM = "enum"  # one of FieldSpec.enum_values
    ANY = "any"


_isfinite = math.isfinite
_FAST_STR_CHARS = MAX_VALUE_BYTES - 5
_INT_OK = frozenset((ValueType.INTEGER, ValueType.DOUBLE, ValueType.ANY))
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True, slots=True, kw_only=True)
class FieldSpec:
    """One field of an entity schema.

    ``strictness`` orders values for the ``stricter`` policy: for numbers
    ``"lower"`` or ``"higher"`` says which direction is stricter; for enums
    ``enum_values`` are listed from least to most strict.
    """

    kind: FieldKind
    value_type: ValueType = ValueType.ANY
    policy: Policy = Policy.LATEST
    enum_values: tuple[str, ...] = ()
    strictness: str = "lower"
    description: str = ""

    def __post_init__(self) -> None:
        if self.value_type is ValueType.ENUM and not self.enum_values:
            raise LocalProtocolError("an enum field needs enum_values")
        if self.strictness not in ("lower", "higher"):
            raise LocalProtocolError(
                f"strictness must be 'lower' or 'higher', not {self.strictness!r}"
            )
        if self.kind is FieldKind.TEXT and self.value_type not in (
            ValueType.STRING,
            ValueType.ANY,
        ):
            raise LocalProtocolError("a text field holds strings")

    def check_value(self, value: Any, *, where: str) -> None:
        """Raise ``LocalProtocolError`` unless ``value`` fits this field's value type."""
        # The common cases first, each exactly what the general path below
        # accepts (an ASCII str holds no lone surrogate; a float is plain when
        # finite): every remote delta's value comes through here.
        t = type(value)
        vt = self.value_type
        if t is float:
            if (vt is ValueType.DOUBLE or vt is ValueType.ANY) and _isfinite(value):
                return
        elif t is str:
            # An ASCII str of n characters encodes to at most n + 5 bytes
            # (msgpack str32 header), so below this length it is under the limit.
            if len(value) <= _FAST_STR_CHARS and value.isascii():
                if vt is ValueType.STRING or vt is ValueType.ANY:
                    return
                if vt is ValueType.ENUM and value in self.enum_values:
                    return
                if vt is ValueType.DATE and _is_date(value):
                    return
        elif t is int and vt in _INT_OK and -(2**63) <= value < 2**64:
            return
        check_plain_value(value, where=where)
        size = len(value_bytes(value))
        if size > MAX_VALUE_BYTES:
            raise LocalProtocolError(
                f"{where}: the value encodes to {size} bytes, over the limit of "
                f"{MAX_VALUE_BYTES} bytes per field value"
            )
        vt = self.value_type
        if vt is ValueType.ANY:
            return
        ok: bool
        if vt is ValueType.STRING:
            ok = isinstance(value, str)
        elif vt is ValueType.INTEGER:
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif vt is ValueType.DOUBLE:
            ok = isinstance(value, int | float) and not isinstance(value, bool)
        elif vt is ValueType.BOOLEAN:
            ok = isinstance(value, bool)
        elif vt is ValueType.DATE:
            ok = isinstance(value, str) and _is_date(value)
        elif vt is ValueType.DATETIME:
            ok = isinstance(value, str) and _is_datetime(value)
        else:  # ENUM
            ok = isinstance(value, str) and value in self.enum_values
        if not ok:
            expected = vt.value
            if vt is ValueType.ENUM:
                expected = f"one of {list(self.enum_values)}"
            raise LocalProtocolError(f"{where}: expected {expected}, got {value!r}")


def _is_date(text: str) -> bool:
    if not _DATE_RE.match(text):
        return False
    try:
        _dt.date.fromisoformat(text)
    except ValueError:
        return False
    return True


def _is_datetime(text: str) -> bool:
    try:
        parsed = _dt.datetime.fromisoformat(text)
    except ValueError:
        return False
    return parsed.tzinfo is not None


def check_plain_value(value: Any, *, where: str, _depth: int = 0) -> None:
    """Values are plain data: None, bool, int (64-bit), finite float, str, bytes,
    lists and str-keyed dicts of those. NaN is refused because it is not equal
    to itself, which would break 'equal states encode equal'."""
    if _depth > _MAX_VALUE_DEPTH:
        raise LocalProtocolError(f"{where}: value nested deeper than {_MAX_VALUE_DEPTH}")
    if value is None or isinstance(value, bool | bytes):
        return
    if isinstance(value, str):
        _check_text(value, where=where)
        return
    if isinstance(value, int):
        if not -(2**63) <= value < 2**64:
            raise LocalProtocolError(f"{where}: integer {value} does not fit in 64 bits")
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise LocalProtocolError(f"{where}: {value!r} is not a finite number")
        return
    if isinstance(value, list | tuple):
        for item in value:
            check_plain_value(item, where=where, _depth=_depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise LocalProtocolError(f"{where}: map keys must be strings, got {key!r}")
            _check_text(key, where=where)
            check_plain_value(item, where=where, _depth=_depth + 1)
        return
    raise LocalProtocolError(f"{where}: {type(value).__name__} is not a plain value")


def _check_text(text: str, *, where: str) -> None:
    # A lone surrogate is a valid Python str but not Unicode text: msgpack
    # cannot encode it, so it would make the whole state unencodable.
    if not text.isascii():
        try:
            text.encode()
        except UnicodeEncodeError:
            raise LocalProtocolError(f"{where}: string holds a lone surrogate") from None


@dataclass(frozen=True, slots=True, kw_only=True)
class EntitySchema:
    """The fields of one model (a DTDL interface, by its DTMI)."""

    model: str
    fields: Mapping[str, FieldSpec] = field(default_factory=dict)

    def spec(self, name: str) -> FieldSpec:
        try:
            return self.fields[name]
        except KeyError:
            known = ", ".join(sorted(self.fields)) or "none"
            raise LocalProtocolError(
                f"model {self.model} has no field {name!r} (fields: {known})"
            ) from None
