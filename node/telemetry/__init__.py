"""Telemetry ingestion on a node: quality checks and the store-and-forward buffer."""

from ._buffer import (
    Aggregate,
    CompactResult,
    Retention,
    StoredEvent,
    StoredReject,
    StoredSample,
    TelemetryBuffer,
)
from ._ingest import IngestPipeline
from ._quality import (
    UNITS,
    CheckResult,
    EventKind,
    QualityChecker,
    QualityConfig,
    QualityEvent,
    TagSpec,
    UnitError,
    convert,
    unit_dimension,
)

__all__ = [
    "UNITS",
    "Aggregate",
    "CheckResult",
    "CompactResult",
    "EventKind",
    "IngestPipeline",
    "QualityChecker",
    "QualityConfig",
    "QualityEvent",
    "Retention",
    "StoredEvent",
    "StoredReject",
    "StoredSample",
    "TagSpec",
    "TelemetryBuffer",
    "UnitError",
    "convert",
    "unit_dimension",
]
