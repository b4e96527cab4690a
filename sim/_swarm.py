"""Swarm mode: every seed draws its own fault mix.

Swarm testing (Groce et al., "Swarm Testing", ISSTA 2012) switches each
kind of fault on or off at random per run instead of running every fault at
a fixed low rate everywhere: a run with only reordering and tiny messages
reaches corners that a run drowning in every fault at once never does.
TigerBeetle's VOPR draws its network and storage fault probabilities from
the seed in the same way. The draw uses its own PRNG stream, so the base
scenario's faults and the draw are both reproducible from the seed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from typing import Any

from ._scenario import OP_KINDS, FaultSpec, Scenario, parse_scenario

__all__ = ["DEFAULT_SWARM_SCENARIO", "SwarmDraw", "default_swarm_scenario", "draw_swarm"]

#: The base of ``twinmesh sim swarm`` without ``--scenario``: small and short,
#: so hundreds of seeds run in a minute or two.
DEFAULT_SWARM_SCENARIO = """
[scenario]
name = "swarm"
description = "three plants and central, two simulated minutes; faults drawn per seed"
duration = "2m"
quick_scale = 1.0

[fleet]
plants = ["plant-a", "plant-b", "plant-c"]
central = "central"
assets_per_plant = 1

[sync]
gossip_interval = "1s"
reply_timeout = "3s"
backoff_max = "20s"

[workload]
rate = "1/4s"
central_rate = "1/4s"
think_time = "10s"

[[workload.contested]]
asset = "plant-a/pump-1"
field = "maintenance_date"
writers = ["plant-a", "plant-b", "central"]
every = "15s"

