"""Simulator benchmark: speed, convergence after heal, catch-up bytes, traffic per write.

Each row is a figure beside its goal (see bench/README.md for how to read
them). Runs use the real engines with real Ed25519 signatures; the
simulator's process-wide memos of signature verification and batch decoding
(each distinct batch checked once, its deltas joined at every replica) are on
unless a row says otherwise (one row measures them off).

* speed: a 10-plant fleet (plus central), 1 s gossip, one write per plant
  per second on average, for ``--minutes`` simulated minutes (default 60):
  simulated / wall time, goal >= 1000x; a 100-plant fleet for
  ``--minutes-100`` (default 1): goal >= 100x. A missed speed goal prints
  cProfile's top 15 and where the time goes by package.
* convergence: halves split for 3 minutes, then heal; gossip rounds until
  every replica holds every write, against ceil(log2 N) + 2. Reported twice:
  from the heal (includes waiting out the back-off every engine built up
  against the unreachable half) and from the first message over a healed link after the
  heal (the epidemic spread itself). Also one write spreading through a
  quiet fleet.
* catch-up bytes: two replicas, split 10 minutes while both write, heal;
  bytes on the wire until equal, against 1.2 x (the missing deltas encoded
  as one batch per origin + one digest each way).
* traffic per write in steady state for 10 and 50 plants.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import math
import pstats
import statistics
import sys
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import Report

from twinmesh.crdt import decode_deltas, encode_deltas
from twinmesh.sim import Simulation, parse_scenario
from twinmesh.sim._scenario import FaultSpec, Scenario
from twinmesh.sync import Digest, encode_message, open_batch

STEADY = """
[scenario]
name = "bench-{n}"
duration = "{duration}s"

[fleet]
plants = {n}
central = "central"
assets_per_plant = 1

[sync]
gossip_interval = "1s"

[workload]
rate = "{rate}"
central_rate = "{rate}"

[workload.mix]
shared = 25
add = 8
remove = 4
counter = 15
log = 15
label = 10
reported = 15
text = 3
stale = 3
resolve = 2

