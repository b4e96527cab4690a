"""OPC UA backfill: no subscribed sample lost across a disconnect, none stored twice.

A real asyncua server process historizes ``Pump7.Vibration`` (``start + n`` per
tick, so every value is distinct) and ``Pump7.Flow`` (Good, Uncertain and Bad
readings, the Bad ones without a value) into a SQLite file that outlives the
process; the adapter writes into a real telemetry buffer. Three ways to miss
data: the adapter is stopped and a new one starts from what the buffer holds;
the transport is cut while the server (and its session) lives on; the server
is replaced by a new process on the same history file. Each time, the values
stored for a tag are exactly the values the server's history holds between
the first and last stored source timestamps — no gap, no duplicate.

Paging is exercised both ways: a server that returns continuation points
(``history_page``), and one that stops at NumValuesPerNode without one. The
corner cases no conformant server here produces (service faults, an invalid
continuation point, a page of one instant) run against a scripted client.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import random
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from _brokers import OpcUaServer
from asyncua import Client, ua

from twinmesh.adapters import BackoffPolicy, NodeBinding, OpcUaMapping, Reject, Sample
from twinmesh.adapters.opcua import OpcUaAdapter, OpcUaConfig
from twinmesh.node.linkproxy import LinkFaults, LinkProxy
from twinmesh.node.telemetry import TelemetryBuffer

PUMP = "plant-a/line-1/pump-7"
VIB, FLOW, TEMP = "ns=2;s=Pump7.Vibration", "ns=2;s=Pump7.Flow", "ns=2;s=Pump7.Temperature"
RESTART_AT = 1e6  # the replacement server counts from here
GAP = 40  # values the server writes while the adapter is away (at least)

MAPPING = OpcUaMapping(
    bindings=(
        NodeBinding(node_id=VIB, entity=PUMP, telemetry="vibration_rms", unit="mm/s"),
        NodeBinding(node_id=FLOW, entity=PUMP, telemetry="flow"),
        NodeBinding(node_id=TEMP, entity=PUMP, telemetry="temperature", unit="°F"),
    ),
    publishing_interval_ms=50,
    sampling_interval_ms=10,
    queue_size=100,
)


def run(coro: Coroutine[Any, Any, None], timeout: float = 60.0) -> None:
    async def bounded() -> None:
        async with asyncio.timeout(timeout):
            await coro

    asyncio.run(bounded())


@pytest.fixture(scope="module")
def historian(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpcUaServer]:
    """A server with history, kept running for the tests that do not restart it."""
    work = tmp_path_factory.mktemp("opcua-history")
    srv = OpcUaServer(work, period=0.02, history=work / "history.db")
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@asynccontextmanager
async def running(adapter: OpcUaAdapter, sink: Any) -> AsyncIterator[OpcUaAdapter]:
    task = asyncio.create_task(adapter.run(sink))
    try:
        yield adapter
    finally:
        await adapter.close()
        await task


async def stored(buf: TelemetryBuffer, name: str) -> list[Sample]:
    """One tag's samples in commit (seq) order."""
    return [s.sample for s in await buf.read_after(0, limit=100_000) if s.sample.name == name]


async def until_stored(
    buf: TelemetryBuffer, pred: Callable[[list[float]], bool], timeout: float = 20.0
) -> list[float]:
    """Wait until ``pred`` holds for the stored vibration values (commit order)."""
    async with asyncio.timeout(timeout):
        while True:
            values = [float(s.value) for s in await stored(buf, "vibration_rms")]
            if pred(values):
                return values
            await buf.wait_after(buf.last_seq, timeout=0.5)


async def server_value(url: str) -> float:
    async with Client(url) as c:
        return float(await c.get_node(VIB).read_value())


async def until_server_reaches(url: str, value: float, timeout: float = 20.0) -> float:
    """Poll the server (directly, not through the adapter) until Vibration >= value."""
    async with asyncio.timeout(timeout), Client(url) as c:
        node = c.get_node(VIB)
        while (current := float(await node.read_value())) < value:
            await asyncio.sleep(0.05)
        return current


