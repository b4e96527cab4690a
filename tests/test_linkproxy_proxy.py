"""LinkProxy over real loopback sockets: a faithful pipe, then each fault in turn."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest

from twinmesh.node.linkproxy import LinkFaults, LinkProxy

T = TypeVar("T")
HOST = "127.0.0.1"


def _run(coro: Coroutine[Any, Any, T]) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout=15)

    return asyncio.run(bounded())


async def _eventually(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait until ``predicate()`` holds: a condition with a deadline, not a fixed sleep."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.005)


@dataclass(slots=True)
class Upstream:
    port: int = 0
    open_connections: int = 0
    received_at: list[float] = field(default_factory=list)


@asynccontextmanager
async def _echo_server(greeting: bytes = b"") -> AsyncIterator[Upstream]:
    """Echo server that optionally speaks first, and records when bytes arrive."""
    state = Upstream()
    handlers: set[asyncio.Task[Any]] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        state.open_connections += 1
        try:
            if greeting:
                writer.write(greeting)
            while data := await reader.read(65536):
                state.received_at.append(asyncio.get_running_loop().time())
                writer.write(data)
                await writer.drain()
            writer.close()
        except ConnectionError:
            writer.transport.abort()
        finally:
            state.open_connections -= 1
            handlers.discard(task)

    server = await asyncio.start_server(handle, HOST, 0)
    state.port = server.sockets[0].getsockname()[1]
    try:
        yield state
    finally:
        server.close()
        await _eventually(lambda: not handlers)
        await server.wait_closed()


@asynccontextmanager
async def _proxied(
    faults: LinkFaults | None = None, seed: int = 0, greeting: bytes = b""
) -> AsyncIterator[tuple[LinkProxy, Upstream]]:
    async with _echo_server(greeting) as upstream:
        proxy = LinkProxy(HOST, 0, HOST, upstream.port, rng=random.Random(seed), faults=faults)
        async with proxy:
            yield proxy, upstream


async def _exchange(port: int, payload: bytes) -> bytes | None:
    """Send ``payload`` and read as many bytes back; None if the connection was reset."""
    try:
        # On loopback the proxy's reset can beat the client's own connect to completion.
        reader, writer = await asyncio.open_connection(HOST, port)
    except ConnectionError:
        return None
    try:
        writer.write(payload)
        await writer.drain()
        return await asyncio.wait_for(reader.readexactly(len(payload)), timeout=5)
    except (ConnectionError, asyncio.IncompleteReadError):
        return None
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def _is_cut(reader: asyncio.StreamReader) -> bool:
    try:
        return await asyncio.wait_for(reader.read(1), timeout=5) == b""
    except ConnectionError:
        return True


def test_bytes_pass_unchanged_both_ways() -> None:
    payload = os.urandom(2_000_000)

    async def main() -> None:
        async with _proxied(greeting=b"HELLO\n") as (proxy, _):
            reader, writer = await asyncio.open_connection(HOST, proxy.address[1])
            assert await reader.readexactly(6) == b"HELLO\n"  # upstream speaks first
            writer.write(payload)
            writer.write_eof()  # half-close travels through; the reply still comes back
            assert await reader.read(-1) == payload
            writer.close()
            await writer.wait_closed()
            await _eventually(lambda: proxy.stats.active == 0)
            stats = proxy.stats
            assert stats.accepted == 1
            assert stats.bytes_to_upstream == len(payload)
            assert stats.bytes_to_client == len(payload) + 6

    _run(main())


def test_many_concurrent_connections_stay_separate() -> None:
    async def main() -> None:
        async with _proxied() as (proxy, _):
            payloads = [os.urandom(50_000) + bytes([i]) for i in range(20)]
            got = await asyncio.gather(*(_exchange(proxy.address[1], p) for p in payloads))
            assert got == payloads

    _run(main())


def test_down_cuts_existing_refuses_new_and_heal_restores() -> None:
    async def main() -> None:
        async with _proxied() as (proxy, upstream):
            port = proxy.address[1]
            reader, writer = await asyncio.open_connection(HOST, port)
            writer.write(b"ping")
            assert await reader.readexactly(4) == b"ping"

            proxy.set_faults(LinkFaults(down=True))
            assert await _is_cut(reader)
            writer.close()
            # The upstream side of the cut connection is gone too.
            await _eventually(lambda: upstream.open_connections == 0)

            assert await _exchange(port, b"again") is None
            assert proxy.stats.refused_down == 1

            proxy.set_faults(LinkFaults())
            assert await _exchange(port, b"healed") == b"healed"

    _run(main())


def test_down_cuts_a_connection_with_delayed_bytes_in_flight() -> None:
    async def main() -> None:
        async with _proxied(LinkFaults(delay_ms=60_000)) as (proxy, _):
            reader, writer = await asyncio.open_connection(HOST, proxy.address[1])
            writer.write(b"stuck in the pipe")
            await _eventually(lambda: proxy.stats.accepted == 1)
            proxy.set_faults(LinkFaults(down=True))
            assert await _is_cut(reader)  # promptly, not after the minute-long delay
            writer.close()
            await _eventually(lambda: proxy.stats.active == 0)

    _run(main())


def test_delay_adds_at_least_the_configured_latency_each_way() -> None:
    delay_s = 0.08

    async def main() -> None:
        async with _proxied(LinkFaults(delay_ms=delay_s * 1000)) as (proxy, upstream):
            loop = asyncio.get_running_loop()
            reader, writer = await asyncio.open_connection(HOST, proxy.address[1])
            sent = loop.time()
            writer.write(b"x")
            assert await reader.readexactly(1) == b"x"
            back = loop.time()
            assert upstream.received_at[0] - sent >= delay_s
            assert back - sent >= 2 * delay_s
            writer.close()

    _run(main())


def test_jitter_keeps_byte_order() -> None:
    async def main() -> None:
        async with _proxied(LinkFaults(delay_ms=5, jitter_ms=30), seed=3) as (proxy, _):
            reader, writer = await asyncio.open_connection(HOST, proxy.address[1])
            expected = b""
            for i in range(200):
                piece = f"{i:05d};".encode()
                expected += piece
                writer.write(piece)
                await writer.drain()
                await asyncio.sleep(0)  # let each piece travel as its own chunk
            assert await reader.readexactly(len(expected)) == expected
            writer.close()

    _run(main())


def test_bandwidth_limit_paces_the_transfer() -> None:
    rate, size = 400_000, 80_000

    async def main() -> None:
        async with _proxied(LinkFaults(bandwidth_bytes_per_s=rate)) as (proxy, _):
            loop = asyncio.get_running_loop()
            start = loop.time()
            payload = os.urandom(size)
            assert await _exchange(proxy.address[1], payload) == payload
            assert loop.time() - start >= size / rate

    _run(main())


async def _loss_outcomes(seed: int, loss: float, connections: int) -> tuple[list[bool], int]:
    async with _proxied(LinkFaults(loss=loss), seed=seed) as (proxy, _):
        outcomes = [
            await _exchange(proxy.address[1], b"%d" % i) is None for i in range(connections)
        ]
        return outcomes, proxy.stats.reset_by_loss


def test_loss_resets_a_plausible_share_of_connections() -> None:
    outcomes, counted = _run(_loss_outcomes(seed=1234, loss=0.3, connections=200))
    resets = sum(outcomes)
    assert 30 <= resets <= 90  # expected 60; the band is over 4 standard deviations wide
    assert counted == resets


def test_loss_is_reproducible_from_the_seed() -> None:
    first, _ = _run(_loss_outcomes(seed=99, loss=0.5, connections=60))
    second, _ = _run(_loss_outcomes(seed=99, loss=0.5, connections=60))
    assert first == second


@pytest.mark.parametrize(("loss", "expected"), [(0.0, False), (1.0, True)])
def test_loss_extremes(loss: float, expected: bool) -> None:
    outcomes, _ = _run(_loss_outcomes(seed=5, loss=loss, connections=10))
    assert outcomes == [expected] * 10


def test_unreachable_upstream_resets_the_client() -> None:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        dead_port = probe.getsockname()[1]  # closed again before the proxy dials it

    async def main() -> None:
        async with LinkProxy(HOST, 0, HOST, dead_port, rng=random.Random(0)) as proxy:
            assert await _exchange(proxy.address[1], b"anyone?") is None
            await _eventually(lambda: proxy.stats.upstream_failed == 1)

    _run(main())


def test_stop_cuts_open_connections_and_leaves_no_tasks() -> None:
    async def main() -> None:
        before = asyncio.all_tasks()
        async with _echo_server() as upstream:
            proxy = LinkProxy(HOST, 0, HOST, upstream.port, rng=random.Random(0))
            await proxy.start()
            port = proxy.address[1]
            reader, writer = await asyncio.open_connection(HOST, port)
            writer.write(b"x")
            assert await reader.readexactly(1) == b"x"
            await proxy.stop()
            assert await _is_cut(reader)
            writer.close()
            await _eventually(lambda: upstream.open_connections == 0)
            with pytest.raises(OSError):
                await asyncio.open_connection(HOST, port)
        assert asyncio.all_tasks() == before

    _run(main())


def test_set_faults_is_visible_and_unstarted_proxy_has_no_address() -> None:
    proxy = LinkProxy(HOST, 0, HOST, 1, rng=random.Random(0))
    faults = LinkFaults(delay_ms=10, jitter_ms=2, loss=0.1, bandwidth_bytes_per_s=1000)
    proxy.set_faults(faults)
    assert proxy.faults == faults
    with pytest.raises(Exception, match="not started"):
        _ = proxy.address
