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
from ._mapping import TopicMapping
from ._sample import Provenance, Quality, Sample, SampleIds, Value, new_sample

__all__ = [
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
            granted: Sequence[int | ReasonCode] = await client.subscribe(filters)
            for (topic, _), g in zip(filters, granted, strict=True):
                code = g if isinstance(g, int) else g.value
                if code >= 0x80:
                    raise ConnectionError(f"broker refused subscription {topic!r} (code {code})")
                if code < c.qos:
                    _log.warning("adapter %s: %r granted QoS %d only", self.name, topic, code)
            await self._connected()
            messages = client.messages
            async for first in messages:
                batch = [first]
                # Take what is already queued, without waiting: batches grow with
                # load and a lone message is not held back for company.
                while len(batch) < c.max_batch and len(messages) > 0:
                    batch.append(await anext(messages))
                await _finish_even_if_cancelled(self._commit_then_ack(sink, batch, ack))

    async def _commit_then_ack(
        self,
        sink: Sink,
        batch: Sequence[aiomqtt.Message],
        ack: Callable[[int, int], object] | None,
    ) -> None:
        samples, rejects = self._decode_batch(batch)
        await self._deliver(sink, samples, rejects)
        if ack is not None:
            for m in batch:  # in arrival order (MQTT 3.1.1 §4.6)
                if m.qos > 0:
                    ack(m.mid, m.qos)
            self.acked += len(batch)

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
