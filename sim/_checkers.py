"""Checkers: each compares what the replicas hold with what the oracle says.

Findings are collected under the checker that owns them; a checker passes
when it found nothing. ``compare_replica`` is used both mid-run (a replica's
partial state against the writes it has applied) and at the end (every
replica against every acknowledged write).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from random import Random
from typing import Any

from twinmesh.crdt import (
    Conflict,
    Dot,
    Entity,
    GrowOnlyLog,
    LWWRegister,
    MVRegister,
    ORSet,
    PNCounter,
    Policy,
    ReplicaState,
    Sibling,
    SingleWriterRegister,
    TextCrdt,
    ValueType,
    VersionVector,
    conflicts,
)
from twinmesh.crdt._values import value_sort_key

from ._oracle import Oracle
from ._workload import TOKEN_RE

__all__ = [
    "CHECKERS",
    "Findings",
    "Verdict",
    "check_conflict_queue",
    "check_crash_window",
    "check_touched",
    "check_vv_order",
    "compare_replica",
]

#: Every checker, in report order, with what it guarantees.
CHECKERS: dict[str, str] = {
    "convergence": "after the liveness phase every replica is byte-identical (state_digest) "
    "and holds every acknowledged write",
    "liveness": "convergence within the round bound after heal",
    "no-lost-writes": "every acknowledged register write is a current sibling or causally "
    "overwritten; log entries, entities and the home's last reported state are present",
    "conflicts-exact": "siblings are exactly the concurrent writes: no missed conflict, "
    "no overwritten write kept",
    "conflict-queue": "every replica shows the same conflict queue, the one the oracle predicts",
    "causal-siblings": "after every write and every applied batch, each touched register's "
    "siblings and causal context at that replica are exactly the maximal writes it has "
    "received under the oracle's happens-before, and what they saw",
    "conflict-pairs": "at every replica, at every check instant and whenever a touched field "
    "has concurrent writes, the review queue holds exactly the fields with concurrent "
    "writes, each with exactly those siblings, pairwise concurrent, the provisional value "
    "the field's policy picks, and a context covering them",
    "vv-order": "on sampled pairs of the engines' version vectors, compare/merge/contains "
    "agree with the oracle's order of the write sets they stand for; no engine believes "
    "a peer holds writes it has not applied",
    "counters": "each counter equals the sum of the increments applied",
    "sets": "add-wins sets hold exactly the adds no applied add/remove had observed",
    "text": "notes hold exactly the inserted tokens not deleted, each once",
    "labels": "an LWW label never keeps a write that a later applied write had seen",
    "reported-home-only": "reported state is written only at home",
    "vv-monotonic": "no version vector ever goes backwards (sampled after every event)",
    "vv-accounting": "engine.vv equals the oracle's account of applied deltas, gap-free",
    "idempotent-delivery": "a message delivered twice in a row changes neither state nor vv",
    "no-refusals": "an honest fleet refuses no message and no batch",
    "byzantine-refused": "every lie a Byzantine relay tells in a snapshot is refused "
    "(no forged value visible, no origin raised beyond what it signed)",
    "local-writes": "well-formed local writes are accepted",
    "crash-window": "a write acknowledged after a crash survives a write back with a "
    "context read before it, while a write was in memory but not durable (no dot is "
    "issued twice)",
}

MAX_DETAILS = 12


@dataclass(frozen=True, slots=True, kw_only=True)
class Verdict:
    name: str
    ok: bool
    failures: int
    checks: int
    details: tuple[str, ...]
    description: str


@dataclass(slots=True)
class Findings:
    failures: Counter[str] = field(default_factory=Counter)
    checks: Counter[str] = field(default_factory=Counter)
    details: dict[str, list[str]] = field(default_factory=dict)

    def fail(self, checker: str, message: str) -> None:
        assert checker in CHECKERS, checker
        self.failures[checker] += 1
        shown = self.details.setdefault(checker, [])
        if len(shown) < MAX_DETAILS:
            shown.append(message)

    def checked(self, checker: str, n: int = 1) -> None:
        self.checks[checker] += n

    def verdicts(self, skip: frozenset[str] = frozenset()) -> list[Verdict]:
        return [
            Verdict(
                name=name,
                ok=not self.failures[name],
                failures=self.failures[name],
                checks=self.checks[name],
                details=tuple(self.details.get(name, ())),
                description=text,
            )
            for name, text in CHECKERS.items()
            if name not in skip
        ]


def _siblings(state: Any) -> dict[tuple[str, int], Any]:
    if not isinstance(state, MVRegister):
        return {}
    return {(d.replica, d.counter): s.value for d, s in state.siblings.items()}


def compare_replica(
    oracle: Oracle,
    name: str,
    state: ReplicaState,
    vector: dict[str, int],
    findings: Findings,
    *,
    final: bool,
    when: str,
) -> None:
    """Check one replica's state against the writes ``vector`` says it applied."""
    at = f"{when} {name}"
    expected_entities = oracle.entities_at(vector)
    for entity_id, (model, home) in expected_entities.items():
        entity = state.entities.get(entity_id)
        findings.checked("no-lost-writes")
        if entity is None:
            findings.fail("no-lost-writes", f"{at}: entity {entity_id} is missing")
        elif (entity.header.model, entity.header.home) != (model, home) and model != "?":
            findings.fail("no-lost-writes", f"{at}: entity {entity_id} has header {entity.header}")
    for entity_id in state.entities:
        if entity_id not in expected_entities:
            findings.fail("no-lost-writes", f"{at}: entity {entity_id} exists but no write made it")

    def field_of(entity_id: str, fname: str) -> Any:
        entity = state.entities.get(entity_id)
        return None if entity is None else entity.fields.get(fname)

    for key, _reg in oracle.registers.items():
        want = oracle.register_siblings(key, vector)
        got = _siblings(field_of(*key))
        findings.checked("no-lost-writes")
        findings.checked("conflicts-exact")
        if want == got:
            continue
        where = f"{at}: {key[0]}.{key[1]}"
        for dot, value in want.items():
            if dot not in got:
                findings.fail(
                    "no-lost-writes",
                    f"{where}: write {dot[0]}#{dot[1]} {value!r} "
                    "is neither a sibling nor overwritten",
                )
            elif got[dot] != value:
                findings.fail(
                    "no-lost-writes",
                    f"{where}: sibling {dot} holds {got[dot]!r}, written {value!r}",
                )
        for dot, value in got.items():
            if dot not in want:
                findings.fail(
                    "conflicts-exact",
                    f"{where}: sibling {dot[0]}#{dot[1]} {value!r} should have been overwritten "
                    f"(oracle siblings: {sorted(want)})",
                )
    for key, elements in oracle.sets.items():
        findings.checked("sets")
        want_set = oracle.set_elements(key, vector)
        st = field_of(*key)
        got_set = set(st.entries) if isinstance(st, ORSet) else set()
        if want_set != got_set:
            findings.fail(
                "sets",
                f"{at}: {key[0]}.{key[1]} holds {sorted(map(str, got_set))}, "
                f"expected {sorted(map(str, want_set))} "
                f"(lost: {sorted(map(str, want_set - got_set))}, "
                f"resurrected: {sorted(map(str, got_set - want_set))})",
            )
        del elements
    for key in oracle.counters:
        findings.checked("counters")
        want_n = oracle.counter(key, vector)
        st = field_of(*key)
        got_n = st.value() if isinstance(st, PNCounter) else 0
        if want_n != got_n:
            findings.fail(
                "counters",
                f"{at}: {key[0]}.{key[1]} = {got_n}, acknowledged increments sum to {want_n}",
            )
    for key in oracle.logs:
        findings.checked("no-lost-writes")
        want_log = oracle.log_entries(key, vector)
        st = field_of(*key)
        got_log = dict(st.entries) if isinstance(st, GrowOnlyLog) else {}
        if want_log != got_log:
            lost = sorted(set(want_log) - set(got_log))
            extra = sorted(set(got_log) - set(want_log))
            changed = sorted(k for k in want_log if k in got_log and got_log[k] != want_log[k])
            findings.fail(
                "no-lost-writes",
                f"{at}: log {key[0]}.{key[1]}: lost {lost[:5]}, "
                f"unexpected {extra[:5]}, changed {changed[:5]}",
            )
    for key in oracle.text_inserts:
        findings.checked("text")
        want_tokens = oracle.text_tokens(key, vector)
        st = field_of(*key)
        text = st.text() if isinstance(st, TextCrdt) else ""
        tokens = TOKEN_RE.findall(text)
        if "".join(f"[{t}]" for t in tokens) != text or len(set(tokens)) != len(tokens):
            findings.fail(
                "text", f"{at}: {key[0]}.{key[1]} is not whole distinct tokens: {text[:120]!r}"
            )
            continue
        got_tokens = set(tokens)
        # Mid-run, Yrs may still hold an insert whose neighbours have not
        # arrived (pending), so only "nothing deleted or invented" is required.
        bad = got_tokens != want_tokens if final else not got_tokens <= want_tokens
        if bad:
            findings.fail(
                "text",
                f"{at}: {key[0]}.{key[1]}: missing {sorted(want_tokens - got_tokens)[:5]}, "
                f"unexpected {sorted(got_tokens - want_tokens)[:5]}",
            )
    for key in oracle.labels:
        findings.checked("labels")
        st = field_of(*key)
        winner = (
            (st.replica, st.value) if isinstance(st, LWWRegister) and st.time is not None else None
        )
        problem = oracle.label_problem(key, vector, winner)
        if problem:
            findings.fail("labels", f"{at}: label {key[0]}.{key[1]} {problem}")
    for key in oracle.reported:
        findings.checked("no-lost-writes")
        written, value = oracle.reported_value(key, vector)
        st = field_of(*key)
        shown = st.value if isinstance(st, SingleWriterRegister) and st.seq else None
        if written and shown != value:
            findings.fail(
                "no-lost-writes",
                f"{at}: reported {key[0]}.{key[1]} = {shown!r}, home last wrote {value!r}",
            )


