"""MQTT adapter (aiomqtt >= 2): topics in, durable samples out, QoS 1 end to end.

Delivery guarantee
------------------
Subscriptions are QoS 1 in a *persistent session*: a fixed client id and
``clean_session = 0`` (MQTT 3.1.1 §3.1.2.4) or ``clean_start = 0`` with a
non-zero Session Expiry Interval (MQTT 5 §3.1.2.4, §3.1.2.11.2). The broker
keeps the subscriptions and queues QoS 1 messages while the node is away and
delivers them when it returns (bounded by the broker's own limits, e.g.
mosquitto ``max_queued_messages``).

The PUBACK for a message is sent only after the sink has committed it. A
QoS 1 PUBLISH the broker sent but never saw acknowledged is re-sent with DUP
set when the session resumes (MQTT 3.1.1 §4.4), so a crash between receipt
and commit loses nothing. aiomqtt 2.5 has no public switch for this (aiomqtt
issue #345, PR #346 pending), so the adapter turns on paho-mqtt's own
application-controlled acknowledgement (``manual_ack``, paho-mqtt >= 2.0) on
the client aiomqtt wraps. If a future aiomqtt hides that client, the adapter
falls back to automatic PUBACKs and says so in its status (``ack_mode``):
then a message acknowledged on receipt but not yet committed can be lost if
the node crashes in that window (a few milliseconds); broker restarts and
network loss still lose nothing, because the broker re-sends unacknowledged
messages. PUBACKs go out in the order the PUBLISH packets arrived, as MQTT
3.1.1 §4.6 requires.

Redeliveries are stored once: a sample's id is derived from the topic and
either the payload's ``id`` or its source timestamp and value, and the buffer
ignores ids it already has. A bare-number payload has no timestamp, so a
redelivered one cannot be told from a new reading and may be stored twice;
publishers that care send JSON with a timestamp.

Manual acknowledgement also gives back-pressure: the broker stops sending
once ``max_inflight_messages`` (3.1.1, broker side) or our Receive Maximum
(MQTT 5 §3.1.2.11.3) messages are unacknowledged, so a slow disk slows the
broker instead of filling our memory.

Commands
--------
A ``[[command]]`` binding in the topic mapping makes the adapter the home
plant's way to a device's command: :meth:`MqttAdapter.send_command`
publishes ``{"id", "value", "expires"}`` (QoS 1, not retained) to the
command topic and waits for the device's answer on ``<topic>/ack``,
``{"id", "accepted", "reason"?}``, correlated by ``id`` (the pattern of MQTT
5 request/response, §4.10, spelled in the payload so 3.1.1 devices can
answer). ``expires`` (epoch ms) is at most the acknowledgement timeout
away: a request the broker delivers late, after we have given up on it, is
ignored by the device instead of firing when nobody is waiting for it. No
answer within the timeout, or an answer with ``accepted`` false, is an
exception the command path records as a failed command. Whether the machine
then *does* what it accepted is for its telemetry to show.

Payloads
--------
JSON ``{"value": 1.5, "timestamp": "2026-05-10T08:00:00Z" | 1778400000000,
"quality": "good" | "bad" | "uncertain", "unit": "mm/s", "id": "..."}`` (only
``value`` required; numeric timestamps are epoch milliseconds; ISO 8601
without an offset is UTC) or a bare JSON scalar (``21.5``, ``true``,
``"RUNNING"``). Anything else becomes a :class:`~twinmesh.adapters.Reject`
with a reason, stored and counted like a sample.
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
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import aiomqtt
import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from ._base import Adapter, BackoffPolicy, Reject, Sink
from ._mapping import MqttCommandBinding, TopicMapping
from ._sample import Provenance, Quality, Sample, SampleIds, Value, new_sample

__all__ = [
    "CommandRefused",
    "Decoded",
    "MqttAdapter",
    "MqttConfig",
    "MqttTls",
    "PayloadError",
    "decode_payload",
]

_log = logging.getLogger(__name__)

_QUALITIES = {"good": Quality.GOOD, "bad": Quality.BAD_STATUS, "uncertain": Quality.UNCERTAIN}
#: Bytes of a rejected payload kept for diagnosis.
_REJECT_KEEP = 1024
#: Epoch milliseconds beyond year 9999 are not timestamps.
_MAX_EPOCH_MS = 253402300800000
#: 2000-01-01 in epoch ms. Anything earlier is epoch *seconds* sent as ms, or a
#: device clock that was never set; either way the time is wrong, so it is refused.
_MIN_EPOCH_MS = 946684800000


class PayloadError(ValueError):
    """A payload we refuse; ``reason`` is short and countable, ``detail`` specific."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class CommandRefused(Exception):
    """The device answered a command with ``accepted: false``; ``reason`` is its word."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True, kw_only=True)
class Decoded:
    value: Value
    timestamp: float | None  # epoch seconds
    quality: Quality
    unit: str | None
    native_id: str | None


def _finite(x: float, what: str) -> float:
    if not math.isfinite(x):
        raise PayloadError(f"non-finite {what}", repr(x))
    return x


def _parse_timestamp(raw: Any) -> float:
    if isinstance(raw, bool):
        raise PayloadError("bad timestamp", "boolean")
    if isinstance(raw, int | float):
        ms = _finite(float(raw), "timestamp")
        if not _MIN_EPOCH_MS <= ms <= _MAX_EPOCH_MS:
            raise PayloadError(
                "bad timestamp", f"{raw!r} is not epoch milliseconds between 2000 and 9999"
            )
        return ms / 1000.0
    if isinstance(raw, str):
        try:
            parsed = dt.datetime.fromisoformat(raw)
        except ValueError:
            raise PayloadError("bad timestamp", f"{raw[:64]!r} is not ISO 8601") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=dt.UTC)
        return parsed.timestamp()
    raise PayloadError("bad timestamp", type(raw).__name__)


def _scalar(raw: Any) -> Value:
    if isinstance(raw, bool | str):
        return raw
    if isinstance(raw, int):
        return raw
    if isinstance(raw, float):
        return _finite(raw, "value")
    raise PayloadError("bad value type", type(raw).__name__)


def decode_payload(payload: bytes, *, max_size: int = 65536) -> Decoded:
    """Parse one MQTT payload (see the module docstring). Raises :class:`PayloadError`."""
    value, timestamp, quality, unit, native_id = _decode(payload, max_size)
    return Decoded(
        value=value, timestamp=timestamp, quality=quality, unit=unit, native_id=native_id
    )


def _decode(
    payload: bytes, max_size: int
) -> tuple[Value, float | None, Quality, str | None, str | None]:
    """:func:`decode_payload` as a plain tuple: the adapter's per-message path skips
    building a frozen dataclass it would unpack at once."""
    if not payload:
        raise PayloadError("empty payload")
    if len(payload) > max_size:
        raise PayloadError("payload too large", f"{len(payload)} bytes > {max_size}")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PayloadError("not UTF-8", str(exc)) from None
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:  # RecursionError: "[[[[..." nesting
        raise PayloadError("not JSON", str(exc) or type(exc).__name__) from None
    if not isinstance(data, dict):
        if data is None or isinstance(data, list):
            raise PayloadError("bad value type", "null" if data is None else "array")
        return _scalar(data), None, Quality.GOOD, None, None

    q_raw = data.get("quality", "good")
    quality = _QUALITIES.get(q_raw.lower()) if isinstance(q_raw, str) else None
    if quality is None:
        raise PayloadError("unknown quality", repr(q_raw)[:64])
    if "value" not in data:
        raise PayloadError("missing value", f"keys {sorted(data)[:8]}")
    raw_value = data["value"]
    if raw_value is None:
        if quality is not Quality.BAD_STATUS:
            raise PayloadError("missing value", "null value without quality 'bad'")
        value: Value = math.nan  # a bad reading with no value is still a reading
    else:
        value = _scalar(raw_value)
    unit = data.get("unit")
    if unit is not None and (not isinstance(unit, str) or not unit):
        raise PayloadError("bad unit", repr(unit)[:64])
    ts = data.get("timestamp")
    native = data.get("id")
    if native is not None and (isinstance(native, bool) or not isinstance(native, str | int)):
        raise PayloadError("bad id", type(native).__name__)
    return (
        value,
        None if ts is None else _parse_timestamp(ts),
        quality,
        unit,
        None if native is None else str(native),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class MqttTls:
    """TLS settings; a CA file verifies the broker, a cert/key pair authenticates us."""

    ca_file: str | None = None  # None: the system trust store
    cert_file: str | None = None
    key_file: str | None = None
    key_password: str | None = None
    check_hostname: bool = True

    def context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.ca_file)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.cert_file is not None:
            ctx.load_cert_chain(self.cert_file, self.key_file, self.key_password)
        ctx.check_hostname = self.check_hostname
        return ctx


@dataclass(frozen=True, slots=True, kw_only=True)
class MqttConfig:
    host: str
    port: int = 1883
    #: Fixed: the broker keys the persistent session by it. One id per node and broker.
    client_id: str
    username: str | None = None
    password: str | None = None
    tls: MqttTls | None = None
    protocol: Literal["3.1.1", "5"] = "3.1.1"
    #: MQTT 5 Session Expiry Interval, seconds: how long the broker keeps our
    #: session (and queues for us) while we are away. 3.1.1 sessions never expire
    #: by protocol; brokers may still expire them (mosquitto persistent_client_expiration).
    session_expiry: int = 7 * 86400
    #: MQTT 5 Receive Maximum: unacknowledged QoS 1 messages the broker may send us.
    receive_maximum: int = 1000
    keepalive: int = 30
    timeout: float = 10.0  # connect / subscribe round trips
    qos: Literal[0, 1] = 1
    mapping: TopicMapping = field(default_factory=TopicMapping)
    max_batch: int = 1000  # samples per sink call (one commit)
    max_payload: int = 65536


class MqttAdapter(Adapter):
    """Subscribes per :class:`MqttConfig` and delivers mapped samples to the sink."""

    kind = "mqtt"

    def __init__(
        self,
        config: MqttConfig,
        *,
        name: str | None = None,
        backoff: BackoffPolicy | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        kwargs: dict[str, Any] = {"backoff": backoff, "rng": rng}
        if clock is not None:
            kwargs["clock"] = clock
        super().__init__(name or f"mqtt:{config.client_id}", **kwargs)
        self.config = config
        self._ack_mode = "not connected"
        self.acked = 0  # QoS 1 messages acknowledged after their commit
        self._provenance: dict[str, Provenance] = {}
        self._sample_ids: dict[str, SampleIds] = {}  # make_sample_id per topic, prefix hashed
        self._live: aiomqtt.Client | None = None  # the connected session's client, for commands
        self._replies = {c.reply_topic: c for c in config.mapping.commands}
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}  # command id -> answer

    def _details(self) -> dict[str, str]:
        c = self.config
        return {
            "broker": f"{'mqtts' if c.tls else 'mqtt'}://{c.host}:{c.port}",
            "client_id": c.client_id,
            "protocol": c.protocol,
            "ack_mode": self._ack_mode,
            "subscriptions": ",".join(c.mapping.subscription_filters),
            "acked": str(self.acked),
        }

    def _client(self) -> aiomqtt.Client:
        c = self.config
        kwargs: dict[str, Any] = {
            "identifier": c.client_id,
            "username": c.username,
            "password": c.password,
            "keepalive": c.keepalive,
            "timeout": c.timeout,
            "tls_context": c.tls.context() if c.tls else None,
        }
        if c.protocol == "5":
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = c.session_expiry
            props.ReceiveMaximum = c.receive_maximum
            kwargs.update(protocol=aiomqtt.ProtocolVersion.V5, clean_start=False, properties=props)
        else:
            kwargs.update(protocol=aiomqtt.ProtocolVersion.V311, clean_session=False)
        return aiomqtt.Client(c.host, c.port, **kwargs)

    async def _session(self, sink: Sink) -> None:
        client = self._client()
        ack = _manual_ack(client)
        self._ack_mode = "manual (PUBACK after commit)" if ack else "automatic (PUBACK on receipt)"
        if ack is None:
            _log.warning("adapter %s: aiomqtt exposes no manual ack; PUBACK on receipt", self.name)
        c = self.config
        async with client:
            filters: list[tuple[str, int]] = [(f, c.qos) for f in c.mapping.subscription_filters]
            filters += [(t, 1) for t in self._replies]
            granted: Sequence[int | ReasonCode] = await client.subscribe(filters)
            for (topic, _), g in zip(filters, granted, strict=True):
                code = g if isinstance(g, int) else g.value
                if code >= 0x80:
                    raise ConnectionError(f"broker refused subscription {topic!r} (code {code})")
                if code < c.qos:
                    _log.warning("adapter %s: %r granted QoS %d only", self.name, topic, code)
            await self._connected()
            self._live = client
            try:
                messages = client.messages
                async for first in messages:
                    batch = [first]
                    # Take what is already queued, without waiting: batches grow with
                    # load and a lone message is not held back for company.
                    while len(batch) < c.max_batch and len(messages) > 0:
                        batch.append(await anext(messages))
                    await _finish_even_if_cancelled(self._commit_then_ack(sink, batch, ack))
            finally:
                self._live = None
                for waiter in self._waiting.values():
                    if not waiter.done():
                        waiter.set_exception(ConnectionError("the broker connection was lost"))

    async def _commit_then_ack(
        self,
        sink: Sink,
        batch: Sequence[aiomqtt.Message],
        ack: Callable[[int, int], object] | None,
    ) -> None:
        if self._replies:
            for m in batch:
                if m.topic.value in self._replies:
                    self._on_reply(m)
            batch_in = [m for m in batch if m.topic.value not in self._replies]
        else:
            batch_in = list(batch)
        samples, rejects = self._decode_batch(batch_in)
        await self._deliver(sink, samples, rejects)
        if ack is not None:
            for m in batch:  # in arrival order (MQTT 3.1.1 §4.6)
                if m.qos > 0:
                    ack(m.mid, m.qos)
            self.acked += len(batch)

    # -- commands --------------------------------------------------------------------

    def _command_binding(self, entity: str, command: str) -> MqttCommandBinding | None:
        for binding in self.config.mapping.commands:
            if binding.entity == entity and binding.command == command:
                return binding
        return None

    def command_node(self, entity: str, command: str) -> str | None:
        """The topic this adapter publishes ``command`` of ``entity`` to, if it sends it."""
        binding = self._command_binding(entity, command)
        return None if binding is None else binding.topic

    async def send_command(
        self,
        entity: str,
        command: str,
        value: float,
        *,
        command_id: str,
        expires_ms: int | None = None,
    ) -> str:
        """Publish a command and wait for the device's acknowledgement (see the
        module docstring); returns what the device said. Never queued or retried:
        a command that cannot be delivered now is the caller's to fail."""
        binding = self._command_binding(entity, command)
        if binding is None:
            raise LookupError(f"adapter {self.name} has no [[command]] for {entity} {command}")
        client = self._live
        if client is None:
            raise ConnectionError(f"adapter {self.name} is not connected to the broker")
        if command_id in self._waiting:
            raise RuntimeError(f"command {command_id} is already waiting for its answer")
        timeout = self.config.timeout
        deadline_ms = int((self._now() + timeout) * 1000)
        body = {
            "id": command_id,
            "value": float(value),
            "expires": deadline_ms if expires_ms is None else min(expires_ms, deadline_ms),
        }
        waiter: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[command_id] = waiter
        try:
            async with asyncio.timeout(timeout):
                await client.publish(
                    binding.topic, json.dumps(body, allow_nan=False).encode(), qos=1
                )
                answer = await waiter
        except TimeoutError:
            raise TimeoutError(
                f"no acknowledgement on {binding.reply_topic} within {timeout:g} s"
            ) from None
        finally:
            self._waiting.pop(command_id, None)
        if answer.get("accepted") is not True:
            reason = answer.get("reason")
            raise CommandRefused(
                f"the device refused it: {reason}" if isinstance(reason, str) else "refused"
            )
        return f"acknowledged by the device on {binding.reply_topic}"

    def _on_reply(self, m: aiomqtt.Message) -> None:
        """A device's answer: wake whoever waits for that id; anything else (a
        stale or malformed answer, one for a command we gave up on) is logged."""
        payload = m.payload if isinstance(m.payload, bytes) else str(m.payload).encode()
        try:
            answer = json.loads(payload[: self.config.max_payload])
        except (ValueError, RecursionError):
            answer = None
        cid = answer.get("id") if isinstance(answer, dict) else None
        waiter = self._waiting.get(cid) if isinstance(cid, str) else None
        if waiter is None or waiter.done():
            _log.info("adapter %s: unexpected answer on %s ignored", self.name, m.topic.value)
            return
        assert isinstance(answer, dict)
        waiter.set_result(answer)

    def _provenance_of(self, topic: str) -> Provenance:
        # Shared per topic: one frozen object instead of one per sample.
        p = self._provenance.get(topic)
        if p is None:
            if len(self._provenance) >= 65536:
                self._provenance.clear()
            p = self._provenance[topic] = Provenance(adapter=self.name, source=topic)
        return p

    def _ids_of(self, topic: str) -> SampleIds:
        ids = self._sample_ids.get(topic)
        if ids is None:
            if len(self._sample_ids) >= 65536:
                self._sample_ids.clear()  # bounded like _provenance: topics are few in practice
            ids = self._sample_ids[topic] = SampleIds(self.kind, topic)
        return ids

    def _decode_batch(self, batch: Sequence[aiomqtt.Message]) -> tuple[list[Sample], list[Reject]]:
        now = self._now()
        samples: list[Sample] = []
        rejects: list[Reject] = []
        resolve = self.config.mapping.resolve
        max_size = self.config.max_payload
        for m in batch:
            topic = m.topic.value
            payload = m.payload if isinstance(m.payload, bytes) else str(m.payload).encode()
            target = resolve(topic)
            try:
                if target is None:
                    raise PayloadError("unmapped topic", "no rule and no UNS default matches")
                value, source_ts, quality, unit, native_id = _decode(payload, max_size)
            except Exception as exc:
                # Any failure on one message is that message's reject. Raising here
                # would end the session unacknowledged, and the broker would
                # redeliver the same poison message forever.
                reason, detail = (
                    (exc.reason, exc.detail)
                    if isinstance(exc, PayloadError)
                    else ("decoder error", repr(exc))
                )
                rejects.append(
                    Reject(
                        adapter=self.name,
                        source=topic,
                        reason=reason,
                        detail=detail,
                        payload=payload[:_REJECT_KEEP],
                        received_ts=now,
                    )
                )
                continue
            if source_ts is None:
                source_ts = now
                quality |= Quality.NO_SOURCE_TIME
            # The same ids as make_sample_id(self.kind, topic, ...), computed faster.
            ids = self._ids_of(topic)
            sid = ids.native(native_id) if native_id is not None else ids.reading(source_ts, value)
            samples.append(
                new_sample(
                    target.entity,
                    target.name,
                    value,
                    unit if unit is not None else target.unit,
                    source_ts,
                    now,  # received_ts
                    None,  # server_ts: MQTT has no server clock
                    quality,
                    self._provenance_of(topic),
                    sid,
                )
            )
        return samples, rejects


async def _finish_even_if_cancelled(aw: Awaitable[None]) -> None:
    """Run ``aw`` to completion even if the caller is cancelled, then re-raise.

    On a clean shutdown the batch in flight commits and is acknowledged before
    the DISCONNECT, so the broker has nothing to redeliver. (Redelivery would be
    harmless, only wasteful: the buffer ignores ids it has.) A second
    cancellation stops the wait; the commit itself still completes.
    """
    task = asyncio.ensure_future(aw)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.shield(task)
        raise


def _manual_ack(client: aiomqtt.Client) -> Callable[[int, int], object] | None:
    """Switch the wrapped paho client to application-controlled PUBACKs.

    Returns the ``ack(mid, qos)`` function, or ``None`` if this aiomqtt does not
    expose a paho client that supports it. Must run before connecting: with a
    persistent session the broker may send queued messages right after CONNACK.
    """
    inner = getattr(client, "_client", None)
    if not isinstance(inner, paho.Client) or not hasattr(inner, "manual_ack_set"):
        return None
    inner.manual_ack_set(True)
    return inner.ack