[liveness]
timeout = "10m"
"""


def steady(n: int, seconds: float, rate: str = "1/s") -> Scenario:
    text = STEADY.format(n=n, duration=seconds, rate=rate)
    return parse_scenario(text, f"<bench {n} plants>")


def with_faults(sc: Scenario, *faults: FaultSpec) -> Scenario:
    return replace(sc, faults=tuple(faults))


def speed(report: Report, n: int, minutes: float, goal: float, *, profile: bool) -> None:
    sc = steady(n, minutes * 60)
    t0 = time.perf_counter()
    result = Simulation(sc, 1).run()
    wall = time.perf_counter() - t0
    simulated = result.safety_seconds + result.liveness_seconds
    ratio = simulated / wall
    met = ratio >= goal
    report.row(
        f"speed, {n} plants, {minutes:g} simulated min",
        ratio,
        "x real time",
        reference="wall",
        ref_value=wall,
        ref_unit="s",
        ratio=ratio,
        goal=f">= {goal:g}x",
        met=met,
        note=(
            f"{result.writes:,} writes, {result.messages:,} messages, {result.events:,} events; "
            f"checkers {'pass' if result.ok else 'FAIL'}; signatures verified "
            f"{result.verify_cache.get('misses', 0):,}, "
            f"memo hits {result.verify_cache.get('hits', 0):,}; batches decoded "
            f"{result.verify_cache.get('decode_misses', 0):,}, "
            f"memo hits {result.verify_cache.get('decode_hits', 0):,}"
        ),
    )
    if not met and profile:
        where_time_goes(report, sc.scaled(min(1.0, 120 / sc.duration)), f"{n} plants")


#: Fleet sizes of the growth curve and the simulated seconds of each run
#: (shorter for bigger fleets, so that each run stays within a minute or so).
#: Two workloads: one write per plant per second (the speed goals' load:
#: every write is joined at every replica, so wall per write grows with the
#: fleet by design; wall per write per replica is the flat line), and one
#: write per plant per 2 minutes (the fleet scenarios' load: gossip
#: dominates, and wall per message is the flat line).
GROWTH = ((10, 120.0), (25, 60.0), (50, 30.0), (100, 15.0), (250, 6.0), (500, 4.0))
STEADY_GROWTH = ((10, 60.0), (25, 40.0), (50, 30.0), (100, 20.0), (250, 20.0), (500, 20.0))
GROWTH_SPARSE = ((10, 300.0), (25, 240.0), (50, 120.0), (100, 60.0), (250, 40.0), (500, 30.0))


def growth(
    report: Report, sizes: tuple[tuple[int, float], ...], budget: float, *, rate: str = "1/s"
) -> None:
    """Wall time per message and per write against fleet size. Sizes whose
    projected wall (the last run's cost per message and per write, scaled to
    this size's traffic) exceeds ``budget`` seconds are skipped."""
    prev: tuple[float, float, int, int, float] | None = None
    for n, seconds in sizes:
        if prev is not None:
            us_msg, us_apply, prev_n, prev_msgs, prev_s = prev
            msgs = prev_msgs * (n / prev_n) * (seconds / prev_s)
            projected = 1e-6 * msgs * us_msg + 1e-6 * us_apply * n * n * seconds * _per_s(rate)
            if projected > budget:
                report.note(
                    f"growth ({rate}): {n} plants skipped, projected {projected:.0f} s of wall "
                    f"(> {budget:.0f} s) at the costs measured so far"
                )
                continue
        t0 = time.perf_counter()
        result = Simulation(steady(n, seconds, rate=rate), 1).run()
        wall = time.perf_counter() - t0
        simulated = result.safety_seconds + result.liveness_seconds
        us_msg = 1e6 * wall / max(1, result.messages)
        us_write = 1e6 * wall / max(1, result.writes)
        report.row(
            f"growth ({rate} per plant), {n} plants: wall per message",
            us_msg,
            "us",
            reference="wall per write",
            ref_value=us_write,
            ref_unit="us",
            goal="flat in n",
            note=f"{seconds:g} simulated s, {simulated / wall:.2f}x real time, "
            f"{result.messages / max(1, result.writes):.1f} messages/write, "
            f"wall per write per replica {us_write / (n + 1):.1f} us, "
            f"checkers {'pass' if result.ok else 'FAIL'}",
        )
        prev = (us_msg * 0.5, us_write / (n + 1) * 0.5, n, result.messages, seconds)


def marginal_growth(
    report: Report, sizes: tuple[tuple[int, float], ...], budget: float, *, rate: str
) -> None:
    """Steady state only: each size run for T and 2T simulated seconds; the
    difference (wall, messages, writes) is what the second T cost, without
    the fleet's start (every engine learning every member, every plant's
    first write joined everywhere), which grows with n squared and would
    otherwise hide a flat line."""
    for n, seconds in sizes:
        runs = []
        t_start = time.perf_counter()
        for t in (seconds, 2 * seconds):
            t0, c0 = time.perf_counter(), time.process_time()
            result = Simulation(steady(n, t, rate=rate), 1).run()
            runs.append((time.perf_counter() - t0, time.process_time() - c0, result))
        (w1, c1, r1), (w2, c2, r2) = runs
        # CPU time of this process: a difference of two wall times on a
        # shared, loaded machine is mostly the neighbours' noise.
        dc, dw = c2 - c1, w2 - w1
        dm, dwr = r2.messages - r1.messages, r2.writes - r1.writes
        report.row(
            f"steady growth ({rate} per plant), {n} plants: marginal CPU per message",
            1e6 * dc / max(1, dm),
            "us",
            reference="marginal CPU per write",
            ref_value=1e6 * dc / max(1, dwr),
            ref_unit="us",
            goal="flat in n",
            note=f"runs of {seconds:g} and {2 * seconds:g} simulated s: the second {seconds:g} s "
            f"took {dc:.2f} s of CPU ({seconds / max(dc, 1e-9):.1f}x real time; wall "
            f"{dw:.2f} s), {dm:,} messages, {dwr:,} writes; "
            f"checkers {'pass' if r1.ok and r2.ok else 'FAIL'}",
        )
        if time.perf_counter() - t_start > budget:
            report.note(f"steady growth: stopped after {n} plants (over {budget:.0f} s of wall)")
            return


def _per_s(rate: str) -> float:
    count, _, per = rate.partition("/")
    unit = {"s": 1.0, "m": 60.0}
    return float(count) / (float(per[:-1] or 1) * unit[per[-1]])


def fleet_500(report: Report, scale: float) -> None:
    """scenarios/fleet-500.toml (faults and all) at ``scale`` of its schedule."""
    from twinmesh.sim import load_scenario

    sc = load_scenario(Path(__file__).resolve().parent.parent / "scenarios" / "fleet-500.toml")
    t0 = time.perf_counter()
    result = Simulation(sc.scaled(scale), sc.seed).run()
    wall = time.perf_counter() - t0
    simulated = result.safety_seconds + result.liveness_seconds
    report.row(
        f"speed, fleet-500.toml at x{scale:g} ({simulated:.0f} simulated s)",
        simulated / wall,
        "x real time",
        reference="wall",
        ref_value=wall,
        ref_unit="s",
        ratio=simulated / wall,
        goal=">= 10x",
        met=simulated / wall >= 10,
        note=f"{result.writes:,} writes, {result.messages:,} messages "
        f"({1e6 * wall / max(1, result.messages):.0f} us wall each); "
        f"checkers {'pass' if result.ok else 'FAIL'}",
    )


def speed_without_memo(report: Report, minutes: float) -> None:
    """The same short run with and without the verification and decode memos."""
    walls = {}
    for memo in (True, False):
        t0 = time.perf_counter()
        result = Simulation(steady(10, minutes * 60), 1, verify_cache=memo).run()
        walls[memo] = time.perf_counter() - t0
    simulated = result.safety_seconds + result.liveness_seconds
    report.row(
        f"speed, 10 plants, {minutes:g} min, every signature verified, every batch decoded "
        "at every replica",
        simulated / walls[False],
        "x real time",
        reference="with the memo",
        ref_value=simulated / walls[True],
        ref_unit="x",
        goal="(memo off, for comparison)",
    )


def where_time_goes(report: Report, sc: Scenario, label: str) -> None:
    prof = cProfile.Profile()
    prof.enable()
    Simulation(sc, 1).run()
    prof.disable()
    stream = io.StringIO()
    stats = pstats.Stats(prof, stream=stream)
    stats.sort_stats("tottime").print_stats(15)
    print(f"\n-- cProfile, {label}, {sc.duration:g} simulated s: top 15 by own time")
    print("\n".join(stream.getvalue().splitlines()[4:30]))
    by_part: dict[str, float] = defaultdict(float)
    total = 0.0
    for (filename, _, _), (_, _, tottime, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        total += tottime
        by_part[_part(filename)] += tottime
    parts = sorted(by_part.items(), key=lambda kv: -kv[1])
    summary = ", ".join(f"{name} {100 * t / total:.0f}%" for name, t in parts[:7])
    report.note(f"where the time goes ({label}): {summary}")


def _part(filename: str) -> str:
    for key, name in (
        ("sync/_messages", "sync wire decode/encode"),
        ("sync/_engine", "sync engine"),
        ("sync/_identity", "signatures"),
        ("/sim/", "simulator (loop, network, oracle, checkers)"),
        ("crdt/_codec", "crdt codec"),
        ("/crdt/", "crdt merge"),
        ("msgpack", "msgpack"),
        ("cryptography", "signatures"),
        ("pycrdt", "pycrdt (text)"),
        ("_collections_abc", "Mapping protocol (VersionVector)"),
        ("dataclasses", "dataclasses"),
        ("heapq", "simulator (loop, network, oracle, checkers)"),
    ):
        if key in filename:
            return name
    return "builtins/other" if filename.startswith("~") or "<" in filename else "other"


def convergence(report: Report, n: int, seeds: int) -> None:
    goal = math.ceil(math.log2(n + 1)) + 2
    base = steady(n, 240, rate="1/10s")
    split = FaultSpec(kind="halves", at=60.0, duration=180.0, where="bench")
    total, spread = [], []
    for seed in range(1, seeds + 1):
        r = Simulation(with_faults(base, split), seed).run()
        assert r.rounds_after_heal is not None, f"{n} plants, seed {seed}: did not converge"
        total.append(r.rounds_after_heal)
        spread.append(r.rounds_after_heal - (r.first_crossing_rounds or 0.0))
    med = statistics.median(total)
    report.row(
        f"rounds to converge after heal, {n} plants (median of {seeds})",
        med,
        "rounds",
        reference="worst",
        ref_value=max(total),
        ref_unit="rounds",
        ratio=med / goal,
        goal=f"<= ceil(log2 {n + 1})+2 = {goal}",
        met=med <= goal,
        note=(
            "includes waiting out the back-off the split built up (capped at "
            f"{base.sync.backoff_cap:g} s = {base.sync.backoff_cap / base.sync.gossip_interval:g} "
            "rounds)"
        ),
    )
    med_spread = statistics.median(spread)
    report.row(
        f"rounds from first message over a healed link to converged, {n} plants",
        med_spread,
        "rounds",
        reference="worst",
        ref_value=max(spread),
        ref_unit="rounds",
        ratio=med_spread / goal,
        goal=f"<= {goal}",
        met=med_spread <= goal,
    )


def dissemination(report: Report, n: int) -> None:
    """One write into a quiet, connected fleet: rounds until everyone has it."""
    goal = math.ceil(math.log2(n + 1)) + 2
    sc = steady(n, 30, rate="0/s")
    sim = Simulation(sc, 1)
    sim.workload.bootstrap()
    for node in sim.nodes.values():
        sim._after(node)
    sim.loop.run_until(20.0)  # everyone has every creation; quiet
    origin = sim.names[1]
    engine = sim.nodes[origin].engine
    t0 = sim.loop.now
    from twinmesh.sim._oracle import RegisterWrite

    delta = engine.state.write(
        f"{origin}/pump-1", "owner", "bench", author="b", now_ms=sim.wall_ms(origin)
    )
    sim.commit(
        origin, delta, RegisterWrite(entity=f"{origin}/pump-1", field="owner", value="bench")
    )
    want = sim.oracle.total[origin]
    while any(n_.engine.vv[origin] < want for n_ in sim.nodes.values()):
        sim.loop.run_until(sim.loop.now + 0.05)
    rounds = (sim.loop.now - t0) / sc.sync.gossip_interval
    report.row(
        f"rounds for one write to reach all {n + 1} replicas (quiet fleet, fanout 2)",
        rounds,
        "rounds",
        goal=f"<= ceil(log2 {n + 1})+2 = {goal}",
        met=rounds <= goal,
    )


def catch_up(report: Report, minutes: float) -> None:
    text = STEADY.format(n=2, duration=minutes * 60, rate="1/s")
    text = text.replace('central = "central"', 'central = ""')
    sc = parse_scenario(text, "<bench catch-up>")
    sc = with_faults(
        sc, FaultSpec(kind="isolate", plant="plant-1", at=0.0, duration=minutes * 60, where="bench")
    )
    reference: list[int] = []

    def at_heal(sim: Simulation) -> None:
        a, b = (sim.nodes[n].engine for n in sim.names)
        ideal = 0
        for src, dst in ((a, b), (b, a)):
            src._seal()
            have = dst.vv[src.replica]
            missing = []
            for batch in src.log.get(src.replica, []):
                _, first, _, payload = open_batch(batch.blob)
                for i, d in enumerate(decode_deltas(payload)):
                    if first + i > have:
                        missing.append(d)
            ideal += len(encode_deltas(missing)) if missing else 0
            # The compact digest (vector + member-set hash): the least a
            # digest can be. After a split the first one carries the list too.
            ideal += len(
                encode_message(Digest(sender=src.replica, vv=src.vv, members_hash=src.members_hash))
            )
        reference.append(ideal)

    r = Simulation(sc, 1).run(on_heal=at_heal)
    ratio = r.catch_up_bytes / reference[0]
    report.row(
        f"catch-up bytes after a {minutes:g}-minute split, 2 replicas writing 1/s each",
        r.catch_up_bytes,
        "B",
        reference="missing deltas + digests",
        ref_value=reference[0],
        ref_unit="B",
        ratio=ratio,
        goal="<= 1.2x reference",
        met=ratio <= 1.2,
        note=f"{r.catch_up_messages} messages; checkers {'pass' if r.ok else 'FAIL'}",
    )


def traffic(report: Report, n: int, seconds: float) -> None:
    r = Simulation(steady(n, seconds), 1).run()
    report.row(
        f"messages per write, steady state, {n} plants",
        r.messages_per_write,
        "msgs",
        goal="(report)",
        note=f"{r.writes:,} writes in {seconds:g} simulated s",
    )
    report.row(
        f"bytes per write, steady state, {n} plants",
        r.bytes_per_write,
        "B",
        goal="(report)",
        note=f"{r.bytes / max(r.messages, 1):,.0f} B per message on average",
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        allow_abbrev=False, description=__doc__.splitlines()[0] if __doc__ else None
    )
    p.add_argument(
        "--minutes", type=float, default=60.0, help="simulated minutes, 10-plant speed run"
    )
    p.add_argument(
        "--minutes-100", type=float, default=1.0, help="simulated minutes, 100-plant run"
    )
    p.add_argument("--seeds", type=int, default=5, help="seeds per convergence figure")
    p.add_argument("--quick", action="store_true", help="tiny sizes: proves the benchmark runs")
    p.add_argument("--no-profile", action="store_true", help="skip cProfile on a missed speed goal")
    p.add_argument("--json", metavar="FILE", help="write the report as JSON")
    p.add_argument(
        "--growth-only", action="store_true", help="only the growth curve over fleet sizes"
    )
    p.add_argument(
        "--growth-budget", type=float, default=120.0, help="wall seconds a growth run may take"
    )
    p.add_argument(
        "--fleet-500-scale",
        type=float,
        default=0.05,
        help="share of scenarios/fleet-500.toml's schedule to run (0: skip)",
    )
    args = p.parse_args(argv)
    if args.quick:
        args.minutes, args.minutes_100, args.seeds = 1.0, 0.1, 1
    report = Report("simulator (sim_bench)")
    sizes = ((3, 20.0), (5, 10.0)) if args.quick else GROWTH
    growth(report, sizes, args.growth_budget)
    sparse = ((3, 60.0), (5, 30.0)) if args.quick else GROWTH_SPARSE
    growth(report, sparse, args.growth_budget, rate="1/2m")
    steady_sizes = ((3, 20.0), (5, 20.0)) if args.quick else STEADY_GROWTH
    marginal_growth(report, steady_sizes, 2 * args.growth_budget, rate="1/2m")
    # The same at a fixed fleet-wide write rate (4 writes/s in all): with a
    # per-plant rate what changes between two contacts grows with n, so a
    # cost O(what changed) still grows; at a fixed total rate it is flat.
    for n, seconds in steady_sizes:
        marginal_growth(report, ((n, seconds),), 2 * args.growth_budget, rate=f"1/{n / 4:g}s")
    if args.growth_only:
        report.print()
        if args.json:
            report.write_json(args.json)
        return 0
    speed(report, 10, args.minutes, 1000.0, profile=not args.no_profile and not args.quick)
    speed_without_memo(report, min(args.minutes, 2.0))
    speed(report, 100, args.minutes_100, 100.0, profile=not args.no_profile and not args.quick)
    if args.fleet_500_scale > 0 and not args.quick:
        fleet_500(report, args.fleet_500_scale)
    for n in (10,) if args.quick else (10, 50):
        convergence(report, n, args.seeds)
    for n in (10,) if args.quick else (10, 50, 100):
        dissemination(report, n)
    catch_up(report, 1.0 if args.quick else 10.0)
    traffic(report, 10, 60.0 if args.quick else 300.0)
    traffic(report, 50, 20.0 if args.quick else 120.0)
    report.print()
    if args.json:
        report.write_json(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
