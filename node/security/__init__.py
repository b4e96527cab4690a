"""Fleet certificate authority and node-to-node mutual TLS."""

from ._ca import (
    CA_CERT_FILE,
    CA_KEY_FILE,
    NODE_NAME_PATTERN,
    NODE_URI_PREFIX,
    CAError,
    FleetCA,
    NodeCredentials,
    init_ca,
    issue_node,
    load_ca,
    node_uri,
    validate_node_name,
)
from ._tls import (
    PeerIdentityError,
    check_peer_identity,
    client_ssl_context,
    peer_node_name,
    server_ssl_context,
)

__all__ = [
    "CA_CERT_FILE",
    "CA_KEY_FILE",
    "NODE_NAME_PATTERN",
    "NODE_URI_PREFIX",
    "CAError",
    "FleetCA",
    "NodeCredentials",
    "PeerIdentityError",
    "check_peer_identity",
    "client_ssl_context",
    "init_ca",
    "issue_node",
    "load_ca",
    "node_uri",
    "peer_node_name",
    "server_ssl_context",
    "validate_node_name",
]
