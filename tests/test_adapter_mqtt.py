"""The MQTT adapter against real broker processes (tests/_brokers.py).

Each test runs against every installed broker: mosquitto, and amqtt's
pure-Python broker (from the test extra), so a machine without mosquitto still
tests the adapter and CI, which has both, covers both in one run.
``TWINMESH_MQTT_BROKER=mosquitto|amqtt`` runs one only. A test that needs what
a broker lacks (AmqttBroker.lacks: MQTT 5, sessions across a restart,
redelivery on resume) is skipped on it, with that reason.

Covers: mapping, units and flags landing in the buffer; malformed payloads
counted with reasons; a broker restart mid-stream losing no QoS 1 message and
storing none twice; the node away while publishing continues (persistent
session, MQTT 3.1.1 and 5); a failed commit leaving messages unacknowledged
so the broker redelivers them; TLS with username/password.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import random
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from _brokers import (
    MQTT_BROKERS,
    MqttBroker,
    make_mqtt_broker,
    make_tls_certificates,
    mqtt_broker_missing,
    mqtt_brokers,
)

from twinmesh.adapters import AdapterState, BackoffPolicy, Quality, Reject, Sample, TopicMapping
from twinmesh.adapters import TopicRule as Rule
from twinmesh.adapters.mqtt import MqttAdapter, MqttConfig, MqttTls
from twinmesh.node.telemetry import IngestPipeline, QualityChecker, TagSpec, TelemetryBuffer

UNS = "plant-a/area-1/line-1/cell-1/pump-7"
PUMP = "plant-a/line-1/pump-7"
FAST = BackoffPolicy(initial=0.02, maximum=0.2)


def run(coro: Coroutine[Any, Any, None], timeout: float = 25.0) -> None:
    async def bounded() -> None:
        async with asyncio.timeout(timeout):
            await coro

    asyncio.run(bounded())


def skip_if_lacking(kind: str, *features: str) -> None:
    """Skip the test on a broker that lacks one of ``features``, saying what it lacks."""
    for feature in features:
        reason = MQTT_BROKERS[kind].lacks.get(feature)
        if reason is not None:
            pytest.skip(reason)


def needs(*features: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Declare broker features a test needs (keys of AmqttBroker.lacks).

    The ``broker`` fixture reads them and skips *before* starting a broker
    that lacks one, instead of starting it only to skip.
    """

    def declare(test: Callable[..., None]) -> Callable[..., None]:
        test.broker_needs = features  # type: ignore[attr-defined]
        return test

    return declare


@pytest.fixture(params=list(MQTT_BROKERS))
def broker_kind(request: pytest.FixtureRequest) -> str:
    """Each broker kind in turn; skipped where not installed or not selected."""
    kind: str = request.param
    try:
        usable = mqtt_brokers()
    except RuntimeError as exc:  # TWINMESH_MQTT_BROKER names an unknown or missing broker
        problem = str(exc)
    else:
        problem = None
    if problem is not None:  # outside the except: the message alone, no exception chain
        pytest.fail(problem, pytrace=False)
    if kind not in usable:
        forced = os.environ.get("TWINMESH_MQTT_BROKER")
        pytest.skip(
            f"TWINMESH_MQTT_BROKER={forced} selects {forced} only"
            if forced
            else str(mqtt_broker_missing(kind))
        )
    return kind


