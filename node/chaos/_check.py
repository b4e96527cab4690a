"""The history checker: a history and every node's final state -> verdicts.

Pure: no IO, no clock. The rules follow from what a multi-value register
promises (``crdt/_mvregister.py``): a write removes exactly the siblings its
writer had seen, so the siblings that must survive are the writes that took
effect and that no other write which took effect had in its context.

Dots are per register and contiguous (the k-th write of replica r to this
field is ``r:k``), so the final context says how many writes of each replica
took effect on each field. Acknowledged writes name their dot; the counters
left over belong to writes whose outcome was unknown — there may be at most
as many as there were unknown writes (an unknown write takes effect once or
not at all, never twice, and nothing takes effect that no client sent).

Checkers (one verdict each, as in the simulator's report):

* no-lost-writes: every acknowledged write is in every node's final context
  and is a current sibling unless a write that took effect had seen it;
  acknowledged log entries are present;
* conflicts-exact: the siblings are exactly the surviving writes — a sibling
  another write had seen is a *false conflict*; a surviving concurrent write
  that is missing is a *missed conflict*;
* conflict-queue: every node's review queue lists the same fields, exactly
  those with two or more siblings;
* resolutions: no sibling an acknowledged resolution covered is still open;
* unknown-outcomes: each unknown operation took effect at most once, and the
  report says how many did;
* counters: equal everywhere, between the acknowledged sum and that plus the
  unknown increments;
* convergence / liveness: one state digest everywhere, reached within the
  stated bound after the final heal.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from twinmesh.crdt import CausalContext, Dot, actor_origin
from twinmesh.sim._checkers import Verdict

from ._history import History, HistoryError, Op

__all__ = [
    "CHAOS_CHECKERS",
    "Convergence",
    "FieldFinal",
    "NodeFinal",
    "Outcome",
    "check",
    "parse_dot",
]

CHAOS_CHECKERS: dict[str, str] = {
    "convergence": "after the final heal every node holds the same state digest",
    "liveness": "convergence within the stated bound after the final heal",
    "no-lost-writes": "every acknowledged write is in every node's final state, as a sibling "
    "or overwritten by a write that had seen it; acknowledged log entries are present",
    "conflicts-exact": "siblings are exactly the surviving concurrent writes: no false "
    "conflict (a sibling another write had seen), no missed conflict",
    "conflict-queue": "every node's review queue lists the same fields, those with siblings",
    "resolutions": "no sibling an acknowledged resolution covered is open anywhere",
    "unknown-outcomes": "every unknown operation took effect once or not at all, never twice; "
    "nothing took effect that no client sent",
    "counters": "counters equal everywhere, between acknowledged and acknowledged+unknown",
}

MAX_DETAILS = 12


def parse_dot(text: str) -> Dot:
    replica, sep, counter = text.rpartition(":")
    if not sep or not counter.isdigit():
        raise HistoryError(f"not a dot: {text!r}")
    return Dot(replica, int(counter))


def _context(token: str | None) -> CausalContext:
    if token is None:
        return CausalContext({}, [])
    from twinmesh.node._api import decode_context  # the API's own token format

    try:
        return decode_context(token)
    except Exception:
        raise HistoryError(f"context token does not decode: {token[:32]!r}") from None


@dataclass(frozen=True, slots=True, kw_only=True)
class FieldFinal:
    """A shared field at one node: its siblings (dot known when the node
    showed them in its review queue) and its context token."""

    siblings: tuple[tuple[str | None, Any], ...]
    context: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeFinal:
    digest: str
    fields: dict[tuple[str, str], FieldFinal]
    counters: dict[tuple[str, str], int] = field(default_factory=dict)
    logs: dict[tuple[str, str], frozenset[str]] = field(default_factory=dict)
    queue: frozenset[tuple[str, str]] = frozenset()  # /v1/conflicts (entity, field)


@dataclass(frozen=True, slots=True, kw_only=True)
class Convergence:
    converged: bool
    seconds_after_heal: float | None
    bound_seconds: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    verdicts: tuple[Verdict, ...]
    unknown: dict[str, int]  # unknown ops: total, took_effect, did_not, undetermined
    ok: bool


class _Findings:
    def __init__(self) -> None:
        self.failures: dict[str, int] = defaultdict(int)
        self.checks: dict[str, int] = defaultdict(int)
        self.details: dict[str, list[str]] = defaultdict(list)

    def fail(self, name: str, message: str) -> None:
        assert name in CHAOS_CHECKERS, name
        self.failures[name] += 1
        if len(self.details[name]) < MAX_DETAILS:
            self.details[name].append(message)

    def checked(self, name: str, n: int = 1) -> None:
        self.checks[name] += n

    def verdicts(self) -> tuple[Verdict, ...]:
        return tuple(
            Verdict(
                name=name,
                ok=not self.failures[name],
                failures=self.failures[name],
                checks=self.checks[name],
                details=tuple(self.details[name]),
                description=text,
            )
            for name, text in CHAOS_CHECKERS.items()
        )


@dataclass(slots=True)
class _Write:
    op: Op
    ctx: CausalContext
    dot: Dot | None

    @property
    def name(self) -> str:
        inv = self.op.invoke
        what = "resolution" if inv.f == "resolve" else "write"
        at = f"{self.dot}" if self.dot else "dot unknown"
        return f"{what} op {inv.op} {inv.value!r} at {inv.node} ({at})"


def _check_register(
    key: tuple[str, str],
    writes: list[_Write],
    finals: dict[str, NodeFinal],
    f: _Findings,
    unknown: dict[str, int],
) -> None:
    where = f"{key[0]}.{key[1]}"
    acked = [w for w in writes if w.op.status == "ok" and w.dot is not None]
    maybe = [w for w in writes if w.op.status == "info"]
    by_dot = {w.dot: w for w in acked}
    if len(by_dot) != len(acked):
        f.fail("unknown-outcomes", f"{where}: two acknowledged writes share a dot")
    unknown_by_replica: dict[str, list[_Write]] = defaultdict(list)
    for w in maybe:
        unknown_by_replica[w.op.invoke.node].append(w)

    def seen_by_acked(w: _Write) -> list[_Write]:
        return [o for o in acked if o is not w and w.dot is not None and w.dot in o.ctx]

    def seen_by_unknown(w: _Write) -> list[_Write]:
        return [o for o in maybe if w.dot is not None and w.dot in o.ctx]

    survivors = [w for w in acked if not seen_by_acked(w)]
    took_effect_total = 0
    for node, final in sorted(finals.items()):
        ff = final.fields.get(key)
        if ff is None:
            if acked:
                f.fail("no-lost-writes", f"{node}: {where} is missing, {len(acked)} writes acked")
            continue
        ctx = _context(ff.context)
        # 1. Every acknowledged write reached this node.
        for w in acked:
            f.checked("no-lost-writes")
            assert w.dot is not None
            if w.dot not in ctx:
                f.fail("no-lost-writes", f"{node}: {where}: {w.name} never arrived")
        # 2. Counters beyond the acknowledged ones: unknown writes that took effect.
        took = 0
        # Dots name actors: a node restarted after kill -9 writes as a new
        # epoch's actor (crdt/_clocks.py), so extras are counted per actor
        # and allowed per node.
        actors = {w.dot.replica for w in acked if w.dot} | set(unknown_by_replica)
        actors |= {d.replica for d, _ in _known_siblings(ff)} | ctx.replicas()
        extra_of: dict[str, int] = defaultdict(int)
        for r in sorted(actors):
            top = ctx.max_counter(r)
            mine = {w.dot.counter for w in acked if w.dot and w.dot.replica == r}
            extra_of[actor_origin(r) or r] += sum(1 for k in range(1, top + 1) if k not in mine)
        for r, extra in sorted(extra_of.items()):
            allowed = len(unknown_by_replica.get(r, ()))
            f.checked("unknown-outcomes")
            if extra > allowed:
                f.fail(
                    "unknown-outcomes",
                    f"{node}: {where}: {extra} write(s) of {r} took effect that no "
                    f"acknowledged write accounts for, but only {allowed} had an unknown outcome",
                )
            took += min(extra, allowed)
        took_effect_total = max(took_effect_total, took)
        # 3. Siblings: exactly the survivors (plus unknown writes that took effect).
        shown = list(ff.siblings)
        shown_dots = {parse_dot(d) for d, _ in shown if d is not None}
        single_value = shown[0][1] if len(shown) == 1 and shown[0][0] is None else _NONE
        for d, value in shown:
            if d is None:
                continue
            dot = parse_dot(d)
            w = by_dot.get(dot)
            f.checked("conflicts-exact")
            if w is None:
                candidates = [
                    u
                    for u in unknown_by_replica.get(actor_origin(dot.replica) or dot.replica, ())
                    if _same(u.op.invoke.value, value)
                ]
                if not candidates:
                    f.fail(
                        "unknown-outcomes",
                        f"{node}: {where}: sibling {d} = {value!r} matches no write in the history",
                    )
                continue
            seen = seen_by_acked(w)
            if seen:
                f.fail(
                    "conflicts-exact",
                    f"{node}: {where}: false conflict — sibling {w.name} stays, though "
                    f"{seen[0].name} had seen it",
                )
        if single_value is not _NONE:
            f.checked("unknown-outcomes")
            sources = [w.op.invoke.value for w in survivors] + [u.op.invoke.value for u in maybe]
            if not any(_same(v, single_value) for v in sources):
                f.fail(
                    "unknown-outcomes",
                    f"{node}: {where} = {single_value!r}, which no surviving or unknown "
                    "write put there",
                )
        for w in survivors:
            assert w.dot is not None
            f.checked("conflicts-exact")
            present = w.dot in shown_dots or (
                single_value is not _NONE and _same(single_value, w.op.invoke.value)
            )
            if present:
                continue
            if seen_by_unknown(w):
                continue  # overwritten, perhaps, by a write whose outcome was unknown
            others = [o for o in survivors if o is not w]
            if others:
                f.fail(
                    "conflicts-exact",
                    f"{node}: {where}: missed conflict — {w.name} and {others[0].name} were "
                    "concurrent (neither context has the other's dot), but the review queue "
                    "does not show both",
                )
            else:
                f.fail(
                    "no-lost-writes",
                    f"{node}: {where}: lost write — {w.name} is not the value and no write "
                    "that took effect had seen it",
                )
        # 4. Resolutions close what they covered.
        for w in acked:
            if w.op.invoke.f != "resolve":
                continue
            f.checked("resolutions")
            still = sorted(d for d in w.op.invoke.covers if parse_dot(d) in shown_dots)
            if still:
                f.fail(
                    "resolutions",
                    f"{node}: {where}: {w.name} covered {', '.join(still)}, still open here",
                )
    unknown["took_effect"] += took_effect_total
    unknown["register_unknown"] += len(maybe)


_NONE = object()


def _same(a: Any, b: Any) -> bool:
    return bool(a == b and type(a) is type(b)) or (
        isinstance(a, int | float) and isinstance(b, int | float) and float(a) == float(b)
    )


def _known_siblings(ff: FieldFinal) -> list[tuple[Dot, Any]]:
    return [(parse_dot(d), v) for d, v in ff.siblings if d is not None]


def check(history: History, finals: dict[str, NodeFinal], convergence: Convergence) -> Outcome:
    """Verdicts for one run; see the module docstring."""
    f = _Findings()
    ops = history.ops()
    unknown = {"total": sum(1 for o in ops if o.status == "info" and o.invoke.f != "read")}
    unknown.update(took_effect=0, register_unknown=0)
    # Registers.
    registers: dict[tuple[str, str], list[_Write]] = defaultdict(list)
    for op in ops:
        if op.invoke.f in ("write", "resolve"):
            dot = parse_dot(op.done.dot) if op.status == "ok" and op.done.dot else None
            if op.status == "ok" and dot is None:
                f.fail("no-lost-writes", f"op {op.invoke.op}: acknowledged without a dot")
            registers[op.key].append(_Write(op=op, ctx=_context(op.invoke.context), dot=dot))
    for key in sorted(registers):
        _check_register(key, registers[key], finals, f, unknown)
    # Counters.
    counters: dict[tuple[str, str], list[Op]] = defaultdict(list)
    logs: dict[tuple[str, str], list[Op]] = defaultdict(list)
    for op in ops:
        if op.invoke.f == "increment":
            counters[op.key].append(op)
        elif op.invoke.f == "append":
            logs[op.key].append(op)
    for key, cops in sorted(counters.items()):
        lo = sum(int(o.invoke.value) for o in cops if o.status == "ok")
        extra = sum(int(o.invoke.value) for o in cops if o.status == "info")
        values = {n: fin.counters.get(key) for n, fin in finals.items()}
        f.checked("counters", len(values))
        for n, v in sorted(values.items()):
            if v is None or not lo <= v <= lo + extra:
                f.fail(
                    "counters",
                    f"{n}: {key[0]}.{key[1]} = {v}, acknowledged increments sum to {lo} "
                    f"(+{extra} unknown)",
                )
        present = [v for v in values.values() if v is not None]
        if present:
            unknown["took_effect"] += max(0, min(present) - lo) if extra else 0
    for key, lops in sorted(logs.items()):
        acked = {str(o.invoke.value) for o in lops if o.status == "ok"}
        maybe = {str(o.invoke.value) for o in lops if o.status == "info"}
        for n, fin in sorted(finals.items()):
            got = fin.logs.get(key, frozenset())
            f.checked("no-lost-writes", len(acked))
            lost = sorted(acked - got)
            if lost:
                f.fail("no-lost-writes", f"{n}: log {key[0]}.{key[1]} lost acknowledged {lost[:5]}")
            invented = sorted(got - acked - maybe)
            f.checked("unknown-outcomes")
            if invented:
                f.fail(
                    "unknown-outcomes",
                    f"{n}: log {key[0]}.{key[1]} holds {invented[:5]}, which no client appended",
                )
        firsts = [fin.logs.get(key, frozenset()) for fin in finals.values()]
        if firsts:
            unknown["took_effect"] += len(maybe & firsts[0])
    # Review queues.
    queues = {n: fin.queue for n, fin in finals.items()}
    f.checked("conflict-queue", len(queues))
    distinct = {q for q in queues.values()}
    if len(distinct) > 1:
        shown = "; ".join(f"{n}: {len(q)}" for n, q in sorted(queues.items()))
        f.fail("conflict-queue", f"the nodes' review queues differ ({shown})")
    for n, fin in sorted(finals.items()):
        multi = {k for k, ff in fin.fields.items() if len(ff.siblings) > 1}
        if multi != set(fin.queue) & set(fin.fields):
            f.fail(
                "conflict-queue",
                f"{n}: queue {sorted(fin.queue)} but fields with siblings {sorted(multi)}",
            )
    # Convergence.
    digests = {n: fin.digest for n, fin in finals.items()}
    f.checked("convergence", len(digests))
    if len(set(digests.values())) > 1:
        shown = ", ".join(f"{n} {d[:12]}" for n, d in sorted(digests.items()))
        f.fail("convergence", f"state digests differ: {shown}")
    f.checked("liveness")
    if not convergence.converged:
        f.fail(
            "liveness",
            f"not converged within {convergence.bound_seconds:.1f} s after the final heal",
        )
    elif (
        convergence.seconds_after_heal is not None
        and convergence.seconds_after_heal > convergence.bound_seconds
    ):
        f.fail(
            "liveness",
            f"converged {convergence.seconds_after_heal:.1f} s after heal, "
            f"bound {convergence.bound_seconds:.1f} s",
        )
    total = unknown["total"]
    took = min(unknown["took_effect"], total)
    summary = {"total": total, "took_effect": took, "did_not": total - took}
    verdicts = f.verdicts()
    return Outcome(verdicts=verdicts, unknown=summary, ok=all(v.ok for v in verdicts))
