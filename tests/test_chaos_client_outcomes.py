"""The chaos client's outcome classification against a real socket.

A node killed after committing a write but before answering drops the
connection; aiohttp then resends an idempotent request (PUT) once, which meets
the closed port. The history must call that write's outcome unknown (``info``),
not ``fail``: the first attempt may have taken effect. Found in CI, where the
real crash-during-sync run reported lost writes that were in fact writes the
history had wrongly marked as never having happened.
"""

from __future__ import annotations

import asyncio
import socket

from twinmesh.node.chaos._history import History
from twinmesh.node.chaos._workload import Clients


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _write_against(serve_then_die: bool) -> list[str]:
    port = _free_port()
    seen = asyncio.Event()
    server: asyncio.Server | None = None

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")  # the request reached the "node"
        assert server is not None
        server.close()  # the process dies: its port closes ...
        writer.transport.abort()  # ... and the connection drops unanswered
        seen.set()

    if serve_then_die:
        server = await asyncio.start_server(handle, "127.0.0.1", port)
    history = History()
    async with Clients(
        {"n": f"http://127.0.0.1:{port}"}, {"operator": "t", "viewer": "t"}, history, 0.0
    ) as clients:
        await clients.write("n", "plant/pump-1", "owner", "kpCQ")
    if serve_then_die:
        assert seen.is_set()
    return [e.type for e in history.events]


def test_a_write_sent_before_the_node_died_has_an_unknown_outcome() -> None:
    assert asyncio.run(_write_against(serve_then_die=True)) == ["invoke", "info"]


def test_a_write_to_a_node_that_is_down_is_refused() -> None:
    assert asyncio.run(_write_against(serve_then_die=False)) == ["invoke", "fail"]
