"""Mutation testing of the core against the simulator's checkers alone.

Each mutant is one plausible bug in ``crdt/`` or ``sync/``, written as
(file, exact original snippet, replacement). It is applied to a copy of the
source tree in a temporary directory — never to the checkout — and the
simulator's scenarios and swarm (not the unit tests) run against that copy in
a subprocess. A mutant is *killed* when some run fails a checker; the table
says which checkers failed on the first run that killed it. A mutant whose
snippet no longer occurs exactly once (the code moved on, a merge changed the
line) is an error that names the mutant — never a silent skip, since a mutant
that is not applied would be reported as "survived" or, worse, not at all.

Hand-written rather than generated (mutmut, cosmic-ray): a generated mutant is
mostly an operator swap the type checker or the first unit test catches, or an
equivalent program; what we need to know is whether the *simulator* sees the
bugs someone could really write into a causal core — a comparison that says
"after" for "concurrent", a conflict hidden because both sides agree, a join
that resurrects what was overwritten. This is the "test your checker" step of
Jepsen (Kingsbury) and FoundationDB's buggify: a checker that has never failed
has not been shown to check anything (DeMillo, Lipton & Sayward, "Hints on
test data selection", 1978, for mutation analysis itself).

The worker half (``python -m twinmesh.sim._mutate --worker``) runs inside the
mutated copy: it refuses to run if ``twinmesh`` was imported from anywhere
else, so an editable install cannot quietly test the unmutated tree.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "MUTANTS",
    "Mutant",
    "MutantError",
    "MutantResult",
    "Run",
    "apply_mutant",
    "check_mutants",
    "copy_tree",
    "default_plan",
    "format_table",
    "run_mutants",
    "source_root",
]

#: The packages a mutant may touch, and the packages the simulator needs.
MUTABLE = ("crdt", "sync")
_COPIED = ("crdt", "sync", "sim")


class MutantError(Exception):
    """A mutant cannot be applied (its snippet is gone or ambiguous), or the
    tree to mutate is not a source checkout."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Mutant:
    name: str
    file: str  # relative to the repository root, under crdt/ or sync/
    original: str  # must occur exactly once in the file
    replacement: str
    bug: str  # the mistake it stands for

    def __post_init__(self) -> None:
        if self.file.split("/", 1)[0] not in MUTABLE:
            raise MutantError(f"mutant {self.name}: {self.file} is not under crdt/ or sync/")
        if self.original == self.replacement:
            raise MutantError(f"mutant {self.name}: replacement equals the original")


def _m(name: str, file: str, original: str, replacement: str, bug: str) -> Mutant:
    return Mutant(name=name, file=file, original=original, replacement=replacement, bug=bug)


