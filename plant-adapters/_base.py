"""The adapter interface: how a protocol driver hands samples to the node.

Theory of operation
-------------------
An :class:`Adapter` owns one connection to one source (a broker, a server,
a PLC). :meth:`Adapter.run` loops for the adapter's lifetime: connect, stream
batches into the ``sink``, and when the connection breaks, wait an
exponentially growing, jittered delay (:class:`Backoff`) and connect again.
A subclass writes only :meth:`Adapter._session` — one connection's life — and
calls :meth:`Adapter._connected` once it is receiving. A Modbus or
Sparkplug B adapter is one new file; the node never changes.

The sink is the durability boundary. ``await sink(samples, rejects)`` returns
only after every sample and reject in the call is committed (the telemetry
buffer's group commit). An adapter acknowledges its source (MQTT PUBACK, …)
only *after* the sink returns, so a crash anywhere before the commit leaves
the reading with the source to be delivered again. If the sink raises, the
session is torn down without acknowledging and the adapter backs off and
reconnects: the source redelivers what was not acknowledged.

Input that cannot become a sample (malformed payload, unmapped topic) is a
:class:`Reject` with a reason: it goes to the sink too, so it is stored and
counted, never silently dropped.

Jitter comes from a seeded :class:`random.Random` so that a run is
reproducible; the node seeds it from its own id so that different plants do
not reconnect in lock-step (the "thundering herd" that jitter exists to break,
see Brooker, "Exponential Backoff and Jitter", AWS Architecture Blog, 2015).
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import enum
import logging
import random
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from ._sample import Sample

__all__ = [
    "Adapter",
    "AdapterState",
    "AdapterStatus",
    "Backoff",
    "BackoffPolicy",
    "Reject",
    "Sink",
]

_log = logging.getLogger(__name__)

#: How many recent rejects an adapter keeps in memory for its status page.
_RECENT_REJECTS = 32


@dataclass(frozen=True, slots=True, kw_only=True)
class Reject:
    """Input from a source that could not become a sample, and why."""

    adapter: str
    source: str  # topic / node id the input arrived on
    reason: str  # short, stable, countable: "not JSON", "unmapped topic", ...
    detail: str = ""  # human-readable specifics (parser message, offending field)
    payload: bytes = b""  # the raw input, truncated by the adapter
    received_ts: float


class Sink(Protocol):
    """Where an adapter delivers batches. Returns only when the batch is durable."""

    async def __call__(
        self, samples: Sequence[Sample], rejects: Sequence[Reject] = (), /
    ) -> None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class BackoffPolicy:
    """Reconnect delays: ``initial * multiplier**n`` capped at ``maximum``.

    ``jitter`` is the fraction of each delay that is randomised: 0 gives fixed
    delays, 1 gives "full jitter" (uniform in ``[0, delay]``).
    """

    initial: float = 0.5
    maximum: float = 30.0
    multiplier: float = 2.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if not (0 < self.initial <= self.maximum):
            raise ValueError("BackoffPolicy needs 0 < initial <= maximum")
        if self.multiplier < 1:
            raise ValueError("BackoffPolicy.multiplier must be >= 1")
        if not (0 <= self.jitter <= 1):
            raise ValueError("BackoffPolicy.jitter must be within [0, 1]")


class Backoff:
    """Successive reconnect delays for one adapter (pure: no clock, seeded rng)."""

    def __init__(self, policy: BackoffPolicy, rng: random.Random) -> None:
        self._policy = policy
        self._rng = rng
        self._attempt = 0

    @property
    def attempt(self) -> int:
        """Failed attempts since the last :meth:`reset`."""
        return self._attempt

    def next_delay(self) -> float:
        p = self._policy
        base = min(p.maximum, p.initial * p.multiplier**self._attempt)
        self._attempt += 1
        # Subtract a random part instead of adding one so the cap stays a cap.
        return base * (1.0 - p.jitter * self._rng.random())

    def reset(self) -> None:
        self._attempt = 0


class AdapterState(enum.Enum):
    IDLE = "idle"  # constructed, run() not called yet
    CONNECTING = "connecting"
    CONNECTED = "connected"
    BACKING_OFF = "backing-off"  # waiting before the next connection attempt
    CLOSED = "closed"


@dataclass(frozen=True, slots=True, kw_only=True)
class AdapterStatus:
    """A snapshot for health checks and /metrics."""

    name: str
    kind: str
    state: AdapterState
    connected_since: float | None
    last_error: str | None
    connects: int  # successful connections, the first one included
    failures: int  # sessions that ended in an error (connect refused, lost, sink failed)
    next_retry_in: float | None  # the current back-off delay while BACKING_OFF
    samples: int  # samples the sink has made durable
    rejects: int
    rejects_by_reason: dict[str, int] = field(default_factory=dict)
    recent_rejects: tuple[Reject, ...] = ()
    details: dict[str, str] = field(default_factory=dict)  # adapter-specific facts

    @property
    def healthy(self) -> bool:
        return self.state is AdapterState.CONNECTED


class Adapter(abc.ABC):
    """Base class for protocol adapters. Subclasses implement :meth:`_session`."""

    #: Protocol family, used in sample ids and metrics ("mqtt", "opcua", ...).
    kind: str = "adapter"

    def __init__(
        self,
        name: str,
        *,
        backoff: BackoffPolicy | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._name = name
        self._policy = backoff or BackoffPolicy()
        self._backoff = Backoff(self._policy, rng if rng is not None else random.Random(name))
        self._clock = clock
        self._state = AdapterState.IDLE
        self._connected_since: float | None = None
        self._last_error: str | None = None
        self._connects = 0
        self._failures = 0
        self._next_retry_in: float | None = None
        self._samples = 0
        self._rejects: Counter[str] = Counter()
        self._recent_rejects: deque[Reject] = deque(maxlen=_RECENT_REJECTS)
        self._closing = asyncio.Event()
        self._stopped = asyncio.Event()
        self._state_changed = asyncio.Condition()

    @property
    def name(self) -> str:
        return self._name

    # -- what subclasses implement -------------------------------------------------

    @abc.abstractmethod
    async def _session(self, sink: Sink) -> None:
        """Connect once and stream into ``sink`` until the connection ends.

        Raise on any failure (the base class logs it and backs off); return
        normally only when the source closed the session cleanly. Call
        :meth:`_connected` as soon as data can flow, and :meth:`_deliver` to
        hand batches to the sink.
        """

    def _details(self) -> dict[str, str]:
        """Adapter-specific facts for :class:`AdapterStatus` (ack mode, endpoint, ...)."""
        return {}

    # -- the loop --------------------------------------------------------------------

    async def run(self, sink: Sink) -> None:
        """Run until :meth:`close`: connect, stream, back off and reconnect on failure."""
        if self._state is not AdapterState.IDLE:
            raise RuntimeError(f"adapter {self._name!r} is {self._state.value}; run() once")
        try:
            while not self._closing.is_set():
                await self._set_state(AdapterState.CONNECTING)
                session = asyncio.ensure_future(self._session(sink))
                closing = asyncio.ensure_future(self._closing.wait())
                try:
                    await asyncio.wait({session, closing}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    closing.cancel()
                    if not session.done():
                        # close() was called, or run() itself is being cancelled.
                        session.cancel()
                        with contextlib.suppress(asyncio.CancelledError, Exception):
                            await session
                if session.cancelled():
                    break
                error = session.exception()
                if self._closing.is_set():
                    break
                was_connected = self._connected_since is not None
                self._connected_since = None
                if error is None:
                    self._last_error = None
                else:
                    self._failures += 1
                    self._last_error = f"{type(error).__name__}: {error}"
                    _log.warning("adapter %s: session ended: %s", self._name, self._last_error)
                if was_connected:
                    # A session that got as far as receiving earns a fresh back-off:
                    # one blip should not inherit the delay of an earlier outage.
                    self._backoff.reset()
                delay = self._backoff.next_delay()
                self._next_retry_in = delay
                await self._set_state(AdapterState.BACKING_OFF)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closing.wait(), timeout=delay)
                self._next_retry_in = None
        finally:
            self._connected_since = None
            await self._set_state(AdapterState.CLOSED)
            self._stopped.set()

    async def close(self) -> None:
        """Stop :meth:`run` and wait until it has returned; the session is cancelled.

        Nothing the sink has not made durable was acknowledged, so cancelling
        mid-batch loses nothing: the source delivers it again next time.
        """
        self._closing.set()
        if self._state is AdapterState.IDLE:
            await self._set_state(AdapterState.CLOSED)
            self._stopped.set()
        await self._stopped.wait()

    # -- helpers for subclasses --------------------------------------------------------

    async def _connected(self) -> None:
        self._connects += 1
        self._connected_since = self._clock()
        self._last_error = None
        await self._set_state(AdapterState.CONNECTED)

    async def _deliver(
        self, sink: Sink, samples: Sequence[Sample], rejects: Sequence[Reject] = ()
    ) -> None:
        """Hand one batch to the sink; on return it is durable and counted."""
        if not samples and not rejects:
            return
        await sink(samples, rejects)
        self._samples += len(samples)
        self._rejects.update(r.reason for r in rejects)
        self._recent_rejects.extend(rejects)
        async with self._state_changed:
            self._state_changed.notify_all()
        for reject in rejects:
            _log.info(
                "adapter %s: rejected input on %s: %s %s",
                self._name,
                reject.source,
                reject.reason,
                reject.detail,
            )

    def _now(self) -> float:
        return self._clock()

    async def _set_state(self, state: AdapterState) -> None:
        async with self._state_changed:
            self._state = state
            self._state_changed.notify_all()

    # -- observation -------------------------------------------------------------------

    @property
    def state(self) -> AdapterState:
        return self._state

    async def wait_for(
        self, predicate: Callable[[AdapterStatus], bool], timeout: float | None = None
    ) -> AdapterStatus:
        """Wait until ``predicate(status())`` holds (tests and supervisors use this).

        Raises :class:`TimeoutError` after ``timeout`` seconds.
        """
        async with asyncio.timeout(timeout), self._state_changed:
            await self._state_changed.wait_for(lambda: predicate(self.status()))
        return self.status()

    def status(self) -> AdapterStatus:
        return AdapterStatus(
            name=self._name,
            kind=self.kind,
            state=self._state,
            connected_since=self._connected_since,
            last_error=self._last_error,
            connects=self._connects,
            failures=self._failures,
            next_retry_in=self._next_retry_in,
            samples=self._samples,
            rejects=sum(self._rejects.values()),
            rejects_by_reason=dict(self._rejects),
            recent_rejects=tuple(self._recent_rejects),
            details=self._details(),
        )
