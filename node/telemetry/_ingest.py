"""The sink adapters write into: quality checks first, then the buffer.

The checker is pure and synchronous, so checking a batch cannot interleave
with another adapter's batch; the flagged samples and the events the batch
raised are appended in one call, hence one transaction. ``now`` comes from an
injected clock so tests and the simulator can drive it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

from twinmesh.adapters import Reject, Sample

from ._buffer import TelemetryBuffer
from ._quality import QualityChecker

__all__ = ["IngestPipeline"]


class IngestPipeline:
    """An adapter :class:`~twinmesh.adapters.Sink`: check, flag, then store durably."""

    def __init__(
        self,
        buffer: TelemetryBuffer,
        checker: QualityChecker | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.buffer = buffer
        self.checker = checker or QualityChecker()
        self._clock = clock

    async def __call__(self, samples: Sequence[Sample], rejects: Sequence[Reject] = (), /) -> None:
        await self.ingest(samples, rejects)

    async def ingest(
        self, samples: Sequence[Sample], rejects: Sequence[Reject] = ()
    ) -> list[Sample]:
        """Check and store one batch; returns the samples as stored (flagged, converted)."""
        checked, events = self.checker.check_batch(samples, self._clock())
        await self.buffer.append(checked, rejects, events=events)
        return checked

    async def prime(self) -> None:
        """Seed the checker with the newest stored sample of every tag (after a restart)."""
        self.checker.prime(await self.buffer.latest_per_tag())

    async def sweep(self) -> int:
        """Store stale-tag events as of now; returns how many were raised."""
        events = self.checker.sweep(self._clock())
        if events:
            await self.buffer.append((), (), events=events)
        return len(events)

    async def run_sweeper(self, interval: float = 1.0) -> None:
        """Call :meth:`sweep` every ``interval`` seconds until cancelled."""
        while True:
            await self.sweep()
            await asyncio.sleep(interval)