# ------------------------------------------------------------------ verdicts, not just states
#
# The checks above judge a replica's *state*; the ones below judge the causal
# *verdicts* the core reaches: which write overwrote which, which pairs are
# concurrent, what a version-vector comparison answers. A wrong verdict can
# leave the states of all replicas equal (every replica makes the same wrong
# call), so only the oracle's own happens-before — from the global trace,
# never from a CRDT's clocks — can see it.


def _dots(state: Any) -> dict[tuple[str, int], Any]:
    return _siblings(state)


def check_touched(
    oracle: Oracle,
    name: str,
    state: ReplicaState,
    vector: dict[str, int],
    keys: set[tuple[str, str | None]],
    findings: Findings,
    *,
    when: str,
) -> None:
    """The keys a write or an applied batch just touched at ``name``, at once.

    Checking right after the event (not at a later sample) is what sees a
    wrong join that a later write papers over before any sampled instant."""
    queued: set[str] = set()
    for entity_id, fname in keys:
        if fname is None:
            continue
        key = (entity_id, fname)
        entity = state.entities.get(entity_id)
        st = None if entity is None else entity.fields.get(fname)
        reg = oracle.registers.get(key)
        if reg is not None:
            findings.checked("causal-siblings")
            want = reg.siblings(vector)
            got = _dots(st)
            if want != got:
                extra = sorted(set(got) - set(want))
                lost = sorted(set(want) - set(got))
                changed = sorted(d for d in want if d in got and got[d] != want[d])
                findings.fail(
                    "causal-siblings",
                    f"{when} {name}: {entity_id}.{fname} siblings {sorted(got)}, the maximal "
                    f"received writes are {sorted(want)} (kept overwritten: {extra}, "
                    f"missing: {lost}, wrong value: {changed})",
                )
            elif isinstance(st, MVRegister):
                ctx = reg.context(vector)
                if st.ctx.vv.as_dict() != ctx or st.ctx.cloud:
                    findings.fail(
                        "causal-siblings",
                        f"{when} {name}: {entity_id}.{fname} context {st.ctx!r}, the writes "
                        f"received or covered are {dict(sorted(ctx.items()))}",
                    )
            if (len(want) > 1 or len(got) > 1) and entity is not None:
                queued.add(entity_id)
            continue
        if key in oracle.sets:
            findings.checked("sets")
            want_set = oracle.set_elements(key, vector)
            got_set = set(st.entries) if isinstance(st, ORSet) else set()
            if want_set != got_set:
                findings.fail(
                    "sets",
                    f"{when} {name}: {entity_id}.{fname} holds {sorted(map(str, got_set))}, "
                    f"expected {sorted(map(str, want_set))}",
                )
        elif key in oracle.counters:
            findings.checked("counters")
            want_n = oracle.counter(key, vector)
            got_n = st.value() if isinstance(st, PNCounter) else 0
            if want_n != got_n:
                findings.fail(
                    "counters",
                    f"{when} {name}: {entity_id}.{fname} = {got_n}, increments sum to {want_n}",
                )
        elif key in oracle.labels:
            findings.checked("labels")
            winner = (
                (st.replica, st.value)
                if isinstance(st, LWWRegister) and st.time is not None
                else None
            )
            problem = oracle.label_problem(key, vector, winner)
            if problem:
                findings.fail("labels", f"{when} {name}: label {entity_id}.{fname} {problem}")
    for entity_id in sorted(queued):
        entity = state.entities[entity_id]
        _check_queue_entries(
            oracle, name, conflicts(entity), vector, findings, when=when, only=entity_id
        )


