"""CRDT core benchmarks: wire bytes per delta, remote apply rate, B3.1 merge.

Run:  python bench/crdt_bench.py [--quick] [--json FILE] [--no-profile]

Every figure is printed beside a reference measured in the same run (pycrdt,
or plain msgpack decoding of the same bytes), and the goal is on the ratio or
on an absolute byte count, never on a bare time. Timings are best-of-N with
``time.perf_counter``. Nothing here is a pass/fail test.

1. wire: bytes per field delta in a batch of 1,000 (encode_deltas), plus the
   sync layer's per-delta dot ([origin_index, counter], msgpack, measured) and
   one 64-byte Ed25519 signature per batch, amortised. Goal <= 64 B.
   Reference: pycrdt (Yrs) bytes per update for the same 1,000 map sets, each
   update taken separately with ``doc.get_update(state_before)``.
2. apply: decode_deltas + ReplicaState.apply per delta at a fresh receiver,
   as a rate, against msgpack.unpackb of the same bytes. Goal ratio >= 0.25.
3. B3.1 (crdt-benchmarks): 1,549 replicas each write one value to the same
   shared field; one replica merges them all. Time and bytes beside pycrdt
   doing the same (1,549 Docs, map["v"] = i). Goal: time within 2x of pycrdt.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack
import pycrdt

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import Report, best_of_each

from twinmesh.crdt import (
    CausalContext,
    Delta,
    ReplicaState,
    decode_deltas,
    encode_deltas,
    encode_state,
)
from twinmesh.crdt.demo_models import PUMP, PUMP_SCHEMAS

SIGNATURE_BYTES = 64  # one Ed25519 signature per batch (sync layer)
#: The sync layer numbers each origin's deltas; a node that has been up a
#: while is past 65,535, so counters are measured from here (uint32 in msgpack).
DOT_COUNTER_BASE = 1_000_000
T0_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z, so hybrid times have real magnitude

REPLICAS = ("plant-hamburg", "plant-lyon", "ops-central")
AUTHORS = {
    "plant-hamburg": ("a.schmidt@hamburg", "j.weber@hamburg"),
    "plant-lyon": ("c.martin@lyon", "l.bernard@lyon"),
    "ops-central": ("ops-bot", "m.rossi@ops"),
}
TAGS = ("critical", "atex-zone-1", "hall-3", "spare-on-site", "vendor-ksb", "retrofit-2026")
LIFECYCLE = PUMP.fields["lifecycle"].enum_values


# --------------------------------------------------------------------------- workload


@dataclass(slots=True)
class Op:
    replica: str
    kind: str  # "shared" | "label" | "counter" | "set"
    entity: str
    field: str
    value: Any  # what a map-based CRDT (pycrdt) would set for the same write


class Fleet:
    """Three replicas holding the same ~50 pumps, writing and syncing now and then."""

    def __init__(self, n_entities: int = 50, seed: int = 7) -> None:
        self.rng = random.Random(seed)
        self.now = T0_MS
        self.states = {r: ReplicaState(r, PUMP_SCHEMAS) for r in REPLICAS}
        self.entities = [f"pump-{i:03d}" for i in range(1, n_entities + 1)]
        self.homes = {e: REPLICAS[i % 2] for i, e in enumerate(self.entities)}  # the plants
        self.creations: list[Delta] = []
        for e in self.entities:
            self.creations.append(
                self.states[self.homes[e]].create(e, PUMP.model, author="provisioning")
            )
        for st in self.states.values():
            for d in self.creations:
                if d.entity not in st.entities:
                    st.apply(d)
        self.pending: dict[str, list[Delta]] = {r: [] for r in REPLICAS}
        self.counts: dict[tuple[str, str], int] = {}

    def receiver(self, name: str = "receiver") -> ReplicaState:
        """A fresh replica that has every entity (creation deltas) and nothing else."""
        st = ReplicaState(name, PUMP_SCHEMAS)
        for d in self.creations:
            st.apply(d)
        return st

    def sync(self) -> None:
        """Everyone receives everyone's pending deltas (what gossip would do)."""
        for src, deltas in self.pending.items():
            for dst, st in self.states.items():
                if dst != src:
                    for d in deltas:
                        st.apply(d, now_ms=self.now)
        self.pending = {r: [] for r in REPLICAS}

    def write(self) -> tuple[Delta, Op]:
        rng = self.rng
        self.now += rng.randrange(200, 3_000)
        replica = rng.choice(REPLICAS)
        st = self.states[replica]
        author = rng.choice(AUTHORS[replica])
        entity = rng.choice(self.entities)
        roll = rng.random()
        if roll < 0.65:  # shared settings: maintenance dates, thresholds, lifecycle
            f = rng.choice(("maintenance_date", "maintenance_date", "vibration_limit", "lifecycle"))
            if f == "maintenance_date":
                value: Any = f"2026-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}"
            elif f == "vibration_limit":
                value = round(rng.uniform(2.0, 11.0), 1)
            else:
                value = rng.choice(LIFECYCLE)
            delta = st.write(entity, f, value, author=author, now_ms=self.now)
            op = Op(replica, "shared", entity, f, value)
        elif roll < 0.75:
            value = f"P-{rng.randrange(100, 999)} {rng.choice(('east', 'west'))} hall"
            delta = st.write(entity, "label", value, author=author, now_ms=self.now)
            op = Op(replica, "label", entity, "label", value)
        elif roll < 0.88:
            delta = st.increment(entity, "starts", 1, author=author)
            key = (entity, replica)
            self.counts[key] = self.counts.get(key, 0) + 1
            op = Op(replica, "counter", entity, "starts", self.counts[key])
        else:
            tag = rng.choice(TAGS)
            delta = st.add(entity, "tags", tag, author=author)
            op = Op(replica, "set", entity, "tags", tag)
        self.pending[replica].append(delta)
        return delta, op

    def run(self, n: int, *, sync_every: int = 25) -> tuple[list[Delta], list[Op]]:
        deltas, ops = [], []
        for i in range(n):
            d, op = self.write()
            deltas.append(d)
            ops.append(op)
            if (i + 1) % sync_every == 0:
                self.sync()
        return deltas, ops


