"""Plant adapters: OPC UA, MQTT (twinmesh.adapters).

The protocol drivers are imported explicitly (``twinmesh.adapters.mqtt``,
``twinmesh.adapters.opcua``) so that importing the shared types here does not
pull in aiomqtt or asyncua.
"""

from ._base import Adapter, AdapterState, AdapterStatus, Backoff, BackoffPolicy, Reject, Sink
from ._mapping import (
    DEFAULT_UNS_RULE,
    MappingError,
    MqttCommandBinding,
    NodeBinding,
    OpcUaMapping,
    TopicMapping,
    TopicRule,
    TopicTarget,
    load_node_bindings,
    load_topic_mapping,
)
from ._sample import Provenance, Quality, Sample, Value, make_sample_id

__all__ = [
    "DEFAULT_UNS_RULE",
    "Adapter",
    "AdapterState",
    "AdapterStatus",
    "Backoff",
    "BackoffPolicy",
    "MappingError",
    "MqttCommandBinding",
    "NodeBinding",
    "OpcUaMapping",
    "Provenance",
    "Quality",
    "Reject",
    "Sample",
    "Sink",
    "TopicMapping",
    "TopicRule",
    "TopicTarget",
    "Value",
    "load_node_bindings",
    "load_topic_mapping",
    "make_sample_id",
]