@pytest.fixture
def broker(
    broker_kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[MqttBroker]:
    skip_if_lacking(broker_kind, *getattr(request.function, "broker_needs", ()))
    with make_mqtt_broker(broker_kind, tmp_path / broker_kind) as b:
        yield b


@pytest.fixture(params=["3.1.1", "5"])
def protocol(request: pytest.FixtureRequest, broker_kind: str) -> str:
    """The MQTT version, skipped on a broker without it (requested before ``broker``)."""
    if request.param == "5":
        skip_if_lacking(broker_kind, "mqtt5")
    return str(request.param)


def reading(i: int, topic: str = f"{UNS}/vibration_rms") -> tuple[str, bytes]:
    ts = 1_800_000_000_000 + i  # epoch ms: the timestamp makes redeliveries recognisable
    return topic, json.dumps({"value": i, "timestamp": ts, "unit": "mm/s"}).encode()


async def publish(
    port: int, messages: Sequence[tuple[str, bytes]], *, pace: float = 0.0, **kw: Any
) -> None:
    """An at-least-once QoS 1 publisher: on a broker outage it reconnects and re-sends."""
    i = 0
    while i < len(messages):
        try:
            async with aiomqtt.Client("127.0.0.1", port, timeout=2, **kw) as client:
                while i < len(messages):
                    await client.publish(*messages[i], qos=1)  # returns after PUBACK
                    i += 1
                    if pace:
                        await asyncio.sleep(pace)  # a rate, not a wait for a condition
        except aiomqtt.MqttError:
            await asyncio.sleep(0.02)  # retry interval while the broker is down


async def wait_rows(buf: TelemetryBuffer, n: int, timeout: float = 15.0) -> None:
    async with asyncio.timeout(timeout):
        while await buf.count() < n:
            await buf.wait_after(buf.last_seq, timeout=0.5)


@asynccontextmanager
async def running(adapter: MqttAdapter, sink: Any) -> AsyncIterator[MqttAdapter]:
    task = asyncio.create_task(adapter.run(sink))
    try:
        await adapter.wait_for(lambda s: s.state is AdapterState.CONNECTED, timeout=10)
        yield adapter
    finally:
        await adapter.close()
        await task


def adapter(port: int, client_id: str = "node-a", **kw: Any) -> MqttAdapter:
    mapping = kw.pop("mapping", TopicMapping())
    cfg = MqttConfig(host="127.0.0.1", port=port, client_id=client_id, mapping=mapping, **kw)
    return MqttAdapter(cfg, backoff=FAST, rng=random.Random(1))


async def values(buf: TelemetryBuffer) -> list[Any]:
    return [s.sample.value for s in await buf.read_after(0, limit=100_000)]


def test_samples_land_with_mapping_units_flags_and_rejects(
    broker: MqttBroker, tmp_path: Path
) -> None:
    async def body() -> None:
        mapping = TopicMapping(
            [
                Rule(
                    topic="legacy/{asset}/temp_f",
                    entity="plant-a/line-1/{asset}",
                    telemetry="temperature",
                    unit="°F",
                )
            ]
        )
        checker = QualityChecker(
            {
                (PUMP, "vibration_rms"): TagSpec(unit="mm/s", minimum=0, maximum=50),
                (PUMP, "temperature"): TagSpec(unit="°C", minimum=-20, maximum=150),
            }
        )
        now = time.time()
        iso = dt.datetime.fromtimestamp(now - 1, dt.UTC).isoformat()
        good = [
            (f"{UNS}/vibration_rms", {"value": 3.2, "timestamp": iso, "unit": "mm/s"}),
            (
                f"{UNS}/vibration_rms",
                {"value": 0.5, "timestamp": (now - 0.9) * 1000, "unit": "in/s"},
            ),
            (f"{UNS}/vibration_rms", {"value": 80, "timestamp": (now - 0.8) * 1000}),
            (
                f"{UNS}/vibration_rms",
                {"value": 1, "timestamp": (now - 0.7) * 1000, "quality": "bad"},
            ),
            (f"{UNS}/vibration_rms", {"value": 2, "timestamp": (now + 3600) * 1000}),
        ]
        malformed = [
            (f"{UNS}/vibration_rms", b"{not json"),
            (f"{UNS}/vibration_rms", b'{"timestamp": 1}'),
            (f"{UNS}/vibration_rms", b'{"value": 1, "quality": "so-so"}'),
            (f"{UNS}/vibration_rms", b"\xff\xfe"),
            ("/area-1/line-1/cell-1/pump-7/x", b"1"),  # maps to no valid twin path
        ]
        messages = [(t, json.dumps(p).encode()) for t, p in good]
        messages += [("legacy/pump-7/temp_f", b"212"), *malformed]
        async with await TelemetryBuffer.open(tmp_path / "t.db") as buf:
            pipe = IngestPipeline(buf, checker)
            async with running(adapter(broker.port, mapping=mapping), pipe) as a:
                await publish(broker.port, messages)
                status = await a.wait_for(lambda s: s.samples + s.rejects == 11, timeout=10)
            rows = {(s.sample.name, s.sample.source_ts): s.sample for s in await buf.read_after(0)}
            by_value = sorted(rows.values(), key=lambda s: s.received_ts)
            assert len(by_value) == 6
            vib = [s for s in by_value if s.name == "vibration_rms"]
            assert [(s.value, s.unit, s.quality) for s in vib] == [
                (3.2, "mm/s", Quality.GOOD),
                (pytest.approx(12.7), "mm/s", Quality.UNIT_CONVERTED),
                (80, "mm/s", Quality.OUT_OF_RANGE),
                (1, "mm/s", Quality.BAD_STATUS),
                (2, "mm/s", Quality.FUTURE_TIMESTAMP),
            ]
            (temp,) = [s for s in by_value if s.name == "temperature"]
            assert temp.entity == PUMP and temp.value == pytest.approx(100.0)
            assert temp.quality == Quality.UNIT_CONVERTED | Quality.NO_SOURCE_TIME
            assert temp.provenance.source == "legacy/pump-7/temp_f"
            assert vib[0].source_ts == pytest.approx(now - 1)

            reasons = {
                "not JSON": 1,
                "missing value": 1,
                "unknown quality": 1,
                "not UTF-8": 1,
                "unmapped topic": 1,
            }
            assert status.rejects_by_reason == reasons
            stored = [r.reject for r in await buf.rejects()]
            assert sorted(r.reason for r in stored) == sorted(reasons)
            assert next(r for r in stored if r.reason == "not UTF-8").payload == b"\xff\xfe"
            assert status.details["ack_mode"].startswith("manual")

    run(body())


@needs("restart_keeps_sessions")
def test_broker_restart_mid_stream_loses_nothing_and_stores_nothing_twice(
    broker: MqttBroker, tmp_path: Path
) -> None:
    n = 300

    async def body() -> None:
        async with await TelemetryBuffer.open(tmp_path / "t.db") as buf:
            async with running(adapter(broker.port), buf.append) as a:
                publisher = asyncio.create_task(
                    publish(
                        broker.port, [reading(i) for i in range(n)], pace=0.002, identifier="pub"
                    )
                )
                await wait_rows(buf, 100)
                await asyncio.to_thread(broker.restart)  # SIGTERM: mosquitto saves its sessions
                await publisher
                await wait_rows(buf, n)
                status = a.status()
            got = await values(buf)
            assert sorted(got) == list(range(n))  # every message once: none lost, none twice
            assert status.connects >= 2 and status.failures >= 1
            assert buf.stored == n

    run(body())


def test_node_away_then_back_gets_the_backlog_from_its_session(
    protocol: str, broker: MqttBroker, tmp_path: Path
) -> None:
    async def body() -> None:
        async with await TelemetryBuffer.open(tmp_path / "t.db") as buf:
            async with running(adapter(broker.port, protocol=protocol), buf.append):
                await publish(broker.port, [reading(i) for i in range(10)])
                await wait_rows(buf, 10)
            # The node is down; the plant keeps publishing.
            await publish(broker.port, [reading(i) for i in range(10, 210)])
            assert await buf.count() == 10
            # A new process with the same client id resumes the persistent session.
            async with running(adapter(broker.port, protocol=protocol), buf.append):
                await wait_rows(buf, 210)
            assert sorted(await values(buf)) == list(range(210))

    run(body())


@needs("redelivery_on_resume")
def test_failed_commit_is_not_acknowledged_so_the_broker_redelivers(
    broker: MqttBroker, tmp_path: Path
) -> None:
    async def body() -> None:
        async with await TelemetryBuffer.open(tmp_path / "t.db") as buf:
            calls = 0

            async def disk_full_once(
                samples: Sequence[Sample], rejects: Sequence[Reject] = ()
            ) -> None:
                nonlocal calls
                calls += 1
                if calls == 1:
                    raise OSError("disk full")
                await buf.append(samples, rejects)

            async with running(adapter(broker.port), buf.append):
                pass  # creates the persistent session
            await publish(broker.port, [reading(i) for i in range(50)])
            async with running(adapter(broker.port), disk_full_once) as a:
                await wait_rows(buf, 50)
                status = a.status()
            # The first batch failed before its commit; with PUBACK-on-receipt it would
            # be gone. It was not acknowledged, so the broker sent it again.
            assert sorted(await values(buf)) == list(range(50))
            assert status.failures == 1 and status.connects == 2

    run(body())


def test_tls_and_password(broker_kind: str, tmp_path: Path) -> None:
    ca, cert, key = make_tls_certificates(tmp_path / "pki")
    tls = MqttTls(ca_file=str(ca))

    async def body(b: MqttBroker) -> None:
        async with await TelemetryBuffer.open(tmp_path / "t.db") as buf:
            good = adapter(b.port, tls=tls, username="node-a", password="s3cret")
            async with running(good, buf.append) as a:
                ctx = tls.context()
                await publish(
                    b.port, [reading(1)], tls_context=ctx, username="plc", password="plc-pw"
                )
                await wait_rows(buf, 1)
                assert a.status().details["broker"].startswith("mqtts://")
            wrong = adapter(b.port, tls=tls, username="node-a", password="nope")
            task = asyncio.create_task(wrong.run(buf.append))
            status = await wrong.wait_for(lambda s: s.failures >= 2, timeout=10)
            assert status.connects == 0 and status.last_error is not None
            await wrong.close()
            await task

    users = {"node-a": "s3cret", "plc": "plc-pw"}
    with make_mqtt_broker(broker_kind, tmp_path / "mq", tls=(ca, cert, key), users=users) as b:
        run(body(b))


def test_commands_go_out_and_the_device_answer_comes_back(
    broker: MqttBroker, tmp_path: Path
) -> None:
    """The node side (MqttAdapter.send_command) against the synthetic plant's device
    side (MqttPublisher + CommandDesk) through a real broker: accepted, refused by
    the device with its reason, and no answer at all (a device that is gone)."""
    from twinmesh.adapters import MqttCommandBinding
    from twinmesh.adapters.mqtt import CommandRefused
    from twinmesh.adapters.synthetic._config import MqttSettings
    from twinmesh.adapters.synthetic._mqtt_publisher import CommandDesk, MqttPublisher

    topic, silent = f"{UNS}/cmd/setFlowSetpoint", "plant-a/area-1/line-1/cell-1/gone/cmd/x"
    applied: list[float] = []

    def apply(_topic: str, value: float) -> str | None:
        if value > 140:
            return "beyond what this drive can hold"
        applied.append(value)
        return None

    async def body() -> None:
        desk = CommandDesk({topic: None}, apply=apply, clock=time.time)
        device = MqttPublisher(
            MqttSettings(port=broker.port, client_id="device"),
            rng=random.Random(1),
            backoff=FAST,
            commands=desk,
        )
        device_task = asyncio.create_task(device.run())
        mapping = TopicMapping(
            commands=[
                MqttCommandBinding(topic=topic, entity=PUMP, command="setFlowSetpoint"),
                MqttCommandBinding(topic=silent, entity=PUMP, command="x"),
            ]
        )
        try:
            async with await TelemetryBuffer.open(tmp_path / "t.db") as buf:
                pipe = IngestPipeline(buf, QualityChecker({}))
                async with running(adapter(broker.port, mapping=mapping, timeout=2), pipe) as a:
                    assert a.command_node(PUMP, "setFlowSetpoint") == topic
                    assert a.command_node(PUMP, "other") is None
                    # The device subscribes once connected; until then nothing answers.
                    said = ""
                    for _ in range(20):
                        try:
                            said = await a.send_command(
                                PUMP, "setFlowSetpoint", 90.0, command_id=f"c{_}"
                            )
                            break
                        except TimeoutError:
                            continue
                    assert said.startswith("acknowledged by the device") and applied == [90.0]
                    with pytest.raises(CommandRefused, match="beyond what this drive"):
                        await a.send_command(PUMP, "setFlowSetpoint", 145.0, command_id="r1")
                    with pytest.raises(TimeoutError, match=f"no acknowledgement on {silent}/ack"):
                        await a.send_command(PUMP, "x", 1.0, command_id="s1")
                    with pytest.raises(LookupError):
                        await a.send_command(PUMP, "other", 1.0, command_id="l1")
                    assert applied == [90.0] and desk.applied == 1
        finally:
            await device.close(drain=1.0)
            device_task.cancel()
            with contextlib.suppress(BaseException):
                await device_task

    asyncio.run(body())
