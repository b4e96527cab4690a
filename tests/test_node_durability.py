"""Durability of a real node process: SIGTERM + restart replays the op log to
the same state digest; ``twinmesh node history`` rebuilds an entity as of a
past time; and ``kill -9`` in the middle of bursts of concurrent API writes
and incoming gossip loses no acknowledged write, half-applies nothing and
lets the fleet converge.

One fleet (plant-a, plant-b, central) serves the module; the tests run in
file order and each leaves every node running.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from node_helpers import PUMP, Fleet, running_fleet, wait_until

from twinmesh.crdt import ReplicaState, VersionVector, encode_deltas
from twinmesh.node._config import load_config
from twinmesh.node._models import load_schemas
from twinmesh.node._node import Node
from twinmesh.node._signing import load_identity
from twinmesh.sync import (
    Deltas,
    Digest,
    MemberInfo,
    SignedBatch,
    encode_message,
    seal_batch_bytes,
)

SEED = 20260521
RESOLUTIONS = 16  # prepared conflicts per resolver per cycle
CYCLES = int(os.environ.get("TWINMESH_CRASH_CYCLES", "4"))  # raise for a soak


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    with running_fleet(tmp_path_factory.mktemp("durability"), plants=2) as fleet:
        yield fleet


def _ops(fleet: Fleet, node: str, entity: str, name: str, **body: Any) -> Any:
    """A field operation (set add/remove, increment, append, edit) that must succeed."""
    return fleet.ok(node, "POST", f"/v1/entities/{quote(entity)}/fields/{name}/ops", body)


def _vv(fleet: Fleet, node: str) -> dict[str, int]:
    return fleet.ok(node, "GET", "/v1/digest", role="viewer")["vv"]  # type: ignore[no-any-return]


# ------------------------------------------------------------------ restart


def test_restart_replays_to_the_same_digest(fleet: Fleet) -> None:
    """Every kind of field, written at plant-a and gossiped in from elsewhere,
    a conflict and its resolution: after SIGTERM and a restart plant-a reports
    the same digest, version vector and entity as before."""
    e = "plant-a/line-5/pump-1"
    fleet.create("plant-a", e)
    fleet.wait_converged()
    ctx = fleet.entity("plant-a", e)["fields"]["nextMaintenanceDate"]["context"]
    assert fleet.put_field("plant-a", e, "nextMaintenanceDate", "2027-01-02", ctx).status == 200
    assert fleet.put_field("plant-a", e, "serialNumber", "SN-42", None).status == 200
    assert fleet.put_field("plant-b", e, "displayLabel", "P-1 (east)", None).status == 200
    assert fleet.put_field("central", e, "vibrationAlarmThreshold", 7.1, ctx).status == 200
    _ops(fleet, "plant-a", e, "tags", op="add", element="critical")
    _ops(fleet, "plant-b", e, "tags", op="add", element="east")
    _ops(fleet, "plant-a", e, "tags", op="remove", element="critical")
    _ops(fleet, "plant-a", e, "operatingHours", op="increment", amount=12)
    _ops(fleet, "central", e, "operatingHours", op="increment", amount=-2)
    _ops(fleet, "plant-a", e, "notes", op="edit", index=0, insert="seal ok")
    _ops(fleet, "plant-a", e, "maintenanceLog", op="append", id="w1", event={"a": 1})
    # A conflict (two writes from one stale context) and its resolution (+ audit).
    stale = fleet.entity("central", e)["fields"]["responsibleTeam"]["context"]
    fleet.put_field("central", e, "responsibleTeam", "east", stale)
    fleet.put_field("central", e, "responsibleTeam", "west", stale)
    conflict = fleet.ok("central", "GET", f"/v1/conflict?entity={quote(e)}&field=responsibleTeam")
    fleet.ok(
        "central",
        "POST",
        "/v1/conflict/resolve",
        {
            "entity": e,
            "field": "responsibleTeam",
            "value": "east",
            "context": conflict["context"],
            "reason": "east owns line 5",
        },
        role="reviewer",
    )
    before = fleet.wait_converged()
    vv_before = _vv(fleet, "plant-a")
    entity_before = fleet.entity("plant-a", e)

    fleet.restart("plant-a")

    assert fleet.digest("plant-a") == before
    assert _vv(fleet, "plant-a") == vv_before
    assert fleet.entity("plant-a", e) == entity_before
    assert entity_before["fields"]["tags"]["value"] == ["east"]
    assert entity_before["fields"]["operatingHours"]["value"] == 10
    assert fleet.wait_converged() == before


def _history(fleet: Fleet, entity: str, at: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "twinmesh",
            "node",
            "history",
            entity,
            "--at",
            at,
            "--config",
            fleet.nodes["plant-a"]["config"],
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )


def _now_ms() -> int:
    return int(time.time() * 1000)


def _after(t_ms: int) -> None:
    """Wait until the wall clock has passed ``t_ms``, so the next write is later."""
    wait_until(lambda: _now_ms() > t_ms + 1, 1, interval=0.001, what="the clock to move on")


def test_history_shows_the_value_as_of_a_time(fleet: Fleet) -> None:
    """``twinmesh node history ENTITY --at T`` (epoch ms or ISO 8601) rebuilds
    the entity from plant-a's op log as it was at T — including a write that
    arrived by gossip — while the node keeps running."""
    e = "plant-a/line-6/pump-1"
    fleet.create("plant-a", e)
    t_created = _now_ms()
    _after(t_created)
    ctx = fleet.entity("plant-a", e)["fields"]["nextMaintenanceDate"]["context"]
    ctx = fleet.put_field("plant-a", e, "nextMaintenanceDate", "2027-02-01", ctx).json["fields"][
        "nextMaintenanceDate"
    ]["context"]
    t1 = _now_ms()
    _after(t1)
    fleet.put_field("plant-a", e, "nextMaintenanceDate", "2027-03-01", ctx)
    fleet.wait_converged()
    _ops(fleet, "central", e, "tags", op="add", element="from-central")
    wait_until(
        lambda: fleet.entity("plant-a", e)["fields"]["tags"]["value"] == ["from-central"],
        10,
        what="central's tag at plant-a",
    )
    t2 = _now_ms()

    def field_at(at: str) -> dict[str, Any]:
        done = _history(fleet, e, at)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)["fields"]  # type: ignore[no-any-return]

    at_created = field_at(str(t_created))
    assert at_created["nextMaintenanceDate"]["value"] is None
    at_t1 = field_at(str(t1))
    assert at_t1["nextMaintenanceDate"]["value"] == "2027-02-01"
    assert at_t1["tags"]["value"] == []
    iso_t1 = dt.datetime.fromtimestamp(t1 / 1000, dt.UTC).isoformat()
    assert field_at(iso_t1)["nextMaintenanceDate"]["value"] == "2027-02-01"
    at_t2 = field_at(str(t2))
    assert at_t2["nextMaintenanceDate"]["value"] == "2027-03-01"
    assert at_t2["tags"]["value"] == ["from-central"]
    before = _history(fleet, e, str(t_created - 60_000))
    assert before.returncode == 1 and "did not exist" in before.stderr


def test_sigterm_with_a_live_feed_subscriber_stops_promptly(fleet: Fleet) -> None:
    """A node with an open ``/v1/feed`` stream still stops within a few seconds
    of SIGTERM (the feed must not hold the shutdown), and comes back."""
    import socket
    from urllib.parse import urlsplit

    url = urlsplit(fleet.nodes["plant-b"]["api"])
    sock = socket.create_connection((url.hostname or "", url.port or 80), timeout=10)
    try:
        sock.sendall(
            b"GET /v1/feed HTTP/1.0\r\nAuthorization: Bearer "
            + fleet.tokens["viewer"].encode()
            + b"\r\n\r\n"
        )
        assert sock.recv(4096).startswith(b"HTTP/1.0 200")
        started = time.monotonic()
        fleet.stop("plant-b", timeout=30)
        took = time.monotonic() - started
    finally:
        sock.close()
    fleet.start("plant-b")
    assert took < 5, f"SIGTERM took {took:.1f} s with a feed subscriber connected"


def _signed_batches(fleet: Fleet, origin: str, sizes: list[int]) -> list[SignedBatch]:
    """Consecutive batches of real deltas made and signed at ``origin``."""
    identity = load_identity(origin, fleet.node_dir(origin))
    scratch = ReplicaState(origin, load_schemas())
    entity = f"{origin}/journal/pump-1"
    deltas = [scratch.create(entity, PUMP, author="t")]
    while len(deltas) < sum(sizes):
        deltas.append(scratch.increment(entity, "operatingHours", 1, author="t"))
    out, first = [], 1
    for size in sizes:
        blob = seal_batch_bytes(
            origin, first, size, encode_deltas(deltas[first - 1 : first - 1 + size])
        )
        out.append(
            SignedBatch(
                origin=origin,
                first=first,
                last=first + size - 1,
                blob=blob,
                signature=identity.sign(blob),
            )
        )
        first += size
    return out


def test_journal_is_persisted_in_apply_order_by_concurrent_callers(
    fleet: Fleet, tmp_path: Path
) -> None:
    """Regression (found by the kill -9 test): two gossip exchanges persisting
    the engine's journal at once must commit an origin's batches in the order
    they were applied. Before the fix, one caller awaited its first batch's
    commit before submitting its second, so another caller's later batch could
    commit in between: a kill -9 then kept plant-b's deltas 144.. without
    111..143, the version vector rebuilt from the op log claimed them all, and
    the node never asked again (permanent divergence). In-process node on a
    copy of plant-a's config, fed real signed batches of plant-b."""
    config = dataclasses.replace(
        load_config(Path(fleet.nodes["plant-a"]["config"])), data_dir=tmp_path / "data"
    )
    b = load_identity("plant-b", fleet.node_dir("plant-b"))
    a1, a2, later = _signed_batches(fleet, "plant-b", [3, 4, 5])

    async def scenario() -> list[int]:
        node = Node(config)
        await node.open()
        engine = node.engine
        assert engine is not None and node.store is not None
        try:
            introduce = Digest(
                sender="plant-b",
                vv=VersionVector(),
                members=(MemberInfo(credential=b.credential, address="https://b", last_contact=0),),
            )
            engine.receive(encode_message(introduce), now=node.clock(), peer="plant-b")
            engine.receive(
                encode_message(Deltas(sender="plant-b", batches=(a1, a2))),
                now=node.clock(),
                peer="plant-b",
            )
            first = asyncio.create_task(node.persist_journal())
            await asyncio.sleep(0)  # the first caller is now waiting on a commit
            engine.receive(
                encode_message(Deltas(sender="plant-b", batches=(later,))),
                now=node.clock(),
                peer="plant-b",
            )
            await asyncio.gather(first, node.persist_journal())
            return [op.seq for op in await node.store.ops() if op.origin == "plant-b"]
        finally:
            await node.close()

    seqs = asyncio.run(scenario())
    assert seqs == list(range(1, 13)), f"plant-b's deltas committed out of order: {seqs}"


