"""The models one node knows, by exact DTMI (version included).

Models are immutable once registered. ``dtmi:x:Pump;1`` and ``dtmi:x:Pump;2``
are different models that live side by side, and a twin names the exact
version it follows (ARCHITECTURE.md, "Data model"). Offering a *different*
document under a registered DTMI is refused, because twins and peers that
already use that DTMI must keep meaning the same thing; offering the same
document again (same canonical JSON) is a no-op, so replaying a model that
arrived by gossip is harmless.

A batch is all or nothing: it is parsed and linked against the registered
models (``extends``, Component schemas resolve across both) and registered
only if it has no error at all. Pure Python; file reading is a convenience
wrapper around ``read_model_files``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from types import MappingProxyType
from typing import Any

from twinmesh.crdt._errors import LocalProtocolError
from twinmesh.crdt._schema import EntitySchema

from ._dtmi import parse_dtmi
from ._errors import DtdlError, DtdlValidationError, ModelConflictError, Reporter
from ._limits import V3_LIMITS, Limits
from ._load import ParseResult, parse_model, parse_models, read_model_files
from ._mapping import entity_schema
from ._model import Interface
from ._parser import SourceDocument

__all__ = ["ModelRegistry"]


class ModelRegistry:
    """Versioned, append-only store of validated DTDL Interfaces."""

    def __init__(self, *, limits: Limits = V3_LIMITS) -> None:
        self._limits = limits
        self._models: dict[str, Interface] = {}

    # -- registering -------------------------------------------------------------

    def add(self, content: Any, *, source: str = "") -> tuple[Interface, ...]:
        """Register the Interfaces of one JSON value or JSON text."""
        return self._commit(self.parse(content, source=source))

    def parse(self, content: Any, *, source: str = "") -> ParseResult:
        """Parse and link ``content`` against the registered models, registering nothing.

        Inspect the result (all errors, the Interfaces), then :meth:`commit` it.
        """
        return parse_model(content, source=source, known=self._models, limits=self._limits)

    def commit(self, result: ParseResult) -> tuple[Interface, ...]:
        """Register what :meth:`parse` returned (raises on its errors or on a changed model)."""
        return self._commit(result)

    def add_documents(self, documents: Iterable[SourceDocument]) -> tuple[Interface, ...]:
        result = parse_models(documents, known=self._models, limits=self._limits)
        return self._commit(result)

    def add_files(self, paths: Sequence[str | os.PathLike[str]]) -> tuple[Interface, ...]:
        """Register the models in ``paths`` (files, or directories of ``*.json``)."""
        docs, errors = read_model_files(paths)
        if errors:
            raise DtdlValidationError(errors)
        return self.add_documents(docs)

    def _commit(self, result: ParseResult) -> tuple[Interface, ...]:
        report = Reporter()
        conflicts: list[str] = []
        fresh: list[Interface] = []
        batch: list[Interface] = []
        for iface in result.models:
            existing = self._models.get(iface.id)
            if existing is None:
                fresh.append(iface)
                batch.append(iface)
            elif existing.canonical_json == iface.canonical_json:
                batch.append(existing)  # identical document: nothing to do
            else:
                conflicts.append(iface.id)
                report.error(
                    (iface.id,),
                    "registry.immutable",
                    expected=f"the document registered for {iface.id} (from "
                    f"{existing.source or 'an earlier batch'}), or a new version",
                    found="a different document",
                    what="a registered model never changes",
                    source=iface.source,
                )
        errors: list[DtdlError] = [*result.errors, *report.errors]
        if conflicts and not result.errors:
            raise ModelConflictError(errors, conflicts)
        if errors:
            raise DtdlValidationError(errors)
        for iface in fresh:
            self._models[iface.id] = iface
        return tuple(batch)

    # -- looking up ----------------------------------------------------------------

    def get(self, dtmi: str) -> Interface:
        """The model with exactly this DTMI (version included)."""
        try:
            return self._models[dtmi]
        except KeyError:
            others = ", ".join(str(m.id) for m in self.versions(dtmi)) or "none"
            raise LocalProtocolError(
                f"no model {dtmi} is registered (versions of it known: {others})"
            ) from None

    def versions(self, dtmi: str) -> tuple[Interface, ...]:
        """Every registered version of ``dtmi``'s path, oldest first.

        ``dtmi`` may carry a version or not; ``dtmi:x:Pump;2`` and ``dtmi:x:Pump``
        both list ``;1``, ``;2``, ... .
        """
        try:
            path = parse_dtmi(dtmi).path
        except ValueError:
            return ()
        found = [m for m in self._models.values() if m.dtmi.path == path]
        return tuple(sorted(found, key=lambda m: m.dtmi.version_key()))

    def latest(self, dtmi: str) -> Interface:
        """The highest registered version of ``dtmi``'s path."""
        found = self.versions(dtmi)
        if not found:
            raise LocalProtocolError(f"no version of {dtmi} is registered")
        return found[-1]

    def entity_schema(self, dtmi: str) -> EntitySchema:
        """The CRDT schema of twins that follow model ``dtmi``."""
        return entity_schema(self.get(dtmi), resolve=self.get)

    @property
    def models(self) -> Mapping[str, Interface]:
        return MappingProxyType(self._models)

    def __contains__(self, dtmi: object) -> bool:
        return dtmi in self._models

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._models))

    def __len__(self) -> int:
        return len(self._models)
