"""Compile a scenario's faults into a timed plan of real actions.

The simulator's :class:`~twinmesh.sim._faults.FaultController` already knows
how every fault kind unfolds (which links a majorities ring cuts, when a flap
goes up, in which order a swizzle clogs). Rather than re-implementing that, we
run it once on the simulator's virtual clock against a *recording* network and
host, with the same seeded fault PRNG the simulator would use, and turn what
it did into steps the harness replays in real time: link-proxy fault settings,
``kill -9``, restart, and clock offsets. So ``twinmesh chaos run X.toml
--seed S`` cuts the same shapes at the same (scaled) times as
``twinmesh sim run X.toml --seed S``.

What a TCP proxy cannot do is said, not faked (``Plan.mapping``): a clog (the
simulator holds messages and delivers them on release) becomes a cut; message
loss becomes a connection reset with that probability; duplication, reordering
and queue bounds are not reproduced; a clock jump becomes a restart with the
new offset.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from twinmesh.sim._faults import FaultController, FaultRecord
from twinmesh.sim._loop import EventLoop
from twinmesh.sim._network import LinkProfile
from twinmesh.sim._rng import Rngs
from twinmesh.sim._scenario import Scenario
from twinmesh.sim._trace import Trace

__all__ = ["Plan", "Step", "compile_plan", "link_name", "proxy_faults"]

LinkKey = tuple[str, str]


def link_name(src: str, dst: str) -> str:
    """The fleet's link proxy name for traffic from ``src`` to ``dst``."""
    return f"{src}->{dst}"


def proxy_faults(profile: LinkProfile, *, down: bool) -> dict[str, Any]:
    """The link proxy's fault settings closest to a simulated link profile.

    Latency is the proxy's delay floor; the tail becomes uniform jitter of
    the same scale, capped so latency + jitter stays under ``max_latency``.
    """
    jitter = 0.0 if profile.tail == "none" else profile.tail_scale
    if profile.max_latency is not None:
        jitter = max(0.0, min(jitter, profile.max_latency - profile.latency))
    return {
        "down": down,
        "delay_ms": round(profile.latency * 1000, 3),
        "jitter_ms": round(jitter * 1000, 3),
        "loss": profile.loss,
        "bandwidth_bytes_per_s": None if profile.bandwidth is None else int(profile.bandwidth),
    }


@dataclass(frozen=True, slots=True, kw_only=True)
class Step:
    """One real action at ``at`` seconds after the safety phase starts.

    kind: ``links`` (set proxy faults), ``crash`` (kill -9), ``restart``,
    ``clock`` (restart with a new clock offset).
    """

    at: float
    kind: str
    links: tuple[tuple[str, dict[str, Any]], ...] = ()
    node: str | None = None
    offset: float = 0.0
    detail: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    scenario: Scenario
    duration: float
    scale: float
    nodes: tuple[str, ...]
    initial_links: dict[str, dict[str, Any]]
    initial_offsets: dict[str, float]
    steps: tuple[Step, ...]
    records: tuple[FaultRecord, ...]
    mapping: tuple[str, ...]  # how each fault kind was mapped, and what was not
    status: dict[str, list[tuple[float, str]]] = field(default_factory=dict)


