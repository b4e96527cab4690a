"""Gossip over HTTPS with mutual TLS: the IO driver around the sync engine.

Each engine message is one ``POST /v1/gossip`` with a msgpack body; the
response carries the receiver's replies to the sender as a msgpack array, so
one push-pull exchange is two HTTP round trips. A peer without a certificate
from the fleet CA never gets past the TLS handshake (the server context
requires one). A peer whose certificate names another node than the one it
claims — in the ``X-Twinmesh-Node`` header or in the message — is refused.
The client checks the server's certificate names the node it meant to reach.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
from typing import TYPE_CHECKING, Any

import aiohttp
import msgpack
from aiohttp import web
from yarl import URL

from twinmesh.crdt import RemoteProtocolError
from twinmesh.sync import BatchRefused, Outgoing

from .cosim._registry import add_gossip_routes as add_fmu_binary_route
from .security import PeerIdentityError, check_peer_identity, peer_node_name

if TYPE_CHECKING:
    from ._node import Node

__all__ = ["GossipClient", "gossip_app"]

log = logging.getLogger("twinmesh.gossip")
NODE_HEADER = "X-Twinmesh-Node"
MAX_REPLIES = 64


class RefusedByPeer(Exception):
    """The peer answered 4xx: it is up and says *our* message was bad (a bug or
    a version mismatch on our side), not that it is unreachable."""

    def __init__(self, status: int, kind: str, reason: str) -> None:
        super().__init__(f"{status} {kind}: {reason}")
        self.status = status
        self.kind = kind
        self.reason = reason


def log_engine_refusals(node: Node) -> None:
    """Log, with its reason, every refusal the engine counted since last time
    (bad batches, key mismatches, members not vouched for, unsolicited snapshots)."""
    engine = node.engine
    if engine is None or not engine.metrics.refused:
        return
    for kind, reason in engine.metrics.refused:
        log.warning("sync refused (%s): %s", kind, reason)
    engine.metrics.refused.clear()


def _refuse(node: Node, status: int, reason: str, kind: str) -> web.Response:
    node.metrics.refuse(node.metrics.gossip_refusals, kind)
    log.warning("gossip refused (%s): %s", kind, reason)
    return web.json_response({"error": kind, "reason": reason}, status=status)


def gossip_app(node: Node) -> web.Application:
    app = web.Application(client_max_size=node.config.max_body_bytes)

    async def receive(request: web.Request) -> web.Response:
        engine = node.engine
        assert engine is not None
        transport = request.transport
        ssl_object = transport.get_extra_info("ssl_object") if transport else None
        try:
            peer = peer_node_name(ssl_object)
            check_peer_identity(request.headers.get(NODE_HEADER, ""), ssl_object)
        except PeerIdentityError as exc:
            return _refuse(node, 403, exc.reason, "peer-identity")
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _refuse(node, 413, "gossip body over the limit", "body-too-large")
        try:
            events = engine.receive(
                body, now=node.monotonic(), peer=peer, wall_ms=int(node.clock() * 1000)
            )
        except RemoteProtocolError as exc:
            engine.metrics.refused.clear()  # logged just below, once
            return _refuse(node, 400, exc.reason, exc.kind)
        finally:
            log_engine_refusals(node)
        await node.persist_journal()
        refused = [e.reason for e in events if isinstance(e, BatchRefused)]
        if refused:
            # The engine kept the good batches (persisted above) and counted each
            # refusal by reason; the peer is told plainly instead of getting a 200.
            # Our replies to it stay queued and leave with the next round.
            return _refuse(node, 422, "; ".join(refused), "batch-refused")
        replies = node.take_outgoing(peer)
        return web.Response(
            body=msgpack.packb([o.data for o in replies]), content_type="application/msgpack"
        )

    app.router.add_post("/v1/gossip", receive)
    add_fmu_binary_route(app, node)  # FMU binaries by hash (node/cosim/_registry.py)
    return app


class _PeerCheckingConnector(aiohttp.TCPConnector):
    """Checks, right after each TLS handshake, that the server's certificate
    names the node this URL belongs to. (aiohttp releases a connection as soon
    as a small response is read, so the check cannot wait for the response.)"""

    def __init__(self, expected: dict[tuple[str, int], str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.expected = expected

    async def _wrap_create_connection(  # type: ignore[override]
        self, *args: Any, req: Any, **kwargs: Any
    ) -> Any:
        transport, proto = await super()._wrap_create_connection(*args, req=req, **kwargs)
        want = self.expected.get((req.url.host, req.url.port))
        if want is not None:
            try:
                check_peer_identity(want, transport.get_extra_info("ssl_object"))
            except PeerIdentityError:
                transport.close()
                raise
        return transport, proto


class GossipClient:
    """Runs gossip rounds and delivers the engine's messages."""

    def __init__(self, node: Node, ssl_context: ssl.SSLContext) -> None:
        self.node = node
        self._ssl = ssl_context
        self._session: aiohttp.ClientSession | None = None
        self._wake = asyncio.Event()
        self._inflight: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        node = self.node
        engine = node.engine
        assert engine is not None
        timeout = aiohttp.ClientTimeout(total=max(5.0, 3 * node.config.gossip_interval))
        self._connector = _PeerCheckingConnector({}, limit=64)
        self._session = aiohttp.ClientSession(timeout=timeout, connector=self._connector)
        try:
            while True:
                now = node.monotonic()
                if engine.next_timer() <= now:
                    engine.handle_timer(now)
                    node.metrics.gossip_exchanges += 1
                await node.persist_journal()
                for out in node.take_outgoing(None):
                    task = asyncio.create_task(self._deliver(out))
                    self._inflight.add(task)
                    task.add_done_callback(self._inflight.discard)
                delay = max(0.0, engine.next_timer() - node.monotonic())
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=delay)
        finally:
            for task in list(self._inflight):
                task.cancel()
            await self._session.close()

    def wake(self) -> None:
        self._wake.set()

    async def _deliver(self, out: Outgoing) -> None:
        try:
            await self._exchange(out)
        except Exception:
            # A bug, not a network fault: log it loudly, keep the node serving.
            log.exception("gossip exchange with %s failed unexpectedly", out.peer)
            self.node.metrics.gossip_failures += 1

    async def _exchange(self, out: Outgoing) -> None:
        node, engine = self.node, self.node.engine
        assert engine is not None and self._session is not None
        for _ in range(MAX_REPLIES):
            try:
                replies = await self._post(out)
            except RefusedByPeer as exc:
                # Our fault, not the network's: no back-off, loud log, counted.
                node.metrics.refuse(node.metrics.gossip_refusals, f"refused-by-peer:{exc.kind}")
                log.error("gossip to %s: the peer refused our message (%s)", out.peer, exc)
                return
            except (aiohttp.ClientError, TimeoutError, OSError, PeerIdentityError) as exc:
                node.metrics.gossip_failures += 1
                log.info("gossip to %s failed: %s", out.peer, exc)
                engine.peer_unreachable(out.peer, node.monotonic())
                return
            if not replies:
                break
            for data in replies:
                try:
                    engine.receive(
                        data,
                        now=node.monotonic(),
                        peer=out.peer,
                        wall_ms=int(node.clock() * 1000),
                    )
                except RemoteProtocolError as exc:
                    node.metrics.refuse(node.metrics.gossip_refusals, f"reply-{exc.kind}")
                    engine.metrics.refused.clear()
                    log.warning("reply from %s refused (%s): %s", out.peer, exc.kind, exc.reason)
                finally:
                    log_engine_refusals(node)
            await node.persist_journal()
            follow = node.take_outgoing(out.peer)
            if not follow:
                break
            # Continue the exchange with the same peer (step 3, or the next chunk).
            for extra in follow[1:]:
                node.requeue(extra)
            out = follow[0]
        self.wake()

    async def _post(self, out: Outgoing) -> list[bytes]:
        assert self._session is not None
        url = URL(out.address)
        self._connector.expected[(url.host or "", url.port or 443)] = out.peer
        async with self._session.post(
            out.address + "/v1/gossip",
            data=out.data,
            headers={NODE_HEADER: self.node.config.name, "Content-Type": "application/msgpack"},
            ssl=self._ssl,
        ) as resp:
            body = await resp.read()
            if 400 <= resp.status < 500 and resp.status not in (403, 408, 429):
                # 400/413/422: the peer read our message and refused it. 403 is
                # the identity check (a config matter on either side) and
                # 408/429 are load: those stay transport failures.
                try:
                    answer = json.loads(body)
                    kind, reason = str(answer["error"]), str(answer["reason"])
                except (ValueError, KeyError, TypeError):
                    kind, reason = "http", body[:200].decode(errors="replace")
                raise RefusedByPeer(resp.status, kind, reason)
            if resp.status != 200:
                reason = body[:200].decode(errors="replace")
                raise aiohttp.ClientResponseError(
                    resp.request_info, (), status=resp.status, message=reason
                )
        try:
            replies = msgpack.unpackb(body, max_bin_len=self.node.config.max_body_bytes)
        except Exception as exc:
            raise aiohttp.ClientPayloadError(f"gossip reply is not msgpack: {exc}") from None
        if not isinstance(replies, list) or not all(isinstance(r, bytes) for r in replies):
            raise aiohttp.ClientPayloadError("gossip reply is not a list of messages")
        return replies
