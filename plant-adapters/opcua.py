"""OPC UA adapter (asyncua client): monitored items in, durable samples out.

One session per connection: resolve the mapped nodes (node ids or browse
paths, :mod:`._mapping`), create one subscription with the mapping's
publishing interval, add a monitored item per node with its sampling interval
and queue size (OPC UA Part 4 §5.13.1 CreateSubscription, §5.12.2
CreateMonitoredItems), and turn each data-change notification into a sample.

Reconnection is ours, not asyncua's: when the transport is lost (server
restart, network) the session ends, the base class backs off with jitter and
a fresh session re-resolves and re-subscribes. The first notification of a
new monitored item is the current value (Part 4 §5.12.1.1), which is usually
the reading already stored: it has the same source timestamp and value, hence
the same sample id, and the buffer stores it once.

Backfill (no sample lost across a disconnect)
---------------------------------------------
A fresh subscription delivers values from its creation on; what the server
sampled while we were away is not in it. When the server keeps history for a
node (the HistoryRead bit of its UserAccessLevel, Part 3 §5.6.2; the
``Historizing`` attribute says whether it is collecting now), the session,
right after subscribing and before the first live batch, reads the node's raw
history (HistoryRead with ReadRawModifiedDetails, Part 4 §5.10.3 and Part 11
§6.4.3 — §5.11.3 and §6.5.3 in v1.05) from the newest source timestamp
already committed for it, to the end of the history, and delivers it. The
start is inclusive, so the reading at the resume point comes again, as does
everything the live subscription also delivers (its initial value and what
changed while the history was being read): those carry the same sample ids
(:func:`make_sample_id` over node, source timestamp and value, exactly as live
notifications) and the buffer stores them once.

The resume point per node is the newest source timestamp this adapter has
seen committed, kept in memory across sessions, and before the first session
the ``resume_from`` points given to the adapter (e.g. the buffer's newest
sample per tag), so a node restart is covered too. Without a resume point
there is no gap to fill and nothing is read.

Each request asks for at most ``backfill_page`` values (NumValuesPerNode,
no EndTime: "from StartTime to the end of the history", Part 11 §6.4.3.2);
the server answers with a continuation point while more remains. Some servers
(asyncua's among them) stop at NumValuesPerNode without one: a full page
without a continuation point is followed by a read from its newest timestamp.
A backfill follows every continuation point to its end; one interrupted by a
lost connection needs no release, since a server frees a session's points
when the session closes (Part 4 §7.6). Gaps older than
``backfill_max_age`` are read from that age on, not from their start, so a
node that was away for a week does not flood the buffer (counted as clipped,
as is a node that simply has not changed for that long).

What backfill cannot do: recover values the server never historized (a
historian that stores on a deadband or slower than the subscription samples
has fewer values than the live stream would have had), or a node without
history — for those a disconnect still loses what changed in between
(counted per session as ``backfill_no_history``). A HistoryRead failure other
than "no history here" is logged and counted; it never ends the session, so
live data keeps flowing. The live notifications queued while history is read
are bounded by ``queue_maxsize`` like any other; an overflow reconnects and
the next session resumes from what was committed.

TransferSubscriptions / Republish (Part 4 §5.13.7, §5.13.6) would let a
session that survived a transport loss keep its subscription and fetch the
notifications it missed. asyncua offers them only inside its own
auto-reconnect supervisor (``Client(auto_reconnect=True)``), which takes over
this adapter's reconnect loop, back-off and state reporting, and, when the
server no longer has the session, quietly creates a new subscription whose
initial values say nothing of the gap. Backfill covers the gap of a
historized node whether or not the session survived. For a node without
history, Republish could recover only what the server still held for the
subscription — each monitored item's queue (``queue_size`` values, oldest
discarded) and the unacknowledged notification messages — so a longer outage
loses data either way.

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
import inspect
import logging
import math
import random
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from asyncua import ua
from asyncua.client.client import Client
from asyncua.common.node import Node
from asyncua.common.subscription import DataChangeEvent, OverflowPolicy, StatusChangeEvent
from asyncua.crypto import security_policies
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.status_codes import StatusCodes, get_name_and_doc
from asyncua.ua.uaerrors import UaStatusCodeError

from ._base import Adapter, BackoffPolicy, Reject, Sink
from ._mapping import TRIGGERS, NodeBinding, OpcUaMapping
from ._sample import Provenance, Quality, Sample, SampleIds, Value, new_sample

__all__ = [
    "OpcUaAdapter",
    "OpcUaConfig",
    "OpcUaSecurity",
    "ResumeFrom",
    "quality_from_status",
]

_log = logging.getLogger(__name__)

_SEVERITY_MASK = 0xC0000000  # Part 4 §7.39: bits 30-31 of a StatusCode
_HISTORY_READ = 1 << ua.AccessLevel.HistoryRead  # AccessLevelType bit 2 (Part 3 §8.57)
#: HistoryRead answers that mean "no history of this node here": skipped quietly.
_NO_HISTORY = frozenset(
    {
        StatusCodes.BadHistoryOperationUnsupported,
        StatusCodes.BadHistoryOperationInvalid,
        StatusCodes.BadServiceUnsupported,
        StatusCodes.BadNotReadable,
        StatusCodes.BadUserAccessDenied,
        StatusCodes.BadNodeIdUnknown,
        StatusCodes.BadNotSupported,
    }
)
_BACKFILL_CONCURRENCY = 4  # HistoryRead requests in flight per session
_CONTINUATION_RETRIES = 3  # BadContinuationPointInvalid answers tolerated per node

#: Newest committed source timestamp per tag (entity, telemetry name), epoch seconds.
ResumePoints = Mapping[tuple[str, str], float]
#: The points themselves, or a function (plain or async) that gives them, called
#: once, at the first session: after the caller has opened its buffer.
ResumeFrom = ResumePoints | Callable[[], ResumePoints | Awaitable[ResumePoints]]


def quality_from_status(code: int) -> Quality:
    """OPC UA StatusCode severity → quality flag."""
    severity = code & _SEVERITY_MASK
    if severity == 0:
        return Quality.GOOD
    if severity == 0x40000000:
        return Quality.UNCERTAIN
    return Quality.BAD_STATUS  # 10 Bad, and 11 (reserved) which clients must treat as Bad


#: OPC UA's minimum DateTime, 1601-01-01T00:00:00Z, as epoch seconds. Part 6
#: §5.2.2.5: a DateTime at or before it means "no time" (encoded as 0). Servers
#: that set no ServerTimestamp (node-opcua, for one) send exactly this.
OPCUA_MIN_DATETIME = -11644473600.0


def _epoch(t: dt.datetime | None) -> float | None:
    if t is None:
        return None
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)  # OPC UA DateTime is UTC (Part 6 §5.2.2.5)
    ts = t.timestamp()
    return None if ts <= OPCUA_MIN_DATETIME else ts


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
    #: After (re)subscribing, read what the server historized since the newest
    #: committed sample of each node (module docstring, "Backfill").
    backfill: bool = True
    backfill_max_age: float = 3600.0  # seconds: an older gap is read from now - this on
    backfill_page: int = 1000  # values per node per HistoryRead response (NumValuesPerNode)

    def __post_init__(self) -> None:
        if self.max_batch < 1 or self.backfill_page < 1:
            raise ValueError("OpcUaConfig: max_batch and backfill_page must be >= 1")
        if self.backfill_max_age <= 0:
            raise ValueError("OpcUaConfig: backfill_max_age must be > 0")


class _Target:
    """One monitored node and what its readings become, computed once per session."""

    __slots__ = ("bindings", "ids", "key", "provenance", "sample_ids", "tags")

    def __init__(self, key: str, bindings: Sequence[NodeBinding], adapter: str) -> None:
        self.key = key  # the node id string: provenance source, sample id input
        self.bindings = tuple(bindings)
        self.provenance = Provenance(adapter=adapter, source=key)
        # A node feeding several tags gets one id per tag, so each is stored once.
        self.ids = (
            ("",) if len(bindings) == 1 else tuple(f":{b.entity}/{b.telemetry}" for b in bindings)
        )
        #: (entity, telemetry, unit, id suffix) per binding, unpacked per reading.
        self.tags = tuple(
            (b.entity, b.telemetry, b.unit, suffix)
            for b, suffix in zip(self.bindings, self.ids, strict=True)
        )
        #: make_sample_id for this node, made at the first reading (the adapter's kind).
        self.sample_ids: SampleIds | None = None


class OpcUaAdapter(Adapter):
    """Subscribes to the nodes of an :class:`OpcUaMapping` and delivers samples.

    ``resume_from``: where each tag's committed data ends, to backfill from
    at the first session (module docstring, "Backfill"): a mapping, or a
    function called once, then, e.g. one that gives the telemetry buffer's
    newest sample per tag, ``{s.tag: s.source_ts for s in await buffer.latest_per_tag()}``.
    """

    kind = "opcua"

    def __init__(
        self,
        config: OpcUaConfig,
        *,
        name: str | None = None,
        backoff: BackoffPolicy | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] | None = None,
        resume_from: ResumeFrom | None = None,
    ) -> None:
        kwargs: dict[str, Any] = {"backoff": backoff, "rng": rng}
        if clock is not None:
            kwargs["clock"] = clock
        super().__init__(name or f"opcua:{config.url}", **kwargs)
        self.config = config
        self.subscribed = 0  # monitored items in the current session
        self.overflows = 0
        self._resume_from = resume_from
        #: Monitored-item client handles: unique per adapter, across sessions.
        self._client_handle = 1 << 20
        #: Newest committed source timestamp per node id string, across sessions.
        self._newest: dict[str, float] = {}
        self._backfill: Counter[str] = Counter()  # samples, reads, clipped, truncated, failed
        self._no_history = 0  # monitored nodes without readable history, last backfill
        self._live: Client | None = None  # the connected session's client, for command writes

    def _details(self) -> dict[str, str]:
        sec = self.config.security
        details = {
            "endpoint": self.config.url,
            "security": f"{sec.policy}/{sec.mode}" if sec else "None",
            "monitored_items": str(self.subscribed),
            "backfill": "on" if self.config.backfill else "off",
        }
        if self.config.backfill:
            details["backfill_no_history"] = str(self._no_history)
            for key in ("samples", "reads", "clipped", "truncated", "failed"):
                details[f"backfill_{key}"] = str(self._backfill[key])
        return details

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

    def command_node(self, entity: str, command: str) -> str | None:
        """The node id this adapter writes ``command`` of ``entity`` to, if it sends it."""
        for binding in self.config.mapping.commands:
            if binding.entity == entity and binding.command == command:
                return binding.node_id
        return None

    async def send_command(
        self,
        entity: str,
        command: str,
        value: float,
        *,
        command_id: str | None = None,
        expires_ms: int | None = None,
    ) -> str:
        """Write a command's value to its node (OPC UA Part 4 §5.10.4 Write) in the
        current session; ``ConnectionError`` when there is none (never queued: a
        command that cannot be sent now is the caller's to fail, not ours to replay).
        The Write's Good status is the device's acknowledgement; ``command_id`` and
        ``expires_ms`` (which a Write cannot carry) are for adapters that can."""
        node_id = self.command_node(entity, command)
        if node_id is None:
            raise LookupError(f"adapter {self.name} has no [[command]] for {entity} {command}")
        client = self._live
        if client is None:
            raise ConnectionError(f"adapter {self.name} is not connected to {self.config.url}")
        async with asyncio.timeout(self.config.timeout):
            await client.get_node(node_id).write_value(
                ua.DataValue(ua.Variant(float(value), ua.VariantType.Double))
            )
        return f"written to {node_id} (status Good)"

    async def _session(self, sink: Sink) -> None:
        c = self.config
        client = await self._client()
        lost = asyncio.Event()

        async def on_lost(exc: Exception) -> None:
            _log.info("adapter %s: connection lost: %r", self.name, exc)
            lost.set()

        client.connection_lost_callback = on_lost
        await client.connect()
        self._live = client
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
            if c.backfill:
                # After subscribing, so that nothing falls between history and live.
                await self._backfill_all(client, sink, by_node)
            targets = {key: _Target(key, b, self.name) for key, (_, b) in by_node.items()}
            by_handle: dict[int, _Target | None] = {}
            while True:
                batch, closed = await self._next_batch(sub, lost)
                samples, rejects, newest, ended = self._convert(batch, targets, by_handle)
                # Deliver what arrived before any loss signal, then end the session.
                await self._commit(sink, samples, rejects, newest)
                if ended is not None:
                    raise ConnectionError(f"subscription ended: {ended}")
                if closed:
                    raise ConnectionError("subscription closed")
                if lost.is_set():
                    raise ConnectionError("connection to the OPC UA server lost")
        finally:
            self.subscribed = 0
            self._live = None
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
        # One DataChangeFilter for all items; built here rather than through
        # subscribe_data_change, which cannot set a filter (Part 4 §7.22.2).
        data_filter = ua.DataChangeFilter(
            Trigger=ua.DataChangeTrigger(TRIGGERS[m.trigger]),
            DeadbandType=ua.DeadbandType.None_,
        )
        for (sampling, queue), keys in groups.items():
            requests = []
            for k in keys:
                self._client_handle += 1
                requests.append(
                    ua.MonitoredItemCreateRequest(
                        ItemToMonitor=ua.ReadValueId(
                            NodeId=by_node[k][0].nodeid, AttributeId=ua.AttributeIds.Value
                        ),
                        MonitoringMode=ua.MonitoringMode.Reporting,
                        RequestedParameters=ua.MonitoringParameters(
                            ClientHandle=self._client_handle,
                            SamplingInterval=sampling,
                            QueueSize=queue,
                            DiscardOldest=True,
                            Filter=data_filter,
                        ),
                    )
                )
            results = await sub.create_monitored_items(requests)
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
        limit = self.config.max_batch
        # Queue.get() returns without suspending while items are queued, so the
        # task yields to the loop, and a zero timeout can fire, only once the
        # queue is empty: the cancellation then hits a get() that holds no item
        # (asyncio.Queue re-wakes the next getter). One timeout for the whole
        # drain, not one per item: this is the hot path.
        try:
            async with asyncio.timeout(0):
                while len(batch) < limit:
                    batch.append(await anext(sub))
        except TimeoutError:
            pass
        except StopAsyncIteration:
            return batch, True
        return batch, False

    def _convert(
        self,
        batch: Sequence[Any],
        targets: Mapping[str, _Target],
        by_handle: dict[int, _Target | None],
    ) -> tuple[list[Sample], list[Reject], dict[str, float], str | None]:
        """Samples and rejects from notifications, the newest source timestamp per
        node among them, and why the subscription ended, if it did.

        ``by_handle`` caches the target per monitored item (client handle) for the
        session: formatting a node id per notification is a hot-path cost.
        """
        now = self._now()
        samples: list[Sample] = []
        rejects: list[Reject] = []
        newest: dict[str, float] = {}
        ended: str | None = None
        for ev in batch:
            if not isinstance(ev, DataChangeEvent):
                if isinstance(ev, StatusChangeEvent):
                    status = ev.notification.Status
                    if quality_from_status(status.value) is Quality.BAD_STATUS:
                        # Part 4 §7.25.4 StatusChangeNotification: BadTimeout, or asyncua's
                        # BadShutdown when the transport went away. Keep converting: the
                        # notifications around it are real readings.
                        ended = status.name
                continue
            item = ev.data.monitored_item
            handle = item.ClientHandle
            try:
                target = by_handle[handle]
            except KeyError:
                target = by_handle[handle] = targets.get(ev.node.nodeid.to_string())
            if target is None:
                continue  # a node this session no longer monitors
            error = self._append(samples, target, item.Value, ev.value, now, newest)
            if error is not None:
                rejects.append(self._reject(target.key, "unsupported value type", error, now))
        return samples, rejects, newest, ended

    def _append(
        self,
        out: list[Sample],
        target: _Target,
        dv: ua.DataValue,
        raw: Any,
        now: float,
        newest: dict[str, float],
    ) -> str | None:
        """Append the samples of one DataValue (one per binding of its node) to ``out``.

        Live notifications and history go through here alike, so one reading
        gets one sample id whichever way it arrives. Returns the type name of an
        unsupported value instead (nothing appended).
        """
        key = target.key
        status = dv.StatusCode
        code = status.value if status is not None else 0
        quality = quality_from_status(code) if code else Quality.GOOD
        value: Value
        if raw is None and quality is Quality.BAD_STATUS:
            value = math.nan
        elif isinstance(raw, (bool, int, float, str)):  # a tuple: faster than a union
            value = raw
        else:
            return type(raw).__name__
        # _epoch(), with its common case inline: asyncua's DateTimes are timezone-aware.
        t = dv.ServerTimestamp
        server_ts = t.timestamp() if t is not None and t.tzinfo is not None else _epoch(t)
        if server_ts is not None and server_ts <= OPCUA_MIN_DATETIME:
            server_ts = None  # "no time" (see OPCUA_MIN_DATETIME)
        t = dv.SourceTimestamp
        source_ts = t.timestamp() if t is not None and t.tzinfo is not None else _epoch(t)
        if source_ts is not None and source_ts <= OPCUA_MIN_DATETIME:
            source_ts = None
        if source_ts is None:
            quality |= Quality.NO_SOURCE_TIME
            source_ts = server_ts if server_ts is not None else now
        elif source_ts > newest.get(key, -math.inf):
            newest[key] = source_ts  # only the device's clock is a resume point
        ids = target.sample_ids
        if ids is None:
            ids = target.sample_ids = SampleIds(self.kind, key)
        sid = ids.reading(source_ts, value)  # == make_sample_id(self.kind, key, ...)
        provenance = target.provenance
        for entity, name, unit, suffix in target.tags:
            out.append(
                new_sample(
                    entity,
                    name,
                    value,
                    unit,
                    source_ts,
                    now,  # received_ts
                    server_ts,
                    quality,
                    provenance,
                    sid + suffix,
                )
            )
        return None

    async def _commit(
        self,
        sink: Sink,
        samples: Sequence[Sample],
        rejects: Sequence[Reject],
        newest: Mapping[str, float],
    ) -> None:
        """Deliver, then advance the per-node resume points: only what is committed counts."""
        await self._deliver(sink, samples, rejects)
        self._advance(newest)

    def _advance(self, newest: Mapping[str, float]) -> None:
        for key, ts in newest.items():
            if ts > self._newest.get(key, -math.inf):
                self._newest[key] = ts

    # -- backfill (module docstring) ---------------------------------------------------

    async def _resume_points(self, by_node: Mapping[str, tuple[Node, list[NodeBinding]]]) -> None:
        """Fold ``resume_from`` (fetched once) into the per-node resume points.

        A node feeding several tags resumes from the one that is furthest behind.
        """
        source, self._resume_from = self._resume_from, None
        if source is None:
            return
        if isinstance(source, Mapping):
            points = source
        else:
            got = source()
            points = await got if inspect.isawaitable(got) else got
        for key, (_, bindings) in by_node.items():
            known = [points[t] for b in bindings if (t := (b.entity, b.telemetry)) in points]
            if known and key not in self._newest:
                self._newest[key] = min(known)

    async def _backfill_all(
        self, client: Client, sink: Sink, by_node: Mapping[str, tuple[Node, list[NodeBinding]]]
    ) -> None:
        """HistoryRead every monitored node that has a resume point and readable history."""
        await self._resume_points(by_node)
        wanted = [key for key in by_node if key in self._newest]
        self._no_history = 0
        if not wanted:
            return
        try:
            levels = await client.uaclient.read_attributes(
                [by_node[key][0].nodeid for key in wanted], AttributeIds.UserAccessLevel
            )
        except UaStatusCodeError as exc:
            _log.info("adapter %s: cannot read UserAccessLevel: %r; no backfill", self.name, exc)
            self._no_history = len(wanted)
            return
        readable = []
        for key, level in zip(wanted, levels, strict=True):
            good = level.StatusCode is None or level.StatusCode.is_good()
            bits = level.Value.Value if good and level.Value is not None else 0
            if isinstance(bits, int) and bits & _HISTORY_READ:
                readable.append(key)
            else:
                self._no_history += 1
        floor = self._now() - self.config.backfill_max_age
        gate = asyncio.Semaphore(_BACKFILL_CONCURRENCY)

        async def one(key: str) -> None:
            start = self._newest[key]
            if start < floor:
                # Info, not a warning: a node that rarely changes looks the same.
                _log.info(
                    "adapter %s: %s: newest sample older than backfill_max_age; reading %s s",
                    self.name,
                    key,
                    self.config.backfill_max_age,
                )
                self._backfill["clipped"] += 1
                start = floor
            node, bindings = by_node[key]
            target = _Target(key, bindings, self.name)
            async with gate:
                await self._backfill_node(client, sink, node.nodeid, target, start)

        try:
            async with asyncio.TaskGroup() as tg:
                for key in readable:
                    tg.create_task(one(key))
        except ExceptionGroup as group:
            raise group.exceptions[0] from None  # the first failure ends the session

    async def _backfill_node(
        self, client: Client, sink: Sink, node_id: ua.NodeId, target: _Target, start: float
    ) -> None:
        """Page through one node's raw history from ``start`` (inclusive) to its end.

        ``start`` follows the newest instant delivered, and ``delivered`` holds the
        ids delivered at that instant: a read by time from there (after a full page
        without a continuation point, or when the server forgot the point) skips them.
        """
        key = target.key
        page = self.config.backfill_page
        point: bytes | None = None  # continuation point
        delivered: set[str] = set()
        retries = 0
        while True:
            asked_from = start
            try:
                result = await self._history_read(client, node_id, start, point)
            except UaStatusCodeError as exc:  # a ServiceFault for the whole request
                self._history_failed(key, exc.code)
                return
            code = result.StatusCode
            if code is not None and code.is_bad():
                if code.value == StatusCodes.BadContinuationPointInvalid and (
                    point is not None and retries < _CONTINUATION_RETRIES
                ):
                    # The server dropped it (timed out, too many): go on by time instead.
                    point, retries = None, retries + 1
                    continue
                self._history_failed(key, code.value)
                return
            history = result.HistoryData
            values: list[ua.DataValue] = (
                list(history.DataValues or []) if isinstance(history, ua.HistoryData) else []
            )
            now = self._now()
            samples: list[Sample] = []
            rejects: list[Reject] = []
            newest: dict[str, float] = {}
            for dv in values:
                raw = dv.Value.Value if dv.Value is not None else None
                error = self._append(samples, target, dv, raw, now, newest)
                if error is not None:
                    rejects.append(self._reject(key, "unsupported value type", error, now))
            fresh = [s for s in samples if s.sample_id not in delivered]
            step = self.config.max_batch
            await self._deliver(sink, (), rejects)
            for i in range(0, len(fresh), step):
                await self._deliver(sink, fresh[i : i + step])
            self._advance(newest)
            self._backfill["samples"] += len(fresh)
            last = newest.get(key)
            if last is not None and last >= start:
                if last > start:
                    start, delivered = last, set()
                delivered.update(s.sample_id for s in samples if s.source_ts == last)
            point = result.ContinuationPoint or None
            if point is not None:
                continue
            if len(values) < page:
                return  # the end of the history
            # A full page and no continuation point: some servers stop at
            # NumValuesPerNode without one. Go on by time, unless the page did not
            # get past the instant it was read from (more than a page at one instant).
            if start <= asked_from:
                _log.warning(
                    "adapter %s: %s: over %d history values at one instant; backfill stops",
                    self.name,
                    key,
                    page,
                )
                self._backfill["truncated"] += 1
                return

    async def _history_read(
        self, client: Client, node_id: ua.NodeId, start: float, point: bytes | None
    ) -> ua.HistoryReadResult:
        """One HistoryRead (Part 4 §5.10.3) of raw values from ``start`` to the end."""
        details = ua.ReadRawModifiedDetails(
            IsReadModified=False,
            StartTime=dt.datetime.fromtimestamp(start, dt.UTC),
            # DateTime "null" (0, Part 6 §5.2.2.5): no end, NumValuesPerNode bounds the read.
            EndTime=ua.get_win_epoch(),
            NumValuesPerNode=self.config.backfill_page,
            ReturnBounds=False,  # bounding values lie outside the gap, or are not values
        )
        params = ua.HistoryReadParameters(
            HistoryReadDetails=details,
            TimestampsToReturn=ua.TimestampsToReturn.Both,
            ReleaseContinuationPoints=False,
            NodesToRead=[ua.HistoryReadValueId(NodeId=node_id, ContinuationPoint=point)],
        )
        self._backfill["reads"] += 1
        (result,) = await client.uaclient.history_read(params)
        return result

    def _history_failed(self, key: str, code: int) -> None:
        if code in _NO_HISTORY:
            self._no_history += 1
            return
        _log.warning(
            "adapter %s: %s: HistoryRead failed (%s); this gap is not backfilled",
            self.name,
            key,
            get_name_and_doc(code)[0],
        )
        self._backfill["failed"] += 1

    def _reject(self, source: str, reason: str, detail: str, now: float | None = None) -> Reject:
        return Reject(
            adapter=self.name,
            source=source,
            reason=reason,
            detail=detail,
            received_ts=self._now() if now is None else now,
        )