def dot_bytes(deltas: list[Delta]) -> int:
    """The sync layer's dot per delta: [origin index in the batch, per-origin counter]."""
    index: dict[str, int] = {}
    counter: dict[str, int] = {}
    total = 0
    for d in deltas:
        i = index.setdefault(d.origin, len(index))
        counter[d.origin] = counter.get(d.origin, DOT_COUNTER_BASE) + 1
        total += len(msgpack.packb([i, counter[d.origin]]))
    return total


#: Functions whose cumulative time the profile summary reports, by (file, name).
_SPLIT = {
    "decode_deltas": ("_codec.py", "decode_deltas"),
    "  of which _decode_field": ("_codec.py", "_decode_field"),
    "ReplicaState.check": ("_state.py", "check"),
    "ReplicaState._join": ("_state.py", "_join"),
    "  of which MVRegister.merge": ("_mvregister.py", "merge"),
}


def profile_top(fn: Callable[[], Any], *, top: int = 10) -> str:
    """cProfile ``fn``: the share of a few known functions, then the top by own time."""
    prof = cProfile.Profile()
    prof.enable()
    fn()
    prof.disable()
    stats = pstats.Stats(prof)
    total = max(stats.total_tt, 1e-12)  # type: ignore[attr-defined]
    cum: dict[str, float] = {}
    for (filename, _line, func), row in stats.stats.items():  # type: ignore[attr-defined]
        for label, (suffix, name) in _SPLIT.items():
            if func == name and filename.endswith(suffix):
                cum[label] = cum.get(label, 0.0) + row[3]
    split = ", ".join(f"{k.strip()} {cum[k] / total:.0%}" for k in _SPLIT if k in cum)
    out = io.StringIO()
    stats.stream = out  # type: ignore[attr-defined]
    stats.strip_dirs().sort_stats("tottime").print_stats(top)
    keep = [
        ln
        for ln in out.getvalue().splitlines()
        if ln.strip() and not ln.strip().startswith(("Ordered by", "List reduced"))
    ]
    return f"    share of profiled time: {split}\n" + "\n".join("    " + ln for ln in keep)


# --------------------------------------------------------------------------- 1. wire


