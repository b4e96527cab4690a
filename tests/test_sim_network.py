"""The simulated network and the partition shapes."""

from __future__ import annotations

import random
from itertools import pairwise

import pytest

from twinmesh.sim import EventLoop, LinkProfile, Network
from twinmesh.sim._faults import bridge, groups_cut, isolate, majorities_ring, random_halves
from twinmesh.sim._trace import Trace

NODES = ("a", "b", "c")


def _net(
    profile: LinkProfile, seed: int = 1
) -> tuple[EventLoop, Network, list[tuple[float, str, str, bytes, bool]]]:
    loop = EventLoop()
    got: list[tuple[float, str, str, bytes, bool]] = []
    net = Network(
        loop=loop,
        rng=random.Random(seed),
        trace=Trace(),
        profiles={(x, y): profile for x in NODES for y in NODES if x != y},
        deliver=lambda s, d, data, twice: got.append((loop.now, s, d, data, twice)),
    )
    return loop, net, got


def _send_many(loop: EventLoop, net: Network, n: int, gap: float = 0.001) -> None:
    for i in range(n):
        loop.at(i * gap, net.send, "a", "b", i.to_bytes(4, "big"))


def test_fifo_without_reordering_even_with_a_long_tail() -> None:
    loop, net, got = _net(
        LinkProfile(latency=0.04, tail="exponential", tail_scale=0.1, max_latency=None)
    )
    _send_many(loop, net, 200)
    loop.run_until(100)
    order = [int.from_bytes(d, "big") for *_, d, _ in got]
    assert order == list(range(200))
    assert all(t >= 0.04 for t, *_ in got)


def test_reordering_breaks_fifo() -> None:
    loop, net, got = _net(LinkProfile(latency=0.04, tail_scale=0.01, reorder=0.3))
    _send_many(loop, net, 200)
    loop.run_until(100)
    order = [int.from_bytes(d, "big") for *_, d, _ in got]
    assert sorted(order) == list(range(200)) and order != list(range(200))
    assert net.stats.reordered > 20


def test_latency_bounds() -> None:
    loop, net, got = _net(
        LinkProfile(latency=0.04, tail="uniform", tail_scale=0.5, max_latency=0.2)
    )
    for i in range(100):
        loop.at(i * 1.0, net.send, "a", "b", b"x")
    loop.run_until(1000)
    delays = [t - i for i, (t, *_) in enumerate(got)]
    assert min(delays) >= 0.04 - 1e-9 and max(delays) <= 0.2 + 1e-9


def test_loss_and_duplication() -> None:
    loop, net, got = _net(LinkProfile(loss=1.0))
    _send_many(loop, net, 10)
    loop.run_until(10)
    assert got == [] and net.stats.dropped["loss"] == 10
    loop, net, got = _net(LinkProfile(duplicate=1.0))
    _send_many(loop, net, 100)
    loop.run_until(10)
    twice = sum(1 for *_, t in got if t)
    late = len(got) - 100
    assert twice + late == 100 and twice > 20 and late > 20


def test_cut_drops_and_clog_holds() -> None:
    loop, net, got = _net(LinkProfile(latency=0.01, tail="none"))
    net.cut([("a", "b")])
    net.send("a", "b", b"lost")
    net.send("b", "a", b"other way is fine")
    loop.run_until(1)
    assert [d for *_, d, _ in got] == [b"other way is fine"]
    assert net.stats.dropped["cut"] == 1
    net.uncut([("a", "b")])
    net.clog([("a", "b")])
    net.send("a", "b", b"held")
    loop.run_until(5)
    assert len(got) == 1
    net.unclog([("a", "b")])
    loop.run_until(6)
    assert got[-1][3] == b"held" and got[-1][0] == pytest.approx(5.01)


def test_cut_while_in_flight_drops_and_overlapping_cuts_count() -> None:
    loop, net, got = _net(LinkProfile(latency=1.0, tail="none"))
    net.send("a", "b", b"on the wire")
    loop.at(0.5, net.cut, [("a", "b")])
    loop.at(0.6, net.cut, [("a", "b")])
    loop.at(0.7, net.uncut, [("a", "b")])
    loop.run_until(2)
    assert got == [] and net.stats.dropped["cut-in-flight"] == 1
    assert not net.is_up("a", "b")  # still cut by the second fault


def test_bounded_queue() -> None:
    loop, net, got = _net(LinkProfile(latency=1.0, tail="none", queue=3))
    for _ in range(10):
        net.send("a", "b", b"x")
    loop.run_until(5)
    assert len(got) == 3 and net.stats.dropped["queue-full"] == 7


def test_bandwidth_serialises() -> None:
    loop, net, got = _net(LinkProfile(latency=0.0, tail="none", bandwidth=1000.0))
    for _ in range(3):
        net.send("a", "b", b"x" * 500)
    loop.run_until(10)
    assert [round(t, 3) for t, *_ in got] == [0.5, 1.0, 1.5]


# ------------------------------------------------------------------ shapes


@pytest.mark.parametrize("n", range(3, 10))
def test_majorities_ring(n: int) -> None:
    nodes = [f"n{i}" for i in range(n)]
    cut = set(majorities_ring(random.Random(n), nodes))
    majority = n // 2 + 1
    views = []
    for dst in nodes:
        hears = frozenset([dst] + [src for src in nodes if src != dst and (src, dst) not in cut])
        assert len(hears) == majority
        views.append(hears)
    assert len(set(views)) == n  # no two nodes see the same majority


def test_isolate_halves_bridge() -> None:
    nodes = ["a", "b", "c", "d", "e"]
    assert set(isolate("a", nodes)) == {
        (x, y) for x in nodes for y in nodes if x != y and "a" in (x, y)
    }
    halves = random_halves(random.Random(3), nodes)
    assert sorted(halves[0] + halves[1]) == nodes and abs(len(halves[0]) - len(halves[1])) <= 1
    cut = set(groups_cut(halves))
    assert all((x, y) in cut for x in halves[0] for y in halves[1])
    via, (left, right) = bridge(random.Random(4), nodes, "c")
    cut = set(groups_cut([left, right]))
    assert via == "c" and not any("c" in k for k in cut)
    assert all((x, y) in cut and (y, x) in cut for x in left for y in right)


def test_event_loop_orders_ties_by_schedule() -> None:
    loop = EventLoop()
    seen: list[int] = []
    for i in range(5):
        loop.at(1.0, seen.append, i)
    loop.at(0.5, seen.append, -1)
    loop.run_until(1.0)
    assert seen == [-1, 0, 1, 2, 3, 4]
    assert all(a < b for a, b in pairwise(seen))
