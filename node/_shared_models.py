"""DTDL models as shared, replicated state: the fleet's model registry.

Theory of operation
-------------------
Every node ships the plant models; a plant may add its own (``node.models``
in its config, or ``POST /v1/models``). A twin names its model by DTMI, so a
replica that receives the twin must know that model too: models replicate
like other shared state. Each Interface is one entity, ``_models/<dtmi>``
(model :data:`MODEL_DOCUMENT`), whose ``document`` field holds the
Interface's canonical JSON (sorted keys, no whitespace: equal text means the
same model, ``Interface.canonical_json``).

*Immutable by construction.* A model is never changed in place: registering
a different document under a DTMI that exists is refused (``dtmi:x:Pump;2``
is how a model changes). Two nodes that register different documents under
one DTMI *concurrently* leave two siblings in ``document`` — a conflict in the
review queue, like any concurrent shared edit — and no replica that lacks the
model adopts either until a reviewer resolves it. A replica that already
holds one of the two keeps it until it restarts (its registry is append-only).

*Adoption.* After replay and after every applied remote batch,
:meth:`SharedModels.adopt` registers each replicated document this node does
not know yet, dependencies first (``extends`` and Component schemas name
other DTMIs; a document waits until they are known). Its CRDT schema is added
to the node's schemas, so twins of that model can now be created and merged.
A twin delta that arrives before its model is refused by the engine and
asked for again in a later round (sync/_engine.py), by which time the model
has normally arrived: the engine delivers per origin, not causally across
origins, and this wait is what makes the difference harmless.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from twinmesh.crdt import (
    FLEET_HOME,
    Delta,
    EntitySchema,
    FieldKind,
    FieldSpec,
    MVRegister,
    Policy,
    ReplicaState,
    ValueType,
)

from .dtdl import DtdlValidationError, Interface, ModelRegistry

__all__ = ["MODEL_DOCUMENT", "MODEL_SCHEMA", "SharedModels", "model_entity"]

log = logging.getLogger("twinmesh.node.models")

MODEL_DOCUMENT = "dtmi:twinmesh:fleet:ModelDocument;1"
MODEL_SCHEMA = EntitySchema(
    model=MODEL_DOCUMENT,
    fields={
        "document": FieldSpec(
            kind=FieldKind.SHARED,
            value_type=ValueType.STRING,
            policy=Policy.EARLIEST,
            description="canonical JSON of one DTDL v3 Interface",
        )
    },
)
_PREFIX = "_models/"
#: Linker rules that mean "depends on a model this node does not have yet".
_UNRESOLVED = frozenset({"extends.unresolved", "component.unresolved"})
#: Largest document replicated; the codec bounds strings at 64 KiB.
MAX_DOCUMENT = 60 * 1024


def model_entity(dtmi: str) -> str:
    return _PREFIX + dtmi


@dataclass(slots=True)
class SharedModels:
    """Keeps a node's registry and schemas in step with the replicated models."""

    registry: ModelRegistry
    schemas: dict[str, EntitySchema]
    #: DTMIs shipped with the code: every node has them, nothing to replicate.
    shipped: frozenset[str]
    #: DTMI -> why a replicated document was not adopted (shown in /v1/models).
    refused: dict[str, str] = field(default_factory=dict)
    adopted: int = 0

    def replicated(self, state: ReplicaState) -> dict[str, list[str]]:
        """DTMI -> the distinct documents the replicated entity holds (2+: a conflict)."""
        out: dict[str, list[str]] = {}
        for entity_id, entity in state.entities.items():
            if not entity_id.startswith(_PREFIX) or entity.header.model != MODEL_DOCUMENT:
                continue
            reg = entity.field("document")
            assert isinstance(reg, MVRegister)
            out[entity_id[len(_PREFIX) :]] = sorted({str(v) for v in reg.values()})
        return out

    def adopt(self, state: ReplicaState) -> list[str]:
        """Register replicated documents this node lacks; returns the DTMIs adopted."""
        pending = {
            dtmi: docs
            for dtmi, docs in self.replicated(state).items()
            if dtmi not in self.registry and dtmi not in self.refused
        }
        adopted: list[str] = []
        progress = True
        while pending and progress:
            progress = False
            for dtmi, docs in sorted(pending.items()):
                if len(docs) != 1:
                    continue  # a conflict (or nothing yet): wait for a resolution
                try:
                    added = self.registry.add(docs[0], source=model_entity(dtmi))
                except DtdlValidationError as exc:
                    if all(e.rule in _UNRESOLVED for e in exc.errors):
                        continue  # it depends on a model not here yet: a later pass or batch
                    self.refused[dtmi] = str(exc)
                    log.warning("replicated model %s refused: %s", dtmi, exc)
                    del pending[dtmi]
                    continue
                self._add_schemas(added)
                adopted += [i.id for i in added]
                del pending[dtmi]
                progress = True
        for dtmi, docs in pending.items():
            if len(docs) == 1 and dtmi not in self.refused:
                log.info("replicated model %s waits for a model it depends on", dtmi)
        self.adopted += len(adopted)
        if adopted:
            log.info("adopted replicated models %s", ", ".join(adopted))
        return adopted

    def _add_schemas(self, interfaces: Iterable[Interface]) -> None:
        for iface in interfaces:
            self.schemas[iface.id] = self.registry.entity_schema(iface.id)

    def register(self, content: Any) -> tuple[list[Interface], list[Interface]]:
        """Validate and register ``content`` (one Interface, or a list of them).

        Returns (new, already known with the identical document). Raises
        :class:`DtdlValidationError` (every problem; ``ModelConflictError`` for
        a changed model) or :class:`ValueError` (too large to replicate), and
        leaves the registry unchanged on any error.
        """
        result = self.registry.parse(content)
        result.raise_for_errors()
        for iface in result.models:
            size = len(iface.canonical_json.encode())
            if size > MAX_DOCUMENT:
                raise ValueError(
                    f"{iface.id}: {size} bytes of canonical JSON; replicated models are"
                    f" limited to {MAX_DOCUMENT}"
                )
        before = set(self.registry)
        interfaces = self.registry.commit(result)
        new = [i for i in interfaces if i.id not in before]
        self._add_schemas(new)
        return new, [i for i in interfaces if i.id in before]

    def missing_in_state(self, state: ReplicaState) -> list[Interface]:
        """Models this node holds (not shipped) that are not replicated yet."""
        have = self.replicated(state)
        return [
            self.registry.get(dtmi)
            for dtmi in self.registry
            if dtmi not in self.shipped and dtmi not in have
        ]

    @staticmethod
    def mutators(
        state: ReplicaState,
        interfaces: Iterable[Interface],
        author: str,
        now_ms: Callable[[], int],
    ) -> list[Callable[[ReplicaState, list[int]], Delta]]:
        """Write-many mutators creating each model entity (fleet-wide: any node may,
        and concurrent creations join) and writing its document. Call them at once:
        whether an entity exists is decided now."""
        out: list[Callable[[ReplicaState, list[int]], Delta]] = []
        for iface in interfaces:
            eid = model_entity(iface.id)
            doc = iface.canonical_json
            if eid not in state.entities:
                out.append(
                    lambda s, _seqs, e=eid: s.create(
                        e, MODEL_DOCUMENT, author=author, home=FLEET_HOME
                    )
                )
            out.append(
                lambda s, _seqs, e=eid, d=doc: s.write(
                    e, "document", d, author=author, now_ms=now_ms()
                )
            )
        return out