def _as_sync_ships_it(deltas: list[Delta]) -> int | None:
    """Bytes of one sync ``Deltas`` message carrying ``deltas`` as one signed batch
    per origin, the way ``twinmesh.sync`` seals them; None if sync is not there."""
    try:
        from twinmesh.sync import (
            Deltas,
            FleetAuthority,
            SignedBatch,
            encode_message,
            seal_batch_bytes,
        )
    except ImportError:
        return None
    fleet_ca = FleetAuthority(rng=random.Random(1))
    by_origin: dict[str, list[Delta]] = {}
    for d in deltas:
        by_origin.setdefault(d.origin, []).append(d)
    batches = []
    for origin, sub in by_origin.items():
        ident = fleet_ca.new_identity(origin, rng=random.Random(origin))
        first = DOT_COUNTER_BASE + 1
        blob = seal_batch_bytes(origin, first, len(sub), encode_deltas(sub))
        batches.append(
            SignedBatch(
                origin=origin,
                first=first,
                last=first + len(sub) - 1,
                blob=blob,
                signature=ident.sign(blob),
            )
        )
    return len(encode_message(Deltas(sender=REPLICAS[-1], batches=tuple(batches))))


def bench_wire(report: Report, n: int) -> None:
    fleet = Fleet()
    fleet.run(200)  # some history first, so contexts look like a running system
    fleet.sync()
    deltas, ops = fleet.run(n)

    batch = encode_deltas(deltas)
    if len(decode_deltas(batch)) != n:
        raise RuntimeError("the batch does not round-trip")
    dots = dot_bytes(deltas)
    per_delta = (len(batch) + dots + SIGNATURE_BYTES) / n

    # pycrdt: the same writes as map sets (pumps[entity][field] = value) on three
    # docs kept in sync. Per write, the update its transaction emits (what Yjs
    # providers send, doc.observe) and, for comparison, doc.get_update(state_before),
    # which also repeats the doc's whole delete set and so grows with history.
    docs: dict[str, pycrdt.Doc[Any]] = {r: pycrdt.Doc() for r in REPLICAS}
    roots = {r: doc.get("pumps", type=pycrdt.Map) for r, doc in docs.items()}
    home_doc = docs[REPLICAS[0]]
    with home_doc.transaction():
        for e in fleet.entities:
            roots[REPLICAS[0]][e] = pycrdt.Map()
    init = home_doc.get_update()
    for r in REPLICAS[1:]:
        docs[r].apply_update(init)
    emitted: list[bytes] = []
    observers = [doc.observe(lambda ev: emitted.append(ev.update)) for doc in docs.values()]
    y_sizes, y_sv_sizes = [], []
    for op in ops:
        doc = docs[op.replica]
        before = doc.get_state()
        del emitted[:]
        roots[op.replica][op.entity][op.field] = op.value
        if len(emitted) != 1:
            raise RuntimeError(f"one map set emitted {len(emitted)} updates")
        update = emitted[0]
        y_sizes.append(len(update))
        y_sv_sizes.append(len(doc.get_update(before)))
        for r, other in docs.items():
            if r != op.replica:
                other.apply_update(update)
    for doc, observer in zip(docs.values(), observers, strict=True):
        doc.unobserve(observer)
    y_per = sum(y_sizes) / n

    report.row(
        f"bytes/field delta, batch of {n:,}, +dot +sig",
        per_delta,
        "B",
        reference="pycrdt B/update",
        ref_value=y_per,
        ref_unit="B",
        goal="<= 64 B",
        met=per_delta <= 64,
        note=(
            f"batch {len(batch):,} B + dots {dots:,} B "
            f"({dots / n:.2f} B/delta, counters from {DOT_COUNTER_BASE:,}) "
            f"+ signature {SIGNATURE_BYTES} B. pycrdt reference = each write's transaction "
            f"update; doc.get_update(state_before) averages {sum(y_sv_sizes) / n:.1f} B "
            "(it repeats the whole delete set). Issue: Yjs ~27-36 B, Automerge ~121 B"
        ),
    )
    shipped = _as_sync_ships_it(deltas)
    if shipped is not None:
        report.row(
            "  as twinmesh.sync ships it (3 signed batches)",
            shipped / n,
            "B",
            reference="pycrdt B/update",
            ref_value=y_per,
            ref_unit="B",
            goal="(info)",
            note=(
                "one Deltas message holding one SignedBatch per origin (seal_batch_bytes "
                "+ real Ed25519 signature); its dots are implicit: origin + first..last"
            ),
        )
    # Per kind: each row's own bytes in the batch (msgpack is a concatenation, so
    # re-packing a decoded row gives exactly its share), its dot, and an even share
    # of what the batch spends once (header, string table, signature).
    rows = msgpack.unpackb(batch, raw=False)[3]
    row_bytes = [len(msgpack.packb(row)) for row in rows]
    shared = (len(batch) - sum(row_bytes) + SIGNATURE_BYTES) / n
    for kind in ("shared", "label", "counter", "set"):
        idx = [i for i, op in enumerate(ops) if op.kind == kind]
        if not idx:
            continue
        sub = [deltas[i] for i in idx]
        per = (sum(row_bytes[i] for i in idx) + dot_bytes(sub)) / len(idx) + shared
        y_kind = sum(y_sizes[i] for i in idx) / len(idx)
        report.row(
            f"  {kind} ({len(idx)} deltas)",
            per,
            "B",
            reference="pycrdt B/update",
            ref_value=y_kind,
            ref_unit="B",
            goal="<= 64 B",
            met=per <= 64,
        )
    report.note(
        f"wire: batch header + string table + signature = {shared:.1f} B/delta of the "
        "per-kind figures"
    )


