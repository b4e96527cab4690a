"""``twinmesh plant simulate`` as a subprocess against a real mosquitto.

One plant process serves the module: a bare asyncua client and a bare aiomqtt
subscriber see changing, timestamped values; the files it writes load with
the real loaders and name only telemetry the DTDL models have; the node's own
adapters ingest both protocols with no rejects and no quality flags. A second,
short run starts with no broker at all and still serves OPC UA and stops
cleanly by itself.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import select
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from _brokers import Mosquitto, find_mosquitto, free_port
from async_wait import wait_until
from asyncua import Client, ua

from twinmesh.adapters import BackoffPolicy, Sample, load_node_bindings, load_topic_mapping
from twinmesh.adapters.mqtt import MqttAdapter, MqttConfig, decode_payload
from twinmesh.adapters.opcua import OpcUaAdapter, OpcUaConfig
from twinmesh.adapters.synthetic import MODELS_DIR
from twinmesh.node.dtdl import ModelRegistry, unit_symbol
from twinmesh.node.telemetry import parse_telemetry
from twinmesh.node.telemetry._quality import QualityChecker, TagSpec

pytestmark = [
    pytest.mark.mosquitto,
    pytest.mark.skipif(find_mosquitto() is None, reason="mosquitto is not installed"),
]

SITE = "plant-t"
FAST = BackoffPolicy(initial=0.05, maximum=0.3)

CONFIG = """
[plant]
site = "{site}"
seed = 3
sample_interval = 0.2
out = "out"

[opcua]
endpoint = "opc.tcp://127.0.0.1:{opcua_port}/twinmesh/{site}/"
history = true
history_count = 1000

[mqtt]
port = {mqtt_port}
client_id = "twinmesh-sim-test"

[[asset]]
name = "motor-1"
kind = "motor"

[[asset.fault]]
id = "motor-1-load-dropout"
kind = "dropout"
telemetry = "load"
start = 2.0
duration = 600

[[asset]]
name = "pump-1"
kind = "pump"
cell = "cell-2"

[[asset.fault]]
id = "pump-1-flow-stuck"
kind = "stuck_sensor"
telemetry = "flowRate"
start = 1.0
duration = 600

[[asset]]
name = "cnc-1"
kind = "cnc"
"""


def run(coro: Coroutine[Any, Any, None], timeout: float = 30.0) -> None:
    async def bounded() -> None:
        async with asyncio.timeout(timeout):
            await coro

    asyncio.run(bounded())


def start_plant(config: Path, *args: str) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    """Start the simulator and wait for its READY line (never a fixed sleep)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "twinmesh", "plant", "simulate", "--config", str(config), *args],
        stdout=subprocess.PIPE,
        stderr=(config.parent / "stderr.log").open("wb"),
        cwd=config.parent,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.5)
        if ready:
            line = proc.stdout.readline()
            if not line:
                break
            if line.startswith(b"READY "):
                return proc, json.loads(line[6:])
        if proc.poll() is not None:
            break
    proc.kill()
    log = (config.parent / "stderr.log").read_text()
    raise AssertionError(f"the plant never printed READY (exit {proc.poll()}):\n{log}")


def stop_plant(proc: subprocess.Popen[bytes]) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(20)
    finally:
        if proc.poll() is None:
            proc.kill()
        if proc.stdout is not None:
            proc.stdout.close()


