"""The synthetic plant's MQTT publisher against a real mosquitto: store and forward.

A persistent subscriber session (QoS 1, clean_session false) is registered
first, so the broker keeps what the publisher delivers while the subscriber
is away; what the subscriber finally receives is then exactly what the
publisher got acknowledged. The broker is stopped gracefully (mosquitto saves
sessions and queued messages on SIGTERM).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from _brokers import Mosquitto, find_mosquitto
from async_wait import wait_until

from twinmesh.adapters import BackoffPolicy
from twinmesh.adapters.mqtt import decode_payload
from twinmesh.adapters.synthetic import MqttSettings
from twinmesh.adapters.synthetic._mqtt_publisher import MqttPublisher, encode_payload

pytestmark = [
    pytest.mark.mosquitto,
    pytest.mark.skipif(find_mosquitto() is None, reason="mosquitto is not installed"),
]

FAST = BackoffPolicy(initial=0.05, maximum=0.3)
T0 = 1_800_000_000.0
SUBSCRIBER = "plant-test-subscriber"


def run(coro: Coroutine[Any, Any, None], timeout: float = 30.0) -> None:
    async def bounded() -> None:
        async with asyncio.timeout(timeout):
            await coro

    asyncio.run(bounded())


async def register_subscriber(port: int) -> None:
    async with aiomqtt.Client(
        "127.0.0.1", port, identifier=SUBSCRIBER, clean_session=False
    ) as client:
        await client.subscribe("plant-test/#", qos=1)


async def collect(port: int, count: int, timeout: float = 10.0) -> list[int]:
    """Sequence numbers received by the persistent subscriber, in arrival order."""
    seqs: list[int] = []
    async with aiomqtt.Client(
        "127.0.0.1", port, identifier=SUBSCRIBER, clean_session=False
    ) as client:
        await client.subscribe("plant-test/#", qos=1)
        async with asyncio.timeout(timeout):
            async for m in client.messages:
                assert isinstance(m.payload, bytes)
                decoded = decode_payload(m.payload)
                assert decoded.unit == "m3/h" and decoded.timestamp is not None
                seqs.append(int(decoded.value))
                if len(set(seqs)) >= count:
                    break
    return seqs


def submit(publisher: MqttPublisher, seq: int) -> None:
    publisher.submit(
        "plant-test/area/line/cell/pump/flowRate", encode_payload(seq, T0 + seq, "m3/h")
    )


async def wait_delivered(
    publisher: MqttPublisher, task: asyncio.Task[None], timeout: float
) -> None:
    """Wait until the queue is empty on a live connection; fail with why if it cannot be.

    A publisher task that ended early fails the test with its own error at once,
    and a timeout says how far delivery got, not only that it ran out of time.
    """

    def delivered() -> bool:
        if task.done():
            why = "cancelled" if task.cancelled() else repr(task.exception())
            raise AssertionError(f"the publisher stopped: {why}")
        return publisher.stats.queued == 0 and publisher.stats.connected

    try:
        await wait_until(delivered, timeout=timeout)
    except TimeoutError:
        raise AssertionError(f"not delivered in {timeout} s: {publisher.stats}") from None


def first_occurrences(seqs: list[int]) -> list[int]:
    return list(dict.fromkeys(seqs))  # QoS 1 may repeat; the order of first copies counts


@pytest.fixture
def broker(tmp_path: Path) -> Any:
    b = Mosquitto(tmp_path / "broker")
    b.start()
    run(register_subscriber(b.port))
    yield b
    b.stop()


def _publisher(port: int, **settings: Any) -> MqttPublisher:
    return MqttPublisher(
        MqttSettings(port=port, client_id="plant-test-publisher", **settings),
        rng=random.Random(1),
        backoff=FAST,
    )


def test_payloads_are_what_decode_payload_accepts() -> None:
    d = decode_payload(encode_payload(12.25, 1_778_400_000.5, "mm/s"))
    assert (d.value, d.timestamp, d.unit) == (12.25, 1_778_400_000.5, "mm/s")


def test_readings_queued_while_the_broker_is_down_arrive_in_order(broker: Mosquitto) -> None:
    broker.stop()

    async def scenario() -> None:
        publisher = _publisher(broker.port)
        task = asyncio.create_task(publisher.run())
        for seq in range(200):
            submit(publisher, seq)
        await asyncio.sleep(0)
        assert publisher.stats.queued == 200 and not publisher.stats.connected
        await asyncio.to_thread(broker.start)
        await wait_until(lambda: publisher.stats.queued == 0)
        assert publisher.stats.published >= 200 and publisher.stats.dropped == 0
        await publisher.close()
        await task
        assert first_occurrences(await collect(broker.port, 200)) == list(range(200))

    run(scenario())


def test_a_broker_restart_mid_stream_loses_nothing(broker: Mosquitto) -> None:
    async def scenario() -> None:
        # A PUBACK lost in the restart is waited for publish_timeout before the
        # publisher reconnects (when the client library misses the reset): keep it short.
        publisher = _publisher(broker.port, publish_timeout=2.0)
        task = asyncio.create_task(publisher.run())
        await wait_until(lambda: publisher.stats.connected)
        restart: asyncio.Task[None] | None = None
        for seq in range(300):
            submit(publisher, seq)
            if seq == 100:
                restart = asyncio.create_task(asyncio.to_thread(broker.restart))
            await asyncio.sleep(0.005)
        assert restart is not None
        await restart
        await wait_delivered(publisher, task, timeout=45.0)
        assert publisher.stats.connections >= 2 and publisher.stats.dropped == 0
        await publisher.close()
        await task
        assert first_occurrences(await collect(broker.port, 300)) == list(range(300))

    # The bound is a safety net for a loaded 2-core CI machine running another
    # worker beside this one, not a figure: the run takes ~2 s idle.
    run(scenario(), timeout=60.0)


def test_a_full_queue_drops_the_oldest_and_counts_them(broker: Mosquitto) -> None:
    broker.stop()

    async def scenario() -> None:
        publisher = _publisher(broker.port, queue_limit=10)
        task = asyncio.create_task(publisher.run())
        for seq in range(25):
            submit(publisher, seq)
        assert publisher.stats.dropped == 15 and publisher.stats.queued == 10
        await asyncio.to_thread(broker.start)
        await wait_until(lambda: publisher.stats.queued == 0)
        await publisher.close()
        await task
        assert first_occurrences(await collect(broker.port, 10)) == list(range(15, 25))

    run(scenario())


def test_an_unexpected_error_reconnects_and_keeps_the_queue(broker: Mosquitto) -> None:
    async def scenario() -> None:
        publisher = _publisher(broker.port)
        real_client = publisher._client
        calls = 0

        def client_that_breaks_once() -> aiomqtt.Client:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise RuntimeError("a bug of ours in building the client")
            return real_client()

        publisher._client = client_that_breaks_once  # type: ignore[method-assign]
        for seq in range(20):
            submit(publisher, seq)
        task = asyncio.create_task(publisher.run())
        await wait_delivered(publisher, task, timeout=15.0)
        assert calls >= 2 and publisher.stats.dropped == 0
        await publisher.close()
        await task
        assert first_occurrences(await collect(broker.port, 20)) == list(range(20))

    run(scenario())
