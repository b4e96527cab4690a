"""The OPC UA adapter against a real asyncua server in a separate process.

Covers: a mapping file with node ids and a browse path; source vs server
timestamps; status codes as quality flags; unit normalisation through the
ingest pipeline; an unknown node reported as a reject; a server restart
mid-stream followed by reconnect and re-subscribe.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from _brokers import OpcUaServer

from twinmesh.adapters import (
    AdapterState,
    BackoffPolicy,
    MappingError,
    OpcUaMapping,
    Quality,
    Sample,
    load_node_bindings,
)
from twinmesh.adapters.opcua import OpcUaAdapter, OpcUaConfig, quality_from_status
from twinmesh.node.telemetry import IngestPipeline, QualityChecker, TagSpec, TelemetryBuffer

PUMP = "plant-a/line-1/pump-7"
RESTART_AT = 1e7  # the replacement server counts from here (the first one from 0)

MAPPING = """
[subscription]
publishing_interval_ms = 50
sampling_interval_ms = 10
queue_size = 100

[[node]]
node_id = "ns=2;s=Pump7.Vibration"
entity = "plant-a/line-1/pump-7"
telemetry = "vibration_rms"
unit = "mm/s"

[[node]]
browse_path = "2:Pump7/2:Temperature"
entity = "plant-a/line-1/pump-7"
telemetry = "temperature"
unit = "°F"
sampling_interval_ms = 100

[[node]]
node_id = "ns=2;s=Pump7.Flow"
entity = "plant-a/line-1/pump-7"
telemetry = "flow"

[[node]]
node_id = "ns=2;s=Pump7.NoServerTime"
entity = "plant-a/line-1/pump-7"
telemetry = "unstamped"

