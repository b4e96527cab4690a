"""A small pump schema used by the CRDT walkthrough, tests and benchmarks.

The real plant models are DTDL v3 interfaces (see ``twinmesh.node.dtdl``);
this one is built in code so the pure core can be shown without any files.
"""

from __future__ import annotations

from ._schema import EntitySchema, FieldKind, FieldSpec, Policy, ValueType

__all__ = ["PUMP", "PUMP_SCHEMAS"]

PUMP = EntitySchema(
    model="dtmi:twinmesh:demo:Pump;1",
    fields={
        "maintenance_date": FieldSpec(
            kind=FieldKind.SHARED, value_type=ValueType.DATE, policy=Policy.EARLIEST
        ),
        "vibration_limit": FieldSpec(
            kind=FieldKind.SHARED,
            value_type=ValueType.DOUBLE,
            policy=Policy.STRICTER,
            strictness="lower",
        ),
        "lifecycle": FieldSpec(
            kind=FieldKind.SHARED,
            value_type=ValueType.ENUM,
            enum_values=("in-service", "degraded", "out-of-service"),
            policy=Policy.STRICTER,
        ),
        "owner": FieldSpec(
            kind=FieldKind.SHARED, value_type=ValueType.STRING, policy=Policy.HOME_WINS
        ),
        "serial": FieldSpec(kind=FieldKind.REPORTED, value_type=ValueType.STRING),
        "label": FieldSpec(kind=FieldKind.LABEL, value_type=ValueType.STRING),
        "tags": FieldSpec(kind=FieldKind.SET),
        "starts": FieldSpec(kind=FieldKind.COUNTER),
        "notes": FieldSpec(kind=FieldKind.TEXT, value_type=ValueType.STRING),
        "alerts": FieldSpec(kind=FieldKind.LOG),
        "value": FieldSpec(kind=FieldKind.SHARED, policy=Policy.MAX),
    },
)

PUMP_SCHEMAS = {PUMP.model: PUMP}