MUTANTS: tuple[Mutant, ...] = (
    # ---- the three the issue names
    _m(
        "vv-compare-concurrent-as-after",
        "crdt/_clocks.py",
        "        if ge:\n            return Order.AFTER\n        return Order.CONCURRENT\n",
        "        if ge or self.total() > other.total():\n            return Order.AFTER\n"
        "        return Order.CONCURRENT\n",
        "VersionVector.compare answers AFTER for concurrent vectors when self "
        "summarises more writes (a 'newer wins' shortcut in the concurrent branch)",
    ),
    _m(
        "conflicts-hide-equal-values",
        "crdt/_entity.py",
        "        if isinstance(state, MVRegister) and state.is_conflict():\n",
        "        if isinstance(state, MVRegister) and "
        "len({repr(s.value) for s in state.siblings.values()}) > 1:\n",
        "conflicts() leaves out a field whose concurrent siblings hold equal values "
        "('nothing to review')",
    ),
    _m(
        "mv-merge-readds-overwritten",
        "crdt/_mvregister.py",
        "        for d, s in theirs.items():\n"
        "            if svv.get(d.replica, 0) < d.counter and d not in scloud:\n",
        "        for d, s in theirs.items():\n            if d not in mine:\n",
        "MVRegister.merge adopts the other side's siblings it does not hold rather "
        "than those it has never seen: a write that arrives after the write that "
        "overwrote it comes back as a sibling",
    ),
    # ---- causal contexts and clocks
    _m(
        "ctx-contains-off-by-one",
        "crdt/_clocks.py",
        "        return self._vv.get(dot.replica, 0) >= dot.counter or dot in self._cloud\n",
        "        return self._vv.get(dot.replica, 0) > dot.counter or dot in self._cloud\n",
        "CausalContext.__contains__ misses the newest dot of each replica "
        "(off by one in dot coverage)",
    ),
    _m(
        "vv-merge-drops-new-origin",
        "crdt/_clocks.py",
        "        for r, n in other._entries.items():\n            if n > get(r, 0):\n"
        "                if merged is None:\n",
        "        for r, n in other._entries.items():\n            if r in mine and n > get(r, 0):\n"
        "                if merged is None:\n",
        "VersionVector.merge ignores origins it has no entry for",
    ),
    _m(
        "hlc-observe-ignores-remote",
        "crdt/_clocks.py",
        "        wall = max(last.wall_ms, remote.wall_ms, wall_ms)\n",
        "        wall = max(last.wall_ms, wall_ms)\n",
        "HybridClock.observe does not move past a remote timestamp ahead of the local "
        "clock, so a later label write can lose to one its writer had seen",
    ),
    # ---- registers, sets, policy, queue
    _m(
        "orset-remove-covers-one-add",
        "crdt/_orset.py",
        "    def remove(self, element: Hashable, *, replica: str) -> ORSet:\n"
        "        # The remove takes a dot of its own too, so the set's context stays\n"
        "        # contiguous per replica (no ever-growing dot cloud).\n"
        "        dot = self._next_dot(replica)\n"
        "        seen = CausalContext.of(self.entries.get(element, ()))\n",
        "    def remove(self, element: Hashable, *, replica: str) -> ORSet:\n"
        "        # The remove takes a dot of its own too, so the set's context stays\n"
        "        # contiguous per replica (no ever-growing dot cloud).\n"
        "        dot = self._next_dot(replica)\n"
        "        seen = CausalContext.of(sorted(self.entries.get(element, ()))[-1:])\n",
        "ORSet.remove covers only the newest add of the element it saw",
    ),
    _m(
        "conflicts-one-per-entity",
        "crdt/_state.py",
        "        return [c for e in self for c in conflicts(e)]\n",
        "        return [c for e in self for c in conflicts(e)[:1]]\n",
        "ReplicaState.conflicts() shows only the first conflicted field of each entity",
    ),
    _m(
        "policy-home-wins-by-author",
        "crdt/_policy.py",
        "        at_home = [s for s in siblings if s.origin == home]\n",
        "        at_home = [s for s in siblings if s.author == home]\n",
        "the home-wins policy compares the sibling's author (a person) with the home "
        "(a replica), so home never wins",
    ),
    _m(
        "policy-stricter-lower-reversed",
        "crdt/_policy.py",
        '    if spec.strictness == "lower":\n'
        "        return min(siblings, key=lambda s: (value_sort_key(s.value), s.dot))\n",
        '    if spec.strictness == "lower":\n'
        "        return max(siblings, key=lambda s: (value_sort_key(s.value), s.dot))\n",
        "the stricter policy picks the larger value of a 'lower is stricter' field",
    ),
    # ---- the sync engine
    _m(
        "engine-duplicate-check-off-by-one",
        "sync/_engine.py",
        "        if batch.last <= have:\n",
        "        if batch.last < have:\n",
        "a batch ending exactly where we are is not recognised as a duplicate",
    ),
    _m(
        "engine-resend-skips-next-batch",
        "sync/_engine.py",
        "            start = bisect_right(batches, have, key=_last)\n",
        "            start = bisect_right(batches, have + 1, key=_last)\n",
        "the reply skips a batch that ends one past what the peer holds",
    ),
    _m(
        "engine-restart-loses-unsealed",
        "sync/_engine.py",
        "        self._outbox.clear()\n        for member in self.members.values():\n"
        "            transition(member, PeerInput.RESTART)\n",
        "        self._outbox.clear()\n        self._unsealed.clear()\n"
        "        for member in self.members.values():\n"
        "            transition(member, PeerInput.RESTART)\n",
        "a restart forgets acknowledged deltas that were not sealed into a batch yet",
    ),
    _m(
        "engine-own-origin-below-floor",
        "sync/_engine.py",
        "        if any(their(o, 0) < floor(o, 0) for o in lacking):\n",
        "        if any(their(o, 0) < floor(o, 0) for o in lacking if o != self.replica):\n",
        "a peer below the compaction floor of our own writes is sent deltas rather than "
        "a snapshot ('we can always resend our own'), though those batches are gone",
    ),
    _m(
        "hlc-batch-observes-earliest",
        "crdt/_state.py",
        "                if seen is not None and (latest is None or seen > latest):\n"
        "                    latest = seen\n"
        "        if now_ms is not None and latest is not None:\n",
        "                if seen is not None and (latest is None or seen < latest):\n"
        "                    latest = seen\n"
        "        if now_ms is not None and latest is not None:\n",
        "a joined batch advances the hybrid clock past its earliest timestamp, not its latest",
    ),
    _m(
        "no-epoch",
        "crdt/_state.py",
        "        return epoch_actor(self.replica, self.epoch)\n",
        "        return self.replica\n",
        "shared-field dots ignore the epoch (issue 17): a replica restarted after a crash "
        "reissues the dot of a write the crash took back, which a reader's context covers",
    ),
)