def expected_provisional(siblings: list[Sibling], entity: Entity, fname: str) -> Dot:
    """The sibling a field's policy picks, restated from the schema's policy
    table (``crdt/_policy.py`` docstrings) as sorts rather than max/min: a
    reference model to judge the core's choice against."""
    spec = entity.spec(fname)
    policy = spec.policy
    by_dot = sorted(siblings, key=lambda s: s.dot)

    def by_value(s: Sibling) -> tuple[Any, Dot]:
        return (value_sort_key(s.value), s.dot)

    if policy is Policy.LATEST:
        return sorted(by_dot, key=lambda s: (s.time, s.dot))[-1].dot
    if policy is Policy.EARLIEST:
        return sorted(by_dot, key=lambda s: (s.time, s.dot))[0].dot
    if policy is Policy.MAX:
        return sorted(by_dot, key=by_value)[-1].dot
    if policy is Policy.MIN:
        return sorted(by_dot, key=by_value)[0].dot
    if policy is Policy.HOME_WINS:
        home = [s for s in by_dot if s.origin == entity.header.home] or by_dot
        return sorted(home, key=lambda s: (s.time, s.dot))[-1].dot
    if spec.value_type is ValueType.ENUM:
        order = list(spec.enum_values)

        def rank(s: Sibling) -> tuple[int, Dot]:
            return (order.index(s.value) if s.value in order else -1, s.dot)

        return sorted(by_dot, key=rank)[-1].dot
    ranked = sorted(by_dot, key=by_value)
    return (ranked[0] if spec.strictness == "lower" else ranked[-1]).dot


