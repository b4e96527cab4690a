"""Run the synthetic plant: tick the assets on the wall clock, publish, record the truth.

Theory of operation
-------------------
1. Build the OPC UA address space (not yet listening) and write the mapping
   and asset files, which need the namespace index.
2. Fix ``start`` (epoch seconds). Tick 0 of every asset is computed and
   written at once, so the OPC UA variables hold a real reading before the
   first client can connect and nobody sees a placeholder value.
3. Start listening, start the MQTT publisher (it retries on its own if the
   broker is down), write ``plant.json`` and ``ground-truth.jsonl``, and print
   ``READY {json}`` on stdout.
4. Loop: asset ``a``'s tick ``n`` is due at ``start + n * a.sample_interval``;
   sleep until the earliest due tick (or until stopped) and emit every tick
   that is due. A late wake-up (a busy machine) emits the missed ticks with
   their own timestamps, so the reading sequence never depends on timing.
   Each tick's readings carry its due time as the device's timestamp.
5. On stop (event, SIGINT/SIGTERM in the CLI, or ``duration``): write the final
   ground truth, give the MQTT queue a moment to drain, stop the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ._config import PlantConfig
from ._models import kind_telemetry
from ._mqtt_publisher import (
    MQTT_COMMANDS,
    CommandDesk,
    MqttPublisher,
    command_topic,
    encode_payload,
)
from ._opcua_server import PlantOpcUaServer
from ._outputs import (
    ASSETS_FILE,
    GROUND_TRUTH_FILE,
    MQTT_MAPPING_FILE,
    NODE_COSIM_FILE,
    NODE_TELEMETRY_FILE,
    OPCUA_MAPPING_FILE,
    PLANT_FILE,
    assets_toml,
    ground_truth_jsonl,
    mqtt_mapping_toml,
    node_cosim_toml,
    node_telemetry_toml,
    opcua_mapping_toml,
    write_atomic,
)
from ._plant import AssetSimulator, Tick
from ._truth import GroundTruth

__all__ = ["RunSummary", "simulate"]

_log = logging.getLogger(__name__)

_STATUS_EVERY = 60.0  # seconds between progress lines in the log


@dataclass(frozen=True, slots=True, kw_only=True)
class RunSummary:
    start: float
    stop: float
    ticks: int
    opcua_writes: int
    mqtt_published: int
    mqtt_dropped: int
    mqtt_unsent: int


def _print_ready(line: str) -> None:
    print(line, flush=True)


class _Emitter:
    """Routes each tick to its protocol and to the ground truth."""

    def __init__(
        self,
        config: PlantConfig,
        *,
        start: float,
        server: PlantOpcUaServer | None,
        publisher: MqttPublisher | None,
        truth: GroundTruth,
        clock: Callable[[], float],
    ) -> None:
        self.config = config
        self.start = start
        self.server = server
        self.publisher = publisher
        self.truth = truth
        self.clock = clock
        self.ticks = 0
        self.opcua_writes = 0

    def due(self, sim: AssetSimulator) -> float:
        return self.start + sim.n * sim.asset.sample_interval

    async def emit(self, sim: AssetSimulator, tick: Tick) -> None:
        a = sim.asset
        ts = round(self.start + tick.n * a.sample_interval, 6)  # when the device measured
        if a.protocol == "opcua":
            assert self.server is not None
            now = self.clock()
            setpoint = await self.server.setpoint(a.name)
            if setpoint is not None:
                sim.set_setpoint(setpoint)  # takes effect from the next tick
            for tag, value in tick.values.items():
                await self.server.write(a.name, tag, value, source_ts=ts, server_ts=max(now, ts))
            self.opcua_writes += len(tick.values)
        else:
            assert self.publisher is not None
            info = kind_telemetry(a.kind)
            for tag, value in tick.values.items():
                self.publisher.submit(
                    f"{a.topic_prefix}/{tag}", encode_payload(value, ts, info[tag].unit)
                )
        self.ticks += 1
        if self.truth.observe(a, tick, ts):
            self.write_truth()

    def write_truth(self, *, final: bool = False, stopped: float | None = None) -> None:
        records = self.truth.records(final=final, stopped=stopped)
        write_atomic(self.config.out / GROUND_TRUTH_FILE, ground_truth_jsonl(records))


async def simulate(
    config: PlantConfig,
    *,
    duration: float | None = None,
    stop: asyncio.Event | None = None,
    clock: Callable[[], float] = time.time,
    ready: Callable[[str], None] = _print_ready,
) -> RunSummary:
    """Run the plant until ``stop`` is set or ``duration`` wall seconds have passed."""
    out = config.out
    out.mkdir(parents=True, exist_ok=True)
    stop = stop if stop is not None else asyncio.Event()
    sims = [
        AssetSimulator(
            a, seed=config.seed, time_scale=config.time_scale, ambient=config.ambient_temperature
        )
        for a in config.assets
    ]
    opcua_assets = config.assets_on("opcua")
    server = (
        PlantOpcUaServer(
            config.opcua,
            site=config.site,
            namespace_uri=config.namespace_uri,
            assets=opcua_assets,
            out=out,
        )
        if opcua_assets
        else None
    )
    publisher = (
        MqttPublisher(
            config.mqtt, rng=random.Random(config.seed), commands=_command_desk(sims, clock)
        )
        if config.assets_on("mqtt")
        else None
    )
    publishing: asyncio.Task[None] | None = None
    emitter: _Emitter | None = None
    start = math.nan
    try:
        if server is not None:
            await server.setup()
            write_atomic(
                out / OPCUA_MAPPING_FILE, opcua_mapping_toml(config, server.namespace_index)
            )
        if publisher is not None:
            write_atomic(out / MQTT_MAPPING_FILE, mqtt_mapping_toml(config))
        write_atomic(out / ASSETS_FILE, assets_toml(config))
        write_atomic(out / NODE_COSIM_FILE, node_cosim_toml(config))
        write_atomic(
            out / NODE_TELEMETRY_FILE,
            node_telemetry_toml(config, opcua_endpoint=server.endpoint if server else None),
        )

        start = round(clock(), 3)
        truth = GroundTruth(config.assets, start=start, time_scale=config.time_scale)
        emitter = _Emitter(
            config, start=start, server=server, publisher=publisher, truth=truth, clock=clock
        )
        for sim in sims:
            await emitter.emit(sim, sim.tick())
        if server is not None:
            await server.start()
        if publisher is not None:
            publishing = asyncio.create_task(publisher.run(), name="mqtt-publisher")
        info = _describe(config, start, server)
        write_atomic(out / PLANT_FILE, json.dumps(info, indent=2) + "\n")
        emitter.write_truth()
        ready("READY " + json.dumps(info, separators=(",", ":")))
        await _loop(sims, emitter, stop, clock, end=start + duration if duration else math.inf)
    finally:
        stopped = clock()
        if emitter is not None:
            emitter.write_truth(final=True, stopped=stopped)
        if publisher is not None:
            with contextlib.suppress(TimeoutError):
                await publisher.close(drain=2.0)
        if publishing is not None:
            publishing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await publishing
        if server is not None:
            await server.stop()
    return RunSummary(
        start=start,
        stop=stopped,
        ticks=emitter.ticks if emitter else 0,
        opcua_writes=emitter.opcua_writes if emitter else 0,
        mqtt_published=publisher.published if publisher else 0,
        mqtt_dropped=publisher.dropped if publisher else 0,
        mqtt_unsent=publisher.stats.queued if publisher else 0,
    )


def _command_desk(sims: list[AssetSimulator], clock: Callable[[], float]) -> CommandDesk:
    """The MQTT devices' command topics, each moving its asset's setpoint."""
    by_topic = {
        command_topic(sim.asset.topic_prefix, MQTT_COMMANDS[sim.asset.kind]): sim
        for sim in sims
        if sim.asset.protocol == "mqtt" and sim.asset.kind in MQTT_COMMANDS
    }

    def apply(topic: str, value: float) -> str | None:
        if value <= 0:
            return f"{value:g} is not a setpoint this drive can hold"
        if not by_topic[topic].set_setpoint(value):  # takes effect from the next tick
            return "this machine takes no setpoint"
        return None

    return CommandDesk(by_topic, apply=apply, clock=clock)


async def _loop(
    sims: list[AssetSimulator],
    emitter: _Emitter,
    stop: asyncio.Event,
    clock: Callable[[], float],
    *,
    end: float,
) -> None:
    next_status = clock() + _STATUS_EVERY
    while not stop.is_set():
        now = clock()
        horizon = min(now, end)
        for sim in sims:
            while emitter.due(sim) <= horizon:
                await emitter.emit(sim, sim.tick())
        if now >= end:
            return
        if now >= next_status:
            next_status = now + _STATUS_EVERY
            _log.info("%s", _status(emitter))
        wake = min(min(emitter.due(s) for s in sims), end)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), max(wake - clock(), 0.0))


def _status(emitter: _Emitter) -> str:
    text = f"{emitter.ticks} ticks, {emitter.opcua_writes} OPC UA writes"
    if emitter.publisher is not None:
        s = emitter.publisher.stats
        state = "connected" if s.connected else "disconnected"
        text += f"; MQTT {state}: {s.published} published, {s.queued} queued, {s.dropped} dropped"
    return text


def _describe(config: PlantConfig, start: float, server: PlantOpcUaServer | None) -> dict[str, Any]:
    out = config.out
    files = {
        "assets": ASSETS_FILE,
        "ground_truth": GROUND_TRUTH_FILE,
        "node_telemetry": NODE_TELEMETRY_FILE,
        "node_cosim": NODE_COSIM_FILE,
    }
    if server is not None:
        files["opcua_mapping"] = OPCUA_MAPPING_FILE
    if config.assets_on("mqtt"):
        files["mqtt_mapping"] = MQTT_MAPPING_FILE
    return {
        "pid": os.getpid(),
        "site": config.site,
        "start": start,
        "seed": config.seed,
        "time_scale": config.time_scale,
        "opcua": None
        if server is None
        else {
            "endpoint": server.endpoint,
            "namespace": server.namespace_uri,
            "namespace_index": server.namespace_index,
            "security": config.opcua.security,
            "history": config.opcua.history,
        },
        "mqtt": None
        if not config.assets_on("mqtt")
        else {"host": config.mqtt.host, "port": config.mqtt.port, "tls": config.mqtt.tls},
        "out": str(out.resolve()),
        "files": {k: str((out / v).resolve()) for k, v in files.items()},
        "assets": [
            {"entity": a.entity, "kind": a.kind, "protocol": a.protocol} for a in config.assets
        ],
    }
