"""The chaos history checker, fed planted histories and final states.

Each planted fault (a lost write, a false conflict, a missed conflict, an
unknown write counted twice, a lost counter increment or log entry, nodes
that disagree) must be reported by the checker that owns it, and a correct
history of the same shape must pass. Pure: no processes.
"""

from __future__ import annotations

from typing import Any

import pytest

from twinmesh.crdt import CausalContext, Dot
from twinmesh.node._api import encode_context
from twinmesh.node.chaos import (
    Convergence,
    Event,
    FieldFinal,
    History,
    HistoryError,
    NodeFinal,
    check,
    compile_plan,
)
from twinmesh.sim._scenario import load_scenario

KEY = ("plant-a/pump-1", "maintenance_date")
CONVERGED = Convergence(converged=True, seconds_after_heal=0.5, bound_seconds=9.0)


def ctx(*dots: str) -> str:
    c = CausalContext({}, [])
    for d in dots:
        r, _, k = d.rpartition(":")
        for i in range(1, int(k) + 1):  # contexts are contiguous per replica
            c.add(Dot(r, i))
    return encode_context(c)


class Builder:
    def __init__(self) -> None:
        self.h = History()
        self.t = 0.0

    def op(
        self,
        f: str,
        node: str,
        status: str,
        *,
        key: tuple[str, str] = KEY,
        value: Any = None,
        context: str | None = None,
        dot: str | None = None,
        covers: tuple[str, ...] = (),
    ) -> None:
        op = self.h.new_op()
        self.t += 0.1
        common = {"f": f, "process": f"client-{node}", "node": node, "entity": key[0]}
        self.h.add(
            Event(
                op=op,
                type="invoke",
                field=key[1],
                time=self.t,
                value=value,
                context=context,
                covers=covers,
                **common,
            )
        )
        self.t += 0.1
        self.h.add(Event(op=op, type=status, field=key[1], time=self.t, dot=dot, **common))


def final(
    siblings: tuple[tuple[str | None, Any], ...],
    context: str,
    *,
    digest: str = "d1",
    counters: dict[tuple[str, str], int] | None = None,
    logs: dict[tuple[str, str], frozenset[str]] | None = None,
) -> NodeFinal:
    queue = frozenset({KEY}) if len(siblings) > 1 else frozenset()
    return NodeFinal(
        digest=digest,
        fields={KEY: FieldFinal(siblings=siblings, context=context)},
        counters=counters or {},
        logs=logs or {},
        queue=queue,
    )


def failures(outcome: Any) -> dict[str, tuple[str, ...]]:
    return {v.name: v.details for v in outcome.verdicts if not v.ok}


def concurrent_pair() -> Builder:
    b = Builder()
    b.op("write", "plant-a", "ok", value="2030-01-02", context=ctx(), dot="plant-a:1")
    b.op("write", "central", "ok", value="2030-02-01", context=ctx(), dot="central:1")
    return b


def test_a_correct_history_passes() -> None:
    b = concurrent_pair()
    sib = (("plant-a:1", "2030-01-02"), ("central:1", "2030-02-01"))
    both = ctx("plant-a:1", "central:1")
    out = check(b.h, {"plant-a": final(sib, both), "central": final(sib, both)}, CONVERGED)
    assert out.ok, failures(out)


def test_planted_lost_write_is_reported() -> None:
    b = Builder()
    b.op("write", "plant-a", "ok", value="2030-01-02", context=ctx(), dot="plant-a:1")
    # central never received it: neither in its context nor its value.
    out = check(
        b.h,
        {
            "plant-a": final(((None, "2030-01-02"),), ctx("plant-a:1")),
            "central": final((), ctx(), digest="d2"),
        },
        CONVERGED,
    )
    bad = failures(out)
    assert "no-lost-writes" in bad
    assert any("never arrived" in d for d in bad["no-lost-writes"])


def test_planted_overwritten_value_nobody_saw_is_a_lost_write() -> None:
    b = Builder()
    b.op("write", "plant-a", "ok", value="2030-01-02", context=ctx(), dot="plant-a:1")
    # The context says it arrived, but the value shown is something no write put there.
    out = check(b.h, {"plant-a": final(((None, "1999-01-01"),), ctx("plant-a:1"))}, CONVERGED)
    bad = failures(out)
    assert any("lost write" in d for d in bad["no-lost-writes"])


