"""The plant's MQTT side: retrofitted sensors publishing to a unified namespace, QoS 1.

Topics and payloads
-------------------
Topic ``site/area/line/cell/asset/tag`` (ISA-95 unified namespace; the
adapters' default rule maps it to entity ``site/line/asset``, telemetry
``tag``), e.g. ``plant-a/area-1/line-1/cell-2/pump-1/flowRate``. Payload, as
:func:`twinmesh.adapters.mqtt.decode_payload` reads it::

    {"value": 118.42, "timestamp": "2026-05-10T08:00:00.500000Z", "unit": "m3/h"}

The timestamp is RFC 3339 UTC with microseconds: the instant the device
measured the value. (decode_payload reads a *numeric* timestamp as epoch
milliseconds; a string avoids any doubt about the unit.)

Store and forward
-----------------
Readings go into a bounded in-memory queue first; the connection loop
publishes from its head and removes a reading only once the broker has
acknowledged it (PUBACK, MQTT 3.1.1 §4.3.2). Up to ``inflight`` publishes are
outstanding at once, sent in queue order. If the broker goes away the
unacknowledged ones stay queued and are sent again, in order, after the
reconnect: at-least-once, so a reading may arrive twice, and the node
stores it once (its sample id is derived from topic, timestamp and value).
A broker restart therefore loses nothing while the queue has room. When the
queue is full the *oldest* reading is dropped — a device keeps its freshest
data — and counted in :attr:`MqttPublisher.dropped`; the drops are logged
as they start and summarised when the broker is back.

Commands
--------
A device with a command (a pump's flow setpoint, :data:`MQTT_COMMANDS`)
subscribes to ``<asset topic prefix>/cmd/<command>`` (QoS 1) and answers each
request on that topic + ``/ack`` through the same queue as its readings:
``{"id", "accepted", "reason"?, "value"?}``. It refuses a request that does
not parse or whose ``expires`` (epoch ms) has passed — a request delivered
late must not move the machine — and answers a repeated id (a QoS 1
redelivery) with its first answer without acting again. Its session is clean,
so requests published while it was away are not kept for it: the home
plant, which waits for the answer, fails such a command instead.

Reconnects back off exponentially with jitter (:class:`twinmesh.adapters.Backoff`).
A broker that is down at start-up is just a long first back-off: the
simulator keeps running and the queue fills.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import math
import random
import ssl
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiomqtt

from .._base import Backoff, BackoffPolicy
from ._config import MqttSettings

__all__ = [
    "MQTT_COMMANDS",
    "CommandDesk",
    "MqttPublisher",
    "PublisherStats",
    "command_topic",
    "encode_payload",
]

_log = logging.getLogger(__name__)

#: A device reconnects quickly at first and settles at a few seconds.
DEFAULT_BACKOFF = BackoffPolicy(initial=0.2, maximum=5.0, multiplier=2.0, jitter=0.5)


def encode_payload(value: float, timestamp: float, unit: str) -> bytes:
    """The JSON payload of one reading (``timestamp`` in epoch seconds)."""
    when = dt.datetime.fromtimestamp(timestamp, dt.UTC).isoformat(timespec="microseconds")
    body = {"value": value, "timestamp": when.replace("+00:00", "Z"), "unit": unit}
    # allow_nan=False: a NaN would be invalid JSON; the physics never makes one.
    return json.dumps(body, separators=(",", ":"), allow_nan=False).encode("utf-8")


#: Machine kind -> the command its MQTT device takes (the DTDL model's Setpoint command).
MQTT_COMMANDS: Mapping[str, str] = {"pump": "setFlowSetpoint"}

_REMEMBERED = 256  # command ids answered, for redeliveries


def command_topic(prefix: str, command: str) -> str:
    return f"{prefix}/cmd/{command}"


class CommandDesk:
    """The device side of MQTT commands (pure): a request in, an answer out.

    ``apply(topic, value)`` moves the machine and returns None, or returns why
    it will not; it runs once per command id."""

    def __init__(
        self,
        topics: Mapping[str, object],
        *,
        apply: Callable[[str, float], str | None],
        clock: Callable[[], float],
    ) -> None:
        self.topics = dict(topics)
        self._apply = apply
        self._clock = clock
        self._answered: OrderedDict[str, bytes] = OrderedDict()
        self.applied = 0

    def handle(self, topic: str, payload: bytes) -> tuple[str, bytes] | None:
        if topic not in self.topics:
            return None
        try:
            body = json.loads(payload)
        except (ValueError, RecursionError):
            body = None
        cid = body.get("id") if isinstance(body, dict) else None
        if not isinstance(cid, str) or not 0 < len(cid) <= 64:
            _log.warning("command on %s without an id ignored", topic)
            return None
        assert isinstance(body, dict)
        if cid in self._answered:
            return topic + "/ack", self._answered[cid]  # a redelivery: same answer, no action
        value, expires = body.get("value"), body.get("expires")
        reason: str | None
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if not number or not math.isfinite(value):
            reason = "value must be a finite number"
        elif isinstance(expires, bool) or not isinstance(expires, int):
            reason = "expires must be epoch milliseconds"
        elif expires <= self._clock() * 1000:
            reason = "expired before it arrived"
        else:
            reason = self._apply(topic, float(value))
        answer: dict[str, Any] = {"id": cid, "accepted": reason is None}
        if reason is None:
            answer["value"] = float(value)
            self.applied += 1
        else:
            answer["reason"] = reason
        out = json.dumps(answer, separators=(",", ":")).encode()
        self._answered[cid] = out
        while len(self._answered) > _REMEMBERED:
            self._answered.popitem(last=False)
        return topic + "/ack", out


@dataclass(frozen=True, slots=True, kw_only=True)
class PublisherStats:
    queued: int  # readings waiting (including those in flight)
    published: int  # acknowledged by the broker
    dropped: int  # discarded because the queue was full
    connected: bool
    connections: int  # successful connections so far


@dataclass(frozen=True, slots=True)
class _Item:
    seq: int
    topic: str
    payload: bytes


class MqttPublisher:
    """Queue readings with :meth:`submit`; :meth:`run` delivers them until :meth:`close`."""

    def __init__(
        self,
        settings: MqttSettings,
        *,
        rng: random.Random,
        backoff: BackoffPolicy = DEFAULT_BACKOFF,
        commands: CommandDesk | None = None,
    ) -> None:
        self.settings = settings
        self.commands = commands
        self._queue: deque[_Item] = deque()
        self._seq = 0
        self._wake = asyncio.Event()
        self._closing = asyncio.Event()
        self._backoff = Backoff(backoff, rng)
        self.published = 0
        self.dropped = 0
        self._dropped_in_outage = 0
        self.connected = False
        self.connections = 0

    @property
    def stats(self) -> PublisherStats:
        return PublisherStats(
            queued=len(self._queue),
            published=self.published,
            dropped=self.dropped,
            connected=self.connected,
            connections=self.connections,
        )

    def submit(self, topic: str, payload: bytes) -> None:
        """Queue one reading (never blocks); drops the oldest when the queue is full."""
        if len(self._queue) >= self.settings.queue_limit:
            self._queue.popleft()
            self.dropped += 1
            self._dropped_in_outage += 1
            if self._dropped_in_outage == 1:
                _log.warning(
                    "MQTT queue full (%d readings): dropping the oldest until the broker "
                    "acknowledges again",
                    self.settings.queue_limit,
                )
        self._seq += 1
        self._queue.append(_Item(self._seq, topic, payload))
        self._wake.set()

    async def run(self) -> None:
        """Connect, publish, and on any loss back off and reconnect, until closed."""
        s = self.settings
        while not self._closing.is_set():
            try:
                async with self._client() as client:
                    self.connected = True
                    self.connections += 1
                    self._backoff.reset()
                    _log.info("MQTT connected to %s:%d", s.host, s.port)
                    listening = None
                    if self.commands is not None and self.commands.topics:
                        await client.subscribe([(t, 1) for t in self.commands.topics])
                        listening = asyncio.create_task(self._listen(client))
                    try:
                        await self._pump(client)
                    finally:
                        if listening is not None:
                            listening.cancel()
                            with contextlib.suppress(BaseException):
                                await listening
            except (aiomqtt.MqttError, OSError, ConnectionError, TimeoutError) as exc:
                if self.connected:
                    _log.warning("MQTT connection to %s:%d lost: %s", s.host, s.port, exc)
                elif self._backoff.attempt == 0:
                    _log.warning("MQTT broker %s:%d unreachable: %s", s.host, s.port, exc)
            except Exception:
                # Our fault or the client library's, not the broker's: the readings
                # are still queued, so say what broke and reconnect rather than let
                # the plant's MQTT output stop without a word.
                _log.exception("MQTT publisher to %s:%d failed; reconnecting", s.host, s.port)
            finally:
                self.connected = False
            if self._closing.is_set():
                break
            delay = self._backoff.next_delay()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), delay)

    async def close(self, *, drain: float = 2.0) -> None:
        """Give queued readings up to ``drain`` seconds to go out, then stop :meth:`run`."""
        if self.connected and self._queue:
            async with asyncio.timeout(drain):
                while self._queue and self.connected:
                    await asyncio.sleep(0.02)
        self._closing.set()
        self._wake.set()
        if self._queue:
            _log.warning("MQTT: %d readings still queued at shutdown", len(self._queue))

    def _client(self) -> aiomqtt.Client:
        s = self.settings
        tls: ssl.SSLContext | None = None
        if s.tls:
            tls = ssl.create_default_context(
                ssl.Purpose.SERVER_AUTH, cafile=str(s.tls_ca) if s.tls_ca else None
            )
            if s.tls_cert is not None:
                tls.load_cert_chain(str(s.tls_cert), str(s.tls_key) if s.tls_key else None)
            tls.check_hostname = s.tls_check_hostname
        client = aiomqtt.Client(
            s.host,
            s.port,
            identifier=s.client_id,
            username=s.username,
            password=s.password,
            keepalive=s.keepalive,
            timeout=s.publish_timeout,
            tls_context=tls,
            max_inflight_messages=s.inflight,
            clean_session=True,  # our queue, not the broker session, holds what is unsent
        )
        # aiomqtt warns above this many pending calls; a full window is normal here.
        client.pending_calls_threshold = s.inflight + 10
        return client

    async def _listen(self, client: aiomqtt.Client) -> None:
        assert self.commands is not None
        async for m in client.messages:
            payload = m.payload if isinstance(m.payload, bytes) else str(m.payload).encode()
            answer = self.commands.handle(m.topic.value, payload)
            if answer is not None:
                self.submit(*answer)

    async def _pump(self, client: aiomqtt.Client) -> None:
        s = self.settings
        # aiomqtt resolves this future when the connection drops. Publishes
        # waiting for a PUBACK would otherwise wait out publish_timeout first.
        lost: Any = getattr(client, "_disconnected", None)
        if isinstance(lost, asyncio.Future):
            # We act on the loss ourselves; retrieve its exception so asyncio does
            # not report it as never retrieved.
            lost.add_done_callback(lambda f: f.cancelled() or f.exception())
        else:
            lost = asyncio.get_running_loop().create_future()  # never resolves: timeouts only
        while not self._closing.is_set():
            if not self._queue:
                self._wake.clear()
                waiter = asyncio.ensure_future(self._wake.wait())
                try:
                    await asyncio.wait({waiter, lost}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    waiter.cancel()
                if lost.done():
                    raise ConnectionError("disconnected")
                continue
            batch = [self._queue[i] for i in range(min(s.inflight, len(self._queue)))]
            sending = asyncio.ensure_future(
                asyncio.gather(*(client.publish(i.topic, i.payload, qos=1) for i in batch))
            )
            try:
                await asyncio.wait({sending, lost}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                if not sending.done():
                    sending.cancel()
                    with contextlib.suppress(BaseException):
                        await sending
            if not sending.done() or sending.cancelled():
                raise ConnectionError("disconnected while publishing")
            exc = sending.exception()
            if isinstance(exc, asyncio.CancelledError):
                # A publish the client cancelled under us (gather passes a child's
                # cancellation on as its exception): raised, it would end run().
                raise ConnectionError("a publish was cancelled by the client") from exc
            if exc is not None:
                raise exc
            last = batch[-1].seq
            while self._queue and self._queue[0].seq <= last:
                self._queue.popleft()
            self.published += len(batch)
            if self._dropped_in_outage:
                _log.warning(
                    "MQTT: dropped %d readings while the broker was unreachable (queue limit %d)",
                    self._dropped_in_outage,
                    s.queue_limit,
                )
                self._dropped_in_outage = 0
