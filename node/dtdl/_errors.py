"""Validation errors, reported like a compiler's: where, which rule, expected, found.

A model is checked completely before anything is refused, so one run shows
every problem in every file. Each problem is one :class:`DtdlError`; a batch
that has any is refused as a whole with :class:`DtdlValidationError`.

``path`` walks from the interface to the offending element, e.g.
``dtmi:twinmesh:plant:Pump;1 / contents[3] (name "speed") / schema``.
``rule`` is a stable short id (``name.pattern``, ``extends.cycle``, ...);
``docs/dtdl-extension.md`` lists them with the spec section each enforces.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from twinmesh.crdt._errors import TwinmeshError

__all__ = [
    "MISSING",
    "DtdlError",
    "DtdlValidationError",
    "ModelConflictError",
    "Path",
    "Reporter",
    "format_path",
    "show",
]

#: Path segments, joined with " / " for display.
Path = tuple[str, ...]

#: Placeholder for "found" when a required value is absent.
MISSING = "nothing"


def format_path(path: Path) -> str:
    return " / ".join(path) if path else "(document)"


def show(value: Any, *, limit: int = 60) -> str:
    """A short JSON rendering of a found value, for messages."""
    try:
        text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    except (TypeError, ValueError):
        text = repr(value)
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return text


@dataclass(frozen=True, slots=True, kw_only=True)
class DtdlError:
    """One rule broken by one element of a model."""

    path: str
    rule: str
    expected: str
    found: str
    message: str
    source: str = ""  # the file (or other origin) the element came from

    def __str__(self) -> str:
        prefix = f"{self.source}: " if self.source else ""
        return f"{prefix}{self.path}: {self.message}"


class DtdlValidationError(TwinmeshError):
    """Models were refused; ``errors`` lists every problem found, in document order."""

    def __init__(self, errors: Sequence[DtdlError]) -> None:
        self.errors: tuple[DtdlError, ...] = tuple(errors)
        count = len(self.errors)
        head = "; ".join(str(e) for e in self.errors[:3])
        more = f" (and {count - 3} more)" if count > 3 else ""
        super().__init__(f"{count} DTDL error{'s' if count != 1 else ''}: {head}{more}")

    @classmethod
    def from_iterable(cls, errors: Iterable[DtdlError]) -> DtdlValidationError:
        return cls(tuple(errors))


class ModelConflictError(DtdlValidationError):
    """A different document was offered under a DTMI the registry already holds.

    Models are immutable once registered: a changed model needs a new version
    (``;2``), because twins and peers that name ``;1`` must keep meaning the
    same thing. ``dtmis`` lists the identifiers in conflict; ``errors`` holds
    one ``registry.immutable`` error for each.
    """

    def __init__(self, errors: Sequence[DtdlError], dtmis: Sequence[str]) -> None:
        super().__init__(errors)
        self.dtmis: tuple[str, ...] = tuple(dtmis)


class Reporter:
    """Collects the errors of one validation run; parsing never stops at the first."""

    __slots__ = ("errors",)

    def __init__(self) -> None:
        self.errors: list[DtdlError] = []

    def error(
        self,
        path: Path,
        rule: str,
        *,
        expected: str,
        found: str,
        what: str,
        source: str = "",
    ) -> None:
        """Record that ``what`` at ``path`` breaks ``rule``."""
        self.errors.append(
            DtdlError(
                path=format_path(path),
                rule=rule,
                expected=expected,
                found=found,
                message=f"{what}: expected {expected}, found {found} [{rule}]",
                source=source,
            )
        )
