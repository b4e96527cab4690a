"""Mutual TLS between fleet nodes, and the node identity a peer certificate proves.

Both ends present a certificate from the fleet CA and trust *only* that CA (never
the system store). The TLS layer answers "is this a fleet member?"; the node then
answers "is it the member it says it is?" with :func:`check_peer_identity`, which
compares a claimed node name (from a message or header) with the URI SAN
``urn:twinmesh:node:NODE`` of the verified peer certificate.

TLS 1.3 only: both ends are twinmesh processes we ship, so there is no legacy peer
to accommodate, and 1.3 gives forward secrecy and encrypted certificates always.
One consequence to know when debugging: in TLS 1.3 the server checks the client
certificate *after* the client considers the handshake done, so a refused client
sees the failure (an alert or a reset) on its first read, not in ``connect``.
"""

from __future__ import annotations

import os
import ssl

from cryptography import x509

from twinmesh.crdt._errors import RemoteProtocolError

from ._ca import NODE_NAME_PATTERN, NODE_URI_PREFIX

__all__ = [
    "PeerIdentityError",
    "check_peer_identity",
    "client_ssl_context",
    "peer_node_name",
    "server_ssl_context",
]

PeerCert = ssl.SSLObject | ssl.SSLSocket | bytes | x509.Certificate
_Path = str | os.PathLike[str]


class PeerIdentityError(RemoteProtocolError):
    """The peer's certificate does not prove the node identity it claims (or any)."""


def _harden(ctx: ssl.SSLContext, ca_cert: _Path, cert: _Path, key: _Path) -> ssl.SSLContext:
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.verify_mode = ssl.CERT_REQUIRED
    # Strict RFC 5280 checks (the default from Python 3.13): fail here, not after an upgrade.
    ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    ctx.load_verify_locations(cafile=os.fspath(ca_cert))
    ctx.load_cert_chain(certfile=os.fspath(cert), keyfile=os.fspath(key))
    return ctx


def server_ssl_context(ca_cert: _Path, cert: _Path, key: _Path) -> ssl.SSLContext:
    """A server context that refuses any client without a certificate from the fleet CA."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    return _harden(ctx, ca_cert, cert, key)


def client_ssl_context(ca_cert: _Path, cert: _Path, key: _Path) -> ssl.SSLContext:
    """A client context that presents this node's certificate and trusts only the fleet CA.

    Hostname checking stays on: connect with ``server_hostname`` (aiohttp does this
    from the URL) matching one of the DNS/IP SANs issued to the peer.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = True
    return _harden(ctx, ca_cert, cert, key)


def _as_certificate(peer: PeerCert) -> x509.Certificate:
    if isinstance(peer, x509.Certificate):
        return peer
    if isinstance(peer, bytes):
        der: bytes | None = peer
    else:
        der = peer.getpeercert(binary_form=True)
    if not der:
        raise PeerIdentityError("peer presented no certificate")
    try:
        return x509.load_der_x509_certificate(der)
    except ValueError as exc:
        raise PeerIdentityError(f"peer certificate is not valid DER: {exc}") from exc


def peer_node_name(peer: PeerCert) -> str:
    """The node name a peer certificate was issued to.

    Pass the ``ssl_object`` of a connection made with one of the contexts above (so
    the chain was verified), or its DER bytes. Raises :class:`PeerIdentityError`
    when there is no certificate or not exactly one well-formed node URI SAN.
    """
    cert = _as_certificate(peer)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise PeerIdentityError(
            "peer certificate has no subjectAltName, so no node identity"
        ) from None
    uris = [
        u
        for u in san.get_values_for_type(x509.UniformResourceIdentifier)
        if u.startswith(NODE_URI_PREFIX)
    ]
    if not uris:
        raise PeerIdentityError(f"peer certificate has no {NODE_URI_PREFIX}NODE URI SAN")
    if len(uris) > 1:
        # Two identities in one certificate would let one key speak for two nodes.
        raise PeerIdentityError(f"peer certificate names several nodes: {', '.join(sorted(uris))}")
    name = uris[0][len(NODE_URI_PREFIX) :]
    if not NODE_NAME_PATTERN.fullmatch(name):
        raise PeerIdentityError(f"peer certificate names an invalid node {name!r}")
    return name


def check_peer_identity(claimed: str, cert: PeerCert) -> None:
    """Raise :class:`PeerIdentityError` unless ``cert`` was issued to node ``claimed``."""
    actual = peer_node_name(cert)
    if actual != claimed:
        raise PeerIdentityError(
            f"peer claims to be node {claimed!r} but its certificate was issued to node {actual!r}"
        )