def _check_queue_entries(
    oracle: Oracle,
    name: str,
    queue: list[Conflict],
    vector: dict[str, int],
    findings: Findings,
    *,
    when: str,
    only: str | None = None,
) -> None:
    """``queue`` (one replica's, or one entity's part of it) against the oracle."""
    at = f"{when} {name}"
    findings.checked("conflict-pairs")
    seen: set[tuple[str, str]] = set()
    for c in queue:
        key = (c.entity, c.field)
        if key in seen:
            findings.fail("conflict-pairs", f"{at}: {c.key} is in the queue twice")
        seen.add(key)
        reg = oracle.registers.get(key)
        want = reg.siblings(vector) if reg is not None else {}
        got = [(s.dot.replica, s.dot.counter) for s in c.siblings]
        if sorted(got) != sorted(want) or len(got) < 2:
            findings.fail(
                "conflict-pairs",
                f"{at}: queue shows {c.key} with {sorted(got)}; its concurrent writes "
                f"are {sorted(want)}",
            )
            continue
        assert reg is not None
        for i, a in enumerate(got):
            for b in got[i + 1 :]:
                if reg.happened_before(a, b) or reg.happened_before(b, a):
                    findings.fail(
                        "conflict-pairs",
                        f"{at}: {c.key} pairs {a} and {b}, but one was written after "
                        "the other had been received",
                    )
        missing = [s.dot for s in c.siblings if s.dot not in c.context]
        if missing:
            findings.fail(
                "conflict-pairs",
                f"{at}: {c.key}'s resolution context misses siblings {missing}",
            )
    for key, reg in oracle.registers.items():
        if only is not None and key[0] != only:
            continue
        if key not in seen and len(reg.siblings(vector)) > 1:
            findings.fail(
                "conflict-pairs",
                f"{at}: {key[0]}#{key[1]} has concurrent writes "
                f"{sorted(reg.siblings(vector))} but is not in the review queue",
            )