# ------------------------------------------------------------------ kill -9


@dataclass
class Tally:
    """What one node's clients sent, and which of it was acknowledged (HTTP 200)."""

    tags_acked: set[str] = field(default_factory=set)
    tags_sent: set[str] = field(default_factory=set)
    incs_acked: int = 0
    incs_sent: int = 0
    resolved_acked: dict[str, str] = field(default_factory=dict)  # entity -> value
    resolved_sent: dict[str, str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def acks(self) -> int:
        return len(self.tags_acked) + self.incs_acked + len(self.resolved_acked)


class Writer(threading.Thread):
    """One API client: alternately adds a unique tag and increments the counter
    of ``entity`` at ``node`` until told to stop or the node goes away."""

    def __init__(self, fleet: Fleet, node: str, entity: str, name: str, tally: Tally) -> None:
        super().__init__(daemon=True, name=name)
        self.fleet, self.node, self.entity, self.tally = fleet, node, entity, tally
        self.stop = threading.Event()
        self.errors: list[str] = []

    def run(self) -> None:
        k = 0
        path = f"/v1/entities/{quote(self.entity)}/fields"
        while not self.stop.is_set():
            k += 1
            tag = f"{self.name}-{k}" if k % 2 else None
            body = {"op": "add", "element": tag} if tag else {"op": "increment", "amount": 1}
            with self.tally.lock:
                if tag:
                    self.tally.tags_sent.add(tag)
                else:
                    self.tally.incs_sent += 1
            try:
                resp = self.fleet.request(
                    self.node,
                    "POST",
                    f"{path}/{'tags' if tag else 'operatingHours'}/ops",
                    body,
                    role="operator",
                    timeout=10,
                )
            except OSError:  # connection reset/refused: the node died mid-request
                return
            if resp.status != 200:
                self.errors.append(f"{resp.status} {resp.body[:200]!r}")
                return
            with self.tally.lock:
                if tag:
                    self.tally.tags_acked.add(tag)
                else:
                    self.tally.incs_acked += 1


class Resolver(threading.Thread):
    """Resolves prepared conflicts one by one at ``node``: each resolution is a
    write plus an audit entry, and must never survive a crash without it."""

    def __init__(
        self,
        fleet: Fleet,
        node: str,
        conflicts: list[tuple[str, str, str]],
        tally: Tally,
        name: str,
    ) -> None:
        super().__init__(daemon=True, name=name)
        self.fleet, self.node, self.conflicts, self.tally = fleet, node, conflicts, tally
        self.stop = threading.Event()
        self.errors: list[str] = []

    def run(self) -> None:
        for entity, context, value in self.conflicts:
            if self.stop.is_set():
                return
            with self.tally.lock:
                self.tally.resolved_sent[entity] = value
            try:
                resp = self.fleet.request(
                    self.node,
                    "POST",
                    "/v1/conflict/resolve",
                    {
                        "entity": entity,
                        "field": "nextMaintenanceDate",
                        "value": value,
                        "context": context,
                        "reason": f"crash test {value}",
                    },
                    role="reviewer",
                    timeout=10,
                )
            except OSError:
                return
            if resp.status != 200:
                self.errors.append(f"{resp.status} {resp.body[:200]!r}")
                return
            with self.tally.lock:
                self.tally.resolved_acked[entity] = value


def _prepare_conflicts(fleet: Fleet, cycle: int, n: int) -> list[tuple[str, str, str]]:
    """``n`` pumps at plant-a, each with a two-sibling conflict on the maintenance
    date (made by 8 clients at once); (entity, context, resolution value) each."""

    def one(i: int) -> tuple[str, str, str]:
        e = f"plant-a/crash-{cycle}/pump-{i}"
        fleet.create("plant-a", e)
        stale = fleet.entity("plant-a", e)["fields"]["nextMaintenanceDate"]["context"]
        fleet.put_field("plant-a", e, "nextMaintenanceDate", "2028-01-01", stale)
        last = fleet.put_field("plant-a", e, "nextMaintenanceDate", "2028-02-01", stale)
        assert last.json["fields"]["nextMaintenanceDate"]["conflict"] is True
        context = last.json["fields"]["nextMaintenanceDate"]["context"]
        day = dt.date(2029, 1, 1) + dt.timedelta(days=100 * cycle + i)
        return e, context, day.isoformat()

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, range(n)))