# ------------------------------------------------------------------ the tree


def source_root() -> Path:
    """The checkout this ``twinmesh`` runs from (crdt/, sync/, sim/, scenarios/)."""
    from twinmesh import sim

    root = Path(sim.__file__).resolve().parent.parent
    missing = [d for d in (*_COPIED, "twinmesh", "scenarios") if not (root / d).is_dir()]
    if missing:
        raise MutantError(
            f"mutation testing needs a source checkout; {root} has no {', '.join(missing)}"
        )
    return root


def copy_tree(root: Path, dest: Path) -> Path:
    """Copy what the simulator imports into ``dest``; return the import root."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in _COPIED:
        shutil.copytree(root / name, dest / name, ignore=ignore)
    pkg = dest / "twinmesh"
    pkg.mkdir()
    for entry in (root / "twinmesh").iterdir():
        if entry.name in _COPIED:
            (pkg / entry.name).symlink_to(Path("..") / entry.name)
        elif entry.suffix == ".py":
            shutil.copy2(entry, pkg / entry.name)
    return dest


def apply_mutant(tree: Path, mutant: Mutant) -> None:
    """Rewrite ``mutant.file`` in ``tree``; raise naming the mutant if its
    snippet does not occur exactly once."""
    path = tree / mutant.file
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise MutantError(f"mutant {mutant.name}: {mutant.file} does not exist") from None
    n = text.count(mutant.original)
    if n != 1:
        where = "not found" if n == 0 else f"found {n} times"
        raise MutantError(
            f"mutant {mutant.name}: its original snippet is {where} in {mutant.file}; "
            "the code changed — rewrite the mutant against the new code"
        )
    path.write_text(text.replace(mutant.original, mutant.replacement), encoding="utf-8")


def check_mutants(root: Path, mutants: Iterable[Mutant] = MUTANTS) -> list[str]:
    """Every mutant whose snippet does not apply to ``root``, with the reason."""
    problems = []
    names: set[str] = set()
    for m in mutants:
        if m.name in names:
            problems.append(f"mutant {m.name}: the name is used twice")
        names.add(m.name)
        text = (root / m.file).read_text(encoding="utf-8") if (root / m.file).is_file() else ""
        n = text.count(m.original)
        if n != 1:
            problems.append(f"mutant {m.name}: snippet found {n} times in {m.file}")
    return problems


# ------------------------------------------------------------------ the plan


@dataclass(frozen=True, slots=True, kw_only=True)
class Run:
    """One simulator run: a scenario file (None: the built-in swarm base)."""

    scenario: str | None
    seed: int
    scale: float
    swarm: bool

    @property
    def label(self) -> str:
        name = "swarm" if self.scenario is None else Path(self.scenario).stem
        return f"{name}{' (swarm)' if self.swarm and self.scenario else ''} seed {self.seed}"


def default_plan(
    root: Path,
    *,
    scenarios: Sequence[str] | None = None,
    swarm_seeds: int = 20,
    swarm_start: int = 1,
    swarm_scale: float = 1.0,
) -> list[Run]:
    """Every scenario file at its quick schedule with its own seed, then the swarm.

    The same runs as ``twinmesh sim run FILE --quick`` for each file and
    ``twinmesh sim swarm --seeds N``.
    """
    from ._scenario import load_scenario

    paths = (
        sorted(str(p) for p in (root / "scenarios").glob("*.toml"))
        if scenarios is None
        else list(scenarios)
    )
    plan = []
    for p in paths:
        sc = load_scenario(p)
        plan.append(
            Run(scenario=str(Path(p).resolve()), seed=sc.seed, scale=sc.quick_scale, swarm=False)
        )
    for seed in range(swarm_start, swarm_start + swarm_seeds):
        plan.append(Run(scenario=None, seed=seed, scale=swarm_scale, swarm=True))
    return plan


# ------------------------------------------------------------------ running


@dataclass(slots=True, kw_only=True)
class MutantResult:
    name: str
    file: str
    bug: str
    killed: bool
    by: list[str] = field(default_factory=list)  # checkers failed on the killing run
    run: str | None = None  # the first run that killed it
    runs: int = 0  # runs made
    kills: int = 0  # runs that failed (all-runs mode)
    error: str | None = None  # the simulator crashed or timed out (still a kill)
    seconds: float = 0.0


def _worker_command(tree: Path) -> tuple[list[str], dict[str, str]]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(tree)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.pop("PYTHONHOME", None)
    return [sys.executable, "-m", "twinmesh.sim._mutate", "--worker"], env


def _run_in_tree(
    tree: Path, plan: Sequence[Run], *, stop_at_kill: bool, timeout: float
) -> list[dict[str, Any]]:
    cmd, env = _worker_command(tree)
    job = {"plan": [asdict(r) for r in plan], "stop_at_kill": stop_at_kill, "tree": str(tree)}
    try:
        proc = subprocess.run(
            cmd,
            input=json.dumps(job),
            capture_output=True,
            text=True,
            env=env,
            cwd=tree,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout or ""
        done = _parse_lines(out.decode() if isinstance(out, bytes) else out)
        return [*done, {"run": "?", "ok": False, "failed": [], "error": f"timeout {timeout:g} s"}]
    lines = _parse_lines(proc.stdout)
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or [f"exit {proc.returncode}"]
        lines.append({"run": "?", "ok": False, "failed": [], "error": f"worker: {tail[0]}"})
    return lines


def _parse_lines(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def _one(
    root: Path, mutant: Mutant | None, plan: Sequence[Run], *, stop_at_kill: bool, timeout: float
) -> MutantResult:
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="twinmesh-mutant-") as tmp:
        tree = copy_tree(root, Path(tmp))
        if mutant is not None:
            apply_mutant(tree, mutant)
        lines = _run_in_tree(tree, plan, stop_at_kill=stop_at_kill, timeout=timeout)
    failed = [ln for ln in lines if not ln["ok"]]
    first = failed[0] if failed else None
    worker_broken = first is not None and str(first.get("error", "")).startswith("worker:")
    return MutantResult(
        name="(unmutated)" if mutant is None else mutant.name,
        file="" if mutant is None else mutant.file,
        bug="" if mutant is None else mutant.bug,
        killed=first is not None and not (worker_broken and mutant is None),
        by=list(first["failed"]) if first else [],
        run=first["run"] if first else None,
        runs=sum(1 for ln in lines if ln["run"] != "?"),
        kills=len(failed),
        error=first.get("error") if first else None,
        seconds=time.perf_counter() - t0,
    )


def run_mutants(
    mutants: Sequence[Mutant],
    plan: Sequence[Run],
    *,
    root: Path | None = None,
    jobs: int = 1,
    stop_at_kill: bool = True,
    timeout: float | None = None,
    baseline: bool = True,
    progress: Callable[[MutantResult], None] | None = None,
) -> list[MutantResult]:
    """Apply each mutant to its own copy of the tree and run ``plan`` there.

    With ``baseline``, the unmutated copy runs the same plan first and comes
    back as the first result: a kill means nothing if the plan fails anyway.
    Every snippet is checked before anything runs, so a stale mutant stops the
    whole command at once, by name.
    """
    root = root or source_root()
    problems = check_mutants(root, mutants)
    if problems:
        raise MutantError("; ".join(problems))
    results: list[MutantResult] = []
    limit = timeout if timeout is not None else 600.0
    if baseline:
        results.append(_one(root, None, plan, stop_at_kill=False, timeout=limit))
        if progress is not None:
            progress(results[0])
        if timeout is None:
            # A mutant can make the fleet spin without ever converging in
            # virtual time; bound it by the unmutated plan's own wall time.
            limit = max(30.0, 5 * results[0].seconds)

    def work(m: Mutant) -> MutantResult:
        r = _one(root, m, plan, stop_at_kill=stop_at_kill, timeout=limit)
        if progress is not None:
            progress(r)
        return r

    if jobs > 1:
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            return results + list(pool.map(work, mutants))
    return results + [work(m) for m in mutants]


def format_table(results: Sequence[MutantResult]) -> str:
    rows = [("mutant", "file", "verdict", "killed by (first killing run)", "runs", "s")]
    for r in results:
        if r.name == "(unmutated)":
            verdict = "BASELINE FAILS" if r.kills else "baseline ok"
        else:
            verdict = "killed" if r.killed else "SURVIVED"
        how = ", ".join(r.by) if r.by else (r.error or "")
        if r.by and r.error:
            how += f"; {r.error}"
        if r.run:
            how += f" ({r.run})"
        runs = f"{r.runs}" if not r.kills or r.kills == 1 else f"{r.runs} ({r.kills} failed)"
        rows.append((r.name, r.file, verdict, how, runs, f"{r.seconds:.1f}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 2)]
    out = []
    for row in rows:
        cells = [c.ljust(w) for c, w in zip(row[:-2], widths, strict=False)]
        out.append("  ".join([*cells, row[-2].rjust(8), row[-1].rjust(6)]).rstrip())
    mutants = [r for r in results if r.name != "(unmutated)"]
    killed = sum(r.killed for r in mutants)
    out.append(f"{killed} of {len(mutants)} mutants killed by the simulator's checkers")
    return "\n".join(out)


# ------------------------------------------------------------------ the worker


def _worker() -> int:
    job = json.loads(sys.stdin.read())
    tree = Path(job["tree"]).resolve()
    import twinmesh

    here = Path(twinmesh.__file__).resolve()
    if tree not in here.parents:
        print(f"twinmesh imported from {here}, not from the mutated tree {tree}", file=sys.stderr)
        return 3
    from ._runner import run_scenario
    from ._scenario import load_scenario
    from ._swarm import default_swarm_scenario

    for spec in job["plan"]:
        run = Run(**spec)
        t0 = time.perf_counter()
        base = default_swarm_scenario() if run.scenario is None else load_scenario(run.scenario)
        line: dict[str, Any] = {"run": run.label}
        try:
            result = run_scenario(base.scaled(run.scale), run.seed, swarm=run.swarm)
        except Exception as exc:  # a mutant may make the core raise: that is a kill too
            line.update(ok=False, failed=[], error=f"crash: {type(exc).__name__}: {exc}"[:300])
        else:
            line.update(ok=result.ok, failed=[v.name for v in result.verdicts if not v.ok])
        line["seconds"] = round(time.perf_counter() - t0, 3)
        print(json.dumps(line), flush=True)
        if not line["ok"] and job["stop_at_kill"]:
            break
    return 0


if __name__ == "__main__":
    if sys.argv[1:] == ["--worker"]:
        sys.exit(_worker())
    print("usage: twinmesh sim mutate (this module's --worker is internal)", file=sys.stderr)
    sys.exit(2)