[[node]]
node_id = "ns=2;s=Pump7.DoesNotExist"
entity = "plant-a/line-1/pump-7"
telemetry = "ghost"
"""


def run(coro: Coroutine[Any, Any, None], timeout: float = 25.0) -> None:
    async def bounded() -> None:
        async with asyncio.timeout(timeout):
            await coro

    asyncio.run(bounded())


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpcUaServer]:
    """One server process for the module (starting one costs seconds on a busy machine)."""
    srv = OpcUaServer(tmp_path_factory.mktemp("opcua-server"), period=0.02)
    srv.start()
    srv.prepare_restart(RESTART_AT)  # its start-up overlaps the first test
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def mapping(tmp_path: Path) -> OpcUaMapping:
    path = tmp_path / "opcua.toml"
    path.write_text(MAPPING, encoding="utf-8")
    return load_node_bindings(path)


async def wait_samples(
    buf: TelemetryBuffer, pred: Callable[[list[Sample]], bool], timeout: float = 15.0
) -> list[Sample]:
    async with asyncio.timeout(timeout):
        while True:
            rows = [s.sample for s in await buf.read_after(0, limit=100_000)]
            if pred(rows):
                return rows
            await buf.wait_after(buf.last_seq, timeout=0.5)


@asynccontextmanager
async def running(adapter: OpcUaAdapter, sink: Any) -> AsyncIterator[OpcUaAdapter]:
    task = asyncio.create_task(adapter.run(sink))
    try:
        yield adapter
    finally:
        await adapter.close()
        await task


def named(rows: list[Sample], name: str) -> list[Sample]:
    return [s for s in rows if s.name == name]


def test_status_code_severity_maps_to_flags() -> None:
    assert quality_from_status(0) == Quality.GOOD
    assert quality_from_status(0x00A20000) == Quality.GOOD  # Good_... subcodes
    assert quality_from_status(0x408F0000) == Quality.UNCERTAIN  # UncertainLastUsableValue
    assert quality_from_status(0x808B0000) == Quality.BAD_STATUS  # BadSensorFailure
    assert quality_from_status(0xC0000000) == Quality.BAD_STATUS  # reserved: treat as Bad


def test_mapping_validation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[[node]]\nentity = "e"\ntelemetry = "t"\n')
    with pytest.raises(MappingError, match="exactly one of node_id or browse_path"):
        load_node_bindings(bad)
    bad.write_text('[[node]]\nbrowse_path = "Pump7/x"\nentity = "e"\ntelemetry = "t"\n')
    with pytest.raises(MappingError, match="namespaceIndex:BrowseName"):
        load_node_bindings(bad)


def test_samples_timestamps_flags_units_and_unknown_node(
    server: OpcUaServer, tmp_path: Path, mapping: OpcUaMapping
) -> None:
    async def body() -> None:
        checker = QualityChecker({(PUMP, "temperature"): TagSpec(unit="°C", maximum=150)})
        cfg = OpcUaConfig(url=server.url, mapping=mapping)
        adapter = OpcUaAdapter(cfg, backoff=BackoffPolicy(initial=0.05, maximum=0.5))
        async with await TelemetryBuffer.open(tmp_path / "t.db") as buf:
            async with running(adapter, IngestPipeline(buf, checker)) as a:
                rows = await wait_samples(
                    buf,
                    lambda r: (
                        len(named(r, "vibration_rms")) >= 20
                        and len(named(r, "flow")) >= 20
                        and bool(named(r, "temperature"))
                        and len(named(r, "unstamped")) >= 2
                    ),
                )
                assert a.status().details["monitored_items"] == "4"  # the ghost is not one
            status = adapter.status()
            assert status.state is AdapterState.CLOSED
            assert status.details["monitored_items"] == "0"  # reset when the session ended
            assert status.rejects_by_reason == {"subscribe failed": 1}
            vib = named(rows, "vibration_rms")
            values = [s.value for s in vib]
            assert values == sorted(values) and len(set(values)) == len(values)
            v = vib[-1]
            assert (v.entity, v.unit, v.provenance.source) == (
                PUMP,
                "mm/s",
                "ns=2;s=Pump7.Vibration",
            )
            # The test server stamps the source 1 ms before the server: both are kept.
            assert v.server_ts is not None
            assert v.server_ts - v.source_ts == pytest.approx(0.001, abs=5e-4)
            # OPC UA's minimum DateTime (1601-01-01) means "no server timestamp".
            unstamped = named(rows, "unstamped")
            assert all(s.server_ts is None for s in unstamped), [s.server_ts for s in unstamped]
            assert all(s.source_ts > 1e9 for s in unstamped)
            (temp, *_) = named(rows, "temperature")
            assert temp.value == pytest.approx(100.0) and temp.unit == "°C"
            assert temp.quality == Quality.UNIT_CONVERTED
            flow = named(rows, "flow")
            seen = {s.quality for s in flow}
            assert {Quality.GOOD, Quality.UNCERTAIN, Quality.BAD_STATUS} <= seen
            bad = [s for s in flow if s.quality == Quality.BAD_STATUS]
            assert all(isinstance(s.value, float) and math.isnan(s.value) for s in bad)
            (reject,) = [r.reject for r in await buf.rejects()]
            assert (reject.source, reject.reason) == (
                "ns=2;s=Pump7.DoesNotExist",
                "subscribe failed",
            )
            assert "BadNodeIdUnknown" in reject.detail

    run(body())


def test_server_restart_reconnects_and_resubscribes(
    server: OpcUaServer, tmp_path: Path, mapping: OpcUaMapping
) -> None:
    async def body() -> None:
        cfg = OpcUaConfig(url=server.url, mapping=mapping)
        adapter = OpcUaAdapter(
            cfg, backoff=BackoffPolicy(initial=0.05, maximum=0.5), rng=random.Random(3)
        )
        async with await TelemetryBuffer.open(tmp_path / "t.db") as buf:
            async with running(adapter, buf.append) as a:
                rows = await wait_samples(buf, lambda r: len(named(r, "vibration_rms")) >= 10)
                # A new server process replaces the old one on the same port, counting
                # from far above what the old one reached: those values prove that the
                # adapter noticed the loss, reconnected and subscribed again.
                start = RESTART_AT
                assert max(float(s.value) for s in named(rows, "vibration_rms")) < start
                await asyncio.to_thread(server.restart, start)
                rows = await wait_samples(
                    buf,
                    lambda r: sum(1 for s in named(r, "vibration_rms") if s.value >= start) >= 10,
                )
                status = a.status()
            assert status.connects >= 2 and status.failures >= 1
            vib = [s.value for s in named(rows, "vibration_rms")]
            assert vib == sorted(vib)  # nothing from before the restart arrived after it
            ids = [s.sample_id for s in rows]
            assert len(ids) == len(set(ids))

    run(body())