def check_conflict_queue(
    oracle: Oracle,
    name: str,
    state: ReplicaState,
    vector: dict[str, int],
    findings: Findings,
    *,
    when: str,
) -> None:
    """One replica's whole review queue, and the provisional value of each entry."""
    queue = state.conflicts()
    _check_queue_entries(oracle, name, queue, vector, findings, when=when)
    for c in queue:
        entity = state.entities.get(c.entity)
        if entity is None or len(c.siblings) < 2:
            continue
        want = expected_provisional(list(c.siblings), entity, c.field)
        if c.provisional.dot != want:
            findings.fail(
                "conflict-pairs",
                f"{when} {name}: {c.key} provisional {c.provisional.dot} "
                f"{c.provisional.value!r}; its {c.policy.value} policy picks {want}",
            )


def check_crash_window(
    name: str,
    state: ReplicaState,
    key: tuple[str, str],
    acknowledged: Any,
    findings: Findings,
    *,
    when: str,
) -> None:
    """After a crash window (sim/_faults.py): the write ``acknowledged`` made
    after the restart is still a sibling of ``key`` at ``name`` once a client
    wrote back with a context read before the crash, while a write that the
    crash took back was in memory. It is gone exactly when that context
    covered it — when the restarted replica issued it the lost write's dot."""
    findings.checked("crash-window")
    entity = state.entities.get(key[0])
    register = None if entity is None else entity.fields.get(key[1])
    held = register.values() if isinstance(register, MVRegister) else []
    if acknowledged not in held:
        findings.fail(
            "crash-window",
            f"{when} {name}: {key[0]}.{key[1]}: the write {acknowledged!r}, acknowledged "
            f"after a restart, is gone once a client wrote back with a context read before "
            f"the crash (holds {held!r}): the context covered it, so a dot was issued twice",
        )


def check_vv_order(
    oracle: Oracle,
    vvs: dict[str, VersionVector],
    known: Callable[[str, str], VersionVector | None],
    findings: Findings,
    rng: Random,
    *,
    when: str,
    pairs: int = 12,
) -> None:
    """The core's comparisons of real vectors from the run, against the oracle.

    ``vvs`` are the engines' vectors of the replicas that are up; ``known``
    what each engine believes its peers hold. The oracle's order is set
    inclusion of the write sets it recorded each replica applying; the vector
    under test is the engine's own (vv-accounting separately requires the two
    to agree entry by entry)."""
    names = sorted(vvs)
    if len(names) * (len(names) - 1) <= 4 * pairs:
        every = [(a, b) for a in names for b in names if a != b]
        chosen = every if len(every) <= pairs else rng.sample(every, pairs)
    else:
        # At 500 replicas the list of every ordered pair had 250k entries
        # per tick: draw the pairs instead (distinct, uniform as before).
        picked: set[tuple[str, str]] = set()
        chosen = []
        while len(chosen) < pairs:
            a, b = rng.sample(names, 2)
            if (a, b) not in picked:
                picked.add((a, b))
                chosen.append((a, b))
    applied = oracle.applied
    for a, b in chosen:
        x, y = vvs[a], vvs[b]
        findings.checked("vv-order")
        want = oracle.order(applied[a], applied[b])
        got = x.compare(y).value
        if got != want:
            findings.fail(
                "vv-order",
                f"{when}: {a} {x!r} compare {b} {y!r} says {got}; the write sets are {want}",
            )
        union = dict(applied[a])
        for r, n in applied[b].items():
            if n > union.get(r, 0):
                union[r] = n
        merged = x.merge(y).as_dict()
        if merged != {r: n for r, n in union.items() if n}:
            findings.fail(
                "vv-order",
                f"{when}: {a} merge {b} gives {dict(sorted(merged.items()))}; "
                f"the union of the write sets is {dict(sorted(union.items()))}",
            )
        # contains() on the boundary of a few origins: where the two differ
        # (the interesting ones) and one drawn at random.
        origins = sorted(set(applied[a]) | set(applied[b]))
        differ = [r for r in origins if applied[a].get(r, 0) != applied[b].get(r, 0)]
        probe = differ[:3] + ([rng.choice(origins)] if origins else [])
        for r in probe:
            n = applied[a].get(r, 0)
            if (n and not x.contains(Dot(r, n))) or x.contains(Dot(r, n + 1)):
                findings.fail(
                    "vv-order",
                    f"{when}: {a} {x!r} contains() is wrong about {r}'s write {n} or {n + 1}",
                )
        belief = known(a, b)
        if belief is not None and oracle.order(belief.as_dict(), applied[b]) not in (
            "before",
            "equal",
        ):
            findings.fail(
                "vv-order",
                f"{when}: {a} believes {b} holds {belief!r}; {b} has applied "
                f"{dict(sorted(applied[b].items()))}",
            )
