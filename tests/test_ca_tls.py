"""Mutual TLS over real loopback sockets: who gets in, and who they turn out to be."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import aiohttp
import pytest
from aiohttp import web

from twinmesh.node.security import (
    NodeCredentials,
    PeerIdentityError,
    check_peer_identity,
    client_ssl_context,
    init_ca,
    issue_node,
    peer_node_name,
    server_ssl_context,
)

T = TypeVar("T")
NODE_HEADER = "X-Twinmesh-Node"


def _run(coro: Awaitable[T]) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout=10)

    return asyncio.run(bounded())


@dataclass(frozen=True, slots=True, kw_only=True)
class Fleets:
    plant_a: NodeCredentials
    plant_b: NodeCredentials
    rogue_a: NodeCredentials  # same node name, but issued by another fleet's CA


@pytest.fixture(scope="module")
def fleets(tmp_path_factory: pytest.TempPathFactory) -> Fleets:
    ours: Path = tmp_path_factory.mktemp("ours")
    theirs: Path = tmp_path_factory.mktemp("theirs")
    init_ca(ours, fleet="ours")
    init_ca(theirs, fleet="theirs")
    return Fleets(
        plant_a=issue_node(ours, "plant-a"),
        plant_b=issue_node(ours, "plant-b"),
        rogue_a=issue_node(theirs, "plant-a"),
    )


def _server_ctx(creds: NodeCredentials, ca: NodeCredentials | None = None) -> ssl.SSLContext:
    return server_ssl_context((ca or creds).ca_cert_path, creds.cert_path, creds.key_path)


def _client_ctx(creds: NodeCredentials, ca: NodeCredentials | None = None) -> ssl.SSLContext:
    return client_ssl_context((ca or creds).ca_cert_path, creds.cert_path, creds.key_path)


@dataclass(slots=True)
class Seen:
    peers: list[str]


def _whoami_app(seen: Seen) -> web.Application:
    async def whoami(request: web.Request) -> web.Response:
        assert request.transport is not None
        ssl_object = request.transport.get_extra_info("ssl_object")
        seen.peers.append(peer_node_name(ssl_object))
        try:
            check_peer_identity(request.headers.get(NODE_HEADER, ""), ssl_object)
        except PeerIdentityError as exc:
            return web.Response(status=403, text=exc.reason)
        return web.Response(text=peer_node_name(ssl_object))

    app = web.Application()
    app.router.add_get("/whoami", whoami)
    return app


@asynccontextmanager
async def _serve(app: web.Application, ctx: ssl.SSLContext) -> AsyncIterator[int]:
    runner = web.AppRunner(app)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    try:
        await web.SockSite(runner, sock, ssl_context=ctx).start()
        yield sock.getsockname()[1]
    finally:
        await runner.cleanup()
        sock.close()


async def _get(port: int, ctx: ssl.SSLContext, claim: str) -> tuple[int, str]:
    connector = aiohttp.TCPConnector(ssl=ctx)
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.get(f"https://127.0.0.1:{port}/whoami", headers={NODE_HEADER: claim}) as resp,
    ):
        return resp.status, await resp.text()


def _through_server(
    fleets: Fleets, client: ssl.SSLContext, claim: str
) -> tuple[Seen, Callable[[], tuple[int, str]]]:
    seen = Seen(peers=[])

    def go() -> tuple[int, str]:
        async def main() -> tuple[int, str]:
            async with _serve(_whoami_app(seen), _server_ctx(fleets.plant_a)) as port:
                return await _get(port, client, claim)

        return _run(main())

    return seen, go


def test_fleet_member_gets_in_and_is_named(fleets: Fleets) -> None:
    seen, go = _through_server(fleets, _client_ctx(fleets.plant_b), claim="plant-b")
    assert go() == (200, "plant-b")
    assert seen.peers == ["plant-b"]


def test_client_without_certificate_is_refused_at_tls(fleets: Fleets) -> None:
    bare = ssl.create_default_context(cafile=fleets.plant_a.ca_cert_path)
    seen, go = _through_server(fleets, bare, claim="plant-b")
    with pytest.raises(aiohttp.ClientError):
        go()
    assert seen.peers == []  # no HTTP request ever reached the application


def test_client_from_another_ca_is_refused_at_tls(fleets: Fleets) -> None:
    # The rogue trusts our CA (so it would accept our server) but its own cert is foreign.
    rogue = _client_ctx(fleets.rogue_a, ca=fleets.plant_a)
    seen, go = _through_server(fleets, rogue, claim="plant-a")
    with pytest.raises(aiohttp.ClientError):
        go()
    assert seen.peers == []


def test_member_claiming_another_name_is_refused(fleets: Fleets) -> None:
    seen, go = _through_server(fleets, _client_ctx(fleets.plant_b), claim="plant-a")
    status, body = go()
    assert status == 403
    assert "claims to be node 'plant-a'" in body and "issued to node 'plant-b'" in body
    assert seen.peers == ["plant-b"]


def test_client_refuses_server_with_foreign_certificate(fleets: Fleets) -> None:
    seen = Seen(peers=[])

    async def main() -> None:
        # Foreign server that would even accept our client: only the client's check stops it.
        ctx = _server_ctx(fleets.rogue_a, ca=fleets.plant_a)
        async with _serve(_whoami_app(seen), ctx) as port:
            await _get(port, _client_ctx(fleets.plant_b), claim="plant-b")

    with pytest.raises(aiohttp.ClientConnectorCertificateError):
        _run(main())
    assert seen.peers == []


def test_client_checks_the_server_hostname(fleets: Fleets) -> None:
    async def main() -> None:
        async with _serve(_whoami_app(Seen(peers=[])), _server_ctx(fleets.plant_a)) as port:
            _, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=_client_ctx(fleets.plant_b), server_hostname="elsewhere"
            )
            writer.close()

    with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
        _run(main())


def _handshake_failure(server: ssl.SSLContext, client: ssl.SSLContext) -> str | None:
    """Run one blocking handshake; return the server's TLS error reason (None: accepted).

    asyncio drops a failed TLS connection without flushing the alert, so the exact
    reason is only visible on a blocking socket; the context is the same one.
    """
    listener = socket.create_server(("127.0.0.1", 0))
    result: list[str | None] = []

    def serve() -> None:
        conn, _ = listener.accept()
        try:
            with server.wrap_socket(conn, server_side=True) as tls:
                result.append(None if peer_node_name(tls) else "no name")
        except ssl.SSLError as exc:
            result.append(exc.reason)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        # The client's view varies with timing (alert, EOF or reset, on connect, send or
        # recv: in TLS 1.3 the verdict on its certificate comes after the handshake);
        # the server's reason is what we check.
        with (
            contextlib.suppress(ssl.SSLError, ConnectionError),
            socket.create_connection(listener.getsockname(), timeout=5) as raw,
            client.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
        ):
            tls.sendall(b"x")
            tls.recv(1)
    finally:
        thread.join(timeout=5)
        listener.close()
    assert not thread.is_alive() and len(result) == 1
    return result[0]


def test_server_context_names_the_tls_failure(fleets: Fleets) -> None:
    server = _server_ctx(fleets.plant_a)
    assert _handshake_failure(server, _client_ctx(fleets.plant_b)) is None
    bare = ssl.create_default_context(cafile=fleets.plant_a.ca_cert_path)
    assert _handshake_failure(server, bare) == "PEER_DID_NOT_RETURN_A_CERTIFICATE"
    rogue = _client_ctx(fleets.rogue_a, ca=fleets.plant_a)
    assert _handshake_failure(server, rogue) == "CERTIFICATE_VERIFY_FAILED"


def test_contexts_require_tls13_and_client_certs(fleets: Fleets) -> None:
    for ctx in (_server_ctx(fleets.plant_a), _client_ctx(fleets.plant_a)):
        assert ctx.verify_mode == ssl.CERT_REQUIRED
        assert ctx.minimum_version == ssl.TLSVersion.TLSv1_3
    assert _client_ctx(fleets.plant_a).check_hostname


def test_peer_identity_from_der_and_errors(fleets: Fleets) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    cert = x509.load_pem_x509_certificate(fleets.plant_b.cert_path.read_bytes())
    der = cert.public_bytes(serialization.Encoding.DER)
    assert peer_node_name(der) == peer_node_name(cert) == "plant-b"
    check_peer_identity("plant-b", der)
    with pytest.raises(PeerIdentityError, match="issued to node 'plant-b'"):
        check_peer_identity("plant-a", der)
    ca_cert = x509.load_pem_x509_certificate(fleets.plant_b.ca_cert_path.read_bytes())
    with pytest.raises(PeerIdentityError, match="no subjectAltName"):
        peer_node_name(ca_cert)
    with pytest.raises(PeerIdentityError, match="no certificate"):
        peer_node_name(b"")
    with pytest.raises(PeerIdentityError, match="not valid DER"):
        peer_node_name(b"\x30\x03junk")
