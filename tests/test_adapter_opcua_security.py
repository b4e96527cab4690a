"""OPC UA with Basic256Sha256 / SignAndEncrypt against a server that offers nothing else."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

from _brokers import OpcUaServer, make_opcua_certificates

from twinmesh.adapters import AdapterState, BackoffPolicy, NodeBinding, OpcUaMapping
from twinmesh.adapters.opcua import OpcUaAdapter, OpcUaConfig, OpcUaSecurity
from twinmesh.node.telemetry import TelemetryBuffer

CLIENT_URI = "urn:twinmesh:test:node-a"
MAPPING = OpcUaMapping(
    bindings=(
        NodeBinding(
            node_id="ns=2;s=Pump7.Vibration",
            entity="plant-a/line-1/pump-7",
            telemetry="vibration_rms",
            unit="mm/s",
        ),
    ),
    publishing_interval_ms=50,
    sampling_interval_ms=10,
)


def test_sign_and_encrypt_with_certificates(tmp_path: Path) -> None:
    server_cert, server_key = make_opcua_certificates(
        tmp_path / "pki", "urn:twinmesh:test:server", server=True
    )
    client_cert, client_key = make_opcua_certificates(tmp_path / "pki", CLIENT_URI, server=False)
    server = OpcUaServer(tmp_path / "server", secure=(server_cert, server_key))
    server.start()

    async def body() -> None:
        security = OpcUaSecurity(
            certificate=str(client_cert),
            private_key=str(client_key),
            application_uri=CLIENT_URI,
            server_certificate=str(server_cert),  # pinned
        )
        fast = BackoffPolicy(initial=0.05, maximum=0.2)
        async with await TelemetryBuffer.open(tmp_path / "t.db") as buf:
            secure = OpcUaAdapter(
                OpcUaConfig(url=server.url, mapping=MAPPING, security=security), backoff=fast
            )
            task = asyncio.create_task(secure.run(buf.append))
            await buf.wait_after(0, timeout=15)
            status = secure.status()
            assert status.state is AdapterState.CONNECTED
            assert status.details["security"] == "Basic256Sha256/SignAndEncrypt"
            await secure.close()
            await task
            (first, *_) = await buf.read_after(0)
            assert first.sample.name == "vibration_rms"

            # The server offers no SecurityPolicy None endpoint: a lab-mode client fails.
            plain = OpcUaAdapter(
                OpcUaConfig(url=server.url, mapping=MAPPING), backoff=fast, rng=random.Random(0)
            )
            task = asyncio.create_task(plain.run(buf.append))
            status = await plain.wait_for(lambda s: s.failures >= 2, timeout=15)
            assert status.connects == 0 and status.last_error
            await plain.close()
            await task

    try:
        asyncio.run(asyncio.wait_for(body(), 25))
    finally:
        server.stop()
