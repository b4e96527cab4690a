"""The schemas a node knows: the shipped plant models (DTDL v3), any model
files its config names, the built-in demo pump and the fleet's audit log."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from twinmesh.crdt import EntitySchema, FieldKind, FieldSpec
from twinmesh.crdt.demo_models import PUMP_SCHEMAS

from ._shared_models import MODEL_DOCUMENT, MODEL_SCHEMA
from .commands._log import COMMANDS_MODEL, COMMANDS_SCHEMA
from .cosim._registry import COSIM_SCHEMAS
from .dtdl import ModelRegistry

__all__ = ["AUDIT_ENTITY", "AUDIT_MODEL", "SHIPPED_MODELS", "load_registry", "load_schemas"]

_ROOT = Path(__file__).resolve().parent.parent
# Installed: twinmesh/adapters/...; in the source tree the link resolves to plant-adapters/.
SHIPPED_MODELS = _ROOT / "adapters" / "synthetic" / "models"
if not SHIPPED_MODELS.is_dir():
    SHIPPED_MODELS = _ROOT / "plant-adapters" / "synthetic" / "models"

AUDIT_MODEL = "dtmi:twinmesh:fleet:Audit;1"
AUDIT = EntitySchema(
    model=AUDIT_MODEL,
    fields={"events": FieldSpec(kind=FieldKind.LOG, description="who resolved what, when, why")},
)


def AUDIT_ENTITY(node: str) -> str:
    """Each node keeps its audit entries in its own entity (it is that entity's home)."""
    return f"{node}/_audit"


def load_registry(extra: Sequence[Path] = ()) -> ModelRegistry:
    """The DTDL models: shipped ones, then the files (or directories) in ``extra``."""
    registry = ModelRegistry()
    registry.add_files([SHIPPED_MODELS, Path(__file__).resolve().parent / "workorders" / "models"])
    if extra:
        registry.add_files(list(extra))
    return registry


def _alert_schemas() -> dict[str, EntitySchema]:
    from .alerts._log import ALERT_LOG_MODEL, ALERT_LOG_SCHEMA
    from .alerts._policy import POLICY_MODEL, POLICY_SCHEMA

    return {ALERT_LOG_MODEL: ALERT_LOG_SCHEMA, POLICY_MODEL: POLICY_SCHEMA}


def load_schemas(
    extra: Sequence[Path] = (), *, registry: ModelRegistry | None = None
) -> dict[str, EntitySchema]:
    """CRDT schemas for every model, plus the demo pump and the audit log."""
    registry = registry if registry is not None else load_registry(extra)
    schemas: dict[str, EntitySchema] = dict(PUMP_SCHEMAS)
    schemas[AUDIT_MODEL] = AUDIT
    schemas[COMMANDS_MODEL] = COMMANDS_SCHEMA  # node/commands: signed commands and outcomes
    schemas[MODEL_DOCUMENT] = MODEL_SCHEMA
    schemas.update(COSIM_SCHEMAS)  # the fleet's FMU registry and deployments
    schemas.update(_alert_schemas())
    for dtmi in registry:
        schemas[dtmi] = registry.entity_schema(dtmi)
    return schemas
