"""Checkers: each compares what the replicas hold with what the oracle says.

Findings are collected under the checker that owns them; a checker passes
when it found nothing. ``compare_replica`` is used both mid-run (a replica's
partial state against the writes it has applied) and at the end (every
replica against every acknowledged write).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from twinmesh.crdt import (
    GrowOnlyLog,
    LWWRegister,
    MVRegister,
    ORSet,
    PNCounter,
    ReplicaState,
    SingleWriterRegister,
    TextCrdt,
)

from ._oracle import Oracle
from ._workload import TOKEN_RE

__all__ = ["CHECKERS", "Findings", "Verdict", "compare_replica"]

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
