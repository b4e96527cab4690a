"""Memory at fleet scale: RAM per entity and per field at a central node.

Run:  python bench/memory_bench.py [--quick] [--json FILE]

A central replica holds every plant's twins. Here P plants each own E pump
twins (the plant model, ``dtmi:twinmesh:plant:Pump;1``, 11 fields) and write
a realistic set of fields on each (five shared settings, the reported serial,
three counter increments, a label, two log events, two tags; ``--text`` adds a
collaborative-text note, which lives in a Yrs document). Central receives it
all the way it would: each plant's deltas as format-2 batches, decoded and
joined with ``apply_many``.

Each size runs in a fresh process, which reads the batches from a file and
reports its resident set (``/proc/self/statm``) before and after joining —
so the figure counts everything a node's Python process pays for the state
(objects, dicts, allocator overhead, Yrs documents), not just what
``tracemalloc`` sees. A least-squares line over the sizes gives bytes per
entity; the same run with fields unwritten gives the per-entity floor, and the
difference per written field the bytes per field. Reference, same run: the
state's canonical encoding (``encode_state``), the least any representation
of it holds. Extrapolated to 500 plants x 1,000 entities and to a 24 GiB
machine.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import pickle
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import Report

PUMP = "dtmi:twinmesh:plant:Pump;1"
T0_MS = 1_767_225_600_000
GIB = 1024**3


def _rss() -> int:
    gc.collect()
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


def _plant_batches(plant: str, entities: int, written: bool, text: bool) -> list[bytes]:
    """One plant's writes as format-2 batches of up to 1,000 deltas."""
    from twinmesh.crdt import ReplicaState, encode_deltas
    from twinmesh.node._models import load_schemas

    st = ReplicaState(plant, load_schemas())
    deltas = []
    now = T0_MS
    for i in range(entities):
        eid = f"{plant}/line-{i // 50}/pump-{i:04d}"
        deltas.append(st.create(eid, PUMP, author="provisioning"))
        if not written:
            continue
        now += 1000
        a = "operator@" + plant
        deltas += [
            st.write(eid, "vibrationAlarmThreshold", 7.1 + i % 5, author=a, now_ms=now),
            st.write(eid, "minSuctionPressure", 0.8, author=a, now_ms=now + 1),
            st.write(eid, "nextMaintenanceDate", "2027-03-01", author=a, now_ms=now + 2),
            st.write(eid, "lifecycle", "in-service", author=a, now_ms=now + 3),
            st.write(eid, "responsibleTeam", "maintenance-east", author=a, now_ms=now + 4),
            st.write(eid, "serialNumber", f"SN-{plant}-{i:06d}", author="plc", now_ms=now + 5),
            st.write(eid, "displayLabel", f"P-{i:04d} hall 3", author=a, now_ms=now + 6),
            st.increment(eid, "operatingHours", 120, author="plc"),
            st.increment(eid, "operatingHours", 7, author="plc"),
            st.increment(eid, "operatingHours", 3, author="plc"),
            st.append(eid, "maintenanceLog", f"{plant}-{i}-1", {"kind": "inspection"}, author=a),
            st.append(eid, "maintenanceLog", f"{plant}-{i}-2", {"kind": "seal"}, author=a),
            st.add(eid, "tags", "critical", author=a),
            st.add(eid, "tags", f"line-{i // 50}", author=a),
        ]
        if text:
            deltas.append(st.edit_text(eid, "notes", index=0, insert="check seal", author=a))
    return [encode_deltas(deltas[k : k + 1000]) for k in range(0, len(deltas), 1000)]


#: Fields a written entity holds (tags and the log count once each).
WRITTEN_FIELDS = 11 - 1  # every field but the text note
WRITTEN_FIELDS_TEXT = 11


def _child(path: str) -> None:
    """In a fresh process: join the batches in ``path`` at central, report RSS."""
    from twinmesh.crdt import ReplicaState, decode_deltas, encode_state
    from twinmesh.node._models import load_schemas

    with open(path, "rb") as f:
        plants: list[list[bytes]] = pickle.load(f)
    schemas = load_schemas()
    central = ReplicaState("central", schemas)
    before = _rss()
    for batches in plants:
        for b in batches:
            central.apply_many(decode_deltas(b), now_ms=T0_MS)
    del plants
    after = _rss()
    fields = sum(len(e.fields) for e in central.entities.values())
    encoded = len(encode_state(central))
    print(
        json.dumps(
            {
                "rss": after - before,
                "entities": len(central.entities),
                "fields": fields,
                "encoded": encoded,
            }
        )
    )


