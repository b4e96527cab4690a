"""OPC UA adapter (asyncua client): monitored items in, durable samples out.

One session per connection: resolve the mapped nodes (node ids or browse
paths, :mod:`._mapping`), create one subscription with the mapping's
publishing interval, add a monitored item per node with its sampling interval
and queue size (OPC UA Part 4 §5.13.1 CreateSubscription, §5.12.2
CreateMonitoredItems), and turn each data-change notification into a sample.

Reconnection is ours, not asyncua's: when the transport is lost (server
restart, network) the session ends, the base class backs off with jitter and
a fresh session re-resolves and re-subscribes. After a server restart the old
subscription is gone anyway (Part 4 §5.13.7 TransferSubscriptions only helps
when the server kept it). The first notification of a new monitored item is
the current value (Part 4 §5.12.1.1), which is usually the reading already
stored: it has the same source timestamp and value, hence the same sample id,
and the buffer stores it once.

Notifications already received when the connection drops are still
delivered. The subscription's client-side queue is bounded; on overflow the
connection is torn down and re-established (asyncua ``OverflowPolicy.DISCONNECT``)
rather than dropping notifications silently.

Timestamps and status
---------------------
``SourceTimestamp`` (the device's clock) becomes ``source_ts`` and
``ServerTimestamp`` becomes ``server_ts`` (Part 4 §7.7.3, §7.7.4). Without a
source timestamp the server's (or, failing that, our receive time) is used
and the sample is flagged ``NO_SOURCE_TIME``. The StatusCode severity (the top
two bits, Part 4 §7.39: 00 Good, 01 Uncertain, 10 Bad, 11 reserved and to be
treated as Bad) becomes ``GOOD`` / ``UNCERTAIN`` / ``BAD_STATUS``; a Bad
notification without a value is stored as NaN so the gap is visible.

Security
--------
``OpcUaSecurity`` selects a policy (Basic256Sha256 by default) with
``SignAndEncrypt`` and the client's application instance certificate and key
(Part 2 §6, Part 4 §5.5.2 OpenSecureChannel). Pin the server certificate in
production; without it the client takes the certificate from GetEndpoints,
which is trust-on-first-use and only fit for a lab. ``security=None`` uses
policy None.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from asyncua import ua
from asyncua.client.client import Client
from asyncua.common.node import Node
from asyncua.common.subscription import DataChangeEvent, OverflowPolicy, StatusChangeEvent
from asyncua.crypto import security_policies

from ._base import Adapter, BackoffPolicy, Reject, Sink
from ._mapping import NodeBinding, OpcUaMapping
from ._sample import Provenance, Quality, Sample, Value, make_sample_id

__all__ = [
    "OpcUaAdapter",
    "OpcUaConfig",
    "OpcUaSecurity",
    "quality_from_status",
]

_log = logging.getLogger(__name__)

_SEVERITY_MASK = 0xC0000000  # Part 4 §7.39: bits 30-31 of a StatusCode


def quality_from_status(code: int) -> Quality:
    """OPC UA StatusCode severity → quality flag."""
    severity = code & _SEVERITY_MASK
    if severity == 0:
        return Quality.GOOD
    if severity == 0x40000000:
        return Quality.UNCERTAIN
    return Quality.BAD_STATUS  # 10 Bad, and 11 (reserved) which clients must treat as Bad


def _epoch(t: dt.datetime | None) -> float | None:
    if t is None:
        return None
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)  # OPC UA DateTime is UTC (Part 6 §5.2.2.5)
    return t.timestamp()


@dataclass(frozen=True, slots=True, kw_only=True)
class OpcUaSecurity:
    certificate: str  # the client's application instance certificate, DER or PEM
    private_key: str  # PEM or DER
    #: Must equal the URI in the certificate's subjectAltName (Part 4 §5.6.2 CreateSession).
    application_uri: str
    policy: Literal["Basic256Sha256", "Aes128Sha256RsaOaep", "Aes256Sha256RsaPss"] = (
        "Basic256Sha256"
    )
    mode: Literal["SignAndEncrypt", "Sign"] = "SignAndEncrypt"
    private_key_password: str | None = None
    #: The server's certificate to pin; None takes it from GetEndpoints (lab only).
    server_certificate: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class OpcUaConfig:
    url: str  # "opc.tcp://host:4840/path"
    mapping: OpcUaMapping
    security: OpcUaSecurity | None = None  # None: SecurityPolicy None, for lab use
    username: str | None = None
    password: str | None = None
    timeout: float = 4.0  # per request
    watchdog_interval: float = 1.0  # seconds between liveness probes of an idle connection
    queue_maxsize: int = 10000  # client-side notification queue; overflow reconnects
    max_batch: int = 1000  # samples per sink call


class OpcUaAdapter(Adapter):
    """Subscribes to the nodes of an :class:`OpcUaMapping` and delivers samples."""

    kind = "opcua"

    def __init__(
        self,
        config: OpcUaConfig,
        *,
        name: str | None = None,
        backoff: BackoffPolicy | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        kwargs: dict[str, Any] = {"backoff": backoff, "rng": rng}
        if clock is not None:
            kwargs["clock"] = clock
        super().__init__(name or f"opcua:{config.url}", **kwargs)
        self.config = config
        self.subscribed = 0  # monitored items in the current session
        self.overflows = 0

    def _details(self) -> dict[str, str]:
        sec = self.config.security
        return {
            "endpoint": self.config.url,
            "security": f"{sec.policy}/{sec.mode}" if sec else "None",
            "monitored_items": str(self.subscribed),
        }

    async def _client(self) -> Client:
        c = self.config
        client = Client(c.url, timeout=c.timeout, watchdog_intervall=c.watchdog_interval)
        if c.username is not None:
            client.set_user(c.username)
        if c.password is not None:
            client.set_password(c.password)
        sec = c.security
        if sec is not None:
            client.application_uri = sec.application_uri
            await client.set_security(
                getattr(security_policies, f"SecurityPolicy{sec.policy}"),
                certificate=sec.certificate,
                private_key=sec.private_key,
                private_key_password=sec.private_key_password,
                server_certificate=sec.server_certificate,
                mode=getattr(ua.MessageSecurityMode, sec.mode),
            )
        return client

    async def _session(self, sink: Sink) -> None:
        c = self.config
        client = await self._client()
        lost = asyncio.Event()

        async def on_lost(exc: Exception) -> None:
            _log.info("adapter %s: connection lost: %r", self.name, exc)
            lost.set()

        client.connection_lost_callback = on_lost
        await client.connect()
        try:
            by_node, rejects = await self._resolve(client)
            sub = await client.create_subscription(
                c.mapping.publishing_interval_ms,
                None,  # iterator mode: notifications in order, through one bounded queue
                queue_maxsize=c.queue_maxsize,
                overflow=OverflowPolicy.DISCONNECT,
            )
            rejects += await self._monitor(sub, by_node)
            if not self.subscribed:
                await self._deliver(sink, (), rejects)
                raise ConnectionError("no mapped node could be monitored")
            await self._deliver(sink, (), rejects)
            await self._connected()
            while True:
                batch, closed = await self._next_batch(sub, lost)
                samples, rejects, ended = self._convert(batch, by_node)
                # Deliver what arrived before any loss signal, then end the session.
                await self._deliver(sink, samples, rejects)
                if ended is not None:
                    raise ConnectionError(f"subscription ended: {ended}")
                if closed:
                    raise ConnectionError("subscription closed")
                if lost.is_set():
                    raise ConnectionError("connection to the OPC UA server lost")
        finally:
            self.subscribed = 0
            with contextlib.suppress(Exception):
                async with asyncio.timeout(c.timeout):
                    await client.disconnect()

    async def _resolve(
        self, client: Client
    ) -> tuple[dict[str, tuple[Node, list[NodeBinding]]], list[Reject]]:
        """Node per binding, keyed by node id string; unresolved bindings become rejects."""
        by_node: dict[str, tuple[Node, list[NodeBinding]]] = {}
        rejects: list[Reject] = []
        for b in self.config.mapping.bindings:
            try:
                if b.node_id is not None:
                    node = client.get_node(b.node_id)
                else:
                    node = await client.nodes.objects.get_child(list(b.browse_path))
            except (ua.uaerrors.UaError, ValueError) as exc:
                rejects.append(self._reject(b.address, "unknown node", repr(exc)))
                continue
            key = node.nodeid.to_string()
            by_node.setdefault(key, (node, []))[1].append(b)
        return by_node, rejects

    async def _monitor(
        self, sub: Any, by_node: dict[str, tuple[Node, list[NodeBinding]]]
    ) -> list[Reject]:
        """One monitored item per node, grouped by (sampling interval, queue size)."""
        m = self.config.mapping
        groups: dict[tuple[float, int], list[str]] = {}
        for key, (_, bindings) in by_node.items():
            b = bindings[0]
            sampling = b.sampling_interval_ms
            queue = b.queue_size
            groups.setdefault(
                (
                    m.sampling_interval_ms if sampling is None else sampling,
                    m.queue_size if queue is None else queue,
                ),
                [],
            ).append(key)
        rejects: list[Reject] = []
        for (sampling, queue), keys in groups.items():
            results = await sub.subscribe_data_change(
                [by_node[k][0] for k in keys], sampling_interval=sampling, queuesize=queue
            )
            for key, result in zip(keys, results, strict=True):
                if isinstance(result, ua.StatusCode):
                    rejects.append(self._reject(key, "subscribe failed", result.name))
                    del by_node[key]
                else:
                    self.subscribed += 1
        return rejects

    async def _next_batch(self, sub: Any, lost: asyncio.Event) -> tuple[list[Any], bool]:
        """Wait for a notification (or loss), then take what is already queued.

        Returns the batch and whether the subscription's iterator has ended.
        """
        batch: list[Any] = []
        if not lost.is_set():
            first = asyncio.ensure_future(anext(sub))
            gone = asyncio.ensure_future(lost.wait())
            try:
                await asyncio.wait({first, gone}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                gone.cancel()
                if not first.done():
                    first.cancel()
                    with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                        await first
            if first.done() and not first.cancelled():
                if isinstance(first.exception(), StopAsyncIteration):
                    return batch, True
                batch.append(first.result())
        while len(batch) < self.config.max_batch:
            # Queue.get() returns without suspending when an item is queued, so a
            # zero timeout fires only when the queue is empty: no item is lost
            # to the cancellation (asyncio.Queue re-wakes the next getter).
            try:
                async with asyncio.timeout(0):
                    batch.append(await anext(sub))
            except TimeoutError:
                break
            except StopAsyncIteration:
                return batch, True
        return batch, False

    def _convert(
        self, batch: Sequence[Any], by_node: dict[str, tuple[Node, list[NodeBinding]]]
    ) -> tuple[list[Sample], list[Reject], str | None]:
        """Samples and rejects from notifications, and why the subscription ended, if it did."""
        now = self._now()
        samples: list[Sample] = []
        rejects: list[Reject] = []
        ended: str | None = None
        for ev in batch:
            if isinstance(ev, StatusChangeEvent):
                status = ev.notification.Status
                if quality_from_status(status.value) is Quality.BAD_STATUS:
                    # Part 4 §7.25.4 StatusChangeNotification: BadTimeout, or asyncua's
                    # BadShutdown when the transport went away. Keep converting: the
                    # notifications around it are real readings.
                    ended = status.name
                continue
            if not isinstance(ev, DataChangeEvent):
                continue
            key = ev.node.nodeid.to_string()
            entry = by_node.get(key)
            if entry is None:
                continue  # a node this session no longer monitors
            dv = ev.data.monitored_item.Value
            code = dv.StatusCode.value if dv.StatusCode is not None else 0
            quality = quality_from_status(code)
            raw = ev.value
            value: Value
            if raw is None and quality is Quality.BAD_STATUS:
                value = math.nan
            elif isinstance(raw, bool | int | float | str):
                value = raw
            else:
                rejects.append(self._reject(key, "unsupported value type", type(raw).__name__, now))
                continue
            server_ts = _epoch(dv.ServerTimestamp)
            source_ts = _epoch(dv.SourceTimestamp)
            if source_ts is None:
                quality |= Quality.NO_SOURCE_TIME
                source_ts = server_ts if server_ts is not None else now
            sid = make_sample_id(self.kind, key, source_ts=source_ts, value=value)
            for b in entry[1]:
                samples.append(
                    Sample(
                        entity=b.entity,
                        name=b.telemetry,
                        value=value,
                        unit=b.unit,
                        source_ts=source_ts,
                        server_ts=server_ts,
                        received_ts=now,
                        quality=quality,
                        provenance=Provenance(adapter=self.name, source=key),
                        sample_id=sid if len(entry[1]) == 1 else f"{sid}:{b.entity}/{b.telemetry}",
                    )
                )
        return samples, rejects, ended

    def _reject(self, source: str, reason: str, detail: str, now: float | None = None) -> Reject:
        return Reject(
            adapter=self.name,
            source=source,
            reason=reason,
            detail=detail,
            received_ts=self._now() if now is None else now,
        )
