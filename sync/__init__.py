"""twinmesh.sync — the pure anti-entropy engine (no IO, no wall clock, no global random)."""

from ._engine import (
    BatchRefused,
    DeltasApplied,
    EngineMetrics,
    Event,
    MemberJoined,
    Outgoing,
    SnapshotApplied,
    SyncConfig,
    SyncEngine,
)
from ._identity import FleetAuthority, Identity, MemberCredential, verify_signature
from ._messages import (
    Deltas,
    Digest,
    MemberInfo,
    Message,
    SignedBatch,
    Snapshot,
    decode_message,
    encode_message,
    open_batch,
    seal_batch_bytes,
)

__all__ = [
    "BatchRefused",
    "Deltas",
    "DeltasApplied",
    "Digest",
    "EngineMetrics",
    "Event",
    "FleetAuthority",
    "Identity",
    "MemberCredential",
    "MemberInfo",
    "MemberJoined",
    "Message",
    "Outgoing",
    "SignedBatch",
    "Snapshot",
    "SnapshotApplied",
    "SyncConfig",
    "SyncEngine",
    "decode_message",
    "encode_message",
    "open_batch",
    "seal_batch_bytes",
    "verify_signature",
]
