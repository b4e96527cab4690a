"""The plant's OPC UA server in-process: address space, history across a restart, security."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import pytest
from _brokers import free_port, make_opcua_certificates
from async_wait import wait_until
from asyncua import Client, ua

from twinmesh.adapters import BackoffPolicy, Sample, load_node_bindings
from twinmesh.adapters.opcua import OpcUaAdapter, OpcUaConfig, OpcUaSecurity
from twinmesh.adapters.synthetic import parse_config
from twinmesh.adapters.synthetic._opcua_server import HISTORY_FILE, PlantOpcUaServer
from twinmesh.adapters.synthetic._outputs import opcua_mapping_toml

CLIENT_URI = "urn:twinmesh:test:node-a"
SERVER_URI = "urn:twinmesh:plant:plant-s:simulator"


def run(coro: Coroutine[Any, Any, None], timeout: float = 30.0) -> None:
    async def bounded() -> None:
        async with asyncio.timeout(timeout):
            await coro

    asyncio.run(bounded())


def _config(tmp_path: Path, **opcua: Any) -> Any:
    doc = {
        "plant": {"site": "plant-s"},
        "opcua": {"endpoint": f"opc.tcp://127.0.0.1:{free_port()}/twinmesh/plant-s/", **opcua},
        "asset": [{"name": "motor-1", "kind": "motor"}],
    }
    return parse_config(doc, base=tmp_path)


def _server(config: Any, out: Path) -> PlantOpcUaServer:
    return PlantOpcUaServer(
        config.opcua,
        site=config.site,
        namespace_uri=config.namespace_uri,
        assets=config.assets,
        out=out,
    )


def test_history_survives_a_server_restart(tmp_path: Path) -> None:
    config = _config(tmp_path, history=True, history_count=100)
    t0 = time.time() - 60
    result: list[tuple[float, float]] = []

    async def serve(values: list[float], first: int, *, read_back: bool) -> None:
        server = _server(config, tmp_path)
        await server.setup()
        await server.start()
        try:
            for i, v in enumerate(values):
                ts = t0 + first + i
                await server.write("motor-1", "speed", v, source_ts=ts, server_ts=ts + 0.01)
                await asyncio.sleep(0.02)  # history records through an internal subscription
            async with Client(config.opcua.endpoint, timeout=10) as client:
                node = client.get_node(f"ns={server.namespace_index};s=motor-1.speed")
                start = dt.datetime.fromtimestamp(t0 - 1, dt.UTC)
                async with asyncio.timeout(10):
                    while True:
                        history = await node.read_raw_history(start, dt.datetime.now(dt.UTC))
                        if len(history) >= first + len(values):
                            break
                        await asyncio.sleep(0.02)
            if read_back:
                result.extend(
                    (h.SourceTimestamp.replace(tzinfo=dt.UTC).timestamp(), h.Value.Value)
                    for h in history
                )
        finally:
            await server.stop()

    async def body() -> None:
        await serve([1480.0, 1481.0, 1482.0], 0, read_back=False)
        # A restart: a new server on the same history file and node ids.
        await serve([1470.0, 1471.0], 3, read_back=True)

    run(body())
    assert (tmp_path / HISTORY_FILE).exists()
    assert [v for _, v in result] == [1480.0, 1481.0, 1482.0, 1470.0, 1471.0]
    assert [round(ts - t0, 3) for ts, _ in result] == [0, 1, 2, 3, 4]


def test_sign_and_encrypt_with_the_node_adapter(tmp_path: Path) -> None:
    server_cert, server_key = make_opcua_certificates(tmp_path / "pki", SERVER_URI, server=True)
    client_cert, client_key = make_opcua_certificates(tmp_path / "pki", CLIENT_URI, server=False)
    config = _config(
        tmp_path,
        security="Basic256Sha256_SignAndEncrypt",
        certificate=str(server_cert),
        private_key=str(server_key),
        application_uri=SERVER_URI,
    )

    async def body() -> None:
        server = _server(config, tmp_path)
        await server.setup()
        mapping_file = tmp_path / "opcua-mapping.toml"
        mapping_file.write_text(opcua_mapping_toml(config, server.namespace_index))
        now = time.time()
        await server.write("motor-1", "current", 21.5, source_ts=now - 0.5, server_ts=now)
        await server.start()
        samples: list[Sample] = []

        async def sink(batch: Any, rejects: Any = (), /) -> None:
            assert not rejects
            samples.extend(batch)

        security = OpcUaSecurity(
            certificate=str(client_cert),
            private_key=str(client_key),
            application_uri=CLIENT_URI,
            server_certificate=str(server_cert),
        )
        adapter = OpcUaAdapter(
            OpcUaConfig(
                url=config.opcua.endpoint,
                mapping=load_node_bindings(mapping_file),
                security=security,
            ),
            backoff=BackoffPolicy(initial=0.05, maximum=0.3),
        )
        task = asyncio.create_task(adapter.run(sink))
        try:
            await wait_until(lambda: any(s.name == "current" for s in samples), 20)
            assert adapter.status().details["security"] == "Basic256Sha256/SignAndEncrypt"
        finally:
            await adapter.close()
            await task
        current = next(s for s in samples if s.name == "current")
        assert (current.value, current.unit) == (21.5, "A")
        assert current.source_ts == pytest.approx(now - 0.5, abs=1e-6)  # DateTime: 100 ns
        # Tags never written are still waiting for their first reading: Bad, not 0.0 "Good".
        waiting = [s for s in samples if s.name == "speed"]
        assert waiting and all("BAD_STATUS" in s.quality.names() for s in waiting)

        # The server offers no SecurityPolicy None endpoint.
        try:
            async with Client(config.opcua.endpoint, timeout=5) as plain:
                await plain.get_node(ua.ObjectIds.Server_ServerStatus).read_value()
            raise AssertionError("an unsecured session was accepted")
        except (ua.UaError, OSError, TimeoutError):
            pass
        finally:
            await server.stop()

    run(body(), timeout=45)
