"""twinmesh.sim — a deterministic partition simulator driving real sync engines.

See ARCHITECTURE.md, "Simulator". One master seed fixes everything: the
network, the workload, the faults and every engine draw from their own
PRNG streams derived from it, and the trace hash of a run is the same every
time the seed is run.
"""

from ._checkers import CHECKERS, Findings, Verdict
from ._loop import EventLoop
from ._network import LinkProfile, Network
from ._oracle import Oracle
from ._report import result_json, svg_timeline, text_report
from ._rng import Rngs, derive_seed
from ._runner import EPOCH, RunResult, Simulation, VerifyMemo, run_scenario
from ._scenario import (
    FaultSpec,
    Scenario,
    ScenarioError,
    load_scenario,
    parse_scenario,
)
from ._swarm import default_swarm_scenario, draw_swarm

__all__ = [
    "CHECKERS",
    "EPOCH",
    "EventLoop",
    "FaultSpec",
    "Findings",
    "LinkProfile",
    "Network",
    "Oracle",
    "Rngs",
    "RunResult",
    "Scenario",
    "ScenarioError",
    "Simulation",
    "Verdict",
    "VerifyMemo",
    "default_swarm_scenario",
    "derive_seed",
    "draw_swarm",
    "load_scenario",
    "parse_scenario",
    "result_json",
    "run_scenario",
    "svg_timeline",
    "text_report",
]