class _RecordingNetwork:
    """Stands in for the simulator's Network: keeps cut/clog counts and
    profile overrides per link, and emits the proxy settings that change."""

    def __init__(self, loop: EventLoop, base: dict[LinkKey, LinkProfile]) -> None:
        self.loop = loop
        self.base = base
        self.cut_n: dict[LinkKey, int] = dict.fromkeys(base, 0)
        self.clog_n: dict[LinkKey, int] = dict.fromkeys(base, 0)
        self.overrides: dict[LinkKey, list[tuple[int, LinkProfile]]] = {k: [] for k in base}
        self.current = {k: self._faults(k) for k in base}
        self.steps: list[Step] = []
        self.used_clog = False

    def _faults(self, key: LinkKey) -> dict[str, Any]:
        profile = self.overrides[key][-1][1] if self.overrides[key] else self.base[key]
        down = self.cut_n[key] > 0 or self.clog_n[key] > 0
        return proxy_faults(profile, down=down)

    def _emit(self, keys: Iterable[LinkKey]) -> None:
        changed = []
        for key in dict.fromkeys(keys):
            now = self._faults(key)
            if now != self.current[key]:
                self.current[key] = now
                changed.append((link_name(*key), now))
        if changed:
            self.steps.append(Step(at=self.loop.now, kind="links", links=tuple(changed)))

    def cut(self, keys: Iterable[LinkKey]) -> None:
        keys = list(keys)
        for key in keys:
            self.cut_n[key] += 1
        self._emit(keys)

    def uncut(self, keys: Iterable[LinkKey]) -> None:
        keys = list(keys)
        for key in keys:
            self.cut_n[key] = max(0, self.cut_n[key] - 1)
        self._emit(keys)

    def clog(self, keys: Iterable[LinkKey]) -> None:
        self.used_clog = True
        keys = list(keys)
        for key in keys:
            self.clog_n[key] += 1
        self._emit(keys)

    def unclog(self, keys: Iterable[LinkKey]) -> None:
        keys = list(keys)
        for key in keys:
            self.clog_n[key] = max(0, self.clog_n[key] - 1)
        self._emit(keys)

    def degrade(self, fault_id: int, keys: Iterable[LinkKey], **changes: Any) -> None:
        keys = list(keys)
        for key in keys:
            self.overrides[key].append((fault_id, replace(self.base[key], **changes)))
        self._emit(keys)

    def restore(self, fault_id: int, keys: Iterable[LinkKey]) -> None:
        keys = list(keys)
        for key in keys:
            self.overrides[key] = [(f, p) for f, p in self.overrides[key] if f != fault_id]
        self._emit(keys)


class _RecordingHost:
    def __init__(self, loop: EventLoop, offsets: dict[str, float]) -> None:
        self.loop = loop
        self.offsets = offsets
        self.initial: dict[str, float] = {}
        self.steps: list[Step] = []

    def crash(self, node: str) -> None:
        self.steps.append(Step(at=self.loop.now, kind="crash", node=node))

    def restart(self, node: str) -> None:
        self.steps.append(Step(at=self.loop.now, kind="restart", node=node))

    def write_in_flight(self, node: str) -> None:
        """Nothing to plan: the simulator's crash window (issue 17) is played
        against a real node by its test hook (tests/test_node_crash_window.py)."""

    def write_back(self, node: str) -> None:
        """Nothing to plan (see :meth:`write_in_flight`)."""

    def set_skew(self, node: str, seconds: float) -> None:
        self.offsets[node] = seconds
        if self.loop.now == 0.0:
            self.initial[node] = seconds  # in the config from the first start
        else:
            self.steps.append(Step(at=self.loop.now, kind="clock", node=node, offset=seconds))

    def jump_clock(self, node: str, seconds: float) -> None:
        self.offsets[node] = self.offsets.get(node, 0.0) + seconds
        self.steps.append(
            Step(at=self.loop.now, kind="clock", node=node, offset=self.offsets[node])
        )


def _mapping_notes(scenario: Scenario, used_clog: bool) -> list[str]:
    notes: list[str] = []
    kinds = sorted({f.kind for f in scenario.faults})
    cut_kinds = [
        k
        for k in kinds
        if k
        in ("isolate", "partition", "halves", "majorities-ring", "bridge", "one-way", "flapping")
    ]
    if cut_kinds:
        notes.append(f"{', '.join(cut_kinds)}: link proxies down (connections reset)")
    if used_clog or any(k in ("clog", "swizzle") for k in kinds):
        notes.append(
            "clog/swizzle: APPROXIMATED as links down — the simulator holds messages and "
            "delivers them on release; a TCP proxy resets them and gossip retries"
        )
    if "crash" in kinds:
        notes.append("crash: kill -9 of the node's process group, restart from its store")
    if "clock" in kinds:
        notes.append("clock: node.clock_offset in the node's config (restart if not at t=0)")
    if "clock-jump" in kinds:
        notes.append(
            "clock-jump: APPROXIMATED as a SIGTERM restart with the jumped clock_offset "
            "(a running process's clock cannot be moved)"
        )
    link_faults = [f for f in scenario.faults if f.kind == "link"]
    profiles = list(scenario.links.profiles.values())
    if link_faults or profiles:
        notes.append(
            "latency: proxy delay floor; tail: uniform jitter of the tail's scale "
            "(APPROXIMATED: the simulator's tail may be exponential)"
        )
    lossy = any(p.loss for p in profiles) or any(
        dict(f.link_changes).get("loss") for f in link_faults
    )
    if lossy:
        notes.append(
            "loss: APPROXIMATED as a connection reset with that probability (a byte pipe "
            "cannot drop a message without corrupting TLS)"
        )
    dup = any(p.duplicate or p.reorder for p in profiles) or any(
        {"duplicate", "reorder", "queue"} & set(dict(f.link_changes)) for f in link_faults
    )
    if dup:
        notes.append(
            "duplicate, reorder, queue: NOT MAPPED on link proxies (TCP delivers once, in "
            "order); tc netem on network namespaces would, see --netns"
        )
    return notes


