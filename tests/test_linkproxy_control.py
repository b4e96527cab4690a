"""Fault validation, link config, the ProxyHub, its HTTP control API and the process entry."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import random
import signal
import sys
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest

from twinmesh.node.linkproxy import (
    ControlServer,
    FaultError,
    LinkConfigError,
    LinkFaults,
    LinkSpec,
    ProxyHub,
    load_config,
    parse_config,
)

T = TypeVar("T")
HOST = "127.0.0.1"
REPO = Path(__file__).resolve().parents[1]


def _run(coro: Coroutine[Any, Any, T]) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout=15)

    return asyncio.run(bounded())


# -- faults -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"down": "yes"}, "down must be true or false"),
        ({"down": 1}, "down must be true or false"),
        ({"delay_ms": -1}, "delay_ms must be a number"),
        ({"delay_ms": True}, "delay_ms must be a number"),
        ({"delay_ms": "150"}, "delay_ms must be a number"),
        ({"delay_ms": math.inf}, "delay_ms must be a number"),
        ({"delay_ms": 600_001}, "delay_ms must be a number"),
        ({"jitter_ms": None}, "jitter_ms must be a number"),
        ({"loss": 1.5}, "loss must be a probability"),
        ({"loss": -0.1}, "loss must be a probability"),
        ({"loss": math.nan}, "loss must be a probability"),
        ({"bandwidth_bytes_per_s": 0}, "bandwidth_bytes_per_s must be a positive integer"),
        ({"bandwidth_bytes_per_s": 1.5}, "bandwidth_bytes_per_s must be a positive integer"),
        ({"latency": 5}, "unknown fault field"),
    ],
)
def test_bad_faults_are_refused(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(FaultError, match=message):
        LinkFaults().updated(changes)


def test_fault_updates_are_partial() -> None:
    base = LinkFaults(delay_ms=100, loss=0.1)
    updated = base.updated({"down": True, "jitter_ms": 5})
    assert updated == LinkFaults(down=True, delay_ms=100, jitter_ms=5, loss=0.1)
    assert updated.updated({"bandwidth_bytes_per_s": None}).bandwidth_bytes_per_s is None
    with pytest.raises(FaultError, match="must be a JSON object"):
        base.updated([1, 2])
    assert updated.to_json() == {
        "down": True,
        "delay_ms": 100,
        "jitter_ms": 5,
        "loss": 0.1,
        "bandwidth_bytes_per_s": None,
    }


# -- config -------------------------------------------------------------------


def test_config_parses_links() -> None:
    config = parse_config(
        {
            "seed": 7,
            "links": [
                {"name": "a->b", "listen": "127.0.0.1:0", "upstream": "localhost:8002"},
                {
                    "name": "b->a",
                    "listen": "[::1]:17002",
                    "upstream": "127.0.0.1:8001",
                    "faults": {"delay_ms": 40},
                },
            ],
        }
    )
    assert config.seed == 7
    assert config.links[0] == LinkSpec(
        name="a->b", listen_host=HOST, listen_port=0, upstream_host="localhost", upstream_port=8002
    )
    assert config.links[1].listen_host == "::1"
    assert config.links[1].faults == LinkFaults(delay_ms=40)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ([], "must be a JSON object"),
        ({}, "'links' list"),
        ({"links": [], "sede": 1}, "unknown config key"),
        ({"links": [], "seed": "1"}, "seed must be an integer"),
        ({"links": [1]}, r"links\[0\] must be an object"),
        ({"links": [{"name": "a b", "listen": ":1", "upstream": ":2"}]}, "name must be"),
        ({"links": [{"name": "a", "listen": "h:99999", "upstream": "h:1"}]}, "listen must be"),
        ({"links": [{"name": "a", "listen": "h:1", "upstream": 5}]}, "upstream must be"),
        ({"links": [{"name": "a", "listen": "h:1", "upstream": "h:2", "x": 1}]}, "unknown key"),
        (
            {"links": [{"name": "a", "listen": "h:1", "upstream": "h:2", "faults": {"loss": 2}}]},
            r"links\[0\]\.faults: loss must be",
        ),
        (
            {
                "links": [
                    {"name": "a", "listen": "h:1", "upstream": "h:2"},
                    {"name": "a", "listen": "h:3", "upstream": "h:2"},
                ]
            },
            "duplicate link name",
        ),
        (
            {
                "links": [
                    {"name": "a", "listen": "h:1", "upstream": "h:2"},
                    {"name": "b", "listen": "h:1", "upstream": "h:2"},
                ]
            },
            "used twice",
        ),
    ],
)
def test_bad_configs_are_refused(config: object, message: str) -> None:
    with pytest.raises(LinkConfigError, match=message):
        parse_config(config)


def test_load_config_errors(tmp_path: Path) -> None:
    with pytest.raises(LinkConfigError, match="cannot read"):
        load_config(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    with pytest.raises(LinkConfigError, match="not valid JSON"):
        load_config(bad)


# -- hub and control API over HTTP ----------------------------------------------


@asynccontextmanager
async def _echo_server() -> AsyncIterator[int]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.transport.abort()

    server = await asyncio.start_server(handle, HOST, 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def _exchange(port: int, payload: bytes) -> bytes | None:
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


@asynccontextmanager
async def _fleet() -> AsyncIterator[tuple[ProxyHub, str, aiohttp.ClientSession]]:
    """Two directed links between two echo 'nodes', a hub, its control API and a client."""
    async with _echo_server() as port_a, _echo_server() as port_b:
        links = [
            LinkSpec(
                name="plant-a->plant-b",
                listen_host=HOST,
                listen_port=0,
                upstream_host=HOST,
                upstream_port=port_b,
            ),
            LinkSpec(
                name="plant-b->plant-a",
                listen_host=HOST,
                listen_port=0,
                upstream_host=HOST,
                upstream_port=port_a,
            ),
        ]
        hub = ProxyHub(links, rng=random.Random(42))
        async with hub, ControlServer(hub) as control, aiohttp.ClientSession() as session:
            yield hub, control.url, session


def _port(hub: ProxyHub, name: str) -> int:
    return hub.link(name).address[1]


def test_control_api_lists_links() -> None:
    async def main() -> None:
        async with _fleet() as (hub, url, session):
            async with session.get(f"{url}/links") as resp:
                assert resp.status == 200
                body = await resp.json()
            names = [link["name"] for link in body["links"]]
            assert names == ["plant-a->plant-b", "plant-b->plant-a"]
            first = body["links"][0]
            assert first["listen"] == f"{HOST}:{_port(hub, 'plant-a->plant-b')}"
            assert first["faults"] == LinkFaults().to_json()
            assert first["stats"]["accepted"] == 0

            async with session.get(f"{url}/links/plant-b->plant-a") as resp:
                assert resp.status == 200
                assert (await resp.json())["name"] == "plant-b->plant-a"

    _run(main())


def test_control_api_splits_and_heals_one_direction() -> None:
    async def main() -> None:
        async with _fleet() as (hub, url, session):
            ab, ba = _port(hub, "plant-a->plant-b"), _port(hub, "plant-b->plant-a")
            async with session.post(f"{url}/links/plant-a->plant-b", json={"down": True}) as resp:
                assert resp.status == 200
                assert (await resp.json())["faults"]["down"] is True
            assert await _exchange(ab, b"over the split") is None
            assert await _exchange(ba, b"other way") == b"other way"  # a one-way partition

            async with session.post(f"{url}/links/plant-a->plant-b", json={"down": False}) as resp:
                assert resp.status == 200
            assert await _exchange(ab, b"healed") == b"healed"
            assert hub.link("plant-a->plant-b").stats.refused_down == 1

    _run(main())


def test_control_api_changes_every_link_at_once() -> None:
    async def main() -> None:
        async with _fleet() as (hub, url, session):
            async with session.post(f"{url}/links", json={"down": True}) as resp:
                assert resp.status == 200
                assert all(link["faults"]["down"] for link in (await resp.json())["links"])
            for name in hub.links:
                assert await _exchange(_port(hub, name), b"x") is None
            async with session.post(f"{url}/links", json={"down": False}) as resp:
                assert resp.status == 200
            for name in hub.links:
                assert await _exchange(_port(hub, name), b"x") == b"x"

    _run(main())


def test_control_api_delay_applies_to_traffic() -> None:
    async def main() -> None:
        async with _fleet() as (hub, url, session):
            body = {"delay_ms": 50, "jitter_ms": 10}
            async with session.post(f"{url}/links/plant-a->plant-b", json=body) as resp:
                assert resp.status == 200
            loop = asyncio.get_running_loop()
            start = loop.time()
            assert await _exchange(_port(hub, "plant-a->plant-b"), b"slow") == b"slow"
            assert loop.time() - start >= 2 * 0.050
            assert hub.link("plant-a->plant-b").faults == LinkFaults(delay_ms=50, jitter_ms=10)

    _run(main())


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"{not json", "body is not valid JSON"),
        (b"[1, 2]", "faults must be a JSON object"),
        (b'{"dwon": true}', "unknown fault field(s) dwon"),
        (b'{"down": "yes"}', "down must be true or false"),
        (b'{"delay_ms": -5}', "delay_ms must be a number"),
        (b'{"jitter_ms": true}', "jitter_ms must be a number"),
        (b'{"loss": 1.5}', "loss must be a probability"),
        (b'{"bandwidth_bytes_per_s": 0}', "bandwidth_bytes_per_s must be a positive integer"),
    ],
)
def test_control_api_rejects_bad_updates(data: bytes, message: str) -> None:
    async def main() -> None:
        async with _fleet() as (hub, url, session):
            for target in ("/links/plant-a->plant-b", "/links"):
                async with session.post(
                    url + target, data=data, headers={"Content-Type": "application/json"}
                ) as resp:
                    assert resp.status == 400
                    assert message in (await resp.json())["error"]
            # A refused update changes nothing.
            assert all(proxy.faults == LinkFaults() for proxy in hub.links.values())

    _run(main())


def test_control_api_unknown_link_is_404() -> None:
    async def main() -> None:
        async with _fleet() as (_, url, session):
            for method in ("GET", "POST"):
                async with session.request(method, f"{url}/links/plant-x", json={}) as resp:
                    assert resp.status == 404
                    error = (await resp.json())["error"]
                    assert "no link named 'plant-x'" in error and "plant-a->plant-b" in error

    _run(main())


def test_control_server_binds_loopback_only() -> None:
    hub = ProxyHub([], rng=random.Random(0))
    with pytest.raises(Exception, match="loopback only"):
        ControlServer(hub, host="0.0.0.0")
    ControlServer(hub, host="::1")
    ControlServer(hub, host="localhost")


# -- the process entry point ------------------------------------------------------


def _env() -> dict[str, str]:
    # The subprocess must import the same twinmesh as the tests, installed or not.
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


async def _spawn(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "twinmesh.node.linkproxy",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=_env(),
    )


def test_entry_point_runs_links_and_control_api(tmp_path: Path) -> None:
    async def main() -> None:
        async with _echo_server() as upstream_port:
            config = tmp_path / "links.json"
            link = {"name": "a->b", "listen": f"{HOST}:0", "upstream": f"{HOST}:{upstream_port}"}
            config.write_text(json.dumps({"seed": 1, "links": [link]}))
            proc = await _spawn("--config", str(config), "--control-port", "0")
            try:
                assert proc.stdout is not None
                ready = json.loads(await asyncio.wait_for(proc.stdout.readline(), timeout=10))
                listen_port = int(ready["links"]["a->b"].rsplit(":", 1)[1])
                assert await _exchange(listen_port, b"through a process") == b"through a process"
                async with aiohttp.ClientSession() as session:
                    post = session.post(f"{ready['control']}/links/a->b", json={"down": True})
                    async with post as resp:
                        assert resp.status == 200
                assert await _exchange(listen_port, b"split") is None
                proc.send_signal(signal.SIGTERM)
                assert await asyncio.wait_for(proc.wait(), timeout=10) == 0
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()

    _run(main())


def test_entry_point_reports_a_bad_config(tmp_path: Path) -> None:
    async def main() -> None:
        config = tmp_path / "links.json"
        config.write_text(json.dumps({"links": [{"name": "a->b"}]}))
        proc = await _spawn("--config", str(config))
        try:
            _, stderr = await asyncio.wait_for(proc.communicate(), timeout=10)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        assert proc.returncode == 1
        assert b"linkproxy: error: links[0].listen must be a 'host:port' string" in stderr

    _run(main())
