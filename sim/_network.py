"""A simulated network: one queue per directed link, with faults.

Each directed link has a profile — minimum delay plus a random tail
(exponential or uniform, optionally capped), loss, duplication, reordering,
a bounded queue and an optional bandwidth — and two fault counters: *cut*
(messages are dropped, Jepsen's iptables partitions) and *clog* (messages are
held and released when the clog lifts, FoundationDB's ``clogInterface``).
Counters, not flags, because fault windows overlap: a link is cut while any
fault cuts it.

Without the reorder fault a link is FIFO, like one TCP connection: a message
never overtakes the one sent before it. A reordered message takes an extra
random delay and is exempt from FIFO, so it lands behind later ones. A
duplicated message is delivered twice: half the time back to back (the
runner checks the second delivery changed nothing), half the time as an
independent late copy (what a retransmitting proxy produces).

All randomness comes from the network's own PRNG stream; every delivery and
drop goes into the trace hash with the message bytes.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from ._loop import EventLoop
from ._trace import Trace

__all__ = ["Link", "LinkProfile", "Network", "NetworkStats"]

LinkKey = tuple[str, str]


@dataclass(frozen=True, slots=True, kw_only=True)
class LinkProfile:
    latency: float = 0.040  # seconds, the minimum one-way delay
    tail: str = "exponential"  # "exponential" | "uniform" | "none"
    tail_scale: float = 0.030  # exponential mean / uniform width, seconds
    max_latency: float | None = 0.200  # cap on latency + tail
    loss: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    queue: int = 10_000  # messages in flight (or held) on the link; more are dropped
    bandwidth: float | None = None  # bytes per second; None: unlimited

    def clean(self) -> LinkProfile:
        """The same link with every probabilistic fault switched off."""
        return replace(self, loss=0.0, duplicate=0.0, reorder=0.0)


@dataclass(slots=True)
class NetworkStats:
    sent: int = 0
    bytes_sent: int = 0
    delivered: int = 0
    bytes_delivered: int = 0
    duplicated: int = 0
    reordered: int = 0
    held: int = 0
    dropped: Counter[str] = field(default_factory=Counter)


@dataclass(slots=True)
class Link:
    base: LinkProfile
    overrides: list[tuple[int, LinkProfile]]
    cut: int = 0
    clog: int = 0
    in_flight: int = 0
    last_arrival: float = 0.0
    busy_until: float = 0.0
    held: list[tuple[float, bool, bytes, bool]] | None = None  # (delay, reordered, data, twice)

    @property
    def profile(self) -> LinkProfile:
        return self.overrides[-1][1] if self.overrides else self.base


Deliver = Callable[[str, str, bytes, bool], None]


class Network:
    def __init__(
        self,
        *,
        loop: EventLoop,
        rng: random.Random,
        trace: Trace,
        profiles: dict[LinkKey, LinkProfile],
        deliver: Deliver,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.loop = loop
        self.rng = rng
        self.trace = trace
        self.deliver = deliver
        self.on_change = on_change
        self.links: dict[LinkKey, Link] = {
            key: Link(base=p, overrides=[]) for key, p in profiles.items()
        }
        self.stats = NetworkStats()
        # Links cut or clogged now, kept as they change, so that a view of who
        # can reach whom costs the links that are down, not every pair (at
        # 500 plants 250k pairs per change of a swizzle).
        self.down: set[LinkKey] = set()

    # ---------------------------------------------------------------- traffic

    def send(self, src: str, dst: str, data: bytes) -> None:
        stats = self.stats
        stats.sent += 1
        stats.bytes_sent += len(data)
        link = self.links[(src, dst)]
        if link.cut:
            self._drop(src, dst, data, "cut")
            return
        p = link.profile
        if link.in_flight >= p.queue:
            self._drop(src, dst, data, "queue-full")
            return
        rng = self.rng
        if p.loss and rng.random() < p.loss:
            self._drop(src, dst, data, "loss")
            return
        twice = False
        if p.duplicate and rng.random() < p.duplicate:
            stats.duplicated += 1
            if rng.random() < 0.5:
                twice = True
            else:
                link.in_flight += 1
                self._enqueue(link, src, dst, data, *self._delay(link, p, len(data)), False)
        link.in_flight += 1
        self._enqueue(link, src, dst, data, *self._delay(link, p, len(data)), twice)

    def _delay(self, link: Link, p: LinkProfile, size: int) -> tuple[float, bool]:
        """(delay, reordered) for one message."""
        rng = self.rng
        if p.tail == "exponential" and p.tail_scale > 0:
            extra = rng.expovariate(1.0 / p.tail_scale)
        elif p.tail == "uniform" and p.tail_scale > 0:
            extra = rng.uniform(0.0, p.tail_scale)
        else:
            extra = 0.0
        delay = p.latency + extra
        if p.max_latency is not None:
            delay = min(delay, max(p.max_latency, p.latency))
        if p.bandwidth:
            # Serialisation: the link sends one message at a time.
            now = self.loop.now
            start = max(now, link.busy_until)
            link.busy_until = start + size / p.bandwidth
            delay += link.busy_until - now
        if p.reorder and rng.random() < p.reorder:
            self.stats.reordered += 1
            return delay + rng.uniform(0.0, 4.0 * (p.latency + p.tail_scale)), True
        return delay, False

    def _enqueue(
        self,
        link: Link,
        src: str,
        dst: str,
        data: bytes,
        delay: float,
        reordered: bool,
        twice: bool,
    ) -> None:
        if link.clog:
            if link.held is None:
                link.held = []
            link.held.append((delay, reordered, data, twice))
            self.stats.held += 1
            return
        self._schedule(link, src, dst, data, delay, reordered, twice)

    def _schedule(
        self,
        link: Link,
        src: str,
        dst: str,
        data: bytes,
        delay: float,
        reordered: bool,
        twice: bool,
    ) -> None:
        now = self.loop.now
        if reordered:  # exempt from FIFO
            arrival = now + delay
        else:
            arrival = max(now + delay, link.last_arrival)
            link.last_arrival = arrival
        self.loop.at(arrival, self._arrive, src, dst, data, twice)

    def _arrive(self, src: str, dst: str, data: bytes, twice: bool) -> None:
        link = self.links[(src, dst)]
        link.in_flight -= 1
        if link.cut:
            # Packets on the wire when the cable is cut are lost too.
            self._drop(src, dst, data, "cut-in-flight")
            return
        self.stats.delivered += 1
        self.stats.bytes_delivered += len(data)
        self.trace.record(self.loop.now, "deliver", src, dst, int(twice), data=data)
        self.deliver(src, dst, data, twice)

    def _drop(self, src: str, dst: str, data: bytes, reason: str) -> None:
        self.stats.dropped[reason] += 1
        self.trace.record(self.loop.now, "drop", src, dst, reason, data=data)

    def drop_down(self, src: str, dst: str, data: bytes) -> None:
        """The receiver is crashed: the message is lost (counted as such)."""
        self.stats.delivered -= 1
        self.stats.bytes_delivered -= len(data)
        self._drop(src, dst, data, "receiver-down")

    # ---------------------------------------------------------------- faults

    def _mark(self, key: LinkKey, link: Link) -> None:
        if link.cut or link.clog:
            self.down.add(key)
        else:
            self.down.discard(key)

    def cut(self, keys: Iterable[LinkKey]) -> None:
        for key in keys:
            link = self.links[key]
            link.cut += 1
            self._mark(key, link)
        self._changed()

    def uncut(self, keys: Iterable[LinkKey]) -> None:
        for key in keys:
            link = self.links[key]
            link.cut = max(0, link.cut - 1)
            self._mark(key, link)
        self._changed()

    def clog(self, keys: Iterable[LinkKey]) -> None:
        for key in keys:
            link = self.links[key]
            link.clog += 1
            self._mark(key, link)
        self._changed()

    def unclog(self, keys: Iterable[LinkKey]) -> None:
        for key in keys:
            link = self.links[key]
            link.clog = max(0, link.clog - 1)
            self._mark(key, link)
            if not link.clog:
                self._release(key, link)
        self._changed()

    def _release(self, key: LinkKey, link: Link) -> None:
        held, link.held = link.held or [], None
        for delay, reordered, data, twice in held:
            self._schedule(link, key[0], key[1], data, delay, reordered, twice)

    def degrade(self, fault_id: int, keys: Iterable[LinkKey], **changes: object) -> None:
        for key in keys:
            link = self.links[key]
            link.overrides.append((fault_id, replace(link.profile, **changes)))  # type: ignore[arg-type]

    def restore(self, fault_id: int, keys: Iterable[LinkKey]) -> None:
        for key in keys:
            link = self.links[key]
            link.overrides = [(f, p) for f, p in link.overrides if f != fault_id]

    def heal_all(self) -> None:
        """Lift every fault: no cuts, clogs, overrides or random loss."""
        for key, link in self.links.items():
            link.cut = 0
            link.overrides = []
            base = link.base
            if base.loss or base.duplicate or base.reorder:
                link.base = base.clean()
            if link.clog:
                link.clog = 0
                self._release(key, link)
        self.down.clear()
        self._changed()

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

    # ---------------------------------------------------------------- views

    def is_up(self, src: str, dst: str) -> bool:
        link = self.links[(src, dst)]
        return not link.cut and not link.clog
