"""Scoring on a running node: a telemetry-buffer consumer feeding the engine.

Theory of operation
-------------------
The service is consumer ``scoring`` of the node's telemetry buffer: it reads
committed samples after its cursor (write-before-read: a sample is scored
only once it is durable), feeds the :class:`ScoringEngine`, hands scored
frames to the alert service, and acknowledges the cursor only after the
resulting alert events are durable in the replicated log. A crash between
the two re-reads samples; events carry deterministic ids, so a re-raised
event is the same log entry, not a duplicate. It waits on the buffer's commit
condition rather than polling on a timer, so a frame is scored one commit
after its last sample.

Plant-only and WAN-independent: nothing here talks to another node. A
decommissioned asset (``node.lifecycle.state(entity)``, when the lifecycle
lane is present) is skipped; an asset with no lifecycle is in service.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from ._artifacts import ArtifactStore
from ._engine import EngineConfig, FrameResult, ScoringEngine
from ._features import FEATURE_SET

if TYPE_CHECKING:
    from .._node import Node
    from ..alerts._service import AlertService
    from ._diagnosis import Finding

__all__ = ["CONSUMER", "ScoringService"]

log = logging.getLogger("twinmesh.node.scoring")

CONSUMER = "scoring"
_BATCH = 2000


class ScoringService:
    def __init__(self, node: Node, alerts: AlertService, *, config: EngineConfig) -> None:
        self.node = node
        self.alerts = alerts
        assert node.telemetry is not None
        self.models = {a.entity: a.model for a in node.telemetry.settings.assets}
        self.engine = ScoringEngine(
            config=config,
            cohort_of=lambda e: self.models.get(e, ""),
            seed=sum(node.config.name.encode()),
            skip=self._skip,
        )
        self.cursor = 0  # acknowledged to the buffer
        self.fed = 0  # fed to the engine
        self._unrecorded: list[dict[str, Any]] = []
        self.artifacts: ArtifactStore | None = None
        self._saved = 0  # engine.retrains already saved as artifacts
        self.samples = 0
        self.latencies: deque[float] = deque(maxlen=10000)  # sample received -> event durable
        #: Newest sample received -> its frame's verdict (findings, alert events)
        #: durable, for every scored frame: what an alert raised by that frame
        #: would have waited. Many more points than raised alerts give.
        self.decisions: deque[float] = deque(maxlen=10000)
        #: CPU time (this thread) spent scoring: features, detectors, diagnosis,
        #: alert policy; not the reads and writes it awaits. samples / this is the
        #: scoring capacity of one core.
        self.cpu_seconds = 0.0
        self.newest_received = 0.0
        self._task: asyncio.Task[None] | None = None
        self.errors = 0

    def _skip(self, entity: str) -> bool:
        lifecycle = getattr(self.node, "lifecycle", None)
        if lifecycle is None:
            return False
        try:
            state = lifecycle.state(entity)
        except Exception:
            return False
        return state == "decommissioned"

    async def open(self) -> None:
        assert self.node.telemetry is not None
        self.cursor = await self.node.telemetry.buffer.register_consumer(CONSUMER)
        self.fed = self.cursor
        self.artifacts = ArtifactStore(self.node.config.data_dir / "scoring-models.sqlite")
        await self.artifacts.open()
        for entity, (version, state) in sorted(
            (await self.artifacts.newest(FEATURE_SET.version)).items()
        ):
            if entity not in self.models:
                continue
            if state is not None:
                self.engine.restore(entity, state)
            else:
                self.engine.continue_after(entity, version)
        self._saved = len(self.engine.retrains)

    async def persist_now(self) -> None:
        """Save every model learned since the last save as a versioned artifact."""
        new, self._saved = self.engine.retrains[self._saved :], len(self.engine.retrains)
        for r in new:
            if r.version <= 0 or r.reason.startswith("restored"):
                continue
            state = self.engine.export(r.entity)
            if state is None:
                continue
            await self.artifacts.save(
                entity=r.entity,
                version=r.version,
                feature_set=FEATURE_SET.version,
                reason=r.reason,
                frames=r.frames,
                trained_at=r.at,
                state=state,
            )
        await self.alerts.ensure_log()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="scoring")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.artifacts is not None:
            await self.artifacts.close()

    def lineage(self, result: FrameResult, finding: Finding) -> dict[str, Any]:
        tags = {finding.tag} if finding.tag else set()
        for ev in finding.evidence.get("features", []):
            tags.add(str(ev["feature"]).split(":", 1)[0].split(".", 1)[0])
        if not tags:
            tags = set(result.refs)
        sensors = [
            {
                "name": r.name,
                "sample_id": r.sample_id,
                "source_ts": r.source_ts,
                "ingest_ts": r.received_ts,
            }
            for name, r in sorted(result.refs.items())
            if name in tags
        ]
        out: dict[str, Any] = {
            "asset": result.entity,
            "sensors": sensors,
            "frame_ts": result.ts,
            "feature_set": FEATURE_SET.version,
            "detectors": dict(result.detector_versions),
            "scores": {k: round(v, 4) for k, v in result.scores.items()},
            "model_version": result.model_version,
            "policy_version": self.alerts.policy().version,
            "score": round(finding.score, 4),
            "confidence": finding.confidence,
            "diagnosis": {"kind": finding.kind, "label": finding.label, "tag": finding.tag},
            "recommended_action": finding.action,
        }
        side = self.engine.frames.side.get(result.entity, {})
        residuals = {
            n: {"value": v, "source_ts": ref.source_ts, "sample_id": ref.sample_id}
            for n, (v, ref) in side.items()
            if n.endswith(".residual")
        }
        if residuals:
            out["residuals"] = residuals
            cosim = getattr(self.node, "cosim", None)
            if cosim is not None:
                with contextlib.suppress(Exception):
                    status = cosim.status(result.entity)
                    if status is not None:
                        out["cosim"] = status
        return out

    async def step(self) -> int:
        """Score what is committed after the cursor; returns samples consumed.

        Samples fed to the engine (``fed``) and samples acknowledged to the
        buffer (``cursor``) are two cursors: the engine is stateful (frames,
        EWMA, hysteresis), so a batch is fed exactly once; events whose write
        failed are kept and written first on the next step, and only then is
        the buffer acknowledged past them (a crash in between re-reads the
        samples after a restart; event ids are deterministic, so the re-raised
        events are the same log entries)."""
        tel = self.node.telemetry
        assert tel is not None
        if self._unrecorded:
            await self._record(self._unrecorded)
            self._unrecorded = []
            await self._ack()
        batch = await tel.buffer.read_after(self.fed, _BATCH)
        now = self.node.clock()
        started = time.thread_time()
        if batch:
            self.engine.add_stored(batch)
            self.samples += len(batch)
            self.fed = batch[-1].seq
            self.newest_received = max(self.newest_received, batch[-1].sample.received_ts)
        results = self.engine.process(now)
        self.cpu_seconds += time.thread_time() - started
        if len(self.engine.retrains) > self._saved:
            await self.persist_now()
        started = time.thread_time()
        events = self.alerts.observe(results, self.lineage)
        self.cpu_seconds += time.thread_time() - started
        try:
            await self._record(events)
        except Exception:
            self._unrecorded = events
            raise
        await self._ack()
        done = self.node.clock()
        self.decisions.extend(done - r.received for r in results if r.received)
        return len(batch)

    async def _record(self, events: list[dict[str, Any]]) -> None:
        recorded = await self.alerts.record(events)
        done = self.node.clock()
        for e in recorded:
            if e["type"] in ("open", "reopen", "escalate"):
                sensors = (e.get("lineage") or {}).get("sensors", [])
                if sensors:
                    self.latencies.append(done - max(s["ingest_ts"] for s in sensors))

    async def _ack(self) -> None:
        tel = self.node.telemetry
        assert tel is not None
        if self.fed > self.cursor:
            self.cursor = self.fed
            await tel.buffer.ack(CONSUMER, self.cursor)

    async def _run(self) -> None:
        tel = self.node.telemetry
        assert tel is not None
        while True:
            try:
                n = await self.step()
                if n < _BATCH:
                    # Wake on the next commit, or after a second for the dropout sweep.
                    await tel.buffer.wait_after(self.fed, timeout=1.0)
            except asyncio.CancelledError:
                raise
            except Exception:
                self.errors += 1
                log.exception("scoring step failed; retrying")
                await asyncio.sleep(1.0)

    def alert_latency(self) -> dict[str, float | int]:
        """Sample received -> its alert durable in the log, over the last 10,000
        raised alerts: count, p50 and p99 seconds (nearest rank; 0 when none)."""
        return _percentiles(self.latencies)

    def decision_latency(self) -> dict[str, float | int]:
        """Sample received -> its frame's verdict durable, last 10,000 frames."""
        return _percentiles(self.decisions)

    def lag(self) -> float:
        """now - the newest sample scored (receive time); 0 before any."""
        if not self.newest_received:
            return 0.0
        return max(self.node.clock() - self.newest_received, 0.0)


def _percentiles(values: deque[float]) -> dict[str, float | int]:
    """count, p50, p99 (nearest rank) of ``values``; zeros when empty."""
    xs = sorted(values)
    if not xs:
        return {"count": 0, "p50": 0.0, "p99": 0.0}

    def rank(q: float) -> float:
        return round(xs[min(len(xs) - 1, max(0, math.ceil(q * len(xs)) - 1))], 4)

    return {"count": len(xs), "p50": rank(0.5), "p99": rank(0.99)}