def _status(
    nodes: tuple[str, ...], steps: list[Step], initial: dict[str, dict[str, Any]]
) -> dict[str, list[tuple[float, str]]]:
    """Per node: (time, "ok" | "partial" | "isolated") whenever it changes."""
    down = {name: bool(f["down"]) for name, f in initial.items()}
    out: dict[str, list[tuple[float, str]]] = {n: [(0.0, "ok")] for n in nodes}

    def state(n: str) -> str:
        mine = [v for k, v in down.items() if n in k.split("->")]
        if mine and all(mine):
            return "isolated"
        return "partial" if any(mine) else "ok"

    for step in steps:
        if step.kind != "links":
            continue
        for name, faults in step.links:
            down[name] = bool(faults["down"])
        for n in nodes:
            s = state(n)
            if out[n][-1][1] != s:
                out[n].append((step.at, s))
    return out


def compile_plan(scenario: Scenario, *, duration: float, seed: int, min_period: float) -> Plan:
    """The real-time plan of ``scenario`` squeezed into ``duration`` seconds.

    ``min_period`` (a few gossip intervals) is the shortest flap or swizzle
    step kept: a link that flaps faster than the nodes gossip tests nothing.
    """
    if scenario.fleet.central not in (None, "central"):
        raise ValueError(
            f"{scenario.path}: the real harness names central ops 'central', "
            f"not {scenario.fleet.central!r}"
        )
    scale = duration / scenario.duration
    sc = scenario.scaled(scale)
    faults = tuple(
        replace(
            f, down=max(f.down, min_period), up=max(f.up, min_period), step=max(f.step, min_period)
        )
        for f in sc.faults
    )
    sc = replace(sc, faults=faults)
    nodes = sc.fleet.nodes
    base = {(a, b): sc.links.profile_for(sc.fleet, a, b) for a in nodes for b in nodes if a != b}
    loop = EventLoop()
    network = _RecordingNetwork(loop, base)
    offsets: dict[str, float] = {}
    host = _RecordingHost(loop, offsets)
    # The simulator's own stream name: same seed, same shapes and flap times.
    rng = Rngs(seed).get("faults")
    controller = FaultController(
        loop=loop,
        network=network,  # type: ignore[arg-type]
        rng=rng,
        trace=Trace(),
        host=host,
        nodes=nodes,
    )
    controller.schedule(sc.faults)
    loop.run_until(sc.duration)
    controller.stop()
    initial = {link_name(*k): proxy_faults(p, down=False) for k, p in base.items()}
    steps = sorted(
        [s for s in network.steps + host.steps if s.at < sc.duration],
        key=lambda s: s.at,
    )
    return Plan(
        scenario=sc,
        duration=sc.duration,
        scale=scale,
        nodes=nodes,
        initial_links=initial,
        initial_offsets=dict(host.initial),
        steps=tuple(steps),
        records=tuple(controller.timeline),
        mapping=tuple(_mapping_notes(scenario, network.used_clog)),
        status=_status(nodes, steps, initial),
    )


def round_goal(n: int) -> int:
    return math.ceil(math.log2(max(n, 2))) + 2
