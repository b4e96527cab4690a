"""MQTT ingest: adapter + telemetry buffer against a bare aiomqtt subscriber, same broker.

    python bench/ingest_mqtt.py [--quick] [--json FILE] [--messages 8000] [--rounds 3]
                                [--protocol 3.1.1|5] [--inflight 20] [--rate 1000]

One broker on loopback (tests/_brokers.py: mosquitto where installed, else
amqtt from the test extra; ``--broker`` picks), one run (bench/README.md rules):

1. Both consumers open persistent QoS 1 sessions and go away; a publisher
   sends ``rounds x messages`` (plus slack) QoS 1 JSON messages, which the
   broker queues for both.
2. Throughput, interleaved rounds (bare, adapter, bare, adapter, ...), best
   of rounds, so the two never share the CPU and a noisy neighbour slows both:
   * reference: a bare aiomqtt client that only counts (PUBACK on receipt);
   * figure:    what a node runs: MqttAdapter -> IngestPipeline (QualityChecker
     with a TagSpec per tag, as node/telemetry/_specs.py derives from a model)
     -> TelemetryBuffer, PUBACK after commit, counted when committed.
   Messages per second from connect to the last one counted, and the client's
   CPU time per message (process time, SQLite's thread included).
3. Latency, publisher paced at ``--rate`` msg/s, fresh sessions (no backlog),
   interleaved in thirds:
   * reference: publish -> received by the bare client;
   * figure:    publish -> committed in the buffer.
   Both use the publish time carried in the payload (same host clock).

``--inflight`` sets mosquitto's ``max_inflight_messages`` (its default, 20):
with acknowledgement after commit, it bounds the unacknowledged messages an
MQTT 3.1.1 session holds, hence the largest batch one commit covers while the
broker streams live traffic. MQTT 5 clients announce their Receive Maximum.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import aiomqtt
from _report import Report

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from _brokers import Mosquitto, make_mqtt_broker, select_mqtt_broker

from twinmesh.adapters import AdapterState, Reject, Sample, Sink, TopicMapping
from twinmesh.adapters.mqtt import MqttAdapter, MqttConfig
from twinmesh.node.telemetry import IngestPipeline, QualityChecker, TagSpec, TelemetryBuffer

__all__ = ["measure"]

TOPIC = "plant-a/area-1/line-1/cell-1/pump-{}/vibration_rms"
FILTER = "+/+/+/+/+/+"
LATENCY_BASE = 10**9  # values of latency-phase messages start here


def payload(i: int) -> bytes:
    return json.dumps({"value": i, "timestamp": time.time() * 1000.0, "unit": "mm/s"}).encode()


async def publish(port: int, start: int, n: int, rate: float | None = None) -> float:
    """QoS 1 publish of ``n`` messages (pipelined, or paced at ``rate``); returns msg/s."""
    window = 1 if rate else 200
    t0 = time.perf_counter()
    async with aiomqtt.Client(
        "127.0.0.1", port, identifier="bench-pub", timeout=30, max_inflight_messages=window
    ) as c:
        c.pending_calls_threshold = 10 * window  # a pipelined publisher is not a leak
        for base in range(start, start + n, window):
            idx = range(base, min(base + window, start + n))
            await asyncio.gather(*(c.publish(TOPIC.format(i % 10), payload(i), qos=1) for i in idx))
            if rate:
                due = t0 + (base - start + 1) / rate
                await asyncio.sleep(max(0.0, due - time.perf_counter()))  # pacing
    return n / (time.perf_counter() - t0)


def specs() -> dict[tuple[str, str], TagSpec]:
    """The quality specs a node would hold for the bench tags (node/telemetry/_specs.py).

    Payloads are in the model's unit, in range, in order and never stuck: the
    common case the checker must be cheap on.
    """
    spec = TagSpec(unit="mm/s", minimum=0.0, maximum=1e12, expected_interval=1.0, varies=True)
    tags = (TopicMapping().resolve(TOPIC.format(i)) for i in range(10))
    return {(t.entity, t.name): spec for t in tags if t is not None}


def bare_client(port: int, protocol: str, identifier: str) -> aiomqtt.Client:
    if protocol == "5":
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 3600
        props.ReceiveMaximum = 1000
        return aiomqtt.Client(
            "127.0.0.1",
            port,
            identifier=identifier,
            protocol=aiomqtt.ProtocolVersion.V5,
            clean_start=False,
            properties=props,
        )
    return aiomqtt.Client("127.0.0.1", port, identifier=identifier, clean_session=False)


async def bare_count(
    port: int,
    protocol: str,
    identifier: str,
    n: int,
    latencies: list[float] | None = None,
    ready: asyncio.Event | None = None,
) -> tuple[float, float]:
    """Receive ``n`` messages; returns msg/s and CPU µs per message. With
    ``latencies``, also time each one."""
    t0, c0 = time.perf_counter(), time.process_time()
    count = 0
    async with bare_client(port, protocol, identifier) as c:
        await c.subscribe(FILTER, qos=1)
        if ready is not None:
            ready.set()
        async for m in c.messages:
            if latencies is not None:
                body = json.loads(m.payload)  # type: ignore[arg-type]
                if body["value"] < LATENCY_BASE:
                    continue
                latencies.append(time.time() - body["timestamp"] / 1000.0)
            count += 1
            if count == n:
                break
    return n / (time.perf_counter() - t0), (time.process_time() - c0) / n * 1e6


async def start_adapter(port: int, protocol: str, client_id: str, sink: Sink) -> Any:
    cfg = MqttConfig(host="127.0.0.1", port=port, client_id=client_id, protocol=protocol)  # type: ignore[arg-type]
    adapter = MqttAdapter(cfg)
    task = asyncio.create_task(adapter.run(sink))
    await adapter.wait_for(lambda s: s.state is AdapterState.CONNECTED, timeout=10)
    return adapter, task


async def stored_at_least(buf: TelemetryBuffer, n: int, timeout: float) -> None:
    async with asyncio.timeout(timeout):
        while buf.stored < n:
            await buf.wait_after(buf.last_seq, timeout=1.0)


def pct(xs: list[float], p: int) -> float:
    return statistics.quantiles(xs, n=100, method="inclusive")[p - 1] if len(xs) > 1 else xs[0]


async def measure(
    report: Report,
    *,
    messages: int,
    rounds: int,
    protocol: str = "3.1.1",
    inflight: int = 20,
    rate: float = 1000.0,
    latency_seconds: float = 3.0,
    synchronous: Literal["FULL", "NORMAL"] = "FULL",
    broker_kind: str | None = None,
) -> None:
    n = messages
    # mosquitto where installed; else amqtt from the test extra, so the bench
    # (and its smoke test) runs on a machine without OS brokers. Both sides of
    # every ratio share the broker, so the ratio stays meaningful; the absolute
    # rates of the two brokers are not comparable.
    kind = broker_kind or select_mqtt_broker()
    if kind != "mosquitto" and protocol == "5":
        raise SystemExit(f"MQTT 5 needs mosquitto; the {kind} broker speaks MQTT 3.1.1 only")
    best_bare = best_adapter = 0.0
    cpu_bare = cpu_adapter = math.inf
    commits = 0
    flags: dict[str, int] = {}
    lat_bare: list[float] = []
    lat_adapter: list[float] = []
    with tempfile.TemporaryDirectory(prefix="twinmesh-bench-") as tmp:
        broker = (
            Mosquitto(Path(tmp) / "mq", max_inflight=inflight, max_queued=2 * n)
            if kind == "mosquitto"
            else make_mqtt_broker(kind, Path(tmp) / "mq")
        )
        broker.start()
        try:
            # 1. One pair of persistent sessions per round, then the backlog: every
            # session gets all n messages, so each round drains a full queue (a
            # consumer that stops early still receives, and acknowledges, more).
            for k in range(rounds):
                async with bare_client(broker.port, protocol, f"bench-bare-{k}") as c:
                    await c.subscribe(FILTER, qos=1)
                async with await TelemetryBuffer.open(Path(tmp) / "setup.db") as buf:
                    adapter, task = await start_adapter(
                        broker.port, protocol, f"bench-node-{k}", buf.append
                    )
                    await adapter.close()
                    await task
            pub_rate = await publish(broker.port, 0, n)

            # 2. throughput, interleaved; a fresh buffer per round (same ids otherwise dedupe)
            for k in range(rounds):
                bare_rate, bare_cpu = await bare_count(broker.port, protocol, f"bench-bare-{k}", n)
                best_bare = max(best_bare, bare_rate)
                cpu_bare = min(cpu_bare, bare_cpu)
                async with await TelemetryBuffer.open(
                    Path(tmp) / f"t{k}.db", synchronous=synchronous
                ) as buf:
                    pipeline = IngestPipeline(buf, QualityChecker(specs()))
                    t0, c0 = time.perf_counter(), time.process_time()
                    adapter, task = await start_adapter(
                        broker.port, protocol, f"bench-node-{k}", pipeline
                    )
                    await stored_at_least(buf, n, timeout=60)
                    best_adapter = max(best_adapter, buf.stored / (time.perf_counter() - t0))
                    cpu_adapter = min(cpu_adapter, (time.process_time() - c0) / buf.stored * 1e6)
                    await adapter.close()
                    await task
                    commits = buf.commits
                    flags = dict(buf.flags)

            async with await TelemetryBuffer.open(
                Path(tmp) / "latency.db", synchronous=synchronous
            ) as buf:
                # 3. latency, fresh sessions, paced publisher
                m = max(2, int(rate * latency_seconds))
                pipeline = IngestPipeline(buf, QualityChecker(specs()))

                async def timed(samples: Sequence[Sample], rejects: Sequence[Reject] = ()) -> None:
                    await pipeline.ingest(samples, rejects)
                    done = time.time()
                    lat_adapter.extend(
                        done - s.source_ts for s in samples if int(s.value) >= LATENCY_BASE
                    )

                # Interleaved thirds (bare, adapter, bare, ...), each on a fresh
                # session, so a busy neighbour hits both alike.
                third = max(2, m // 3)
                for k in range(3):
                    base = LATENCY_BASE + 2 * k * third
                    subscribed = asyncio.Event()
                    bare = asyncio.create_task(
                        bare_count(
                            broker.port, protocol, f"bench-bare-lat{k}", third, lat_bare, subscribed
                        )
                    )
                    await subscribed.wait()
                    await publish(broker.port, base, third, rate)
                    await bare
                    adapter, task = await start_adapter(
                        broker.port, protocol, f"bench-node-lat{k}", timed
                    )
                    target = buf.stored + third
                    await publish(broker.port, base + third, third, rate)
                    await stored_at_least(buf, target, timeout=30)
                    await adapter.close()
                    await task
        finally:
            broker.stop()

    ratio = best_adapter / best_bare
    report.row(
        "MqttAdapter + IngestPipeline + TelemetryBuffer, drain (durable, PUBACK after commit)",
        best_adapter,
        "msg/s",
        reference="bare aiomqtt subscriber, count only",
        ref_value=best_bare,
        ref_unit="msg/s",
        goal=">= 0.8",
        met=ratio >= 0.8,
        note=(
            f"{commits} commits in the last adapter round; quality flags raised there:"
            f" {flags or 'none'}"
        ),
    )
    report.row(
        "client CPU per stored message, drain (process time, SQLite's thread included)",
        cpu_adapter,
        "µs",
        reference="bare subscriber, per message",
        ref_value=cpu_bare,
        ref_unit="µs",
        note="best of the rounds, each side",
    )
    for p in (50, 99):
        report.row(
            f"publish -> durable latency p{p} at {rate:,.0f} msg/s",
            pct(lat_adapter, p) * 1e3,
            "ms",
            reference="publish -> received, bare subscriber",
            ref_value=pct(lat_bare, p) * 1e3,
            ref_unit="ms",
        )
    report.note(
        f"{n} messages per round, best of {rounds} interleaved rounds; MQTT {protocol};"
        + (
            f" mosquitto max_inflight_messages={inflight};"
            if kind == "mosquitto"
            else f" broker {kind}, not mosquitto: amqtt holds a resumed session's queue ~5 s"
            " from a client that acknowledges after SUBACK (tests/_brokers.py, AmqttBroker),"
            " which dominates the drain figure; install mosquitto for meaningful figures;"
        )
        + f" buffer synchronous={synchronous};"
        f" publisher (QoS 1, pipelined) {pub_rate:,.0f} msg/s; the adapter feeds an"
        " IngestPipeline (quality checks with a TagSpec per tag), as in a node"
    )


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        allow_abbrev=False, description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="tiny sizes: proves it runs")
    ap.add_argument("--json", help="also write the rows as JSON to this file")
    ap.add_argument("--messages", type=int, default=8000, help="per round")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds, best kept")
    ap.add_argument(
        "--protocol", choices=["3.1.1", "5"], default="3.1.1", help="MQTT version (5: mosquitto)"
    )
    ap.add_argument("--inflight", type=int, default=20, help="mosquitto max_inflight_messages")
    ap.add_argument(
        "--broker",
        choices=["mosquitto", "amqtt"],
        help="default: mosquitto if installed, else amqtt (TWINMESH_MQTT_BROKER also picks)",
    )
    ap.add_argument("--rate", type=float, default=1000.0, help="paced rate for latency, msg/s")
    ap.add_argument(
        "--latency-seconds", type=float, default=3.0, help="paced latency phase, seconds"
    )
    ap.add_argument(
        "--synchronous",
        choices=["FULL", "NORMAL"],
        default="FULL",
        help="buffer durability: FULL survives power loss, NORMAL a process crash",
    )
    return ap.parse_args(argv)


async def main() -> None:
    args = parse()
    report = Report("ingest: MQTT")
    if args.quick:
        await measure(
            report, messages=200, rounds=1, rate=200, latency_seconds=0.3, broker_kind=args.broker
        )
    else:
        await measure(
            report,
            messages=args.messages,
            rounds=args.rounds,
            protocol=args.protocol,
            inflight=args.inflight,
            rate=args.rate,
            latency_seconds=args.latency_seconds,
            synchronous=args.synchronous,
            broker_kind=args.broker,
        )
    report.print()
    if args.json:
        report.write_json(args.json)


if __name__ == "__main__":
    asyncio.run(main())