# --------------------------------------------------------------------------- 2. apply


def bench_apply(report: Report, n_batches: int, batch_size: int, profile: bool) -> None:
    fleet = Fleet(seed=11)
    t_gen = time.perf_counter()
    batches: list[bytes] = []
    for _ in range(n_batches):
        deltas, _ops = fleet.run(batch_size)
        batches.append(encode_deltas(deltas))
    t_gen = time.perf_counter() - t_gen
    total = n_batches * batch_size
    total_bytes = sum(len(b) for b in batches)

    def unpack_all() -> None:
        for b in batches:
            msgpack.unpackb(b, raw=False)

    def apply_all(st: ReplicaState) -> None:
        # What the sync engine does with a batch: decode, then check every
        # delta and join them all (``apply_many``, atomic).
        now = fleet.now
        for b in batches:
            st.apply_many(decode_deltas(b), now_ms=now)

    t_msgpack, t_ours = best_of_each(unpack_all, (fleet.receiver, apply_all), repeat=3)

    # Check the receiver ends where the writers are (every writer has everything after sync).
    fleet.sync()
    probe = fleet.receiver()
    apply_all(probe)
    writer = fleet.states[REPLICAS[0]]
    if any(probe.entity(e).fields != writer.entity(e).fields for e in fleet.entities):
        raise RuntimeError("the receiver diverged from the writers")

    ours_rate = total / t_ours
    ref_rate = total / t_msgpack
    ratio = ours_rate / ref_rate
    report.row(
        f"decode+apply, {n_batches}x{batch_size:,} deltas",
        ours_rate,
        "deltas/s",
        reference="msgpack.unpackb",
        ref_value=ref_rate,
        ref_unit="deltas/s",
        ratio=ratio,
        goal=">= 0.25",
        met=ratio >= 0.25,
        note=(
            f"{t_ours * 1e6 / total:.1f} us/delta vs {t_msgpack * 1e6 / total:.2f} us/delta "
            f"for unpackb; {total_bytes / 1e6:.1f} MB; workload generated in {t_gen:.1f} s"
        ),
    )
    if profile and ratio < 0.25:
        some = batches[:10]
        st = fleet.receiver()

        def one() -> None:
            for b in some:
                st.apply_many(decode_deltas(b), now_ms=fleet.now)

        report.note(
            f"profile of decode+apply, {len(some)} batches (top by own time):\n" + profile_top(one)
        )


# --------------------------------------------------------------------------- 3. B3.1