@pytest.fixture(scope="module")
def plant(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("plant")
    broker = Mosquitto(root / "broker")
    broker.start()
    config = root / "plant.toml"
    config.write_text(CONFIG.format(site=SITE, opcua_port=free_port(), mqtt_port=broker.port))
    proc, info = start_plant(config, "--duration", "120")
    state: dict[str, Any] = {"info": info, "out": root / "out", "broker": broker, "proc": proc}
    try:
        yield state
    finally:
        code = stop_plant(proc)
        broker.stop()
    stopped = time.time()
    assert code == 0, (root / "stderr.log").read_text()
    # The final ground truth lists the faults that started, cut off at the stop.
    lines = (root / "out" / "ground-truth.jsonl").read_text().splitlines()
    records = {r["id"]: r for r in map(json.loads, lines)}
    started = {"pump-1-flow-stuck": 1.0, "motor-1-load-dropout": 2.0}
    assert set(records) == {i for i, s in started.items() if info["start"] + s < stopped - 1}
    for r in records.values():
        assert r["status"] == "truncated"
        assert r["start"] == pytest.approx(info["start"] + started[r["id"]])
        assert r["start"] < r["end"] <= stopped


@pytest.fixture(scope="module")
def registry() -> ModelRegistry:
    reg = ModelRegistry()
    reg.add_files([MODELS_DIR])
    return reg


def _assets(out: Path) -> dict[str, dict[str, Any]]:
    with (out / "assets.toml").open("rb") as f:
        return {a["entity"]: a for a in tomllib.load(f)["asset"]}


def test_ready_line_and_plant_json(plant: dict[str, Any]) -> None:
    info, out = plant["info"], plant["out"]
    assert json.loads((out / "plant.json").read_text()) == info
    assert info["pid"] == plant["proc"].pid
    assert info["opcua"]["namespace"] == f"urn:twinmesh:plant:{SITE}"
    assert info["mqtt"]["port"] == plant["broker"].port
    assert abs(info["start"] - time.time()) < 60
    assert set(info["files"]) == {
        "assets",
        "ground_truth",
        "opcua_mapping",
        "mqtt_mapping",
        "node_telemetry",
        "node_cosim",
    }
    # The [cosim] table for the node parses with the node's own loader.
    from twinmesh.node.cosim._settings import parse_cosim

    cosim = parse_cosim(
        tomllib.loads(Path(info["files"]["node_cosim"]).read_text()), rel=Path, data_dir=out
    )
    assert cosim is not None
    # The tables for the node's config parse with the node's own loader.
    tables = tomllib.loads(Path(info["files"]["node_telemetry"]).read_text())
    settings = parse_telemetry(tables, rel=Path, data_dir=out)
    assert settings is not None and len(settings.assets) == 3
    by_kind = {a.kind: a.config for a in settings.adapters}
    assert by_kind["opcua"].url == info["opcua"]["endpoint"]
    assert by_kind["mqtt"].port == plant["broker"].port
    assert _assets(out) == {
        f"{SITE}/line-1/{name}": {
            "entity": f"{SITE}/line-1/{name}",
            "model": f"dtmi:twinmesh:plant:{model};1",
            "kind": kind,
            "protocol": protocol,
            "sample_interval": 0.2,
        }
        for name, model, kind, protocol in [
            ("motor-1", "Motor", "motor", "opcua"),
            ("pump-1", "Pump", "pump", "mqtt"),
            ("cnc-1", "CncMachine", "cnc", "opcua"),
        ]
    }


def test_mapping_files_load_and_name_model_telemetry(
    plant: dict[str, Any], registry: ModelRegistry
) -> None:
    out = plant["out"]
    assets = _assets(out)
    opcua = load_node_bindings(out / "opcua-mapping.toml")
    idx = plant["info"]["opcua"]["namespace_index"]
    bound: dict[str, set[str]] = {}
    for b in opcua.bindings:
        model = registry.get(assets[b.entity]["model"])
        telemetry = {t.name: t for t in model.telemetries}
        assert b.telemetry in telemetry, (b.entity, b.telemetry)
        assert b.unit == unit_symbol(telemetry[b.telemetry])
        assert b.node_id == f"ns={idx};s={b.entity.rsplit('/', 1)[1]}.{b.telemetry}"
        bound.setdefault(b.entity, set()).add(b.telemetry)
    for entity in (f"{SITE}/line-1/motor-1", f"{SITE}/line-1/cnc-1"):
        model = registry.get(assets[entity]["model"])
        assert bound[entity] == {t.name for t in model.telemetries}  # all of them
    topics = load_topic_mapping(out / "mqtt-mapping.toml")
    assert topics.subscription_filters == (f"{SITE}/area-1/line-1/cell-2/pump-1/+",)
    target = topics.resolve(f"{SITE}/area-1/line-1/cell-2/pump-1/flowRate")
    assert target is not None
    assert (target.entity, target.name) == (f"{SITE}/line-1/pump-1", "flowRate")


def test_a_bare_opcua_client_reads_changing_values_with_source_timestamps(
    plant: dict[str, Any],
) -> None:
    info = plant["info"]

    async def body() -> None:
        async with Client(info["opcua"]["endpoint"], timeout=10) as client:
            idx = await client.get_namespace_index(f"urn:twinmesh:plant:{SITE}")
            assert idx == info["opcua"]["namespace_index"]
            motor = await client.nodes.objects.get_child(f"{idx}:motor-1")
            assert (await motor.read_browse_name()).Name == "motor-1"
            node = client.get_node(f"ns={idx};s=motor-1.windingTemperature")
            assert node.nodeid == (await motor.get_child(f"{idx}:windingTemperature")).nodeid
            first = await node.read_data_value()
            seen = [first]

            async def changed() -> bool:
                seen.append(await node.read_data_value())
                return seen[-1].SourceTimestamp > first.SourceTimestamp

            async with asyncio.timeout(10):
                while not await changed():
                    await asyncio.sleep(0.05)
            last = seen[-1]
            assert last.Value.VariantType is ua.VariantType.Double
            assert last.Value.Value != first.Value.Value  # measurement noise at least
            assert last.StatusCode.is_good()
            assert last.SourceTimestamp <= last.ServerTimestamp
            source = last.SourceTimestamp.replace(tzinfo=dt.UTC).timestamp()
            # Device time: on the tick grid from the start, never in the future.
            assert info["start"] <= source <= time.time()
            ticks = (source - info["start"]) / 0.2
            assert abs(ticks - round(ticks)) < 1e-3

            # Server-side history (HistoryRead raw) of the same variable.
            start = dt.datetime.fromtimestamp(info["start"], dt.UTC)
            history = await node.read_raw_history(start, dt.datetime.now(dt.UTC))
            assert len(history) >= 2
            stamps = [h.SourceTimestamp for h in history]
            assert stamps == sorted(stamps)

    run(body())


def test_a_bare_mqtt_subscriber_receives_uns_json(
    plant: dict[str, Any], registry: ModelRegistry
) -> None:
    telemetry = {t.name: t for t in registry.get("dtmi:twinmesh:plant:Pump;1").telemetries}

    stuck_from = plant["info"]["start"] + 1.0  # pump-1-flow-stuck

    async def body() -> None:
        got: dict[str, list[tuple[float, Any]]] = {}
        async with aiomqtt.Client("127.0.0.1", plant["broker"].port) as client:
            await client.subscribe(f"{SITE}/#", qos=1)
            async for m in client.messages:
                assert isinstance(m.payload, bytes)
                prefix, tag = m.topic.value.rsplit("/", 1)
                assert prefix == f"{SITE}/area-1/line-1/cell-2/pump-1"
                d = decode_payload(m.payload)
                assert d.unit == unit_symbol(telemetry[tag])
                assert d.timestamp is not None and d.timestamp <= time.time()
                if d.timestamp >= stuck_from:
                    got.setdefault(tag, []).append((d.timestamp, d.value))
                if len(got) == len(telemetry) and min(len(v) for v in got.values()) >= 3:
                    break
        assert set(got) == set(telemetry)
        pressures = [v for _, v in got["dischargePressure"]]
        assert len(set(pressures)) == len(pressures)
        flows = got["flowRate"]
        assert len({v for _, v in flows}) == 1  # the stuck sensor repeats exactly...
        assert len({ts for ts, _ in flows}) == len(flows)  # ...at new timestamps

    run(body())


def test_the_node_adapters_ingest_both_protocols_cleanly(
    plant: dict[str, Any], registry: ModelRegistry
) -> None:
    info, out = plant["info"], plant["out"]
    assets = _assets(out)
    specs: dict[tuple[str, str], TagSpec] = {}
    for entity, a in assets.items():
        for t in registry.get(a["model"]).telemetries:
            rng = t.expected_range
            assert rng is not None
            specs[(entity, t.name)] = TagSpec(
                unit=unit_symbol(t), minimum=rng.minimum, maximum=rng.maximum, varies=True
            )
    checker = QualityChecker(specs)

    async def body() -> None:
        samples: list[Sample] = []
        rejects: list[Any] = []

        async def sink(batch: Any, bad: Any = (), /) -> None:
            samples.extend(batch)
            rejects.extend(bad)

        opcua = OpcUaAdapter(
            OpcUaConfig(
                url=info["opcua"]["endpoint"],
                mapping=load_node_bindings(out / "opcua-mapping.toml"),
            ),
            backoff=FAST,
        )
        mqtt = MqttAdapter(
            MqttConfig(
                host="127.0.0.1",
                port=info["mqtt"]["port"],
                client_id=f"node-test-{os.getpid()}",
                mapping=load_topic_mapping(out / "mqtt-mapping.toml"),
            ),
            backoff=FAST,
        )
        tasks = [asyncio.create_task(a.run(sink)) for a in (opcua, mqtt)]
        await wait_until(lambda: {s.tag for s in samples} >= set(specs))
        for a in (opcua, mqtt):
            await a.close()
        await asyncio.gather(*tasks)
        assert rejects == []
        for s in samples:
            assert s.source_ts <= s.received_ts
            if s.provenance.source.startswith("ns="):
                assert s.server_ts is not None
            result = checker.check(s, s.received_ts)
            # Units as the model spells them, values in range, device timestamps.
            assert result.sample.quality.names() in ((), ("STUCK",)), (s.tag, result.sample)

    run(body(), timeout=40)


def test_runs_without_a_broker_and_stops_after_its_duration(tmp_path: Path) -> None:
    config = tmp_path / "plant.toml"
    config.write_text(CONFIG.format(site=SITE, opcua_port=free_port(), mqtt_port=free_port()))
    proc, info = start_plant(config, "--duration", "2", "--out", str(tmp_path / "elsewhere"))

    async def body() -> None:
        async with Client(info["opcua"]["endpoint"], timeout=10) as client:
            node = client.get_node(f"ns={info['opcua']['namespace_index']};s=cnc-1.toolWear")
            assert (await node.read_data_value()).StatusCode.is_good()

    try:
        run(body())
        assert proc.wait(30) == 0
    finally:
        stop_plant(proc)
    assert (tmp_path / "elsewhere" / "ground-truth.jsonl").exists()
    assert not (tmp_path / "out").exists()
    log = (tmp_path / "stderr.log").read_text()
    assert "unreachable" in log and "still queued at shutdown" in log
