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
from ._service import TelemetryService, build_adapter
from ._settings import (
    AdapterSpec,
    AssetSpec,
    TelemetryConfigError,
    TelemetrySettings,
    load_assets,
    parse_telemetry,
)
from ._specs import check_asset_ids, tag_specs

__all__ = [
    "UNITS",
    "AdapterSpec",
    "Aggregate",
    "AssetSpec",
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
    "TelemetryConfigError",
    "TelemetryService",
    "TelemetrySettings",
    "UnitError",
    "build_adapter",
    "check_asset_ids",
    "convert",
    "load_assets",
    "parse_telemetry",
    "tag_specs",
    "unit_dimension",
]