[liveness]
timeout = "10m"
"""


def default_swarm_scenario() -> Scenario:
    return parse_scenario(DEFAULT_SWARM_SCENARIO, "<built-in swarm scenario>")


@dataclass(frozen=True, slots=True, kw_only=True)
class SwarmDraw:
    loss: float
    duplicate: float
    reorder: float
    queue: int | None
    tail_factor: float
    fanout: int
    max_message_bytes: int
    max_batch_bytes: int
    evict_after: float
    faults: tuple[str, ...]
    mix: dict[str, float]

    def describe(self) -> dict[str, Any]:
        return {
            "loss": round(self.loss, 4),
            "duplicate": round(self.duplicate, 4),
            "reorder": round(self.reorder, 4),
            "queue": self.queue,
            "tail_factor": self.tail_factor,
            "fanout": self.fanout,
            "max_message_bytes": self.max_message_bytes,
            "max_batch_bytes": self.max_batch_bytes,
            "evict_after": round(self.evict_after, 1),
            "faults": list(self.faults),
            "mix": {k: round(v, 2) for k, v in self.mix.items()},
        }


_PARTITIONS = (
    "halves",
    "isolate",
    "majorities-ring",
    "bridge",
    "one-way",
    "flapping",
    "swizzle",
    "clog",
)


def _maybe(rng: random.Random, p: float = 0.5) -> bool:
    return rng.random() < p


def draw_swarm(base: Scenario, rng: random.Random) -> tuple[Scenario, SwarmDraw]:
    nodes = base.fleet.nodes
    d = base.duration
    loss = rng.uniform(0.0, 0.2) if _maybe(rng) else 0.0
    duplicate = rng.uniform(0.0, 0.15) if _maybe(rng) else 0.0
    reorder = rng.uniform(0.0, 0.3) if _maybe(rng) else 0.0
    queue = rng.randint(2, 30) if _maybe(rng, 0.25) else None
    tail_factor = rng.choice((1.0, 1.0, 3.0, 10.0))
    profiles = {}
    for name, p in base.links.profiles.items():
        changes: dict[str, Any] = {
            "loss": max(p.loss, loss),
            "duplicate": max(p.duplicate, duplicate),
            "reorder": max(p.reorder, reorder),
            "tail_scale": p.tail_scale * tail_factor,
            "max_latency": None if p.max_latency is None else p.max_latency * tail_factor,
        }
        if queue is not None:
            changes["queue"] = min(p.queue, queue)
        profiles[name] = replace(p, **changes)
    sync = base.sync
    fanout = rng.randint(1, 3)
    max_message_bytes = rng.choice((sync.max_message_bytes, 8192, 3000))
    max_batch_bytes = rng.choice((sync.max_batch_bytes, 1024, 300))
    evict_after = rng.uniform(10.0, d / 2) if _maybe(rng, 0.3) else sync.evict_after
    sync = replace(
        sync,
        fanout=fanout,
        max_message_bytes=max_message_bytes,
        max_batch_bytes=max_batch_bytes,
        evict_after=evict_after,
    )
    faults: list[FaultSpec] = []
    for i in range(rng.randint(0, 4)):
        kind = rng.choice(_PARTITIONS)
        at = rng.uniform(0.0, 0.8 * d)
        span = rng.uniform(2.0, 0.5 * d)
        where = f"swarm[{i}]"
        if kind == "isolate":
            faults.append(
                FaultSpec(kind=kind, at=at, duration=span, plant=rng.choice(nodes), where=where)
            )
        elif kind == "one-way":
            src, dst = rng.sample(list(nodes), 2)
            faults.append(FaultSpec(kind=kind, at=at, duration=span, src=src, dst=dst, where=where))
        elif kind == "flapping":
            a, b = rng.sample(list(nodes), 2)
            links: dict[str, Any] = {"between": (a, b)} if _maybe(rng) else {"plant": a}
            faults.append(
                FaultSpec(
                    kind=kind,
                    at=at,
                    duration=span,
                    down=rng.uniform(1.0, 15.0),
                    up=rng.uniform(1.0, 15.0),
                    where=where,
                    **links,
                )
            )
        elif kind == "swizzle":
            faults.append(
                FaultSpec(kind=kind, at=at, duration=span, step=rng.uniform(0.5, 5.0), where=where)
            )
        elif kind == "clog":
            a, b = rng.sample(list(nodes), 2)
            faults.append(FaultSpec(kind=kind, at=at, duration=span, between=(a, b), where=where))
        else:
            faults.append(FaultSpec(kind=kind, at=at, duration=span, where=where))
    for i in range(rng.choice((0, 0, 1, 2))):
        faults.append(
            FaultSpec(
                kind="crash",
                at=rng.uniform(0.0, 0.9 * d),
                duration=rng.uniform(1.0, 30.0),
                plant=rng.choice(nodes),
                where=f"swarm-crash[{i}]",
            )
        )
    # A Byzantine relay (sim/_byzantine.py), drawn from a stream of its own
    # (seeded by one draw, so the draws above stay what they were per seed).
    liar_rng = random.Random(rng.random())
    if _maybe(liar_rng, 0.3):
        faults.append(
            FaultSpec(
                kind="byzantine",
                at=liar_rng.uniform(0.0, 0.6 * d),
                duration=liar_rng.uniform(5.0, 0.4 * d),
                plant=liar_rng.choice(nodes),
                where="swarm-byzantine",
            )
        )
    for node in nodes:
        if _maybe(rng, 0.3):
            faults.append(
                FaultSpec(
                    kind="clock",
                    at=0.0,
                    plant=node,
                    skew=rng.uniform(-3600.0, 3600.0),
                    where="swarm-clock",
                )
            )
        if _maybe(rng, 0.1):
            faults.append(
                FaultSpec(
                    kind="clock-jump",
                    at=rng.uniform(0.0, d),
                    plant=node,
                    by=rng.uniform(-600.0, 600.0),
                    where="swarm-jump",
                )
            )
    mix = {k: (rng.uniform(0.0, 10.0) if _maybe(rng, 0.8) else 0.0) for k in OP_KINDS}
    if not any(mix.values()):
        mix["shared"] = 1.0
    draw = SwarmDraw(
        loss=loss,
        duplicate=duplicate,
        reorder=reorder,
        queue=queue,
        tail_factor=tail_factor,
        fanout=fanout,
        max_message_bytes=max_message_bytes,
        max_batch_bytes=max_batch_bytes,
        evict_after=evict_after,
        faults=tuple(f"{f.kind}@{f.at:.0f}s+{f.duration:.0f}s" for f in faults),
        mix=mix,
    )
    scenario = replace(
        base,
        links=replace(base.links, profiles=profiles),
        sync=sync,
        faults=base.faults + tuple(faults),
        workload=replace(base.workload, mix=mix),
    )
    return scenario, draw
