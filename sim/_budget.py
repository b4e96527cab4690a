"""A run's event budget: the most events an honest fleet can need.

Why a budget: a broken core can livelock without ever failing a safety
checker — two engines re-requesting, forever, a batch neither holds — and a
run on a virtual clock then takes wall-clock hours to reach its liveness
timeout, because virtual time advances only as fast as the storm lets it.
A timeout kills such a run from outside and says nothing about why. Counting
events is the simulator's own measure of work (FoundationDB's simulator
stops a test that makes no progress; Jepsen's Maelstrom bounds a run by
message count), and its exhaustion is a *liveness* failure: the fleet did
work without converging.

The budget is derived from the scenario, never a constant per scenario:
every node starts a gossip round each ``gossip_interval`` (minus jitter) for
the whole safety phase plus the full liveness timeout; a round costs at most
one timer and, per peer of the fanout, a digest, a reply, the deltas, a
chunk request and a reply timer, each possibly duplicated by the link; every
write is one workload event and travels to every other node in batches of at
most ``max_batch_deltas`` (or as many small deltas as ``max_batch_bytes``
holds), possibly from every node; faults and the runner's check ticks add
their own events. That estimate already assumes the worst case everywhere
(no run converges early, every round is full); ``FACTOR`` on top leaves room
for what it cannot count (re-sent chunks after a timeout, snapshots). Honest
runs use a few percent of it (``tests/test_sim_budget.py`` measures this on
every scenario file and swarm draw).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ._scenario import Scenario

__all__ = ["FACTOR", "EventBudget", "event_budget", "spin_message"]

#: Multiplier on the worst-case estimate.
FACTOR = 4
#: The smallest delta we count on fitting in a batch, bytes (a real delta,
#: signature included, is several times this: a generous, larger budget).
_MIN_DELTA_BYTES = 64
#: Events per round and peer: digest, reply, deltas, "more" request, reply timer.
_EVENTS_PER_EXCHANGE = 5
#: The runner's own ticks (lag samples, checks, causal checks), a generous allowance.
_RUNNER_TICKS = 1000


@dataclass(frozen=True, slots=True, kw_only=True)
class EventBudget:
    events: int  # the budget: FACTOR x estimate
    estimate: int
    nodes: int
    span: float  # virtual seconds: safety + liveness timeout
    rounds: int  # gossip rounds per node over the span
    gossip_events: int
    writes: int
    write_events: int
    fault_events: int

    def explain(self) -> str:
        return (
            f"{FACTOR} x ({self.nodes} nodes x {self.rounds} rounds in {self.span:g} s "
            f"= {self.gossip_events} gossip events, {self.writes} writes = "
            f"{self.write_events} write events, {self.fault_events} fault events, "
            f"{_RUNNER_TICKS} runner ticks)"
        )


def event_budget(sc: Scenario) -> EventBudget:
    """The event budget of one run of ``sc`` (already scaled and drawn)."""
    nodes = len(sc.fleet.nodes)
    sync = sc.sync
    span = sc.duration + sc.liveness.timeout
    interval = sync.gossip_interval * max(0.5, 1.0 - sync.jitter)
    rounds = math.ceil(span / interval) + 1
    profiles = list(sc.links.profiles.values())
    dup = 1.0 + max([p.duplicate for p in profiles] + [0.0])
    dup += max([float(dict(f.link_changes).get("duplicate", 0.0)) for f in sc.faults] + [0.0])
    fanout = min(sync.fanout, max(nodes - 1, 1))
    per_round = 1 + math.ceil(fanout * _EVENTS_PER_EXCHANGE * dup)
    gossip_events = nodes * rounds * per_round

    wl = sc.workload
    plants = len(sc.fleet.plants)
    ops = (wl.rate * plants + wl.central_rate) * sc.duration
    for c in wl.contested:
        until = sc.duration if c.until is None else min(c.until, sc.duration)
        ops += len(c.writers) * max(0.0, until - c.start) / c.every
    writes = math.ceil(ops) + sum(len(sc.fleet.assets(p)) for p in sc.fleet.plants)  # + creates
    per_batch = max(1, min(sync.max_batch_deltas, sync.max_batch_bytes // _MIN_DELTA_BYTES))
    # Each write: its own event (and a stale write's second), then from every
    # node to every other in batches, each batch a message and its request.
    transfers = writes * nodes * max(nodes - 1, 1)
    write_events = 2 * writes + math.ceil(2 * dup * transfers / per_batch)

    fault_events = 0
    for f in sc.faults:
        period = max(min(f.down, f.up, f.step), sync.gossip_interval)
        length = f.duration or sc.duration
        fault_events += 4 + 2 * math.ceil(length / period) * max(nodes, 2)
    estimate = gossip_events + write_events + fault_events + _RUNNER_TICKS
    return EventBudget(
        events=FACTOR * estimate,
        estimate=estimate,
        nodes=nodes,
        span=span,
        rounds=rounds,
        gossip_events=gossip_events,
        writes=writes,
        write_events=write_events,
        fault_events=fault_events,
    )


def spin_message(
    budget: EventBudget,
    *,
    phase: str,
    now: float,
    heal_at: float | None,
    phase_events: int,
    received: dict[str, int],
    in_flight: dict[tuple[str, str, str], int],
) -> str:
    """The liveness failure of a run that used up its budget, naming what spun:
    the engines that received the most messages in the phase that spun, and
    the links and kinds of the messages still in flight when it stopped."""
    when = f"t={now:.3f}" + ("" if heal_at is None else f", {now - heal_at:.3f} s after the heal")
    total = sum(received.values())
    share = total / phase_events if phase_events else 0.0
    busiest = sorted(received.items(), key=lambda kv: (-kv[1], kv[0]))[:3]
    engines = ", ".join(f"{n} {k:,}" for n, k in busiest if k)
    flights = sorted(in_flight.items(), key=lambda kv: (-kv[1], kv[0]))[:3]
    pending = ", ".join(f"{s}->{d} {kind} x{k}" for (s, d, kind), k in flights)
    return (
        f"event budget exhausted in the {phase} phase at {when}, not converged: "
        f"{budget.events:,} events = {budget.explain()}; of the {phase_events:,} events "
        f"of that phase {total:,} ({share:.0%}) were messages into SyncEngine.receive, "
        f"most at {engines or 'none'}; "
        f"in flight at the stop: {sum(in_flight.values()):,} ({pending or 'none'})"
    )
