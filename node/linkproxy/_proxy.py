"""One directed link: an asyncio TCP proxy whose faults can be changed while it runs.

The proxy is a byte pipe (TLS passes through untouched), so it can only do to a
connection what a network can do to it: refuse it, reset it, slow it down.

Each direction of a connection is a reader that stamps every chunk with the time
it may leave, and a sender that waits for that time. The stamp is taken when the
chunk *arrives*, so delay is latency (chunks in flight overlap) rather than a
per-chunk pause that would also throttle throughput. Stamps never decrease, which
keeps the byte order TCP promises even with jitter. Bandwidth is a serialisation
delay shared by all connections of the link in that direction: a chunk of ``n``
bytes leaves the "wire" ``n / rate`` seconds after the previous one did.

A cut (``down``, loss, or a reset from the other side) closes sockets with an
RST (SO_LINGER 0) rather than a FIN, so the peer sees "connection reset", as it
would from a middlebox that lost its state, and not a clean end of stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import random
import socket
import struct
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from twinmesh.crdt._errors import LocalProtocolError

from ._faults import LinkFaults

__all__ = ["LinkProxy", "LinkStats"]

_MAX_CHUNK = 64 * 1024
_MIN_CHUNK = 512
# Bounded per-direction queue: with a slow or delayed link the reader stops
# reading, and TCP flow control pushes back on the sender as a real link would.
_QUEUE_CHUNKS = 64
_CONNECT_TIMEOUT_S = 10.0


class _Direction(enum.Enum):
    UP = "to_upstream"
    DOWN = "to_client"


@dataclass(frozen=True, slots=True, kw_only=True)
class LinkStats:
    accepted: int  # connections forwarded to the upstream
    refused_down: int  # accepted and reset because the link was down
    reset_by_loss: int  # accepted and reset by the loss draw
    upstream_failed: int  # the upstream could not be reached
    cut: int  # forwarded connections cut by ``down`` or a reset from either end
    active: int
    bytes_to_upstream: int
    bytes_to_client: int


@dataclass(slots=True)
class _Counters:
    accepted: int = 0
    refused_down: int = 0
    reset_by_loss: int = 0
    upstream_failed: int = 0
    cut: int = 0
    bytes_to_upstream: int = 0
    bytes_to_client: int = 0


def _reset(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class _Connection:
    """Both sockets of one proxied connection and the tasks that pump between them."""

    def __init__(self, client: asyncio.StreamWriter) -> None:
        self.client = client
        self.upstream: asyncio.StreamWriter | None = None
        self.tasks: set[asyncio.Task[Any]] = set()
        self.was_cut = False

    def cut(self) -> None:
        self.was_cut = True
        _reset(self.client)
        if self.upstream is not None:
            _reset(self.upstream)
        for task in self.tasks:
            task.cancel()


class LinkProxy:
    """A TCP proxy from ``listen_host:listen_port`` to ``upstream_host:upstream_port``.

    ``rng`` is the only source of randomness (loss draws and jitter), so a seeded
    ``random.Random`` gives the same draws for the same sequence of connections.
    Use ``async with`` or ``start()``/``stop()``; ``listen_port=0`` picks a free
    port, readable from :attr:`address` once started.
    """

    def __init__(
        self,
        listen_host: str,
        listen_port: int,
        upstream_host: str,
        upstream_port: int,
        *,
        rng: random.Random,
        faults: LinkFaults | None = None,
        name: str = "link",
    ) -> None:
        self.name = name
        self._listen = (listen_host, listen_port)
        self._upstream = (upstream_host, upstream_port)
        self._rng = rng
        self._faults = faults or LinkFaults()
        self._server: asyncio.Server | None = None
        self._address: tuple[str, int] | None = None
        self._connections: set[_Connection] = set()
        self._handlers: set[asyncio.Task[Any]] = set()
        self._counters = _Counters()
        # When the shared "wire" of each direction is next free (bandwidth pacing).
        self._wire_free = {direction: 0.0 for direction in _Direction}

    # -- lifecycle ---------------------------------------------------------

    async def start(self) -> None:
        if self._server is not None:
            raise LocalProtocolError(f"link {self.name!r} is already started")
        self._server = await asyncio.start_server(self._on_client, *self._listen)
        host, port = self._server.sockets[0].getsockname()[:2]
        self._address = (str(host), int(port))

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for conn in list(self._connections):
            conn.cut()
        # Handlers end promptly once their connections are cut; waiting for them
        # means no task outlives the proxy and no socket is left open.
        if self._handlers:
            await asyncio.wait(list(self._handlers))
        await server.wait_closed()

    async def __aenter__(self) -> LinkProxy:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- control -----------------------------------------------------------

    @property
    def address(self) -> tuple[str, int]:
        if self._address is None:
            raise LocalProtocolError(f"link {self.name!r} is not started")
        return self._address

    @property
    def upstream(self) -> tuple[str, int]:
        return self._upstream

    @property
    def faults(self) -> LinkFaults:
        return self._faults

    def set_faults(self, faults: LinkFaults) -> None:
        """Apply new faults now. Going down cuts every open connection (a partition)."""
        self._faults = faults
        if faults.down:
            for conn in list(self._connections):
                conn.cut()

    @property
    def stats(self) -> LinkStats:
        c = self._counters
        return LinkStats(
            accepted=c.accepted,
            refused_down=c.refused_down,
            reset_by_loss=c.reset_by_loss,
            upstream_failed=c.upstream_failed,
            cut=c.cut,
            active=len(self._connections),
            bytes_to_upstream=c.bytes_to_upstream,
            bytes_to_client=c.bytes_to_client,
        )

    # -- data path ---------------------------------------------------------

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            await self._serve(reader, writer)
        finally:
            self._handlers.discard(task)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._server is None:  # accepted just before stop(): do not start forwarding now
            _reset(writer)
            return
        faults = self._faults
        if faults.down:
            self._counters.refused_down += 1
            _reset(writer)
            return
        # Draw only when loss is on, so turning loss on later does not shift the
        # jitter draws of a run that never used it.
        if faults.loss > 0.0 and self._rng.random() < faults.loss:
            self._counters.reset_by_loss += 1
            _reset(writer)
            return

        conn = _Connection(writer)
        self._connections.add(conn)
        try:
            connect = asyncio.create_task(self._connect_upstream())
            conn.tasks.add(connect)
            try:
                up_reader, up_writer = await connect
            except (OSError, TimeoutError, asyncio.CancelledError):
                self._reraise_if_we_are_cancelled()
                if not conn.was_cut:
                    self._counters.upstream_failed += 1
                _reset(writer)
                return
            finally:
                conn.tasks.discard(connect)
            conn.upstream = up_writer
            if conn.was_cut:  # the link went down while we were connecting
                _reset(up_writer)
                return
            self._counters.accepted += 1
            await self._pump_both(conn, reader, up_reader, up_writer)
        finally:
            self._connections.discard(conn)

    async def _pump_both(
        self,
        conn: _Connection,
        reader: asyncio.StreamReader,
        up_reader: asyncio.StreamReader,
        up_writer: asyncio.StreamWriter,
    ) -> None:
        pumps = {
            asyncio.create_task(self._pump(reader, up_writer, _Direction.UP)),
            asyncio.create_task(self._pump(up_reader, conn.client, _Direction.DOWN)),
        }
        conn.tasks.update(pumps)
        try:
            done, _ = await asyncio.wait(pumps, return_when=asyncio.FIRST_EXCEPTION)
        except asyncio.CancelledError:
            conn.cut()
            raise
        failed = any(t.cancelled() or t.exception() is not None for t in done)
        if failed:
            # One side reset (or we cut): pass the reset on to the other side.
            if not conn.was_cut:
                conn.cut()
            self._counters.cut += 1
            await asyncio.wait(pumps)
            return
        conn.client.close()
        up_writer.close()
        for w in (conn.client, up_writer):
            with contextlib.suppress(OSError):
                await w.wait_closed()

    async def _pump(
        self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, direction: _Direction
    ) -> None:
        queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue(maxsize=_QUEUE_CHUNKS)
        halves = (
            asyncio.create_task(self._receive(src, queue, direction)),
            asyncio.create_task(self._send(queue, dst, direction)),
        )
        try:
            # Either half failing (a reset on its socket) ends the direction at once;
            # otherwise the receiver ends at EOF and the sender after flushing.
            done, _ = await asyncio.wait(halves, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                if task.cancelled():
                    raise asyncio.CancelledError
                if (exc := task.exception()) is not None:
                    raise exc
        finally:
            for task in halves:
                task.cancel()
            await asyncio.wait(halves)

    async def _receive(
        self,
        src: asyncio.StreamReader,
        queue: asyncio.Queue[tuple[float, bytes] | None],
        direction: _Direction,
    ) -> None:
        loop = asyncio.get_running_loop()
        last_due = 0.0
        while True:
            rate = self._faults.bandwidth_bytes_per_s
            # Small reads under a rate limit keep the pacing smooth (~20 chunks a second).
            size = _MAX_CHUNK if rate is None else max(_MIN_CHUNK, min(_MAX_CHUNK, rate // 20))
            data = await src.read(size)
            if not data:
                await queue.put(None)
                return
            now = loop.time()
            # Faults as they are when the chunk arrives: a change applies from the next chunk.
            faults = self._faults
            rate = faults.bandwidth_bytes_per_s
            leaves = now
            if rate is not None:
                leaves = max(now, self._wire_free[direction]) + len(data) / rate
                self._wire_free[direction] = leaves
            delay_ms = faults.delay_ms
            if faults.jitter_ms > 0.0:
                delay_ms += self._rng.uniform(0.0, faults.jitter_ms)
            last_due = max(last_due, leaves + delay_ms / 1000.0)
            await queue.put((last_due, data))

    async def _send(
        self,
        queue: asyncio.Queue[tuple[float, bytes] | None],
        dst: asyncio.StreamWriter,
        direction: _Direction,
    ) -> None:
        loop = asyncio.get_running_loop()
        while True:
            item = await queue.get()
            if item is None:
                # Half-close: pass the sender's EOF on, keep the other direction open.
                if dst.can_write_eof() and not dst.is_closing():
                    dst.write_eof()
                return
            due, data = item
            # Loop because a timer may fire a hair early; the delay is a promised floor.
            while (remaining := due - loop.time()) > 0:
                await asyncio.sleep(remaining)
            dst.write(data)
            await dst.drain()
            if direction is _Direction.UP:
                self._counters.bytes_to_upstream += len(data)
            else:
                self._counters.bytes_to_client += len(data)

    async def _connect_upstream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        # A coroutine of its own, so a cut before it starts leaves no orphaned
        # ``open_connection`` coroutine behind.
        async with asyncio.timeout(_CONNECT_TIMEOUT_S):
            return await asyncio.open_connection(*self._upstream)

    @staticmethod
    def _reraise_if_we_are_cancelled() -> None:
        # The connect task is cancelled by ``cut()``; our own task being cancelled
        # (loop shutdown) must still propagate.
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise asyncio.CancelledError
