"""The adapter base class: back-off with seeded jitter, the reconnect loop, status, close."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Coroutine, Sequence
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from twinmesh.adapters import (
    Adapter,
    AdapterState,
    Backoff,
    BackoffPolicy,
    Provenance,
    Reject,
    Sample,
    Sink,
    make_sample_id,
)


def run(coro: Coroutine[Any, Any, None], timeout: float = 10.0) -> None:
    async def bounded() -> None:
        async with asyncio.timeout(timeout):
            await coro

    asyncio.run(bounded())


@given(
    initial=st.floats(0.001, 5),
    factor=st.floats(1, 4),
    jitter=st.floats(0, 1),
    seed=st.integers(0, 2**32),
)
def test_backoff_grows_is_capped_and_is_reproducible(
    initial: float, factor: float, jitter: float, seed: int
) -> None:
    policy = BackoffPolicy(initial=initial, maximum=initial * 10, multiplier=factor, jitter=jitter)
    a, b = Backoff(policy, random.Random(seed)), Backoff(policy, random.Random(seed))
    delays = [a.next_delay() for _ in range(12)]
    assert delays == [b.next_delay() for _ in range(12)]
    for n, d in enumerate(delays):
        base = min(policy.maximum, initial * factor**n)
        assert base * (1 - jitter) - 1e-12 <= d <= base + 1e-12
    a.reset()
    assert a.attempt == 0 and a.next_delay() <= initial


def test_backoff_policy_validates() -> None:
    with pytest.raises(ValueError):
        BackoffPolicy(initial=2, maximum=1)
    with pytest.raises(ValueError):
        BackoffPolicy(jitter=1.5)


def sample(i: int) -> Sample:
    return Sample(
        entity="plant-a/line-1/pump-7",
        name="x",
        value=float(i),
        unit=None,
        source_ts=float(i),
        received_ts=float(i),
        provenance=Provenance(adapter="fake", source="fake/x"),
        sample_id=make_sample_id("fake", "x", source_ts=float(i), value=float(i)),
    )


class FlakyAdapter(Adapter):
    """Fails to connect ``failures`` times, then streams ``count`` samples and ends."""

    kind = "fake"

    def __init__(self, failures: int, count: int, **kw: Any) -> None:
        super().__init__("fake", **kw)
        self.failures = failures
        self.count = count
        self.sessions = 0

    async def _session(self, sink: Sink) -> None:
        self.sessions += 1
        if self.sessions <= self.failures:
            raise ConnectionRefusedError("no peer")
        await self._connected()
        await self._deliver(sink, [sample(i) for i in range(self.count)])
        await self._deliver(
            sink, (), [Reject(adapter="fake", source="s", reason="bad", received_ts=0.0)]
        )
        await asyncio.Event().wait()  # stay connected until closed


class ListSink:
    def __init__(self) -> None:
        self.samples: list[Sample] = []
        self.rejects: list[Reject] = []

    async def __call__(self, samples: Sequence[Sample], rejects: Sequence[Reject] = ()) -> None:
        self.samples.extend(samples)
        self.rejects.extend(rejects)


def test_reconnects_with_backoff_then_streams_and_closes() -> None:
    async def body() -> None:
        policy = BackoffPolicy(initial=0.01, maximum=0.05, jitter=0.5)
        adapter = FlakyAdapter(3, 5, backoff=policy, rng=random.Random(7))
        assert adapter.status().state is AdapterState.IDLE
        sink = ListSink()
        task = asyncio.create_task(adapter.run(sink))
        status = await adapter.wait_for(lambda s: s.samples == 5 and s.rejects == 1, timeout=5)
        assert status.state is AdapterState.CONNECTED and status.healthy
        assert (status.failures, status.connects) == (3, 1)
        assert status.last_error is None
        assert status.rejects_by_reason == {"bad": 1}
        assert [s.value for s in sink.samples] == [0.0, 1.0, 2.0, 3.0, 4.0]
        await adapter.close()
        assert adapter.status().state is AdapterState.CLOSED
        await task  # run() returned

    run(body())


def test_sink_failure_ends_the_session_and_retries() -> None:
    class FailingOnce(ListSink):
        def __init__(self) -> None:
            super().__init__()
            self.calls = 0

        async def __call__(self, samples: Sequence[Sample], rejects: Sequence[Reject] = ()) -> None:
            self.calls += 1
            if self.calls == 1:
                raise OSError("disk full")
            await super().__call__(samples, rejects)

    async def body() -> None:
        adapter = FlakyAdapter(0, 3, backoff=BackoffPolicy(initial=0.01, maximum=0.02))
        sink = FailingOnce()
        task = asyncio.create_task(adapter.run(sink))
        status = await adapter.wait_for(lambda s: s.samples == 3, timeout=5)
        assert status.failures == 1 and status.connects == 2
        assert adapter.sessions == 2
        await adapter.close()
        await task

    run(body())


def test_close_while_backing_off_and_before_run() -> None:
    async def body() -> None:
        adapter = FlakyAdapter(10**6, 0, backoff=BackoffPolicy(initial=30, maximum=30))
        task = asyncio.create_task(adapter.run(ListSink()))
        await adapter.wait_for(lambda s: s.state is AdapterState.BACKING_OFF, timeout=5)
        assert adapter.status().next_retry_in is not None
        await adapter.close()  # does not wait out the 30 s delay
        await task
        idle = FlakyAdapter(0, 0)
        await idle.close()
        assert idle.state is AdapterState.CLOSED
        with pytest.raises(RuntimeError):
            await idle.run(ListSink())

    run(body())