def _check_node(fleet: Fleet, node: str, a: Tally, e_a: str) -> None:
    """At ``node``: every acknowledged write of plant-a's clients is there,
    nothing that was never sent, and no resolution without its audit entry."""
    fields = fleet.entity(node, e_a)["fields"]
    tags = set(fields["tags"]["value"])
    assert a.tags_acked <= tags, f"{node} lost acknowledged tags {sorted(a.tags_acked - tags)[:5]}"
    assert tags <= a.tags_sent, f"{node} has tags nobody sent: {sorted(tags - a.tags_sent)[:5]}"
    hours = fields["operatingHours"]["value"]
    assert a.incs_acked <= hours <= a.incs_sent, (node, a.incs_acked, hours, a.incs_sent)
    audit = {
        (ev["entity"], ev["value"])
        for ev in fleet.ok(node, "GET", "/v1/audit", role="viewer")["events"]
    }
    for entity, value in a.resolved_sent.items():
        field_ = fleet.entity(node, entity)["fields"]["nextMaintenanceDate"]
        resolved = field_["value"] == value and not field_["conflict"]
        if entity in a.resolved_acked:
            assert resolved, f"{node} lost the acknowledged resolution of {entity}"
        # All or nothing: a resolution is there exactly when its audit entry is.
        assert resolved == ((entity, value) in audit), (
            f"{node}: resolution of {entity} half-applied "
            f"(value there: {resolved}, audit there: {not resolved})"
        )


