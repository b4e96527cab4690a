"""One simulation run: a fleet of real SyncEngines on a virtual clock.

Phases (FoundationDB's simulation tests; Jepsen's "final generator"):

1. **Safety.** From t=0 the workload writes while the scenario's (and, in
   swarm mode, the seed's own) faults play out. Checkers that can be
   checked at any instant run throughout: version vectors never go back,
   the oracle's account of applied deltas matches every engine, a message
   delivered twice in a row changes nothing, honest messages are never
   refused; every ``check_every`` one random replica's whole state is
   compared with the oracle, and at the end of the phase every replica's.
2. **Liveness.** Writes stop; every fault is healed, every crashed replica
   restarted. The fleet must converge — every replica holding every
   acknowledged write, byte-identical — within the round bound. Then every
   replica is compared with the oracle once more.

Time: the engines get the virtual clock (monotonic, like aioquic's
``loop.time()``): timers, timeouts and eviction work on true elapsed time,
so a clock fault cannot stall gossip. It starts at ``t0`` (``MONOTONIC_T0``
by default, far from zero like a real host's clock), so a core that mistook
an absolute reading for a duration fails here as it would in production;
the verdicts do not depend on ``t0`` (tests/test_sim_clocks.py). Each replica's *wall* clock —
``EPOCH`` + virtual time + its skew, which faults set and jump — is what its
writes are stamped with (``now_ms``), which is what clock skew affects in a
real node: the hybrid clock of labels and the provisional choice of shared
fields.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from twinmesh.crdt import (
    CausalContext,
    Delta,
    FieldState,
    LocalProtocolError,
    MVRegister,
    RemoteProtocolError,
    ReplicaState,
    VersionVector,
    decode_deltas,
    encode_state,
    state_digest,
)
from twinmesh.crdt.demo_models import PUMP_SCHEMAS
from twinmesh.sync import (
    BatchRefused,
    DeltasApplied,
    Event,
    FleetAuthority,
    MemberInfo,
    SnapshotApplied,
    SyncEngine,
    decode_message,
    verify_signature,
)

from ._budget import EventBudget, event_budget, spin_message
from ._byzantine import FORGED, lie
from ._checkers import (
    Findings,
    Verdict,
    check_conflict_queue,
    check_crash_window,
    check_touched,
    check_vv_order,
    compare_replica,
)
from ._faults import FaultController, FaultRecord
from ._loop import EventLoop
from ._network import Network, NetworkStats
from ._oracle import Op, Oracle, RegisterWrite
from ._rng import Rngs
from ._scenario import Scenario
from ._swarm import SwarmDraw, draw_swarm
from ._trace import Trace
from ._workload import Workload, WorkloadStats

__all__ = [
    "EPOCH",
    "MONOTONIC_T0",
    "DecodeMemo",
    "RunResult",
    "Simulation",
    "VerifyMemo",
    "run_scenario",
]

EPOCH = 1_767_225_600.0  # 2026-01-01T00:00:00Z: replicas' wall clocks start here
#: Where the engines' monotonic clock starts: a realistic reading (a node passes
#: time.monotonic(), and a test of the old bug passed time.time(), ~1.77e9).
MONOTONIC_T0 = 1_770_000_000.0


class VerifyMemo:
    """A process-wide memo of Ed25519 verification.

    Verification is a pure function of (key, signature, bytes), and in a
    simulation every replica verifies the same relayed batch; doing it once
    per distinct batch keeps real signatures affordable (each distinct
    signature is still really checked). ``--no-verify-cache`` turns it off.
    """

    __slots__ = ("_memo", "hits", "misses")

    def __init__(self) -> None:
        self._memo: dict[tuple[bytes, bytes, bytes], bool] = {}
        self.hits = 0
        self.misses = 0

    def __call__(self, public_key: bytes, signature: bytes, data: bytes) -> bool:
        key = (public_key, signature, data)
        ok = self._memo.get(key)
        if ok is None:
            self.misses += 1
            ok = self._memo[key] = verify_signature(public_key, signature, data)
        else:
            self.hits += 1
        return ok


class DecodeMemo:
    """A process-wide memo of ``decode_deltas`` over signed batch payloads.

    Like :class:`VerifyMemo`: decoding is a pure function of the payload's
    bytes, and every replica of a simulated fleet decodes every relayed batch,
    so each distinct payload is decoded (and checked by the codec) once. The
    engines still check each batch against their own state — sequence,
    origin of every delta, the model's rules — and join it themselves.
    Sharing the decoded deltas between replicas relies on a delta's state
    never being mutated once it exists (``Delta``'s contract; joins copy).
    Bounded: the oldest entries go first (a batch is relayed within a few
    rounds of being sealed). ``--no-verify-cache`` turns it off too.
    """

    __slots__ = ("_memo", "hits", "limit", "misses")

    def __init__(self, limit: int = 1 << 16) -> None:
        self._memo: dict[bytes, tuple[Delta, ...]] = {}
        self.limit = limit
        self.hits = 0
        self.misses = 0

    def __call__(self, payload: bytes) -> tuple[Delta, ...]:
        deltas = self._memo.get(payload)
        if deltas is None:
            self.misses += 1
            deltas = tuple(decode_deltas(payload))  # raises: nothing is stored
            memo = self._memo
            if len(memo) >= self.limit:
                del memo[next(iter(memo))]
            memo[payload] = deltas
        else:
            self.hits += 1
        return deltas


#: The shared field the crash window writes (a string, home-wins: any value
#: of the workload's kind would do).
WINDOW_FIELD = "owner"


@dataclass(slots=True)
class _Window:
    """A crash window (issue 17): a write in memory whose commit is pending,
    and the context a reader took while it was there."""

    entity: str
    field: str
    before: FieldState | None  # the field as the store has it (the write not in it)
    token: CausalContext  # what the reader holds: it covers the write
    read: dict[str, int]  # the writes applied at the replica when it read
    n: int


@dataclass(slots=True)
class _Node:
    name: str
    engine: SyncEngine
    prev_vv: VersionVector
    prev_plain: dict[str, int] = field(default_factory=dict)
    prev_ok: bool = False  # prev_plain equalled the oracle's account
    up: bool = True
    token: int = 0
    timer_at: float = math.inf
    skew: float = 0.0
    crashed: list[list[float]] = field(default_factory=list)  # [start, end]
    status: list[tuple[float, str]] = field(default_factory=list)  # connectivity changes
    converged_at: float | None = None
    window: _Window | None = None  # a write in flight at the last crash


@dataclass(frozen=True, slots=True, kw_only=True)
class RunResult:
    scenario: str
    scenario_path: str
    seed: int
    swarm: bool
    scale: float
    nodes: tuple[str, ...]
    trace_hash: str
    trace_events: int
    verdicts: tuple[Verdict, ...]
    ok: bool
    command: str
    wall_seconds: float
    safety_seconds: float  # simulated
    liveness_seconds: float  # simulated, heal -> converged (or timeout)
    converged: bool
    rounds_after_heal: float | None
    # heal -> first message delivered over a link that was down at the heal
    # (the wait for back-off to expire); None if nothing was down
    first_crossing_rounds: float | None
    round_goal: int
    round_bound: int
    gossip_interval: float
    writes: int
    writes_by_kind: dict[str, int]
    unavailable: int
    conflicts_at_heal: int
    conflicts_final: int
    resolutions: int
    messages: int
    bytes: int
    messages_per_write: float
    bytes_per_write: float
    snapshots: int
    catch_up_messages: int  # sent from heal until convergence
    catch_up_bytes: int
    network: dict[str, Any]
    probes: int
    verify_cache: dict[str, int]
    faults: tuple[FaultRecord, ...]
    crashes: dict[str, list[list[float]]]
    status: dict[str, list[tuple[float, str]]]
    converged_at: dict[str, float | None]
    lag_times: tuple[float, ...]
    lag: dict[str, list[int]]
    swarm_draw: SwarmDraw | None
    events: int
    final_digest: str | None
    event_budget: int = 0  # sim/_budget.py; reaching it is a liveness failure


class Simulation:
    def __init__(
        self,
        scenario: Scenario,
        seed: int,
        *,
        swarm: bool = False,
        verify_cache: bool = True,
        command: str = "",
        lag_samples: int = 120,
        t0: float = MONOTONIC_T0,
    ) -> None:
        self.seed = seed
        self.t0 = t0
        self.command = command
        rngs = Rngs(seed)
        self.swarm_draw: SwarmDraw | None = None
        if swarm:
            scenario, self.swarm_draw = draw_swarm(scenario, rngs.get("swarm"))
        self.scenario = scenario
        self.budget: EventBudget = event_budget(scenario)
        self.spun: str | None = None  # the liveness failure when the budget ran out
        self._phase_mark: tuple[int, dict[str, int]] = (0, {})
        self.loop = EventLoop()
        self.trace = Trace()
        self.findings = Findings()
        fleet = scenario.fleet
        self.names = fleet.nodes
        keys = rngs.get("keys")
        authority = FleetAuthority(keys)
        identities = {n: authority.new_identity(n, keys) for n in self.names}
        seeds = [
            MemberInfo(credential=identities[n].credential, address=n, last_contact=-1.0)
            for n in self.names
        ]
        self.memo = VerifyMemo() if verify_cache else None
        verify = self.memo if self.memo is not None else verify_signature
        self.decode_memo = DecodeMemo() if verify_cache else None
        decode = self.decode_memo if self.decode_memo is not None else decode_deltas
        self.nodes: dict[str, _Node] = {}
        for n in self.names:
            engine = SyncEngine(
                identity=identities[n],
                state=ReplicaState(n, PUMP_SCHEMAS),
                fleet_public_key=authority.public_key,
                seeds=seeds,
                address=n,
                config=scenario.sync,
                rng=rngs.get(f"engine:{n}"),
                now=t0,
                verify=verify,
                decode=decode,
            )
            self.nodes[n] = _Node(name=n, engine=engine, prev_vv=engine.vv)
        profiles = {
            (a, b): scenario.links.profile_for(fleet, a, b)
            for a in self.names
            for b in self.names
            if a != b
        }
        self.network = Network(
            loop=self.loop,
            rng=rngs.get("network"),
            trace=self.trace,
            profiles=profiles,
            deliver=self._deliver,
            on_change=self._links_changed,
        )
        self.oracle = Oracle(self.names)
        self.workload = Workload(
            spec=scenario.workload, fleet=fleet, rng=rngs.get("workload"), loop=self.loop, host=self
        )
        self.faults = FaultController(
            loop=self.loop,
            network=self.network,
            rng=rngs.get("faults"),
            trace=self.trace,
            host=self,
            nodes=self.names,
        )
        self.checks_rng = rngs.get("checks")
        self.causal_rng = rngs.get("causal-checks")  # its own stream: checks never shift a run
        self.lies_rng = rngs.get("byzantine")
        self.byzantine: set[str] = set()  # members lying right now
        self._liars: set[str] = set()  # members that ever lied
        self.lies_told = 0
        self.phase = "safety"
        self.heal_at: float | None = None
        self.converged_at: float | None = None
        self.first_crossing: float | None = None
        self._healed_links: set[tuple[str, str]] = set()
        self._converged_count = 0
        self._done = False
        self.probes = 0
        self._windows = 0  # crash windows played
        self.window_refusals = 0  # write backs refused as naming a write that never was
        self.snapshots = 0
        self.lag_times: list[float] = []
        self.lag: dict[str, list[int]] = {n: [] for n in self.names}
        self._lag_every = max(scenario.duration / lag_samples, scenario.sync.gossip_interval)
        self.final_digest: str | None = None
        self._traffic_at_heal = (0, 0)
        for node in self.nodes.values():
            node.status.append((0.0, "ok"))

    # ------------------------------------------------------------ host API

    def state_of(self, node: str) -> ReplicaState | None:
        n = self.nodes[node]
        return n.engine.state if n.up else None

    def applied_of(self, node: str) -> dict[str, int]:
        return dict(self.oracle.applied[node])

    def wall_ms(self, node: str) -> int:
        return int((EPOCH + self.loop.now + self.nodes[node].skew) * 1000)

    def commit(self, node: str, delta: Delta, op: Op) -> None:
        n = self.nodes[node]
        self.findings.checked("local-writes")
        seq = n.engine.commit(delta)
        self.oracle.record(node, seq, op, self.loop.now)
        check_touched(
            self.oracle,
            node,
            n.engine.state,
            self.oracle.applied[node],
            {(op.entity, getattr(op, "field", None))},
            self.findings,
            when=f"t={self.loop.now:.3f} after a local write at",
        )
        self.trace.record(self.loop.now, "write", node, seq, repr(op))
        self._after(n)

    def violation(self, checker: str, message: str) -> None:
        self.findings.fail(checker, f"t={self.loop.now:.3f}: {message}")

    def checked(self, checker: str) -> None:
        self.findings.checked(checker)

    def write_in_flight(self, node: str) -> None:
        """The first half of a crash window: a write joined in memory, its
        commit pending (``durable=False``: the engine keeps it home), and a
        reader's context that covers it. Nothing else happens before the
        crash that follows in the same event, so the crash can take exactly
        this write back."""
        n = self.nodes[node]
        state = n.engine.state
        if not n.up or not self.workload.active or not state.entities:
            return
        entity = state.entities[min(state.entities)]
        before = entity.fields.get(WINDOW_FIELD)
        before = None if before is None else before.copy()  # the join below is in place
        self._windows += 1
        k = self._windows
        delta = state.write(
            entity.id,
            WINDOW_FIELD,
            f"in-flight-{k}",
            author="crash-window",
            now_ms=self.wall_ms(node),
        )
        n.engine.commit(delta, durable=False)
        register = entity.fields[WINDOW_FIELD]
        assert isinstance(register, MVRegister)
        n.window = _Window(
            entity=entity.id,
            field=WINDOW_FIELD,
            before=before,
            token=register.context(),
            read=dict(self.oracle.applied[node]),
            n=k,
        )
        self.trace.record(self.loop.now, "in-flight", node, entity.id, WINDOW_FIELD, k)

    def write_back(self, node: str) -> None:
        """The second half: after the restart, a new acknowledged write to the
        field, then a write back with the token read before the crash. The
        acknowledged write must survive it (the ``crash-window`` checker):
        either the node refuses the token, which names a write it never made
        durable, or the write back stands beside it as a sibling."""
        n = self.nodes[node]
        window, n.window = n.window, None
        if window is None or not n.up or not self.workload.active:
            return
        state = n.engine.state
        value = f"acknowledged-{window.n}"
        # Written as if by a client that read nothing (an empty context): it
        # stands beside what is there, so the window adds a conflict rather
        # than settling the ones the workload made.
        delta = state.write(
            window.entity,
            window.field,
            value,
            author="crash-window",
            now_ms=self.wall_ms(node),
            context=CausalContext(),
        )
        self.commit(
            node,
            delta,
            RegisterWrite(entity=window.entity, field=window.field, value=value, read={}),
        )
        try:
            back = state.write(
                window.entity,
                window.field,
                f"written-back-{window.n}",
                author="crash-window",
                now_ms=self.wall_ms(node),
                context=window.token,
            )
        except LocalProtocolError:
            self.window_refusals += 1  # the token names a write that never was: read again
        else:
            self.commit(
                node,
                back,
                RegisterWrite(
                    entity=window.entity,
                    field=window.field,
                    value=f"written-back-{window.n}",
                    read=window.read,
                ),
            )
        check_crash_window(
            node,
            state,
            (window.entity, window.field),
            value,
            self.findings,
            when=f"t={self.loop.now:.3f}",
        )

    def crash(self, node: str) -> None:
        n = self.nodes[node]
        if not n.up:
            return
        window = n.window
        if window is not None:
            # The crash takes the write in flight: the store never had it.
            fields = n.engine.state.entities[window.entity].fields
            if window.before is None:
                del fields[window.field]
            else:
                fields[window.field] = window.before
            n.engine.lose_undurable()
        n.up = False
        n.token += 1
        n.timer_at = math.inf
        n.crashed.append([self.loop.now, math.inf])
        self.trace.record(self.loop.now, "crash", node)

    def restart(self, node: str) -> None:
        n = self.nodes[node]
        if n.up:
            return
        n.up = True
        n.crashed[-1][1] = self.loop.now
        n.engine.restart(self.t0 + self.loop.now)
        # A start after a crash begins a new epoch (a node's Store.begin_epoch):
        # shared-field dots from here on are a new actor's (crdt/_clocks.py).
        n.engine.state.epoch += 1
        self.oracle.new_epoch(node)
        self.trace.record(self.loop.now, "restart", node)
        self._after(n)

    def set_skew(self, node: str, seconds: float) -> None:
        self.nodes[node].skew = seconds
        self.trace.record(self.loop.now, "skew", node, repr(seconds))

    def set_byzantine(self, node: str, lying: bool) -> None:
        if lying:
            self.byzantine.add(node)
            self._liars.add(node)
        else:
            self.byzantine.discard(node)
        self.trace.record(self.loop.now, "byzantine", node, repr(lying))

    def jump_clock(self, node: str, seconds: float) -> None:
        self.nodes[node].skew += seconds
        self.trace.record(self.loop.now, "jump", node, repr(seconds))

    # ------------------------------------------------------------ engine driving

    def _after(self, n: _Node) -> None:
        engine = n.engine
        out = engine.messages_to_send()
        if out:
            send = self.network.send
            lying = n.name in self.byzantine and n.up
            for o in out:
                send(n.name, o.peer, o.data)
                if lying:
                    told = lie(engine, self.lies_rng)
                    if told is not None:
                        self.lies_told += 1
                        self.trace.record(self.loop.now, "lie", n.name, o.peer, told[0])
                        send(n.name, o.peer, told[1])
        if n.up:
            nt = engine.next_timer() - self.t0
            if nt != n.timer_at:
                n.timer_at = nt
                n.token += 1
                self.loop.at(nt, self._on_timer, n, n.token)
        if engine.vv is not n.prev_vv:
            self._vv_changed(n)

    def _on_timer(self, n: _Node, token: int) -> None:
        if token != n.token or not n.up:
            return
        n.timer_at = math.inf
        # max(): t0 + (timer - t0) may round an ulp below the timer itself.
        n.engine.handle_timer(max(self.t0 + self.loop.now, n.engine.next_timer()))
        self._after(n)

    def _vv_changed(self, n: _Node) -> None:
        vv = n.engine.vv
        # Plain dicts (as_dict is one C-level copy): this runs after every
        # event that moved a vector, and the Mapping protocol is slow at 100 members.
        new = vv.as_dict()
        prev = n.prev_plain
        findings = self.findings
        findings.checked("vv-monotonic")
        applied = self.oracle.applied[n.name]
        # The oracle's account only grows, so a vector equal to it, after one
        # that was equal to it, cannot have gone back: the entry-by-entry walk
        # (Python, O(members), after every event at 500 plants the largest
        # cost of the run) is needed only when the accounting is off.
        if not (n.prev_ok and new == applied):
            get = new.get
            for r, k in prev.items():
                if get(r, 0) < k:
                    findings.fail(
                        "vv-monotonic",
                        f"t={self.loop.now:.3f}: {n.name} vv[{r}] went {k} -> {get(r, 0)}",
                    )
        n.prev_ok = new == applied
        n.prev_vv = vv
        n.prev_plain = new
        findings.checked("vv-accounting")
        if new != applied:
            findings.fail(
                "vv-accounting",
                f"t={self.loop.now:.3f}: {n.name} engine vv {new} != oracle {applied}",
            )
        if self.phase == "liveness":
            total = self.oracle.total
            if n.converged_at is None and applied == total:
                n.converged_at = self.loop.now
                self._converged_count += 1
                if self._converged_count == len(self.nodes):
                    self._all_converged()

    def _deliver(self, src: str, dst: str, data: bytes, twice: bool) -> None:
        if self._healed_links and (src, dst) in self._healed_links:
            self._healed_links.clear()
            self.first_crossing = self.loop.now
        n = self.nodes[dst]
        if not n.up:
            self.network.drop_down(src, dst, data)
            return
        self._receive(n, src, data)
        if twice:
            self._probe(n, src, data)

    def _receive(self, n: _Node, src: str, data: bytes) -> list[Event]:
        now = self.loop.now
        self.findings.checked("no-refusals")
        events: list[Event]
        try:
            events = n.engine.receive(
                data, now=self.t0 + now, peer=src, wall_ms=self.wall_ms(n.name)
            )
        except RemoteProtocolError as exc:
            if src in self.byzantine or src in self._liars:
                # A liar's message refused: what must happen. (Its lies may
                # still be in flight after its fault ended.)
                self.findings.checked("byzantine-refused")
            else:
                self.findings.fail(
                    "no-refusals",
                    f"t={now:.3f}: {n.name} refused a message from {src}: {exc.reason}",
                )
            events = []
        oracle = self.oracle
        touched: set[tuple[str, str | None]] = set()
        for ev in events:
            if isinstance(ev, DeltasApplied):
                oracle.delivered(n.name, ev.origin, ev.first, ev.last, now)
                touched |= oracle.keys_written(ev.origin, ev.first, ev.last)
            elif isinstance(ev, SnapshotApplied):
                self.snapshots += 1
                oracle.snapshot(n.name, ev.vv, now)
                for keys in oracle.touched.values():
                    touched.update(keys)
                self.trace.record(now, "snapshot", n.name, ev.sender)
            elif isinstance(ev, BatchRefused):
                self.findings.fail(
                    "no-refusals",
                    f"t={now:.3f}: {n.name} refused a batch of {ev.origin} from {src}: {ev.reason}",
                )
        if oracle.problems:
            for p in oracle.problems:
                self.findings.fail("vv-accounting", p)
            oracle.problems.clear()
        if touched:
            check_touched(
                oracle,
                n.name,
                n.engine.state,
                oracle.applied[n.name],
                touched,
                self.findings,
                when=f"t={now:.3f} after a batch from {src} at",
            )
        self._after(n)
        return events

    def _probe(self, n: _Node, src: str, data: bytes) -> None:
        """The same bytes again, back to back: the state must not move."""
        self.probes += 1
        engine = n.engine
        vv, digest = engine.vv, state_digest(engine.state)
        self.findings.checked("idempotent-delivery")
        self._receive(n, src, data)
        if engine.vv != vv or state_digest(engine.state) != digest:
            self.findings.fail(
                "idempotent-delivery",
                f"t={self.loop.now:.3f}: redelivering a message from {src} changed {n.name}",
            )

    def _links_changed(self) -> None:
        now = self.loop.now
        names = self.names
        # Per node, how many of its links (both directions) are down: the
        # network keeps the set of down links, so this costs what is down.
        down: dict[str, int] = dict.fromkeys(names, 0)
        for a, b in self.network.down:
            if a != b:
                down[a] += 1
                down[b] += 1
        total = 2 * (len(names) - 1)
        for a in names:
            ok = total - down[a]
            status = "ok" if ok == total else ("isolated" if ok == 0 else "partial")
            node = self.nodes[a]
            if node.status[-1][1] != status:
                if node.status[-1][0] == now:
                    node.status[-1] = (now, status)
                else:
                    node.status.append((now, status))

    # ------------------------------------------------------------ sampling & checks

    def _sample_lag(self) -> None:
        self.lag_times.append(self.loop.now)
        for name in self.names:
            self.lag[name].append(self.oracle.lag(name))

    def _lag_tick(self) -> None:
        if self._done:
            return
        self._sample_lag()
        every = self._lag_every if self.phase == "safety" else self.scenario.sync.gossip_interval
        self.loop.at(self.loop.now + every, self._lag_tick)

    def _check_one(self) -> None:
        if self.phase != "safety":
            return
        name = self.checks_rng.choice(self.names)
        self._compare(name, final=False, when=f"t={self.loop.now:.1f}")
        every = self.scenario.check_every or self.scenario.duration / 10
        self.loop.at(self.loop.now + every, self._check_one)

    def _causal_tick(self) -> None:
        if self.phase != "safety":
            return
        names = list(self.names)
        if len(names) > 8:
            names = sorted(self.causal_rng.sample(names, 8))
        self._check_verdicts(names, when=f"t={self.loop.now:.1f}")
        every = (self.scenario.check_every or self.scenario.duration / 10) / 4
        self.loop.at(self.loop.now + every, self._causal_tick)

    def _check_verdicts(self, names: list[str], *, when: str) -> None:
        """The review queue of each of ``names``, and the vectors' order."""
        for name in names:
            check_conflict_queue(
                self.oracle,
                name,
                self.nodes[name].engine.state,
                self.oracle.applied[name],
                self.findings,
                when=when,
            )
        nodes = self.nodes

        liars = self._liars

        def known(a: str, b: str) -> VersionVector | None:
            # What a Byzantine relay claims to hold is a lie by construction
            # (its digests inflate every origin); believing a liar only starves
            # the liar, and byzantine-refused judges what it may not do.
            if b in liars:
                return None
            member = nodes[a].engine.members.get(b)
            return None if member is None else member.known_vv

        check_vv_order(
            self.oracle,
            {name: n.engine.vv for name, n in nodes.items()},
            known,
            self.findings,
            self.causal_rng,
            when=when,
        )

    def _compare(self, name: str, *, final: bool, when: str) -> None:
        vector = self.oracle.total if final else self.oracle.applied[name]
        compare_replica(
            self.oracle,
            name,
            self.nodes[name].engine.state,
            vector,
            self.findings,
            final=final,
            when=when,
        )

    def _all_converged(self) -> None:
        digests = {name: state_digest(n.engine.state) for name, n in self.nodes.items()}
        self.findings.checked("convergence")
        if len(set(digests.values())) != 1:
            groups: dict[str, list[str]] = {}
            for name, d in digests.items():
                groups.setdefault(d[:12], []).append(name)
            self.findings.fail(
                "convergence",
                f"t={self.loop.now:.3f}: every vv equal but states differ: {groups}",
            )
        else:
            self.final_digest = next(iter(digests.values()))
        self.converged_at = self.loop.now
        self._done = True

    # ------------------------------------------------------------ the run

    def run(self, on_heal: Callable[[Simulation], None] | None = None) -> RunResult:
        """Both phases; ``on_heal`` (benchmarks) sees the fleet just before the heal."""
        wall0 = time.perf_counter()
        sc = self.scenario
        self.workload.bootstrap()
        for node in self.nodes.values():
            self._after(node)
        self.faults.schedule(sc.faults)
        self.workload.start(end=sc.duration)
        self.loop.at(0.0, self._lag_tick)
        self.loop.at((sc.check_every or sc.duration / 10), self._check_one)
        self.loop.at((sc.check_every or sc.duration / 10) / 4, self._causal_tick)
        # Events at exactly the end (a fault scheduled to end with the phase)
        # belong to the heal, so the liveness figures see what it healed.
        self._mark_phase()
        self.loop.run_until(sc.duration, inclusive=False, max_processed=self.budget.events)
        self._check_budget()

        # End of safety: every replica against what it has applied.
        for name in self.names:
            self._compare(name, final=False, when=f"t={self.loop.now:.1f} (end of safety)")
        self._check_verdicts(list(self.names), when=f"t={self.loop.now:.1f} (end of safety)")
        conflicts_at_heal = max(len(n.engine.state.conflicts()) for n in self.nodes.values())

        # Liveness: heal everything, restart the crashed, stop writing.
        if on_heal is not None:
            on_heal(self)
        self.phase = "liveness"
        self.workload.stop()
        self.faults.stop()
        self.byzantine.clear()
        self._healed_links = {
            (a, b)
            for a in self.names
            for b in self.names
            if a != b and not (self.network.is_up(a, b) and self.nodes[a].up and self.nodes[b].up)
        }
        self.network.heal_all()
        self.heal_at = self.loop.now
        self._traffic_at_heal = self._traffic()
        self.trace.record(self.loop.now, "heal-all")
        for name in self.names:
            self.restart(name)
        total = self.oracle.total
        for node in self.nodes.values():
            if node.converged_at is None and self.oracle.applied[node.name] == total:
                node.converged_at = self.loop.now
                self._converged_count += 1
        if self._converged_count == len(self.nodes):
            self._all_converged()
        self._sample_lag()
        self._mark_phase()
        self.loop.run_until(
            self.heal_at + sc.liveness.timeout,
            stop=lambda: self._done,
            max_processed=self.budget.events,
        )
        self._check_budget()
        self._sample_lag()
        return self._finish(wall0, conflicts_at_heal)

    def _mark_phase(self) -> None:
        self._phase_mark = (
            self.loop.processed,
            {n: node.engine.metrics.messages_received for n, node in self.nodes.items()},
        )

    def _check_budget(self) -> None:
        """Name what spun if the phase just run stopped on the event budget."""
        if self.spun is not None or self._done or self.loop.processed < self.budget.events:
            return
        events0, received0 = self._phase_mark
        in_flight: Counter[tuple[str, str, str]] = Counter()
        arrive = self.network._arrive
        for _, _, action, args in self.loop._heap:
            if action == arrive:
                src, dst, data = args[0], args[1], args[2]
                try:
                    message = decode_message(data)
                except RemoteProtocolError:
                    kind = "undecodable"
                else:
                    kind = type(message).__name__
                    if getattr(message, "more", False):
                        kind += "(more)"
                in_flight[(src, dst, kind)] += 1
        self.spun = spin_message(
            self.budget,
            phase=self.phase,
            now=self.loop.now,
            heal_at=self.heal_at,
            phase_events=self.loop.processed - events0,
            received={
                n: node.engine.metrics.messages_received - received0.get(n, 0)
                for n, node in self.nodes.items()
            },
            in_flight=dict(in_flight),
        )
        self.trace.record(self.loop.now, "event-budget", self.phase)

    def _traffic(self) -> tuple[int, int]:
        """(messages, bytes) the engines have sent so far."""
        metrics = [n.engine.metrics for n in self.nodes.values()]
        return sum(m.messages_sent for m in metrics), sum(m.bytes_sent for m in metrics)

    def _finish(self, wall0: float, conflicts_at_heal: int) -> RunResult:
        sc = self.scenario
        findings = self.findings
        assert self.heal_at is not None
        interval = sc.sync.gossip_interval
        goal = math.ceil(math.log2(max(len(self.names), 2))) + 2
        bound = sc.round_bound()
        rounds = None
        first_rounds = None
        converged = self.converged_at is not None and self.final_digest is not None
        findings.checked("convergence")
        findings.checked("liveness")
        if self.converged_at is None:
            lagging = {n: self.oracle.lag(n) for n in self.names if self.oracle.lag(n)}
            after = self.loop.now - self.heal_at if self.spun else sc.liveness.timeout
            findings.fail(
                "convergence",
                f"not converged {after:g} s after heal; writes missing per replica: {lagging}",
            )
            findings.fail(
                "liveness",
                self.spun or f"no convergence within the {sc.liveness.timeout:g} s timeout",
            )
        else:
            rounds = (self.converged_at - self.heal_at) / interval
            if self.first_crossing is not None:
                first_rounds = (self.first_crossing - self.heal_at) / interval
            if rounds > bound:
                findings.fail(
                    "liveness",
                    f"converged after {rounds:.1f} rounds, bound {bound} (goal {goal})",
                )
        if self._liars:
            # No forged value visible anywhere, the liar's own state included
            # (its engine is honest: it only ever holds what it was told).
            for name, n in self.nodes.items():
                findings.checked("byzantine-refused")
                if FORGED.encode() in encode_state(n.engine.state):
                    findings.fail("byzantine-refused", f"{name} holds a value a relay forged")
            findings.checked("byzantine-refused", self.lies_told)
        # Final: every replica against every acknowledged write.
        for name in self.names:
            self._compare(name, final=True, when="final")
        self._check_verdicts(list(self.names), when="final")
        queues = {}
        for name, n in self.nodes.items():
            queues[name] = [
                (c.key, tuple(str(s.dot) for s in c.siblings), str(c.provisional.dot))
                for c in n.engine.state.conflicts()
            ]
        findings.checked("conflict-queue", len(queues))
        expected_keys = sorted(
            f"{e}#{f}"
            for (e, f), reg in self.oracle.registers.items()
            if len(reg.siblings(self.oracle.total)) > 1
        )
        reference = queues[self.names[0]]
        for name, q in queues.items():
            if q != reference:
                findings.fail(
                    "conflict-queue",
                    f"{name} shows {q[:3]}..., {self.names[0]} shows {reference[:3]}...",
                )
            if sorted(k for k, _, _ in q) != expected_keys:
                findings.fail(
                    "conflict-queue",
                    f"{name} queue {sorted(k for k, _, _ in q)} "
                    f"!= oracle's concurrent writes {expected_keys}",
                )
        verdicts = tuple(findings.verdicts())
        ok = all(v.ok for v in verdicts)
        messages, nbytes = self._traffic()
        heal_messages, heal_bytes = self._traffic_at_heal
        writes = len(self.oracle.writes)
        stats: NetworkStats = self.network.stats
        wl: WorkloadStats = self.workload.stats
        return RunResult(
            scenario=sc.name,
            scenario_path=sc.path,
            seed=self.seed,
            swarm=self.swarm_draw is not None,
            scale=sc.scale,
            nodes=self.names,
            trace_hash=self.trace.hexdigest(),
            trace_events=self.trace.events,
            verdicts=verdicts,
            ok=ok,
            command=self.command,
            wall_seconds=time.perf_counter() - wall0,
            safety_seconds=sc.duration,
            liveness_seconds=(self.converged_at or self.loop.now) - self.heal_at,
            converged=converged,
            rounds_after_heal=rounds,
            first_crossing_rounds=first_rounds,
            round_goal=goal,
            round_bound=bound,
            gossip_interval=interval,
            writes=writes,
            writes_by_kind=dict(sorted(wl.acknowledged.items())),
            unavailable=wl.unavailable,
            conflicts_at_heal=conflicts_at_heal,
            conflicts_final=len(reference),
            resolutions=self.oracle.resolutions,
            messages=messages,
            bytes=nbytes,
            messages_per_write=messages / writes if writes else 0.0,
            bytes_per_write=nbytes / writes if writes else 0.0,
            snapshots=self.snapshots,
            catch_up_messages=messages - heal_messages,
            catch_up_bytes=nbytes - heal_bytes,
            network={
                "sent": stats.sent,
                "delivered": stats.delivered,
                "duplicated": stats.duplicated,
                "reordered": stats.reordered,
                "held_by_clog": stats.held,
                "dropped": dict(sorted(stats.dropped.items())),
            },
            probes=self.probes,
            verify_cache=(
                {
                    "hits": self.memo.hits,
                    "misses": self.memo.misses,
                    "decode_hits": self.decode_memo.hits if self.decode_memo else 0,
                    "decode_misses": self.decode_memo.misses if self.decode_memo else 0,
                }
                if self.memo
                else {}
            ),
            faults=tuple(self.faults.timeline),
            crashes={
                n: [list(c) for c in node.crashed] for n, node in self.nodes.items() if node.crashed
            },
            status={n: list(node.status) for n, node in self.nodes.items()},
            converged_at={n: node.converged_at for n, node in self.nodes.items()},
            lag_times=tuple(self.lag_times),
            lag={n: list(v) for n, v in self.lag.items()},
            swarm_draw=self.swarm_draw,
            events=self.loop.processed,
            final_digest=self.final_digest,
            event_budget=self.budget.events,
        )


def run_scenario(
    scenario: Scenario,
    seed: int,
    *,
    swarm: bool = False,
    verify_cache: bool = True,
    command: str = "",
    progress: Callable[[str], None] | None = None,
) -> RunResult:
    sim = Simulation(scenario, seed, swarm=swarm, verify_cache=verify_cache, command=command)
    result = sim.run()
    if progress is not None:
        progress(f"seed {seed}: {'ok' if result.ok else 'FAILED'}")
    return result