async def assert_exactly_once(buf: TelemetryBuffer, url: str) -> None:
    """Every value the server historized between the first and last stored source
    timestamps of a tag is stored, once; and in source-time order."""
    async with Client(url) as c:
        for name, node_id in (("vibration_rms", VIB), ("flow", FLOW)):
            rows = await stored(buf, name)
            lo, hi = min(s.source_ts for s in rows), max(s.source_ts for s in rows)
            pad = dt.timedelta(milliseconds=1)
            history = await c.get_node(node_id).read_raw_history(
                dt.datetime.fromtimestamp(lo, dt.UTC) - pad,
                dt.datetime.fromtimestamp(hi, dt.UTC) + pad,
                return_bounds=False,
            )
            expected = sorted(
                ts
                for dv in history
                if lo <= (ts := dv.SourceTimestamp.replace(tzinfo=dt.UTC).timestamp()) <= hi
            )
            got = [s.source_ts for s in rows]
            assert len(got) == len(set(got)), f"{name}: a reading stored twice"
            missing = sorted(set(expected) - set(got))
            assert not missing, f"{name}: {len(missing)} historized readings not stored"
            assert sorted(got) == expected
            assert got == sorted(got), f"{name}: stored out of source-time order"
            if name == "vibration_rms":
                values = [float(s.value) for s in rows]
                assert len(values) == len(set(values))
                assert {float(dv.Value.Value) for dv in history if dv.Value.Value is not None} >= (
                    set(values)
                )
            else:  # Bad readings carry no value: stored as NaN, once, like live ones
                assert any(isinstance(s.value, float) and math.isnan(s.value) for s in rows)
        ids = [s.sample.sample_id for s in await buf.read_after(0, limit=100_000)]
        assert len(ids) == len(set(ids))


def adapter_for(url: str, **config: Any) -> OpcUaAdapter:
    resume = config.pop("resume_from", None)
    backoff = config.pop("backoff", BackoffPolicy(initial=0.05, maximum=0.5))
    return OpcUaAdapter(
        OpcUaConfig(url=url, mapping=MAPPING, **config),
        backoff=backoff,
        rng=random.Random(7),
        resume_from=resume,
    )


def test_new_adapter_resumes_from_the_buffer(historian: OpcUaServer, tmp_path: Path) -> None:
    """Adapter stopped, server writes on; a new adapter primed from the buffer backfills.

    ``backfill_page`` 7 against asyncua's server, which answers NumValuesPerNode
    values without a continuation point: paging by time.
    """

    async def body() -> None:
        async with await TelemetryBuffer.open(tmp_path / "t.db") as buf:
            async with running(adapter_for(historian.url), buf.append):
                before = await until_stored(buf, lambda v: len(v) >= 10)
            await until_server_reaches(historian.url, max(before) + GAP)

            async def newest_per_tag() -> Mapping[tuple[str, str], float]:
                return {s.tag: s.source_ts for s in await buf.latest_per_tag()}

            second = adapter_for(historian.url, backfill_page=7, resume_from=newest_per_tag)
            async with running(second, buf.append) as a:
                now = await server_value(historian.url)
                await until_stored(buf, lambda v: max(v) >= now + 5)
                details = a.status().details
            assert int(details["backfill_samples"]) >= GAP
            assert int(details["backfill_reads"]) >= GAP // 7
            # Temperature has no history: skipped quietly, and counted.
            assert details["backfill_no_history"] == "1"
            assert details["backfill_failed"] == details["backfill_truncated"] == "0"
            # The resume point itself (start inclusive) and the live subscription's
            # initial values came twice: stored once.
            assert buf.duplicates >= 2
            await assert_exactly_once(buf, historian.url)

    run(body())