def test_planted_false_conflict_is_reported() -> None:
    b = Builder()
    b.op("write", "plant-a", "ok", value="2030-01-02", context=ctx(), dot="plant-a:1")
    # central read plant-a's write before writing: its write overwrites it.
    b.op("write", "central", "ok", value="2030-02-01", context=ctx("plant-a:1"), dot="central:1")
    sib = (("plant-a:1", "2030-01-02"), ("central:1", "2030-02-01"))
    out = check(b.h, {"central": final(sib, ctx("plant-a:1", "central:1"))}, CONVERGED)
    bad = failures(out)
    assert "conflicts-exact" in bad
    assert any("false conflict" in d for d in bad["conflicts-exact"])
    assert "no-lost-writes" not in bad


def test_the_same_overwrite_without_a_sibling_passes() -> None:
    b = Builder()
    b.op("write", "plant-a", "ok", value="2030-01-02", context=ctx(), dot="plant-a:1")
    b.op("write", "central", "ok", value="2030-02-01", context=ctx("plant-a:1"), dot="central:1")
    out = check(
        b.h, {"central": final(((None, "2030-02-01"),), ctx("plant-a:1", "central:1"))}, CONVERGED
    )
    assert out.ok, failures(out)


def test_planted_missed_conflict_is_reported() -> None:
    b = concurrent_pair()
    # Both arrived, but only one value is shown: the concurrent pair was not queued.
    out = check(
        b.h, {"central": final(((None, "2030-02-01"),), ctx("plant-a:1", "central:1"))}, CONVERGED
    )
    bad = failures(out)
    assert "conflicts-exact" in bad
    assert any("missed conflict" in d for d in bad["conflicts-exact"])


def test_resolution_must_close_what_it_covered() -> None:
    b = concurrent_pair()
    both = ctx("plant-a:1", "central:1")
    b.op(
        "resolve",
        "central",
        "ok",
        value="2030-01-15",
        context=both,
        dot="central:2",
        covers=("plant-a:1", "central:1"),
    )
    closed = final(((None, "2030-01-15"),), ctx("plant-a:1", "central:2"))
    assert check(b.h, {"central": closed}, CONVERGED).ok
    still_open = final(
        (("plant-a:1", "2030-01-02"), ("central:2", "2030-01-15")), ctx("plant-a:1", "central:2")
    )
    bad = failures(check(b.h, {"central": still_open}, CONVERGED))
    assert "resolutions" in bad


def test_unknown_write_may_take_effect_once_but_not_twice() -> None:
    b = Builder()
    b.op("write", "plant-a", "ok", value="2030-01-02", context=ctx(), dot="plant-a:1")
    b.op("write", "plant-a", "info", value="2030-01-03", context=ctx("plant-a:1"))
    took = final(((None, "2030-01-03"),), ctx("plant-a:2"))
    out = check(b.h, {"plant-a": took}, CONVERGED)
    assert out.ok, failures(out)
    assert out.unknown == {"total": 1, "took_effect": 1, "did_not": 0}
    did_not = check(b.h, {"plant-a": final(((None, "2030-01-02"),), ctx("plant-a:1"))}, CONVERGED)
    assert did_not.ok and did_not.unknown["did_not"] == 1
    twice = final(((None, "2030-01-03"),), ctx("plant-a:3"))
    bad = failures(check(b.h, {"plant-a": twice}, CONVERGED))
    assert "unknown-outcomes" in bad


def test_an_unknown_write_of_a_new_epoch_counts_for_its_node() -> None:
    """After kill -9 a node writes as a new epoch's actor (``plant-a~1``): an
    unknown write that took effect there is plant-a's, once."""
    b = Builder()
    b.op("write", "plant-a", "ok", value="2030-01-02", context=ctx(), dot="plant-a:1")
    b.op("write", "plant-a", "info", value="2030-01-03", context=ctx("plant-a:1"))
    took = final(((None, "2030-01-03"),), ctx("plant-a:1", "plant-a~1:1"))
    out = check(b.h, {"plant-a": took}, CONVERGED)
    assert out.ok, failures(out)
    assert out.unknown == {"total": 1, "took_effect": 1, "did_not": 0}
    # Written blind, it stands beside the acknowledged write: its sibling is plant-a's.
    blind = Builder()
    blind.op("write", "plant-a", "ok", value="2030-01-02", context=ctx(), dot="plant-a:1")
    blind.op("write", "plant-a", "info", value="2030-01-03", context=ctx())
    sib = (("plant-a:1", "2030-01-02"), ("plant-a~1:1", "2030-01-03"))
    shown = final(sib, ctx("plant-a:1", "plant-a~1:1"))
    out = check(blind.h, {"plant-a": shown}, CONVERGED)
    assert out.ok, failures(out)
    twice = final(((None, "2030-01-03"),), ctx("plant-a:1", "plant-a~1:2"))
    assert "unknown-outcomes" in failures(check(b.h, {"plant-a": twice}, CONVERGED))


