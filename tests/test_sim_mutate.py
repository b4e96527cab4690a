"""``twinmesh sim mutate``: the mutants still apply, a stale one fails by name,
and a handful of core mutants are killed by the simulator's checkers alone
(the short CI run of the mutation table; the full one is ``twinmesh sim mutate``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from twinmesh.sim._mutate import (
    MUTANTS,
    Mutant,
    MutantError,
    Run,
    apply_mutant,
    check_mutants,
    copy_tree,
    run_mutants,
    source_root,
)

ROOT = source_root()
SCEN = ROOT / "scenarios"


def test_every_mutant_applies_to_the_current_tree_exactly_once() -> None:
    # After a merge moves a line, this names the mutant to rewrite.
    assert check_mutants(ROOT) == []
    assert len(MUTANTS) >= 11
    assert all(m.file.split("/")[0] in ("crdt", "sync") for m in MUTANTS)


def test_a_stale_snippet_fails_loudly_by_name(tmp_path: Path) -> None:
    tree = copy_tree(ROOT, tmp_path)
    stale = Mutant(
        name="gone-snippet",
        file="crdt/_clocks.py",
        original="this line is not in the file\n",
        replacement="x\n",
        bug="",
    )
    with pytest.raises(MutantError, match=r"gone-snippet.*not found"):
        apply_mutant(tree, stale)
    with pytest.raises(MutantError, match="gone-snippet"):
        run_mutants([stale], [], root=ROOT)
    with pytest.raises(MutantError, match="not under crdt/ or sync/"):
        Mutant(name="x", file="sim/_oracle.py", original="a", replacement="b", bug="")


def test_the_copy_is_mutated_and_the_checkout_is_not(tmp_path: Path) -> None:
    m = next(x for x in MUTANTS if x.name == "vv-compare-concurrent-as-after")
    tree = copy_tree(ROOT, tmp_path)
    apply_mutant(tree, m)
    assert m.replacement in (tree / m.file).read_text()
    assert m.original in (ROOT / m.file).read_text()


CI_MUTANTS = (
    "vv-compare-concurrent-as-after",
    "conflicts-hide-equal-values",
    "mv-merge-readds-overwritten",
    "policy-home-wins-by-author",
    "engine-duplicate-check-off-by-one",
    "no-epoch",
)


def test_a_handful_of_mutants_are_killed_by_the_simulator_alone() -> None:
    plan = [
        Run(scenario=str(SCEN / "clock-skew.toml"), seed=23, scale=0.1, swarm=False),
        Run(scenario=str(SCEN / "crash-during-sync.toml"), seed=19, scale=0.2, swarm=False),
        Run(scenario=str(SCEN / "bridge.toml"), seed=5, scale=0.1, swarm=False),
        Run(scenario=None, seed=1, scale=0.5, swarm=True),
    ]
    chosen = [m for m in MUTANTS if m.name in CI_MUTANTS]
    results = run_mutants(chosen, plan, root=ROOT, timeout=120.0)
    baseline, *rest = results
    assert baseline.kills == 0, baseline
    table = {r.name: r for r in rest}
    assert set(table) == set(CI_MUTANTS)
    survivors = [r.name for r in rest if not r.killed]
    assert not survivors, survivors
    # Killed by checkers, not by the simulator crashing on the mutant.
    assert all(r.by and r.error is None for r in rest), rest
    assert "vv-order" in table["vv-compare-concurrent-as-after"].by
    assert "conflict-pairs" in table["conflicts-hide-equal-values"].by
    assert "crash-window" in table["no-epoch"].by