def test_transport_cut_while_the_server_runs(historian: OpcUaServer, tmp_path: Path) -> None:
    """The link goes down (server and its session live on); the gap comes from history."""

    async def body() -> None:
        host, port = "127.0.0.1", historian.port
        async with (
            LinkProxy("127.0.0.1", 0, host, port, rng=random.Random(1)) as link,
            await TelemetryBuffer.open(tmp_path / "t.db") as buf,
        ):
            url = f"opc.tcp://127.0.0.1:{link.address[1]}/twinmesh/"
            async with running(adapter_for(url), buf.append) as a:
                before = await until_stored(buf, lambda v: len(v) >= 10)
                link.set_faults(LinkFaults(down=True))
                await a.wait_for(lambda s: s.failures >= 1, timeout=10)
                await until_server_reaches(historian.url, max(before) + GAP)
                link.set_faults(LinkFaults())
                now = await server_value(historian.url)
                await until_stored(buf, lambda v: max(v) >= now + 5)
                status = a.status()
            assert status.connects >= 2
            assert int(status.details["backfill_samples"]) >= GAP
            await assert_exactly_once(buf, historian.url)

    run(body())


def test_server_restart_with_history_kept(tmp_path: Path) -> None:
    """The server process is replaced mid-stream; the new one serves the old history.

    The adapter waits a second before reconnecting, so the new server has
    written values it never saw live; responses of at most 5 values make the
    server hand out continuation points.
    """
    srv = OpcUaServer(
        tmp_path / "srv", period=0.02, history=tmp_path / "history.db", history_page=5
    )
    srv.start()
    srv.prepare_restart(RESTART_AT)

    async def body() -> None:
        slow = BackoffPolicy(initial=1.0, maximum=2.0, jitter=0.0)
        async with await TelemetryBuffer.open(tmp_path / "t.db") as buf:
            async with running(adapter_for(srv.url, backoff=slow), buf.append) as a:
                await until_stored(buf, lambda v: len(v) >= 10)
                await asyncio.to_thread(srv.restart, RESTART_AT)
                await until_stored(
                    buf, lambda v: sum(1 for x in v if x >= RESTART_AT) >= GAP + 10, timeout=30
                )
                status = a.status()
            assert status.connects >= 2 and status.failures >= 1
            assert int(status.details["backfill_samples"]) >= GAP
            assert int(status.details["backfill_reads"]) >= GAP // 5  # continuation points
            await assert_exactly_once(buf, srv.url)

    try:
        run(body())
    finally:
        srv.stop()


def test_server_without_history(tmp_path: Path) -> None:
    """No node is history-readable: backfill reads nothing, says so, and streams on."""
    srv = OpcUaServer(tmp_path / "srv", period=0.02)
    srv.start()

    async def body() -> None:
        a_while_ago = {(PUMP, b.telemetry): 1e9 for b in MAPPING.bindings}
        adapter = adapter_for(srv.url, resume_from=a_while_ago)
        async with await TelemetryBuffer.open(tmp_path / "t.db") as buf:
            async with running(adapter, buf.append) as a:
                await until_stored(buf, lambda v: len(v) >= 10)
                details = a.status().details
            assert details["backfill_no_history"] == "3"
            assert details["backfill_reads"] == details["backfill_samples"] == "0"
            assert details["backfill_clipped"] == "0"  # unreadable: not even clipped
            assert not await buf.rejects()

    try:
        run(body())
    finally:
        srv.stop()


# -- the corner cases, against a scripted client ------------------------------------------


def dv(value: float | None, ts: float, status: int = ua.StatusCodes.Good) -> ua.DataValue:
    t = dt.datetime.fromtimestamp(ts, dt.UTC)
    variant = ua.Variant(value, ua.VariantType.Double) if value is not None else ua.Variant()
    return ua.DataValue(variant, StatusCode=ua.StatusCode(status), SourceTimestamp=t)


def answer(
    values: list[ua.DataValue], point: bytes | None = None, status: int = ua.StatusCodes.Good
) -> ua.HistoryReadResult:
    return ua.HistoryReadResult(
        StatusCode=ua.StatusCode(status),
        ContinuationPoint=point,
        HistoryData=ua.HistoryData(DataValues=values),
    )