def _engine_child(plants: int) -> None:
    """In a fresh process: central's SyncEngine for ``plants`` plants, once it
    holds every origin and knows every member's whole vector (what a fleet
    that has gossiped for a while holds per member: its vector, the
    incremental horizon's counts), without the state or logs. RSS added."""
    import random

    from twinmesh.crdt import ReplicaState, VersionVector
    from twinmesh.node._models import load_schemas
    from twinmesh.sync import FleetAuthority, MemberInfo, SyncEngine

    rng = random.Random(1)
    authority = FleetAuthority(rng)
    names = ["central", *(f"plant-{p:03d}" for p in range(plants))]
    ids = [authority.new_identity(n, rng) for n in names]
    seeds = [MemberInfo(credential=i.credential, address=i.replica, last_contact=-1.0) for i in ids]
    state = ReplicaState("central", load_schemas())
    before = _rss()
    engine = SyncEngine(
        identity=ids[0],
        state=state,
        fleet_public_key=authority.public_key,
        seeds=seeds,
        rng=random.Random(2),
        now=0.0,
    )
    full = VersionVector({n: 1_000_000 + k for k, n in enumerate(names)})
    for n in names[1:]:
        engine._advance(n, full[n])
    for member in list(engine.members.values())[1:]:
        engine._take_vector(member, full, partial=False, total=None)
    after = _rss()
    print(json.dumps({"rss": after - before, "members": len(names)}))


def _measure_engine(plants: int) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--engine-child", str(plants)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def _measure(plants: int, entities: int, written: bool, text: bool) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile(suffix=".pkl", delete=False) as f:
        data = [_plant_batches(f"plant-{p:03d}", entities, written, text) for p in range(plants)]
        pickle.dump(data, f)
        name = f.name
    del data
    try:
        out = subprocess.run(
            [sys.executable, __file__, "--child", name], capture_output=True, text=True, check=True
        ).stdout
    finally:
        os.unlink(name)
    return dict(json.loads(out.strip().splitlines()[-1]))


def _fit(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least-squares line y = a + b x."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    return my - b * mx, b


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--quick", action="store_true", help="tiny sizes: proves it runs")
    p.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    p.add_argument("--text", action="store_true", help="also write a text note per twin")
    p.add_argument("--child", metavar="FILE", help=argparse.SUPPRESS)
    p.add_argument("--engine-child", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        _child(args.child)
        return 0
    if args.engine_child:
        _engine_child(args.engine_child)
        return 0
    t0 = time.perf_counter()
    report = Report("memory at central" + (" (--quick)" if args.quick else ""))
    per_plant = 1000
    sizes = [1, 2] if args.quick else [5, 10, 20, 40]
    if args.quick:
        per_plant = 100
    curves: dict[bool, list[dict[str, Any]]] = {False: [], True: []}
    for written in (False, True):
        for plants in sizes:
            curves[written].append(_measure(plants, per_plant, written, args.text))
    lines = {}
    for written, runs in curves.items():
        xs = [float(r["entities"]) for r in runs]
        lines[written] = (
            _fit(xs, [float(r["rss"]) for r in runs]),
            _fit(xs, [float(r["encoded"]) for r in runs]),
        )
    (_, per_entity), (_, enc_entity) = lines[True]
    (_, bare_entity), (_, bare_enc) = lines[False]
    nfields = WRITTEN_FIELDS_TEXT if args.text else WRITTEN_FIELDS
    per_field = (per_entity - bare_entity) / nfields
    enc_field = (enc_entity - bare_enc) / nfields
    fleet = 500 * 1000
    report.row(
        "RSS per twin at central (11-field pump, fields written)",
        per_entity,
        "B",
        reference="its canonical encoding",
        ref_value=enc_entity,
        ref_unit="B",
        goal="(report)",
        note="slope of a least-squares line over "
        + ", ".join(f"{r['entities']:,} twins: {r['rss'] / 2**20:.0f} MiB" for r in curves[True]),
    )
    report.row(
        "RSS per twin, created but no field written",
        bare_entity,
        "B",
        reference="its canonical encoding",
        ref_value=bare_enc,
        ref_unit="B",
        goal="(report)",
    )
    report.row(
        "RSS per written field",
        per_field,
        "B",
        reference="its canonical encoding",
        ref_value=enc_field,
        ref_unit="B",
        goal="(report)",
        note=f"(written - unwritten) / {nfields} fields",
    )
    report.row(
        "500 plants x 1,000 twins at central, state in RAM",
        per_entity * fleet / GIB,
        "GiB",
        reference="24 GiB machine",
        ref_value=24.0,
        ref_unit="GiB",
        goal="(report)",
        note=f"extrapolated; a 24 GiB machine holds ~{24 * GIB / per_entity / 1e6:.1f} M such "
        "twins in the state alone",
    )
    # The sync engine's own share grows with the fleet squared (every member's
    # vector has an entry per origin): measured at three fleet sizes.
    engine_sizes = [10, 20] if args.quick else [100, 250, 500]
    engines = [_measure_engine(n) for n in engine_sizes]
    top = engines[-1]
    per_entry = top["rss"] / (top["members"] ** 2)
    report.row(
        f"sync engine at central, {top['members']} members (vectors + horizon)",
        top["rss"] / 2**20,
        "MiB",
        reference="the state of 500 x 1,000 twins",
        ref_value=per_entity * fleet / 2**20,
        ref_unit="MiB",
        goal="(report)",
        note=", ".join(f"{r['members']} members: {r['rss'] / 2**20:.1f} MiB" for r in engines)
        + f"; ~{per_entry:.0f} B per (member x origin) entry, so O(members^2)",
    )
    report.note(f"whole run {time.perf_counter() - t0:.1f} s")
    report.print()
    if args.json:
        report.write_json(args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