APPLIED = ("twinmesh_deltas_total", frozenset({("outcome", "applied")}))


def _crash_cycle(
    fleet: Fleet, rng: random.Random, cycle: int, a: Tally, b: Tally, e_a: str, e_b: str
) -> None:
    """One burst at plant-a and plant-b, a kill -9 of plant-a, a restart, a check."""
    conflicts = _prepare_conflicts(fleet, cycle, 2 * RESOLUTIONS)
    b_writers = [Writer(fleet, "plant-b", e_b, f"b{cycle}w{i}", b) for i in range(2)]
    a_writers = [Writer(fleet, "plant-a", e_a, f"a{cycle}w{i}", a) for i in range(3)]
    resolvers = [
        Resolver(fleet, "plant-a", conflicts[i::2], a, f"resolver-{cycle}-{i}") for i in range(2)
    ]
    for t in [*b_writers, *a_writers, *resolvers]:
        t.start()
    # Kill while the resolvers are mid-way: a resolution is the one API write
    # made of two deltas (the value and its audit entry).
    resolved = len(a.resolved_acked)
    kill_after = resolved + rng.randint(2, RESOLUTIONS)
    gossip_before = fleet.metrics("plant-a")[APPLIED]
    wait_until(
        lambda: len(a.resolved_acked) >= kill_after and a.acks >= 20,
        20,
        what="acknowledged writes at plant-a",
    )
    wait_until(
        lambda: fleet.metrics("plant-a")[APPLIED] > gossip_before,
        10,
        what="gossip from plant-b to be arriving at plant-a",
    )
    fleet.kill("plant-a")
    for t in [*a_writers, *resolvers]:
        t.join(timeout=15)
        assert not t.is_alive()
    fleet.start("plant-a")  # plant-b is still writing: gossip arrives during start-up
    for t in b_writers:
        t.stop.set()
    for t in b_writers:
        t.join(timeout=15)
    for t in [*a_writers, *b_writers, *resolvers]:
        assert not t.errors, (t.name, t.errors)
    _check_node(fleet, "plant-a", a, e_a)