def test_counters_and_logs() -> None:
    b = Builder()
    ck, lk = ("plant-a/pump-1", "starts"), ("plant-a/pump-1", "alerts")
    b.op("increment", "plant-a", "ok", key=ck, value=1)
    b.op("increment", "central", "ok", key=ck, value=1)
    b.op("increment", "central", "info", key=ck, value=1)
    b.op("append", "plant-a", "ok", key=lk, value="e1")
    b.op("append", "central", "info", key=lk, value="e2")
    good = NodeFinal(digest="d", fields={}, counters={ck: 3}, logs={lk: frozenset({"e1", "e2"})})
    assert check(b.h, {"a": good, "b": good}, CONVERGED).ok
    lost = NodeFinal(digest="d", fields={}, counters={ck: 1}, logs={lk: frozenset({"e2"})})
    bad = failures(check(b.h, {"a": lost}, CONVERGED))
    assert "counters" in bad and "no-lost-writes" in bad
    invented = NodeFinal(digest="d", fields={}, counters={ck: 4}, logs={lk: frozenset({"e1", "x"})})
    bad = failures(check(b.h, {"a": invented}, CONVERGED))
    assert "counters" in bad and "unknown-outcomes" in bad


def test_divergent_digests_and_slow_convergence_fail() -> None:
    b = concurrent_pair()
    sib = (("plant-a:1", "2030-01-02"), ("central:1", "2030-02-01"))
    both = ctx("plant-a:1", "central:1")
    finals = {"a": final(sib, both, digest="x"), "b": final(sib, both, digest="y")}
    slow = Convergence(converged=True, seconds_after_heal=20.0, bound_seconds=9.0)
    bad = failures(check(b.h, finals, slow))
    assert "convergence" in bad and "liveness" in bad


def test_malformed_histories_are_refused() -> None:
    h = History()
    common = {"f": "write", "process": "c", "node": "n", "entity": "e", "field": "f", "time": 0.0}
    h.add(Event(op=1, type="ok", **common))
    with pytest.raises(HistoryError, match="before it is invoked"):
        h.ops()
    h = History([Event(op=1, type="invoke", **common), Event(op=1, type="bogus", **common)])
    with pytest.raises(HistoryError, match="unknown event type"):
        h.ops()
    # An invocation without a completion may have happened: it counts as unknown.
    (op,) = History([Event(op=1, type="invoke", **common)]).ops()
    assert op.status == "info"


def test_history_round_trips_through_jsonl(tmp_path: Any) -> None:
    b = concurrent_pair()
    b.h.save(tmp_path / "h.jsonl")
    again = History.load(tmp_path / "h.jsonl")
    assert [e.to_json() for e in again] == [e.to_json() for e in b.h]


def test_plan_uses_the_simulators_fault_shapes() -> None:
    sc = load_scenario("scenarios/crash-during-sync.toml")
    plan = compile_plan(sc, duration=20.0, seed=sc.seed, min_period=1.0)
    kinds = [s.kind for s in plan.steps]
    assert kinds.count("crash") == 3 and kinds.count("restart") == 3
    isolate = next(r for r in plan.records if r.kind == "isolate")
    assert isolate.detail == "plant-a cut off"
    assert isolate.start == pytest.approx(300 * plan.scale)
    cut = next(s for s in plan.steps if s.kind == "links")
    assert {name for name, f in cut.links if f["down"]} == {
        f"{a}->{b}" for a in plan.nodes for b in plan.nodes if a != b and "plant-a" in (a, b)
    }
    again = compile_plan(sc, duration=20.0, seed=sc.seed, min_period=1.0)
    assert again.steps == plan.steps
    ring = load_scenario("scenarios/majorities-ring.toml")
    p1 = compile_plan(ring, duration=20.0, seed=3, min_period=1.0)
    p2 = compile_plan(ring, duration=20.0, seed=4, min_period=1.0)
    assert p1.steps != p2.steps  # a different seed draws a different ring
