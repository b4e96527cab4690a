"""Scenario files: a fleet, its links, a workload and faults on a schedule.

A scenario speaks of plants, sites and links — not of simulator internals —
because the real-network harness will read the same files (ARCHITECTURE.md,
"Simulator"). Every value is checked on load and an error names the file,
the place in it, what was expected and what was found, e.g.::

    scenarios/wan-split.toml: faults[1].plant: expected one of the fleet's
    nodes (central, plant-a, plant-b), found 'plant-x'

Times in the schedule (``at``, ``for``, flapping periods ...) are relative to
the start of the safety phase. ``scaled(f)`` shrinks the schedule (and the
eviction timeout, which is part of it) for quick CI runs; link latencies,
gossip interval and workload rates stay as written, since they are physics,
not schedule.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from twinmesh.crdt import FieldKind, LocalProtocolError
from twinmesh.crdt.demo_models import PUMP
from twinmesh.sync import SyncConfig

from ._network import LinkProfile
from ._units import UnitError, parse_bytes, parse_duration, parse_rate

__all__ = [
    "FAULT_KINDS",
    "OP_KINDS",
    "ContestedSpec",
    "FaultSpec",
    "FleetSpec",
    "LinksSpec",
    "LivenessSpec",
    "Scenario",
    "ScenarioError",
    "WorkloadSpec",
    "load_scenario",
    "parse_scenario",
]

T = TypeVar("T")

#: Workload operations, with what each does at a replica.
OP_KINDS: dict[str, str] = {
    "shared": "write a shared field (maintenance date, limit, lifecycle, owner) with what is read",
    "stale": "read a shared field, think, then write with the context read earlier",
    "resolve": "a reviewer resolves a conflict visible here, covering its siblings",
    "add": "add a tag to a set",
    "remove": "remove a tag visible here",
    "counter": "increment or decrement a tally",
    "text": "insert a note token at a token boundary, or delete a whole token",
    "log": "append an alert event",
    "label": "write a last-writer-wins label",
    "reported": "write reported state at the asset's home plant",
    "foreign_reported": "try to write reported state away from home (must be refused)",
}

SHARED_FIELDS: tuple[str, ...] = tuple(
    sorted(n for n, s in PUMP.fields.items() if s.kind is FieldKind.SHARED)
)

_LINK_FIELDS = {
    "latency",
    "tail",
    "tail_scale",
    "max_latency",
    "loss",
    "duplicate",
    "reorder",
    "queue",
    "bandwidth",
}

# kind -> (required keys, optional keys); anything else is refused by name.
FAULT_KINDS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "isolate": (frozenset({"plant", "at", "for"}), frozenset()),
    "partition": (frozenset({"groups", "at", "for"}), frozenset()),
    "halves": (frozenset({"at", "for"}), frozenset()),
    "majorities-ring": (frozenset({"at", "for"}), frozenset()),
    "bridge": (frozenset({"at", "for"}), frozenset({"bridge"})),
    "one-way": (frozenset({"from", "to", "at", "for"}), frozenset()),
    "flapping": (frozenset({"at", "for"}), frozenset({"plant", "between", "down", "up"})),
    "swizzle": (frozenset({"at", "for"}), frozenset({"step", "plants"})),
    "clog": (frozenset({"at", "for"}), frozenset({"plant", "between", "from", "to"})),
    "link": (
        frozenset({"at", "for"}),
        frozenset({"plant", "between", "from", "to"}) | _LINK_FIELDS,
    ),
    "crash": (frozenset({"plant", "at", "for"}), frozenset()),
    "byzantine": (frozenset({"plant", "at", "for"}), frozenset()),
    "clock": (frozenset({"plant", "skew"}), frozenset({"at"})),
    "clock-jump": (frozenset({"plant", "at", "by"}), frozenset()),
}


class ScenarioError(ValueError):
    """A scenario file that does not say what the simulator needs."""

    def __init__(self, path: str, where: str, expected: str, found: object) -> None:
        shown = "nothing" if found is _MISSING else repr(found)
        super().__init__(f"{path}: {where}: expected {expected}, found {shown}")
        self.path = path
        self.where = where
        self.expected = expected
        self.found = found


_MISSING = object()


# ------------------------------------------------------------------ specs


@dataclass(frozen=True, slots=True, kw_only=True)
class FleetSpec:
    plants: tuple[str, ...]
    central: str | None
    assets_per_plant: int
    sites: tuple[tuple[str, ...], ...] = ()

    @property
    def nodes(self) -> tuple[str, ...]:
        """Every replica, sorted: plants and central."""
        return tuple(sorted((*self.plants, *([self.central] if self.central else []))))

    def assets(self, plant: str) -> tuple[str, ...]:
        return tuple(f"{plant}/pump-{k}" for k in range(1, self.assets_per_plant + 1))


@dataclass(frozen=True, slots=True, kw_only=True)
class LinksSpec:
    profiles: Mapping[str, LinkProfile]
    default: str
    lan: str
    overrides: tuple[tuple[str, str, str], ...] = ()  # (src, dst, profile)

    def profile_for(self, fleet: FleetSpec, src: str, dst: str) -> LinkProfile:
        for s, d, name in reversed(self.overrides):
            if s == src and d == dst:
                return self.profiles[name]
        same_site = any(src in site and dst in site for site in fleet.sites)
        return self.profiles[self.lan if same_site else self.default]


@dataclass(frozen=True, slots=True, kw_only=True)
class ContestedSpec:
    asset: str
    field: str
    writers: tuple[str, ...]
    every: float
    start: float = 0.0
    until: float | None = None


_DEFAULT_TAGS = ("critical", "spare-ordered", "inspected", "noisy", "line-1", "eol")


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkloadSpec:
    rate: float  # operations per second at each plant
    central_rate: float  # ... and at central
    mix: Mapping[str, float]
    think_time: float = 30.0
    tags: tuple[str, ...] = _DEFAULT_TAGS
    contested: tuple[ContestedSpec, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class FaultSpec:
    kind: str
    at: float
    duration: float = 0.0
    plant: str | None = None
    between: tuple[str, str] | None = None
    src: str | None = None
    dst: str | None = None
    groups: tuple[tuple[str, ...], ...] = ()
    bridge: str | None = None
    plants: tuple[str, ...] = ()
    step: float = 10.0
    down: float = 30.0
    up: float = 30.0
    skew: float = 0.0
    by: float = 0.0
    link_changes: tuple[tuple[str, Any], ...] = ()
    where: str = ""

    def scaled(self, f: float) -> FaultSpec:
        return replace(
            self,
            at=self.at * f,
            duration=self.duration * f,
            step=self.step * f,
            down=self.down * f,
            up=self.up * f,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class LivenessSpec:
    timeout: float = 1800.0
    max_rounds: int | None = None  # None: derived from the fleet (see Scenario.round_bound)


_DEFAULT_MIX: dict[str, float] = {
    "shared": 20,
    "stale": 5,
    "resolve": 5,
    "add": 8,
    "remove": 4,
    "counter": 10,
    "text": 6,
    "log": 10,
    "label": 8,
    "reported": 10,
    "foreign_reported": 1,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Scenario:
    name: str
    description: str
    path: str
    duration: float
    fleet: FleetSpec
    sync: SyncConfig
    links: LinksSpec
    workload: WorkloadSpec
    faults: tuple[FaultSpec, ...]
    liveness: LivenessSpec = field(default_factory=LivenessSpec)
    quick_scale: float = 0.1
    check_every: float | None = None
    seed: int = 1
    scale: float = 1.0  # the factor already applied by scaled()

    def scaled(self, f: float) -> Scenario:
        """The same scenario with its schedule multiplied by ``f``."""
        if f == 1.0:
            return self
        return replace(
            self,
            duration=self.duration * f,
            sync=replace(self.sync, evict_after=self.sync.evict_after * f),
            faults=tuple(x.scaled(f) for x in self.faults),
            workload=replace(
                self.workload,
                contested=tuple(
                    replace(
                        c,
                        start=c.start * f,
                        until=None if c.until is None else c.until * f,
                        every=min(c.every, max(c.every * f, 10 * self.sync.gossip_interval)),
                    )
                    for c in self.workload.contested
                ),
            ),
            check_every=None if self.check_every is None else self.check_every * f,
            scale=self.scale * f,
        )

    def round_bound(self) -> int:
        """The liveness checker's bound on gossip rounds after heal.

        The issue's goal is ceil(log2 N) + 2 rounds of epidemic spread; a
        healed link is first tried only when the engine's exponential back-off
        for that peer expires (up to ``backoff_max``), so the default bound
        adds that wait and doubles the spread allowance for snapshots and
        chunked catch-up. The measured figure is reported beside the goal.
        """
        if self.liveness.max_rounds is not None:
            return self.liveness.max_rounds
        n = len(self.fleet.nodes)
        spread = math.ceil(math.log2(max(n, 2))) + 2
        wait = math.ceil(
            (self.sync.backoff_cap + self.sync.reply_timeout) / self.sync.gossip_interval
        )
        return wait + 2 * spread


# ------------------------------------------------------------------ reading


class _Reader:
    """Typed access to one TOML table, raising ScenarioError with a location."""

    def __init__(self, path: str, where: str, table: Any) -> None:
        if not isinstance(table, dict):
            raise ScenarioError(path, where or "file", "a table", table)
        self.path = path
        self.where = where
        self.table: dict[str, Any] = table
        self.used: set[str] = set()

    def _at(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def error(self, key: str, expected: str, found: object) -> ScenarioError:
        return ScenarioError(self.path, self._at(key), expected, found)

    def sub(self, key: str, *, required: bool = False) -> _Reader:
        self.used.add(key)
        if key not in self.table:
            if required:
                raise self.error(key, "a table", _MISSING)
            return _Reader(self.path, self._at(key), {})
        return _Reader(self.path, self._at(key), self.table[key])

    def raw(self, key: str) -> Any:
        self.used.add(key)
        return self.table.get(key, _MISSING)

    def get(
        self, key: str, convert: Callable[[Any], T], expected: str, default: Any = _MISSING
    ) -> T:
        self.used.add(key)
        value = self.table.get(key, _MISSING)
        if value is _MISSING:
            if default is _MISSING:
                raise self.error(key, expected, _MISSING)
            return default  # type: ignore[no-any-return]
        try:
            return convert(value)
        except UnitError as exc:
            raise self.error(key, exc.expected, value) from None
        except (TypeError, ValueError):
            raise self.error(key, expected, value) from None

    def string(self, key: str, default: Any = _MISSING) -> str:
        return self.get(key, _checked(str), "a string", default)

    def duration(self, key: str, default: Any = _MISSING, *, signed: bool = False) -> float:
        return self.get(key, lambda v: parse_duration(v, signed=signed), "a duration", default)

    def rate(self, key: str, default: Any = _MISSING) -> float:
        return self.get(key, parse_rate, "a rate", default)

    def probability(self, key: str, default: Any = _MISSING) -> float:
        return self.get(key, _probability, "a probability between 0 and 1", default)

    def integer(self, key: str, default: Any = _MISSING, *, lo: int = 0) -> int:
        return self.get(key, lambda v: _int(v, lo), f"an integer >= {lo}", default)

    def number(self, key: str, default: Any = _MISSING, *, lo: float = 0.0) -> float:
        return self.get(key, lambda v: _number(v, lo), f"a number >= {lo}", default)

    def boolean(self, key: str, default: Any = _MISSING) -> bool:
        return self.get(key, _checked(bool), "true or false", default)

    def finish(self) -> None:
        unknown = sorted(set(self.table) - self.used)
        if unknown:
            known = ", ".join(sorted(self.used)) or "none"
            raise self.error(unknown[0], f"one of the known keys ({known})", unknown[0])


def _checked(kind: type[T]) -> Callable[[Any], T]:
    def convert(value: Any) -> T:
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            raise TypeError
        return value

    return convert


def _probability(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ValueError
    return float(value)


def _int(value: Any, lo: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise ValueError
    return value


def _number(value: Any, lo: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < lo:
        raise ValueError
    return float(value)


def _name_list(
    r: _Reader, key: str, nodes: tuple[str, ...], *, size: int | None = None
) -> tuple[str, ...]:
    value = r.raw(key)
    want = f"a list of {size} of the fleet's nodes" if size else "a list of the fleet's nodes"
    if not isinstance(value, list) or (size is not None and len(value) != size) or not value:
        raise r.error(key, f"{want} ({', '.join(nodes)})", None if value is _MISSING else value)
    for i, item in enumerate(value):
        if item not in nodes:
            raise r.error(f"{key}[{i}]", f"one of the fleet's nodes ({', '.join(nodes)})", item)
    if len(set(value)) != len(value):
        raise r.error(key, "distinct nodes", value)
    return tuple(value)


def _node(r: _Reader, key: str, nodes: tuple[str, ...], default: Any = _MISSING) -> str:
    value = r.raw(key)
    if value is _MISSING and default is not _MISSING:
        return default  # type: ignore[no-any-return]
    if value not in nodes:
        raise r.error(key, f"one of the fleet's nodes ({', '.join(nodes)})", value)
    return value  # type: ignore[no-any-return]


def _read_fleet(r: _Reader) -> FleetSpec:
    raw = r.raw("plants")
    if isinstance(raw, int) and not isinstance(raw, bool) and raw >= 1:
        width = len(str(raw))
        plants = tuple(f"plant-{k:0{width}d}" for k in range(1, raw + 1))
    elif isinstance(raw, list) and raw and all(isinstance(p, str) and p for p in raw):
        plants = tuple(raw)
        if len(set(plants)) != len(plants):
            raise r.error("plants", "distinct plant names", raw)
        for i, p in enumerate(plants):
            if "/" in p or len(p) > 64:
                raise r.error(f"plants[{i}]", "a name without '/' of at most 64 characters", p)
    else:
        raise r.error(
            "plants",
            "a list of plant names or a number of plants",
            None if raw is _MISSING else raw,
        )
    central = r.string("central", "")
    if central and central in plants:
        raise r.error("central", "a name different from every plant", central)
    assets = r.integer("assets_per_plant", 2, lo=1)
    nodes = tuple(sorted((*plants, *([central] if central else []))))
    sites_raw = r.raw("sites")
    sites: list[tuple[str, ...]] = []
    if sites_raw is not _MISSING:
        if not isinstance(sites_raw, list):
            raise r.error("sites", "a list of lists of nodes sharing a LAN", sites_raw)
        for i, site in enumerate(sites_raw):
            sub = _Reader(r.path, r._at(f"sites[{i}]"), {"members": site})
            sites.append(_name_list(sub, "members", nodes))
    r.finish()
    return FleetSpec(
        plants=plants, central=central or None, assets_per_plant=assets, sites=tuple(sites)
    )


def _read_sync(r: _Reader) -> SyncConfig:
    d = SyncConfig()
    kwargs: dict[str, Any] = {
        "gossip_interval": r.duration("gossip_interval", d.gossip_interval),
        "jitter": r.probability("jitter", d.jitter),
        "fanout": r.integer("fanout", d.fanout, lo=1),
        "max_message_bytes": int(
            r.get("max_message_bytes", parse_bytes, "a size", d.max_message_bytes)
        ),
        "max_batch_deltas": r.integer("max_batch_deltas", d.max_batch_deltas, lo=1),
        "max_batch_bytes": int(r.get("max_batch_bytes", parse_bytes, "a size", d.max_batch_bytes)),
        "reply_timeout": r.duration("reply_timeout", d.reply_timeout),
        # None (absent): relative to gossip_interval, see SyncConfig.
        "backoff_base": r.duration("backoff_base", None),
        "backoff_max": r.duration("backoff_max", None),
        "evict_after": r.duration("evict_after", d.evict_after),
        "compact": r.boolean("compact", d.compact),
    }
    r.finish()
    if kwargs["gossip_interval"] <= 0:
        raise r.error("gossip_interval", "a duration greater than zero", kwargs["gossip_interval"])
    if kwargs["jitter"] >= 1:
        raise r.error("jitter", "a fraction below 1", kwargs["jitter"])
    try:
        return SyncConfig(**kwargs)
    except LocalProtocolError as exc:
        raise r.error("", "a valid sync configuration", str(exc)) from None


def _read_profile(r: _Reader, base: LinkProfile) -> LinkProfile:
    changes = _read_link_changes(r)
    r.finish()
    return replace(base, **changes)


def _read_link_changes(r: _Reader) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "latency" in r.table:
        out["latency"] = r.duration("latency")
    if "tail" in r.table:
        tail = r.string("tail")
        if tail not in ("exponential", "uniform", "none"):
            raise r.error("tail", '"exponential", "uniform" or "none"', tail)
        out["tail"] = tail
    if "tail_scale" in r.table:
        out["tail_scale"] = r.duration("tail_scale")
    if "max_latency" in r.table:
        out["max_latency"] = r.duration("max_latency")
    for key in ("loss", "duplicate", "reorder"):
        if key in r.table:
            out[key] = r.probability(key)
    if "queue" in r.table:
        out["queue"] = r.integer("queue", lo=1)
    if "bandwidth" in r.table:
        out["bandwidth"] = r.get(
            "bandwidth", lambda v: parse_bytes(v, per_second=True), "a rate in bytes per second"
        )
    return out


def _read_links(r: _Reader, fleet: FleetSpec) -> LinksSpec:
    profiles: dict[str, LinkProfile] = {
        "wan": LinkProfile(latency=0.040, tail="exponential", tail_scale=0.030, max_latency=0.200),
        "lan": LinkProfile(latency=0.001, tail="uniform", tail_scale=0.0005, max_latency=0.002),
    }
    pr = r.sub("profiles")
    for name in pr.table:
        sub = pr.sub(name)
        profiles[name] = _read_profile(sub, profiles.get(name, LinkProfile()))
    pr.finish()
    default = r.string("default", "wan")
    lan = r.string("lan", "lan")
    for key, name in (("default", default), ("lan", lan)):
        if name not in profiles:
            raise r.error(key, f"a profile name ({', '.join(sorted(profiles))})", name)
    overrides: list[tuple[str, str, str]] = []
    raw = r.raw("override")
    if raw is not _MISSING:
        if not isinstance(raw, list):
            raise r.error("override", "an array of tables ([[links.override]])", raw)
        for i, item in enumerate(raw):
            o = _Reader(r.path, r._at(f"override[{i}]"), item)
            name = o.string("profile")
            if name not in profiles:
                raise o.error("profile", f"a profile name ({', '.join(sorted(profiles))})", name)
            for src, dst in _directed(o, fleet.nodes, allow_plant=False):
                overrides.append((src, dst, name))
            o.finish()
    r.finish()
    return LinksSpec(profiles=profiles, default=default, lan=lan, overrides=tuple(overrides))


def _directed(r: _Reader, nodes: tuple[str, ...], *, allow_plant: bool) -> list[tuple[str, str]]:
    """Links named by ``between = [a, b]`` (both ways), ``from``/``to`` (one way)
    or ``plant`` (every link of that node)."""
    has = {k for k in ("between", "from", "to", "plant") if k in r.table}
    if "between" in has and len(has) == 1:
        a, b = _name_list(r, "between", nodes, size=2)
        return [(a, b), (b, a)]
    if has == {"from", "to"}:
        src, dst = _node(r, "from", nodes), _node(r, "to", nodes)
        if src == dst:
            raise r.error("to", "a node other than 'from'", dst)
        return [(src, dst)]
    if allow_plant and has == {"plant"}:
        p = _node(r, "plant", nodes)
        return [(p, n) for n in nodes if n != p] + [(n, p) for n in nodes if n != p]
    want = "between = [a, b], or from and to" + (", or plant" if allow_plant else "")
    raise r.error("", want, sorted(has) or None)


def _read_workload(r: _Reader, fleet: FleetSpec, duration: float) -> WorkloadSpec:
    rate = r.rate("rate", 1 / 30)
    central_rate = r.rate("central_rate", rate)
    think = r.duration("think_time", 30.0)
    tags_raw = r.raw("tags")
    tags: tuple[str, ...] = _DEFAULT_TAGS
    if tags_raw is not _MISSING:
        if not (
            isinstance(tags_raw, list)
            and tags_raw
            and all(isinstance(t, str) and t for t in tags_raw)
        ):
            raise r.error("tags", "a list of non-empty strings", tags_raw)
        tags = tuple(tags_raw)
    mix = dict(_DEFAULT_MIX)
    mr = r.sub("mix")
    if mr.table:
        mix = {k: 0.0 for k in OP_KINDS}
        for key in mr.table:
            if key not in OP_KINDS:
                raise mr.error(key, f"an operation kind ({', '.join(OP_KINDS)})", key)
            mix[key] = mr.number(key)
        if not any(mix.values()):
            raise mr.error("", "at least one operation with a weight above zero", mr.table)
    mr.finish()
    contested: list[ContestedSpec] = []
    raw = r.raw("contested")
    if raw is not _MISSING:
        if not isinstance(raw, list):
            raise r.error("contested", "an array of tables ([[workload.contested]])", raw)
        assets = [a for p in fleet.plants for a in fleet.assets(p)]
        for i, item in enumerate(raw):
            c = _Reader(r.path, r._at(f"contested[{i}]"), item)
            asset = c.string("asset")
            if asset not in assets:
                shown = ", ".join(assets[:4]) + (", ..." if len(assets) > 4 else "")
                raise c.error("asset", f"an asset of the fleet ({shown})", asset)
            fname = c.string("field")
            if fname not in SHARED_FIELDS:
                raise c.error("field", f"a shared field ({', '.join(SHARED_FIELDS)})", fname)
            writers = _name_list(c, "writers", fleet.nodes)
            every = c.duration("every")
            if every <= 0:
                raise c.error("every", "a duration greater than zero", every)
            start = c.duration("from", 0.0)
            until = c.duration("until", None)
            c.finish()
            contested.append(
                ContestedSpec(
                    asset=asset, field=fname, writers=writers, every=every, start=start, until=until
                )
            )
    r.finish()
    return WorkloadSpec(
        rate=rate,
        central_rate=central_rate,
        mix=mix,
        think_time=think,
        tags=tags,
        contested=tuple(contested),
    )


def _read_fault(r: _Reader, fleet: FleetSpec, duration: float) -> FaultSpec:
    kind = r.string("kind")
    if kind not in FAULT_KINDS:
        raise r.error("kind", f"a fault kind ({', '.join(FAULT_KINDS)})", kind)
    required, optional = FAULT_KINDS[kind]
    for key in sorted(required):
        if key not in r.table:
            raise r.error(
                key, f"a value (a {kind} fault needs {', '.join(sorted(required))})", _MISSING
            )
    allowed = required | optional | {"kind"}
    for key in sorted(r.table):
        if key not in allowed:
            raise r.error(
                key, f"one of the keys of a {kind} fault ({', '.join(sorted(allowed))})", key
            )
    nodes = fleet.nodes
    at = r.duration("at", 0.0)
    if at >= duration:
        raise r.error(
            "at", f"a time before the end of the safety phase ({duration:g} s)", r.table["at"]
        )
    spec: dict[str, Any] = {
        "kind": kind,
        "at": at,
        "duration": r.duration("for", 0.0),
        "where": r.where,
    }
    if kind in ("isolate", "crash", "clock", "clock-jump", "byzantine"):
        spec["plant"] = _node(r, "plant", nodes)
    if kind == "partition":
        groups_raw = r.raw("groups")
        if not isinstance(groups_raw, list) or len(groups_raw) < 2:
            raise r.error("groups", "a list of two or more lists of nodes", groups_raw)
        groups = []
        for i, g in enumerate(groups_raw):
            sub = _Reader(r.path, r._at(f"groups[{i}]"), {"nodes": g})
            groups.append(_name_list(sub, "nodes", nodes))
        flat = [n for g in groups for n in g]
        if len(set(flat)) != len(flat):
            raise r.error("groups", "groups that do not share a node", groups_raw)
        missing = sorted(set(nodes) - set(flat))
        if missing:
            raise r.error(
                "groups", f"groups that list every node (missing {', '.join(missing)})", groups_raw
            )
        spec["groups"] = tuple(groups)
    if kind == "bridge":
        spec["bridge"] = _node(r, "bridge", nodes, None)
    if kind == "one-way":
        spec["src"], spec["dst"] = _node(r, "from", nodes), _node(r, "to", nodes)
        if spec["src"] == spec["dst"]:
            raise r.error("to", "a node other than 'from'", spec["dst"])
    if kind == "flapping":
        spec["down"] = r.duration("down", 30.0)
        spec["up"] = r.duration("up", 30.0)
        if spec["down"] <= 0 or spec["up"] <= 0:
            raise r.error(
                "down", "down and up periods greater than zero", (spec["down"], spec["up"])
            )
        if "between" in r.table:
            a, b = _name_list(r, "between", nodes, size=2)
            spec["between"] = (a, b)
        elif "plant" in r.table:
            spec["plant"] = _node(r, "plant", nodes)
        else:
            raise r.error("plant", "plant = node or between = [a, b]", _MISSING)
    if kind == "swizzle":
        spec["step"] = r.duration("step", 10.0)
        if "plants" in r.table:
            spec["plants"] = _name_list(r, "plants", nodes)
    if kind in ("clog", "link"):
        keys = _directed(r, nodes, allow_plant=True)
        if "between" in r.table:
            spec["between"] = tuple(r.table["between"])
        elif "plant" in r.table:
            spec["plant"] = r.table["plant"]
        else:
            spec["src"], spec["dst"] = keys[0]
    if kind == "link":
        changes = _read_link_changes(r)
        if not changes:
            raise r.error(
                "", f"at least one link setting ({', '.join(sorted(_LINK_FIELDS))})", None
            )
        spec["link_changes"] = tuple(sorted(changes.items()))
    if kind == "clock":
        spec["skew"] = r.duration("skew", signed=True)
    if kind == "clock-jump":
        spec["by"] = r.duration("by", signed=True)
    if (
        kind
        in (
            "isolate",
            "partition",
            "halves",
            "majorities-ring",
            "bridge",
            "one-way",
            "flapping",
            "swizzle",
            "clog",
            "link",
            "crash",
            "byzantine",
        )
        and spec["duration"] <= 0
    ):
        raise r.error("for", "a duration greater than zero", r.table.get("for"))
    return FaultSpec(**spec)


def parse_scenario(text: str, path: str = "<scenario>") -> Scenario:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(path, "file", "valid TOML", str(exc)) from None
    top = _Reader(path, "", data)
    s = top.sub("scenario", required=True)
    name = s.string("name")
    description = s.string("description", "")
    duration = s.duration("duration")
    if duration <= 0:
        raise s.error("duration", "a duration greater than zero", s.table["duration"])
    quick_scale = s.get("quick_scale", lambda v: _number(v, 0.0), "a number in (0, 1]", 0.1)
    if not 0 < quick_scale <= 1:
        raise s.error("quick_scale", "a number in (0, 1]", quick_scale)
    check_every = s.duration("check_every", None)
    seed = s.integer("seed", 1)
    s.finish()
    fleet = _read_fleet(top.sub("fleet", required=True))
    if len(fleet.nodes) < 2:
        raise top.error("fleet", "at least two nodes (plants and central)", list(fleet.nodes))
    sync = _read_sync(top.sub("sync"))
    links = _read_links(top.sub("links"), fleet)
    workload = _read_workload(top.sub("workload"), fleet, duration)
    faults_raw = top.raw("faults")
    faults: list[FaultSpec] = []
    if faults_raw is not _MISSING:
        if not isinstance(faults_raw, list):
            raise top.error("faults", "an array of tables ([[faults]])", faults_raw)
        for i, item in enumerate(faults_raw):
            faults.append(_read_fault(_Reader(path, f"faults[{i}]", item), fleet, duration))
    lv = top.sub("liveness")
    liveness = LivenessSpec(
        timeout=lv.duration("timeout", 1800.0),
        max_rounds=lv.integer("max_rounds", None, lo=1),
    )
    lv.finish()
    top.finish()
    return Scenario(
        name=name,
        description=description,
        path=path,
        duration=duration,
        fleet=fleet,
        sync=sync,
        links=links,
        workload=workload,
        faults=tuple(faults),
        liveness=liveness,
        quick_scale=quick_scale,
        check_every=check_every,
        seed=seed,
    )


def load_scenario(path: str | Path) -> Scenario:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(str(p), "file", "a readable scenario file", exc.strerror) from None
    return parse_scenario(text, str(p))