def bench_b31(report: Report, n: int, profile: bool) -> None:
    # pycrdt: n docs with their own client ids, each sets map["v"] = i.
    y_updates = []
    for i in range(n):
        doc: pycrdt.Doc[Any] = pycrdt.Doc(client_id=i + 1)
        doc.get("map", type=pycrdt.Map)["v"] = i
        y_updates.append(doc.get_update())
    y_bytes = sum(len(u) for u in y_updates)

    def y_fresh() -> pycrdt.Doc[Any]:
        doc: pycrdt.Doc[Any] = pycrdt.Doc()
        doc.get("map", type=pycrdt.Map)
        return doc

    def y_merge(doc: pycrdt.Doc[Any]) -> None:
        for u in y_updates:
            doc.apply_update(u)

    y_doc = y_fresh()
    y_merge(y_doc)
    y_value = y_doc.get("map", type=pycrdt.Map)["v"]
    y_state = len(y_doc.get_update())

    # ours: n replicas (one schema) that know the entity, each writes the same
    # shared field with the initial (empty) context; one batch per replica.
    home = ReplicaState("r0", PUMP_SCHEMAS)
    creation = home.create("pump-b3", PUMP.model, author="u")
    batches = []
    for i in range(n):
        st = home if i == 0 else ReplicaState(f"r{i}", PUMP_SCHEMAS)
        if i:
            st.apply(creation)
        d = st.write("pump-b3", "value", i, author="u", now_ms=T0_MS + i, context=CausalContext())
        batches.append(encode_deltas([d]))
    o_bytes = sum(len(b) for b in batches)

    def o_fresh() -> ReplicaState:
        st = ReplicaState("merger", PUMP_SCHEMAS)
        st.apply(creation)
        return st

    def o_merge(st: ReplicaState) -> None:
        for b in batches:
            for d in decode_deltas(b):
                st.apply(d, now_ms=T0_MS + n)

    t_y, t_o = best_of_each((y_fresh, y_merge), (o_fresh, o_merge), repeat=5)
    merged = o_fresh()
    o_merge(merged)
    reg = merged.entity("pump-b3").fields["value"]
    siblings = reg.values()  # type: ignore[union-attr]
    if sorted(siblings) != list(range(n)):
        raise RuntimeError(f"B3.1: {n} concurrent writes, {len(siblings)} siblings at the merger")
    o_state = len(encode_state(merged))

    ratio = t_o / t_y
    report.row(
        f"B3.1 merge time, {n:,} writers",
        t_o * 1e3,
        "ms",
        reference="pycrdt",
        ref_value=t_y * 1e3,
        ref_unit="ms",
        ratio=ratio,
        goal="<= 2 (x pycrdt)",
        met=ratio <= 2,
        note=(
            f"ours keeps all {len(siblings):,} concurrent values as siblings "
            f"(provisional {merged.entity('pump-b3').value('value')}); "
            f"pycrdt kept one: map['v'] = {y_value!r}"
        ),
    )
    report.row(
        f"B3.1 update bytes, {n:,} writers",
        o_bytes,
        "B",
        reference="pycrdt",
        ref_value=y_bytes,
        ref_unit="B",
        goal="(info)",
        note=f"{o_bytes / n:.1f} B vs {y_bytes / n:.1f} B per update (ours: one batch each)",
    )
    report.row(
        "B3.1 merged state bytes",
        o_state,
        "B",
        reference="pycrdt",
        ref_value=y_state,
        ref_unit="B",
        goal="(info)",
    )
    if profile and ratio > 2:

        def one() -> None:
            o_merge(o_fresh())

        report.note("profile of B3.1 decode+apply (top by own time):\n" + profile_top(one))


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        allow_abbrev=False, description=__doc__.splitlines()[0] if __doc__ else None
    )
    p.add_argument("--quick", action="store_true", help="tiny sizes: proves it runs")
    p.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    p.add_argument("--no-profile", action="store_true", help="skip cProfile of missed goals")
    args = p.parse_args(argv)
    profile = not args.no_profile and not args.quick

    t0 = time.perf_counter()
    report = Report("crdt" + (" (--quick: sizes too small to mean anything)" if args.quick else ""))
    if args.quick:
        bench_wire(report, 50)
        bench_apply(report, 2, 50, profile)
        bench_b31(report, 30, profile)
    else:
        bench_wire(report, 1_000)
        bench_apply(report, 100, 1_000, profile)
        bench_b31(report, 1_549, profile)
    report.note(f"whole run {time.perf_counter() - t0:.1f} s")
    report.print()
    if args.json:
        report.write_json(args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
