"""twinmesh.crdt — the pure CRDT core (no IO, no wall clock, no global random).

See ARCHITECTURE.md, "Data model", for which CRDT each kind of field uses.
"""

from ._clocks import (
    EPOCH_MARK,
    CausalContext,
    Dot,
    HybridClock,
    HybridTime,
    Order,
    VersionVector,
    actor_origin,
    epoch_actor,
)
from ._codec import (
    DELTAS_VERSION,
    FORMAT_VERSION,
    DecodeLimits,
    decode_deltas,
    decode_state,
    encode_deltas,
    encode_field,
    encode_state,
    state_digest,
)
from ._entity import FIELD_TYPES, Conflict, Entity, EntityHeader, FieldState, conflicts
from ._errors import LocalProtocolError, RemoteProtocolError, TwinmeshError
from ._mvregister import MVRegister, Sibling
from ._orset import ORSet
from ._policy import provisional
from ._scalars import GrowOnlyLog, LWWRegister, PNCounter, SingleWriterRegister
from ._schema import EntitySchema, FieldKind, FieldSpec, Policy, ValueType, check_plain_value
from ._state import FLEET_HOME, Delta, ReplicaState
from ._text import TextCrdt, yrs_client_id

__all__ = [
    "DELTAS_VERSION",
    "EPOCH_MARK",
    "FIELD_TYPES",
    "FLEET_HOME",
    "FORMAT_VERSION",
    "CausalContext",
    "Conflict",
    "DecodeLimits",
    "Delta",
    "Dot",
    "Entity",
    "EntityHeader",
    "EntitySchema",
    "FieldKind",
    "FieldSpec",
    "FieldState",
    "GrowOnlyLog",
    "HybridClock",
    "HybridTime",
    "LWWRegister",
    "LocalProtocolError",
    "MVRegister",
    "ORSet",
    "Order",
    "PNCounter",
    "Policy",
    "RemoteProtocolError",
    "ReplicaState",
    "Sibling",
    "SingleWriterRegister",
    "TextCrdt",
    "TwinmeshError",
    "ValueType",
    "VersionVector",
    "actor_origin",
    "check_plain_value",
    "conflicts",
    "decode_deltas",
    "decode_state",
    "encode_deltas",
    "encode_field",
    "encode_state",
    "epoch_actor",
    "provisional",
    "state_digest",
    "yrs_client_id",
]