class ScriptedServer:
    """``client.uaclient`` for :meth:`OpcUaAdapter._backfill_all`: scripted answers per node."""

    def __init__(self, levels: Mapping[str, int], script: Mapping[str, list[Any]]) -> None:
        self.levels = levels
        self.script = {k: list(v) for k, v in script.items()}
        self.requests: list[tuple[str, float, bytes | None]] = []

    async def read_attributes(self, ids: list[ua.NodeId], attr: Any) -> list[ua.DataValue]:
        return [
            ua.DataValue(ua.Variant(self.levels[i.to_string()], ua.VariantType.Byte)) for i in ids
        ]

    async def history_read(self, params: ua.HistoryReadParameters) -> list[ua.HistoryReadResult]:
        (item,) = params.NodesToRead
        key = item.NodeId.to_string()
        start = params.HistoryReadDetails.StartTime.timestamp()
        self.requests.append((key, start, item.ContinuationPoint))
        step = self.script[key].pop(0)
        if isinstance(step, Exception):
            raise step
        return [step]


def test_backfill_paging_and_failures_against_a_scripted_server() -> None:
    now = 1_800_000_000.0
    paged, unsupported, broken, one_instant, old, unreadable = (f"ns=2;s=N{i}" for i in range(6))
    script: dict[str, list[Any]] = {
        # A full page (3) without a continuation point, then one with, then the server
        # forgets it: on by time from the newest delivered instant, then the end.
        paged: [
            answer([dv(1, now - 50), dv(2, now - 49), dv(3, now - 48)]),
            answer([dv(3, now - 48), dv(4, now - 47), dv(5, now - 46)], point=b"cp1"),
            answer([], status=ua.StatusCodes.BadContinuationPointInvalid),
            answer([dv(5, now - 46), dv(None, now - 45, ua.StatusCodes.BadSensorFailure)]),
        ],
        unsupported: [ua.UaStatusCodeError(ua.StatusCodes.BadHistoryOperationUnsupported)],
        broken: [answer([], status=ua.StatusCodes.BadInternalError)],
        one_instant: [answer([dv(7, now - 30), dv(8, now - 30), dv(9, now - 30)])] * 2,
        old: [answer([dv(1, now - 100)])],
    }
    history = 1 << ua.AccessLevel.HistoryRead
    levels = {key: history for key in script} | {unreadable: 1}
    server = ScriptedServer(levels, script)
    bindings = {k: NodeBinding(node_id=k, entity="e", telemetry=k[-2:]) for k in levels}
    mapping = OpcUaMapping(bindings=tuple(bindings.values()))
    config = OpcUaConfig(url="opc.tcp://x", mapping=mapping, backfill_page=3, backfill_max_age=60)
    resume = {("e", k[-2:]): now - 50 for k in levels} | {("e", old[-2:]): now - 3600}
    adapter = OpcUaAdapter(config, clock=lambda: now, resume_from=lambda: resume)  # plain fn
    got: list[Sample] = []
    rejects: list[Reject] = []

    async def sink(samples: Any, rej: Any = ()) -> None:
        got.extend(samples)
        rejects.extend(rej)

    by_node = {
        k: (SimpleNamespace(nodeid=ua.NodeId.from_string(k)), [b]) for k, b in bindings.items()
    }
    asyncio.run(adapter._backfill_all(SimpleNamespace(uaclient=server), sink, by_node))  # type: ignore[arg-type]

    values = [(s.provenance.source, s.value) for s in got]
    paged_values = [v for k, v in values if k == paged]
    assert paged_values[:5] == [1, 2, 3, 4, 5] and math.isnan(paged_values[5])
    assert len(paged_values) == 6  # 3 and 5 came twice, delivered once
    assert [(s, p) for k, s, p in server.requests if k == paged] == [
        (now - 50, None),
        (now - 48, None),  # by time, from the newest instant of the full page
        (now - 46, b"cp1"),
        (now - 46, None),  # continuation point invalid: by time from the newest instant
    ]
    assert [v for k, v in values if k == one_instant] == [7, 8, 9]  # then it gives up
    assert [s for k, s, _ in server.requests if k == old] == [now - 60]  # clipped to max age
    assert not [r for r in server.requests if r[0] == unreadable]
    details = adapter.status().details
    assert details["backfill_no_history"] == "2"  # unsupported, unreadable
    assert details["backfill_failed"] == "1"  # broken
    assert details["backfill_truncated"] == "1"  # one_instant
    assert details["backfill_clipped"] == "1"  # old
    assert details["backfill_samples"] == str(len(got))
    assert not rejects
