"""Telemetry on a running node: the buffer, the quality checks and the adapters.

Theory of operation
-------------------
:class:`TelemetryService` owns one :class:`TelemetryBuffer`, one
:class:`IngestPipeline` (quality checks, then the buffer) and the configured
adapters. Each adapter runs its own reconnect loop (``Adapter.run``) into the
same pipeline, so a broker outage does not touch the OPC UA side, and the
buffer's group commit turns concurrent batches into shared fsyncs.

Nothing the node has not committed is acknowledged to a source (the adapter
contract, see ``twinmesh.adapters._base``), so stopping the service at any
point — or ``kill -9`` — loses nothing the source still holds: MQTT
redelivers from the persistent session, OPC UA is backfilled from history
where the server keeps it.

Two background loops run beside the adapters: the stale-tag sweep (a STALE
event needs a clock, not a sample) and compaction (aggregates and retention).
Telemetry stays in the plant (ARCHITECTURE.md "What replicates"); only the
twin entities the service creates for its assets are gossiped.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from twinmesh.adapters import Adapter, AdapterStatus, Quality, Reject, Sample

from ._bound import unmapped_tags
from ._buffer import TelemetryBuffer
from ._ingest import IngestPipeline
from ._quality import EventKind, QualityChecker, QualityEvent, TagSpec
from ._settings import AdapterSpec, TelemetrySettings

__all__ = ["TelemetryService", "build_adapter"]

_log = logging.getLogger("twinmesh.node.telemetry")


def build_adapter(
    spec: AdapterSpec,
    *,
    seed: str,
    clock: Callable[[], float],
    resume_from: Callable[[], Mapping[tuple[str, str], float]] | None = None,
) -> Adapter:
    """The adapter a spec describes. Jitter is seeded per node and adapter so
    that plants do not reconnect in lock-step after a shared broker restarts.

    ``resume_from`` gives the newest stored source time per tag: an OPC UA
    adapter backfills from there out of the server's history, so readings
    made while this node was down are not lost (MQTT needs no such help: the
    broker queues for our persistent session)."""
    rng = random.Random(seed)
    if spec.kind == "mqtt":
        from twinmesh.adapters.mqtt import MqttAdapter

        return MqttAdapter(spec.config, name=spec.name, rng=rng, clock=clock)
    from twinmesh.adapters.opcua import OpcUaAdapter

    return OpcUaAdapter(spec.config, name=spec.name, rng=rng, clock=clock, resume_from=resume_from)


class TelemetryService:
    def __init__(
        self,
        settings: TelemetrySettings,
        specs: Mapping[tuple[str, str], TagSpec],
        *,
        node_name: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        #: Modelled tags no adapter mapping binds: reported once, never STALE.
        self.unmapped = unmapped_tags(specs, settings.adapters) if settings.adapters else []
        self.specs = dict(specs)
        for tag in self.unmapped:
            self.specs[tag] = dataclasses.replace(self.specs[tag], expected_interval=None)
        self.clock = clock
        self.node_name = node_name
        self.buffer: TelemetryBuffer | None = None
        self.pipeline: IngestPipeline | None = None
        self.adapters: list[Adapter] = [
            build_adapter(
                a, seed=f"{node_name}/{a.name}", clock=clock, resume_from=self._resume_points
            )
            for a in settings.adapters
        ]
        #: Newest sample per tag (by source time) and when it arrived, for the API.
        self.latest: dict[tuple[str, str], Sample] = {}
        self.compactions = 0
        self.sweeps = 0
        self._tasks: list[asyncio.Task[Any]] = []

    async def open(self) -> None:
        s = self.settings
        s.buffer.parent.mkdir(parents=True, exist_ok=True)
        self.buffer = await TelemetryBuffer.open(
            s.buffer, retention=s.retention, synchronous=s.synchronous
        )
        checker = QualityChecker(self.specs, s.quality)
        self.pipeline = IngestPipeline(self.buffer, checker, clock=self.clock)
        await self.pipeline.prime()  # a restart must not re-flag the first sample of each tag
        await self._report_unmapped()
        for sample in await self.buffer.latest_per_tag():
            self.latest[sample.tag] = sample

    async def _report_unmapped(self) -> None:
        """One ``unmapped`` event per unbound tag, ever (a restart does not repeat it)."""
        assert self.buffer is not None
        if not self.unmapped:
            return
        told = await self.buffer.event_tags(EventKind.UNMAPPED)
        now = self.clock()
        events = [
            QualityEvent(
                kind=EventKind.UNMAPPED,
                entity=entity,
                name=name,
                at=now,
                detail="the model has this telemetry but no adapter mapping binds it:"
                " not expected, so no STALE events",
            )
            for entity, name in self.unmapped
            if (entity, name) not in told
        ]
        if events:
            _log.warning(
                "telemetry: %d modelled tag(s) bound by no mapping (no STALE for them): %s",
                len(events),
                ", ".join(f"{e.entity}/{e.name}" for e in events),
            )
            await self.buffer.append((), (), events=events)

    def _resume_points(self) -> dict[tuple[str, str], float]:
        # ``latest`` was primed from the buffer in open(), before any adapter runs.
        # A reading without a device timestamp carries our clock: no place to resume from.
        return {
            tag: sample.source_ts
            for tag, sample in self.latest.items()
            if Quality.NO_SOURCE_TIME not in sample.quality
        }

    async def _sink(self, samples: Sequence[Sample], rejects: Sequence[Reject] = (), /) -> None:
        assert self.pipeline is not None
        for sample in await self.pipeline.ingest(samples, rejects):
            old = self.latest.get(sample.tag)
            if old is None or sample.source_ts >= old.source_ts:
                self.latest[sample.tag] = sample

    def start(self) -> None:
        """Run the adapters and the background loops (call after :meth:`open`)."""
        for adapter in self.adapters:
            self._tasks.append(asyncio.create_task(adapter.run(self._sink), name=adapter.name))
        self._tasks.append(asyncio.create_task(self._sweep_loop(), name="telemetry-sweep"))
        self._tasks.append(asyncio.create_task(self._compact_loop(), name="telemetry-compact"))

    async def _sweep_loop(self) -> None:
        intervals = [s.expected_interval for s in self.specs.values() if s.expected_interval]
        # Sweep a few times per shortest interval so STALE is raised within a
        # fraction of an interval of the deadline, but never busier than 10 Hz.
        period = max(0.1, min(intervals, default=4.0) / 4)
        assert self.pipeline is not None
        while True:
            await asyncio.sleep(period)
            try:
                await self.pipeline.sweep()
                self.sweeps += 1
            except Exception:
                _log.exception("telemetry: stale sweep failed")

    async def _compact_loop(self) -> None:
        assert self.buffer is not None
        while True:
            await asyncio.sleep(self.settings.compact_interval)
            try:
                result = await self.buffer.compact(self.clock())
                self.compactions += 1
                if result.raw_deleted or result.raw_held:
                    _log.info("telemetry: compacted %s", result)
            except Exception:
                _log.exception("telemetry: compaction failed")

    async def close(self) -> None:
        for adapter in self.adapters:
            await adapter.close()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(BaseException):
                await task
        self._tasks.clear()
        if self.buffer is not None:
            await self.buffer.close()

    def statuses(self) -> list[AdapterStatus]:
        return [a.status() for a in self.adapters]
