"""Nemeses: partitions, clogs, degraded links, crashes and clocks on a schedule.

The partition shapes are Jepsen's (``jepsen.nemesis``): random halves,
isolating one node, *majorities ring* (every node sees a majority, no two
see the same one), *bridge* (two halves joined through one node), one-way
cuts and flapping. *Swizzle* is FoundationDB's: clog links one at a time,
then unclog them in a different order, which walks the fleet through many
partial partitions. A cut drops messages, a clog holds them until it lifts.
Random shapes draw from the fault PRNG at the moment the fault starts.

Each fault's start and end go into the trace hash and into a timeline the
report draws.

A crash always lands inside a commit window (issue 17): a write joined in
memory whose commit has not happened, a read that has handed out a context
covering it; after the restart the replica writes the field again
(acknowledged) and then writes back with that old context. The
``crash-window`` checker requires the acknowledged write to survive.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from ._loop import EventLoop
from ._network import Network
from ._scenario import FaultSpec
from ._trace import Trace

__all__ = [
    "FaultController",
    "FaultHost",
    "FaultRecord",
    "bridge",
    "groups_cut",
    "isolate",
    "majorities_ring",
    "random_halves",
]

LinkKey = tuple[str, str]


# ------------------------------------------------------------------ shapes


def isolate(node: str, nodes: Iterable[str]) -> list[LinkKey]:
    others = [n for n in nodes if n != node]
    return [(node, n) for n in others] + [(n, node) for n in others]


def groups_cut(groups: Iterable[Iterable[str]]) -> list[LinkKey]:
    """Every link between two different groups, both ways."""
    gs = [list(g) for g in groups]
    out: list[LinkKey] = []
    for i, a in enumerate(gs):
        for j, b in enumerate(gs):
            if i != j:
                out.extend((x, y) for x in a for y in b)
    return out


def random_halves(rng: random.Random, nodes: Iterable[str]) -> list[list[str]]:
    shuffled = list(nodes)
    rng.shuffle(shuffled)
    half = len(shuffled) // 2
    return [sorted(shuffled[:half]), sorted(shuffled[half:])]


def majorities_ring(rng: random.Random, nodes: Iterable[str]) -> list[LinkKey]:
    """Nodes on a shuffled ring; each accepts only from the majority window
    around itself, so every node sees a majority but no two the same one."""
    ring = list(nodes)
    rng.shuffle(ring)
    n = len(ring)
    majority = n // 2 + 1
    lo = -((majority - 1) // 2)
    window = range(lo, lo + majority)
    out: list[LinkKey] = []
    for i, dst in enumerate(ring):
        accepted = {ring[(i + d) % n] for d in window}
        out.extend((src, dst) for src in ring if src not in accepted)
    return out


def bridge(
    rng: random.Random, nodes: Iterable[str], via: str | None
) -> tuple[str, list[list[str]]]:
    """(bridge node, [half A, half B]): A and B are cut apart, the bridge sees both."""
    rest = [n for n in nodes if n != via]
    rng.shuffle(rest)
    if via is None:
        via = rest.pop()
    half = len(rest) // 2
    return via, [sorted(rest[:half]), sorted(rest[half:])]


# ------------------------------------------------------------------ controller


class FaultHost(Protocol):
    def crash(self, node: str) -> None: ...

    def restart(self, node: str) -> None: ...

    def write_in_flight(self, node: str) -> None:
        """Join a write in memory, leave its commit pending, and let a reader
        take a context covering it (the crash window of issue 17)."""

    def write_back(self, node: str) -> None:
        """After a restart: a new acknowledged write to that field, then a
        write back with the token read before the crash."""

    def set_skew(self, node: str, seconds: float) -> None: ...

    def jump_clock(self, node: str, seconds: float) -> None: ...

    def set_byzantine(self, node: str, lying: bool) -> None: ...


@dataclass(slots=True)
class FaultRecord:
    kind: str
    start: float
    end: float | None
    detail: str
    nodes: tuple[str, ...]


class FaultController:
    def __init__(
        self,
        *,
        loop: EventLoop,
        network: Network,
        rng: random.Random,
        trace: Trace,
        host: FaultHost,
        nodes: tuple[str, ...],
    ) -> None:
        self.loop = loop
        self.network = network
        self.rng = rng
        self.trace = trace
        self.host = host
        self.nodes = nodes
        self.timeline: list[FaultRecord] = []
        self.active = True
        self._ids = 0

    def schedule(self, specs: Iterable[FaultSpec]) -> None:
        for spec in specs:
            self.loop.at(spec.at, self._guard(self._start), spec)

    def stop(self) -> None:
        """The liveness phase: nothing scheduled fires any more; open records close."""
        self.active = False
        for record in self.timeline:
            if record.end is None and record.kind not in ("clock", "clock-jump"):
                record.end = self.loop.now

    def _guard(self, action: Callable[..., None]) -> Callable[..., None]:
        def run(*args: object) -> None:
            if self.active:
                action(*args)

        return run

    def _open(self, kind: str, detail: str, nodes: Iterable[str], end: float | None) -> FaultRecord:
        record = FaultRecord(
            kind=kind, start=self.loop.now, end=end, detail=detail, nodes=tuple(nodes)
        )
        self.timeline.append(record)
        self.trace.record(self.loop.now, "fault", kind, detail)
        return record

    def _close(self, record: FaultRecord) -> None:
        record.end = self.loop.now
        self.trace.record(self.loop.now, "heal", record.kind, record.detail)

    def _links(self, spec: FaultSpec) -> list[LinkKey]:
        if spec.between is not None:
            a, b = spec.between
            return [(a, b), (b, a)]
        if spec.plant is not None:
            return isolate(spec.plant, self.nodes)
        assert spec.src is not None and spec.dst is not None
        return [(spec.src, spec.dst)]

    def _start(self, spec: FaultSpec) -> None:
        kind = spec.kind
        end = self.loop.now + spec.duration
        net = self.network
        if kind in ("isolate", "partition", "halves", "majorities-ring", "bridge", "one-way"):
            if kind == "isolate":
                assert spec.plant is not None
                links, detail, involved = (
                    isolate(spec.plant, self.nodes),
                    f"{spec.plant} cut off",
                    [spec.plant],
                )
            elif kind == "partition" or kind == "halves":
                groups = [list(g) for g in spec.groups] or random_halves(self.rng, self.nodes)
                links = groups_cut(groups)
                detail = " | ".join(",".join(g) for g in groups)
                involved = list(self.nodes)
            elif kind == "majorities-ring":
                links = majorities_ring(self.rng, self.nodes)
                detail, involved = f"{len(links)} one-way cuts", list(self.nodes)
            elif kind == "bridge":
                via, groups = bridge(self.rng, self.nodes, spec.bridge)
                links = groups_cut(groups)
                detail = f"{','.join(groups[0])} | {','.join(groups[1])} via {via}"
                involved = list(self.nodes)
            else:
                assert spec.src is not None and spec.dst is not None
                links, detail, involved = (
                    [(spec.src, spec.dst)],
                    f"{spec.src} -> {spec.dst} lost",
                    [spec.src, spec.dst],
                )
            net.cut(links)
            record = self._open(kind, detail, involved, end)
            self.loop.at(end, self._guard(self._end_cut), links, record)
        elif kind == "clog":
            links = self._links(spec)
            net.clog(links)
            record = self._open(kind, _describe(links), sorted({n for k in links for n in k}), end)
            self.loop.at(end, self._guard(self._end_clog), links, record)
        elif kind == "link":
            links = self._links(spec)
            self._ids += 1
            fid = self._ids
            net.degrade(fid, links, **dict(spec.link_changes))
            changes = ", ".join(f"{k}={v}" for k, v in spec.link_changes)
            record = self._open(
                kind, f"{_describe(links)}: {changes}", sorted({n for k in links for n in k}), end
            )
            self.loop.at(end, self._guard(self._end_link), fid, links, record)
        elif kind == "flapping":
            links = self._links(spec)
            record = self._open(
                kind, f"{_describe(links)} flapping", sorted({n for k in links for n in k}), end
            )
            self._flap(links, True, end, spec, record)
        elif kind == "swizzle":
            pool = list(spec.plants or self.nodes)
            links = [(a, b) for a in pool for b in pool if a != b]
            self.rng.shuffle(links)
            record = self._open(kind, f"{len(links)} links clogged one by one", pool, None)
            for i, key in enumerate(links):
                self.loop.at(self.loop.now + i * spec.step, self._guard(net.clog), [key])
            order = list(links)
            self.rng.shuffle(order)
            start = max(end, self.loop.now + len(links) * spec.step)
            for i, key in enumerate(order):
                self.loop.at(start + i * spec.step, self._guard(net.unclog), [key])
            self.loop.at(start + len(order) * spec.step, self._guard(self._close), record)
        elif kind == "crash":
            assert spec.plant is not None
            # Every crash lands inside a commit window (issue 17): a write is
            # in memory but not durable, and a read has handed out a context
            # covering it; the crash takes the write back. _end_crash writes
            # again and then writes back with that context.
            self.host.write_in_flight(spec.plant)
            self.host.crash(spec.plant)
            record = self._open(kind, f"{spec.plant} crashed", [spec.plant], end)
            self.loop.at(end, self._guard(self._end_crash), spec.plant, record)
        elif kind == "byzantine":
            assert spec.plant is not None
            self.host.set_byzantine(spec.plant, True)
            record = self._open(
                kind, f"{spec.plant} lies in snapshots and digests", [spec.plant], end
            )
            self.loop.at(end, self._guard(self._end_byzantine), spec.plant, record)
        elif kind == "clock":
            assert spec.plant is not None
            self.host.set_skew(spec.plant, spec.skew)
            self._open(kind, f"{spec.plant} clock {spec.skew:+g} s", [spec.plant], None)
        elif kind == "clock-jump":
            assert spec.plant is not None
            self.host.jump_clock(spec.plant, spec.by)
            self._open(kind, f"{spec.plant} clock jumps {spec.by:+g} s", [spec.plant], None)
        else:  # pragma: no cover - the scenario loader refuses unknown kinds
            raise ValueError(f"unknown fault kind {kind!r}")

    def _end_cut(self, links: list[LinkKey], record: FaultRecord) -> None:
        self.network.uncut(links)
        self._close(record)

    def _end_clog(self, links: list[LinkKey], record: FaultRecord) -> None:
        self.network.unclog(links)
        self._close(record)

    def _end_link(self, fid: int, links: list[LinkKey], record: FaultRecord) -> None:
        self.network.restore(fid, links)
        self._close(record)

    def _end_byzantine(self, node: str, record: FaultRecord) -> None:
        self.host.set_byzantine(node, False)
        self._close(record)

    def _end_crash(self, node: str, record: FaultRecord) -> None:
        self.host.restart(node)
        self.host.write_back(node)
        self._close(record)

    def _flap(
        self, links: list[LinkKey], down: bool, end: float, spec: FaultSpec, record: FaultRecord
    ) -> None:
        now = self.loop.now
        if now >= end:
            if not down:  # currently cut: heal for good
                self.network.uncut(links)
            self._close(record)
            return
        if down:
            self.network.cut(links)
            self.trace.record(now, "flap", "down", record.detail)
            span = spec.down * self.rng.uniform(0.5, 1.5)
        else:
            self.network.uncut(links)
            self.trace.record(now, "flap", "up", record.detail)
            span = spec.up * self.rng.uniform(0.5, 1.5)
        self.loop.at(
            min(now + span, end), self._guard(self._flap), links, not down, end, spec, record
        )


def _describe(links: list[LinkKey]) -> str:
    if len(links) == 2 and links[0] == links[1][::-1]:
        return f"{links[0][0]} <-> {links[0][1]}"
    if len(links) == 1:
        return f"{links[0][0]} -> {links[0][1]}"
    nodes = sorted({n for k in links for n in k})
    common = [n for n in nodes if all(n in k for k in links)]
    return f"all links of {common[0]}" if common else f"{len(links)} links"