def test_kill_9_during_write_and_gossip_bursts_loses_nothing_acknowledged(fleet: Fleet) -> None:
    """Four times (seeded): plant-a takes writes from three API clients and two
    resolvers while plant-b's two clients write and gossip flows in; plant-a is
    killed with SIGKILL after a random number of acknowledgements, restarted
    at once (while plant-b keeps writing), and must hold every acknowledged
    tag, counter increment and resolution (with its audit entry) and nothing
    never sent. After the last cycle every node converges to one digest and
    shows the same."""
    rng = random.Random(SEED)
    e_a, e_b = "plant-a/crash/pump-a", "plant-b/crash/pump-b"
    fleet.create("plant-a", e_a)
    fleet.create("plant-b", e_b)
    fleet.wait_converged()
    a, b = Tally(), Tally()
    started = time.monotonic()
    for cycle in range(CYCLES):
        _crash_cycle(fleet, rng, cycle, a, b, e_a, e_b)
    fleet.wait_converged(timeout=20)
    for node in fleet.names:
        _check_node(fleet, node, a, e_a)
        fields = fleet.entity(node, e_b)["fields"]
        assert set(fields["tags"]["value"]) == b.tags_acked == b.tags_sent
        assert fields["operatingHours"]["value"] == b.incs_acked == b.incs_sent
    views = {n: fleet.entity(n, e_a) for n in fleet.names}
    assert len({json.dumps(v["fields"], sort_keys=True) for v in views.values()}) == 1
    assert CYCLES > 4 or time.monotonic() - started < 60
