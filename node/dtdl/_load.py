"""Entry points: parse documents (or files) into a checked, linked model set."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path as FsPath
from typing import Any

from ._errors import DtdlError, DtdlValidationError, Reporter
from ._limits import V3_LIMITS, Limits
from ._linker import link
from ._model import Interface
from ._parser import DocumentParser, SourceDocument

__all__ = [
    "ParseResult",
    "load_model_files",
    "parse_model",
    "parse_models",
    "read_model_files",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class ParseResult:
    """Interfaces parsed from a set of documents, and every error found.

    ``models`` holds what could be built even when ``errors`` is not empty,
    so tools can show as much as possible; only an error-free result should be
    trusted (``raise_for_errors`` enforces that).
    """

    models: tuple[Interface, ...] = ()
    errors: tuple[DtdlError, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.errors

    def raise_for_errors(self) -> None:
        if self.errors:
            raise DtdlValidationError(self.errors)

    def model(self, dtmi: str) -> Interface:
        for iface in self.models:
            if iface.id == dtmi:
                return iface
        raise KeyError(dtmi)


def parse_models(
    documents: Iterable[SourceDocument],
    *,
    known: Mapping[str, Interface] | None = None,
    limits: Limits = V3_LIMITS,
) -> ParseResult:
    """Parse and link ``documents``; references may also resolve into ``known``."""
    report = Reporter()
    parser = DocumentParser(report, limits)
    parsed = [item for doc in documents for item in parser.parse(doc)]
    models = link(parsed, known=known or {}, report=report, limits=limits)
    return ParseResult(models=tuple(models), errors=tuple(report.errors))


def parse_model(
    content: Any,
    *,
    source: str = "",
    known: Mapping[str, Interface] | None = None,
    limits: Limits = V3_LIMITS,
) -> ParseResult:
    """Parse one JSON value (an Interface object or an array), or JSON text."""
    if isinstance(content, str | bytes):
        docs, errors = _decode(content, source)
        result = parse_models(docs, known=known, limits=limits)
        return ParseResult(models=result.models, errors=(*errors, *result.errors))
    return parse_models(
        [SourceDocument(source=source, content=content)], known=known, limits=limits
    )


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _decode(text: str | bytes, source: str) -> tuple[list[SourceDocument], list[DtdlError]]:
    report = Reporter()
    try:
        content = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        report.error(
            (),
            "json",
            expected="a JSON document",
            found=str(exc),
            what="cannot read JSON",
            source=source,
        )
        return [], report.errors
    return [SourceDocument(source=source, content=content)], []


def read_model_files(
    paths: Sequence[str | os.PathLike[str]],
) -> tuple[list[SourceDocument], list[DtdlError]]:
    """Read JSON model files; a directory stands for the ``*.json`` files under it."""
    docs: list[SourceDocument] = []
    errors: list[DtdlError] = []
    for raw in paths:
        path = FsPath(raw)
        files = sorted(path.rglob("*.json")) if path.is_dir() else [path]
        for file in files:
            name = str(file)
            try:
                data = file.read_bytes()
            except OSError as exc:
                report = Reporter()
                report.error(
                    (),
                    "file",
                    expected="a readable file",
                    found=exc.strerror or type(exc).__name__,
                    what="cannot read model file",
                    source=name,
                )
                errors += report.errors
                continue
            found, problems = _decode(data, name)
            docs += found
            errors += problems
    return docs, errors


def load_model_files(
    paths: Sequence[str | os.PathLike[str]],
    *,
    known: Mapping[str, Interface] | None = None,
    limits: Limits = V3_LIMITS,
) -> ParseResult:
    """Read, parse and link model files; references between the files resolve."""
    docs, errors = read_model_files(paths)
    result = parse_models(docs, known=known, limits=limits)
    return ParseResult(models=result.models, errors=(*errors, *result.errors))
