"""One twinmesh node: store + CRDT state + sync engine, and the rules for
turning a user's request into a durable, gossiped write.

Write path: the mutator builds a delta and joins it in memory; the engine
gives it a sequence number but keeps it home; the store group-commits it;
only then is it marked durable (may be gossiped) and acknowledged. If the
store fails, the node stops: memory now holds a write the disk does not, and
crash-only restart from the log is the safe way back.

Start-up replays the op log (event sourcing) into a fresh state; the state
digest after replay equals the digest before the restart.

The crash window (issue 17): between the join in memory and the commit, a
write exists only in this process. Two guarantees hold, each enough alone
that a context token never covers an acknowledged write its reader did not
see: (1) a read never hands out a context covering a write that is not yet
durable (``settled``: every API GET waits out in-flight commits); (2) a dot
is never issued twice: after a start that did not follow a clean stop the
node writes as a new epoch's actor (``Store.begin_epoch``, crdt/_clocks.py),
so a token from before a crash names dots no later write can carry. The
replica-level sequence numbers stay gap-free: the sequence number of a write
lost in the window is reused, which is safe because the engine never lets a
non-durable write leave (``SyncEngine.commit(durable=False)``).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from twinmesh.crdt import (
    Delta,
    RemoteProtocolError,
    ReplicaState,
    VersionVector,
    decode_state,
    encode_state,
    state_digest,
)
from twinmesh.sync import (
    BatchStored,
    Compacted,
    MemberInfo,
    Outgoing,
    ProofStored,
    SnapshotStored,
    SyncConfig,
    SyncEngine,
)

from ._config import ConfigError, NodeConfig
from ._models import AUDIT_ENTITY, AUDIT_MODEL, load_registry, load_schemas
from ._shared_models import SharedModels
from ._signing import load_fleet_public_key, load_identity
from ._store import Store
from ._test_hooks import commit_hold_from_env
from .commands._service import CommandService
from .cosim._service import CosimService
from .lifecycle import Lifecycle
from .telemetry import TelemetryConfigError, TelemetryService, check_asset_ids, tag_specs

__all__ = ["Node", "NodeMetrics"]

log = logging.getLogger("twinmesh.node")


@dataclass(slots=True)
class NodeMetrics:
    api_requests: dict[tuple[str, int], int] = field(default_factory=dict)
    api_seconds: dict[str, float] = field(default_factory=dict)
    api_refusals: dict[str, int] = field(default_factory=dict)
    gossip_refusals: dict[str, int] = field(default_factory=dict)
    gossip_exchanges: int = 0
    gossip_failures: int = 0
    writes: int = 0

    def refuse(self, where: dict[str, int], reason: str) -> None:
        where[reason] = where.get(reason, 0) + 1


class Node:
    def __init__(
        self,
        config: NodeConfig,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        # One clock per purpose. ``clock`` is wall time: it stamps writes (the
        # hybrid clock's physical part) and telemetry. ``monotonic`` drives the
        # sync engine's timers, timeouts and eviction, which measure durations
        # and must not jump when the wall clock is stepped.
        self.clock = clock
        self.monotonic = monotonic
        self.metrics = NodeMetrics()
        self.registry = load_registry()
        shipped = frozenset(self.registry)
        if config.models:
            self.registry.add_files(list(config.models))
        self.schemas = load_schemas(registry=self.registry)
        self.shared_models = SharedModels(self.registry, self.schemas, shipped=shipped)
        self.state = ReplicaState(config.name, self.schemas)
        self.identity = load_identity(config.name, config.signing_dir)
        self.fleet_public_key = load_fleet_public_key(config.signing_dir / "fleet-signing.pub")
        self.store: Store | None = None
        self.engine: SyncEngine | None = None
        self.feed: set[asyncio.Queue[dict[str, Any]]] = set()
        self._pending: list[Outgoing] = []  # engine output not yet handed to a transport
        # Commits of local writes that are joined in memory but not yet on disk.
        self._committing: set[asyncio.Future[None]] = set()
        self._hold = commit_hold_from_env()  # None unless a test widens the commit window
        self._fatal: asyncio.Future[None] | None = None
        self.telemetry: TelemetryService | None = None
        self.lifecycle = Lifecycle(self)  # ISO 23247 states; decommissioned twins are archived
        self.commands = CommandService(self)  # signed commands, executed at home only
        from .scoring._node_hook import attach_scoring

        attach_scoring(self)  # node.alerts, node.work_orders, node.scoring (node/scoring)
        if config.telemetry is not None:
            try:
                specs = tag_specs(config.telemetry.assets, self.registry)
                check_asset_ids(config.telemetry, home=config.name)
            except TelemetryConfigError as exc:
                raise ConfigError(str(exc)) from None
            self.telemetry = TelemetryService(
                config.telemetry, specs, node_name=config.name, clock=clock
            )
        # Co-simulation (node/cosim): None when the node has no [cosim] or no telemetry.
        self.cosim: CosimService | None = None
        if config.cosim is not None and self.telemetry is not None:
            self.cosim = CosimService(
                config.cosim,
                telemetry=self.telemetry,
                data_dir=config.data_dir,
                clock=clock,
                desired=self.commands.desired_value,
            )

    # ------------------------------------------------------------ lifecycle

    async def open(self) -> None:
        cfg = self.config
        self._fatal = asyncio.get_running_loop().create_future()
        self.store = await Store.open(cfg.data_dir / "node.sqlite")
        now = self.monotonic()
        seeds = [
            MemberInfo(
                credential=self.identity.credential, address=cfg.gossip_url, last_contact=now
            )
        ]
        self.engine = SyncEngine(
            identity=self.identity,
            state=self.state,
            fleet_public_key=self.fleet_public_key,
            seeds=seeds,
            address=cfg.gossip_url,
            config=SyncConfig(
                gossip_interval=cfg.gossip_interval,
                fanout=cfg.fanout,
                keep_journal=True,
                evict_after=cfg.evict_after,
                reply_timeout=max(3 * cfg.gossip_interval, 2.0),
                backoff_base=cfg.gossip_interval,
                backoff_max=max(10 * cfg.gossip_interval, 5.0),
            ),
            rng=random.Random(),
            now=now,
        )
        await self._replay()
        # Issue 17: an epoch of our own before the first local write, so a
        # restart after a crash never issues a dot the dead incarnation could
        # have handed out (crdt/_clocks.py).
        self.state.epoch = await self.store.begin_epoch(
            has_history=bool(self.engine.vv) or bool(self.state.entities)
        )
        if AUDIT_ENTITY(cfg.name) not in self.state.entities:
            await self.write(lambda s: s.create(AUDIT_ENTITY(cfg.name), AUDIT_MODEL, author="node"))
        # Models: adopt what the fleet replicated, then replicate our own additions.
        self.shared_models.adopt(self.state)
        missing = self.shared_models.missing_in_state(self.state)
        if missing:
            await self.write_many(
                *self.shared_models.mutators(
                    self.state, missing, "node", lambda: int(self.clock() * 1000)
                )
            )
        if self.telemetry is not None:
            await self._create_asset_twins()
            await self.telemetry.open()
        await self.commands.open()
        if self.cosim is not None:
            await self.cosim.open()
            from .cosim._registry import publish_deployment

            await publish_deployment(self)
        await self.scoring_hooks.open()

    async def _create_asset_twins(self) -> None:
        """The twin of every configured asset exists, with this node as its home.

        An asset that already exists under another model or home is left alone
        and reported: re-homing or re-modelling a twin is a deliberate act, not
        a side effect of a config edit."""
        assert self.telemetry is not None
        settings = self.telemetry.settings
        for asset in settings.assets:
            existing = self.state.entities.get(asset.entity)
            if existing is not None:
                header = existing.header
                if header.model != asset.model or header.home != self.config.name:
                    log.warning(
                        "asset %s exists as %s at home %s; config says %s here",
                        asset.entity,
                        header.model,
                        header.home,
                        asset.model,
                    )
                continue
            if settings.create_twins:
                await self.write(
                    lambda s, a=asset: s.create(a.entity, a.model, author="node")  # type: ignore[misc]
                )

    async def _replay(self) -> None:
        """Rebuild state and engine from the store (event sourcing).

        Replay observes every hybrid timestamp it joins (``now_ms``: our wall
        clock), so the hybrid clock restarts past every write the node had
        seen: a later local label write cannot lose to an earlier one."""
        assert self.store is not None and self.engine is not None
        now_ms = int(self.clock() * 1000)
        snap = await self.store.get_meta("snapshot")
        vv: dict[str, int] = {}
        if snap is not None:
            restored = decode_state(snap, replica=self.config.name, schemas=self.schemas)
            self.state.merge(restored, now_ms=now_ms)
            vv = await self.store.snapshot_vv()
        ops = await self.store.ops()
        skipped = 0
        for op in ops:
            try:
                self.state.apply_many([op.delta], now_ms=now_ms)
            except RemoteProtocolError as exc:
                # An op that breaks today's rules (written under older, looser
                # ones; every peer refused it then): never wedge the start on
                # it. Its sequence number stays used: a dot is never reissued.
                skipped += 1
                log.error("replay skips op %s:%d: %s", op.origin, op.seq, exc.reason)
            vv[op.origin] = max(vv.get(op.origin, 0), op.seq)
        batches = await self.store.batches()
        own_sealed = max((b.last for b in batches if b.origin == self.config.name), default=0)
        own_unsealed_from = own_sealed + 1
        unsealed = [
            op.delta for op in ops if op.origin == self.config.name and op.seq >= own_unsealed_from
        ]
        self.engine.load_durable(
            vv=VersionVector(vv),
            batches=batches,
            floor=await self.store.floors(),
            unsealed=unsealed,
            proofs=await self.store.proofs(),
        )
        # Our own members list: peers from the config are seeds until gossip fills in.
        for peer in self.config.peers:
            self.engine.members_hint(peer.name, peer.url)
        log.info(
            "replayed %d ops; digest %s; vv %s",
            len(ops),
            state_digest(self.state)[:16],
            dict(self.engine.vv),
        )

    def start(self) -> None:
        """Start ingesting (the adapters connect); after :meth:`open`."""
        if self.telemetry is not None:
            self.telemetry.start()
        self.commands.start()
        if self.cosim is not None:
            self.cosim.start()
        self.scoring_hooks.start()

    async def close(self) -> None:
        await self.scoring_hooks.close()
        await self.commands.close()
        if self.cosim is not None:
            await self.cosim.close()
        if self.telemetry is not None:
            await self.telemetry.close()
        if self.store is not None:
            await self.settled()
            # (A cancelled future is the runner's shutdown, not a fault.)
            fatal = self._fatal is not None and self._fatal.done() and not self._fatal.cancelled()
            if not fatal and not self._committing and self.engine is not None:
                # Every local write of this incarnation is durable: the next
                # one may continue this epoch's counters.
                await self.store.end_epoch()
            await self.store.close()

    def fail(self, exc: BaseException) -> None:
        """A fault we cannot continue past (the disk refused a commit)."""
        log.critical("stopping: %s", exc)
        if self._fatal is not None and not self._fatal.done():
            self._fatal.set_exception(exc)

    async def wait_fatal(self) -> None:
        assert self._fatal is not None
        await self._fatal

    # ------------------------------------------------------------ writes

    async def write(self, mutate: Callable[[ReplicaState], Delta]) -> tuple[Delta, int]:
        """Apply a local mutation and return once it is durable: (delta, seq)."""
        ((delta, seq),) = await self.write_many(lambda state, _seqs: mutate(state))
        return delta, seq

    async def write_many(
        self, *mutates: Callable[[ReplicaState, list[int]], Delta]
    ) -> list[tuple[Delta, int]]:
        """Apply several local mutations as one unit, durable together (one
        transaction) or not at all — e.g. a resolution and its audit entry.
        Each mutator also gets the sequence numbers of the deltas before it."""
        assert self.store is not None and self.engine is not None
        done: list[tuple[Delta, int]] = []
        for mutate in mutates:
            try:
                delta = mutate(self.state, [seq for _, seq in done])
            except Exception as exc:
                if done:
                    # Earlier deltas of the unit are joined and hold sequence
                    # numbers that will never reach the disk: stop (crash-only).
                    self.fail(exc)
                raise  # the first mutator raises before any change
            done.append((delta, self.engine.commit(delta, durable=False)))
        try:
            commit = self._commit_local(done)
        except Exception as exc:  # the store refused the rows (closed, unencodable)
            self.fail(exc)
            raise
        self._committing.add(commit)
        try:
            await asyncio.shield(commit)
        except Exception as exc:
            self.fail(exc)
            raise
        finally:
            # In flight until the commit itself is done, even if this caller
            # was cancelled meanwhile: ``settled`` must keep waiting for it.
            if commit.done():
                self._committing.discard(commit)
            else:
                commit.add_done_callback(self._committing.discard)
        self.engine.mark_durable(done[-1][1])
        self.metrics.writes += len(done)
        for delta, _ in done:
            self.publish(
                {
                    "type": "write",
                    "origin": delta.origin,
                    "entity": delta.entity,
                    "field": delta.field,
                }
            )
        return done

    def _commit_local(self, done: list[tuple[Delta, int]]) -> asyncio.Future[None]:
        """The commit of a unit of local writes, queued before this returns.

        Queued synchronously (no task per write): the profile of 16 clients
        writing put a fifth of the write path's event-loop time in creating
        and stepping a task that only queued rows and waited."""
        assert self.store is not None
        if self._hold is not None:
            return asyncio.ensure_future(self._held_commit(done))
        return self.store.append_local_nowait(
            self.config.name, [(seq, d) for d, seq in done], int(self.clock() * 1000)
        )

    async def _held_commit(self, done: list[tuple[Delta, int]]) -> None:
        assert self.store is not None and self._hold is not None
        await self._hold.before_commit()  # a test holding the window open
        await self.store.append_local_nowait(
            self.config.name, [(seq, d) for d, seq in done], int(self.clock() * 1000)
        )

    async def settled(self) -> None:
        """Return once no local write is joined in memory but not yet durable.

        Issue 17: ``write_many`` joins a mutation in memory, then awaits its
        commit. A read in that window would hand out a context covering the
        write's dot; if the process then died, the write never existed, replay
        rebuilds the field's dot counter without it, and the next write to
        the field gets the same dot — which the old token then covers, so a
        write back with it silently overwrites an acknowledged write. Readers
        wait here, and read in the same event-loop step in which this returns,
        so what they see is durable. (The guarantee: readers never get a
        context covering a non-durable write. Independently, dots are never
        reused: a restart after a crash begins a new epoch, see the module
        docstring.)"""
        if self._hold is not None and self._hold.reads_unsettled():
            return  # a test showing the node as it was before this wait
        while self._committing:
            if self._hold is not None:
                self._hold.reader_waiting()
            await asyncio.wait(set(self._committing))

    async def persist_journal(self) -> None:
        """Write what the engine did (sealed, received, compacted) to disk.

        Everything drained is submitted at once, before any await: concurrent
        callers (gossip handlers, the gossip client) then commit in the order
        the engine journaled, so a crash can never keep a later batch of an
        origin without an earlier one (a hole the version vector, rebuilt
        from the op log, would paper over for good)."""
        assert self.store is not None and self.engine is not None
        entries = self.engine.drain_journal()
        if not entries:
            return
        now_ms = int(self.clock() * 1000)
        rows: list[tuple[str, Any]] = []
        events: list[dict[str, Any]] = []
        for entry in entries:
            if isinstance(entry, BatchStored):
                if entry.local:
                    rows += Store.sealed_rows(entry.batch)
                    continue
                n = len(entry.applied)
                seqs = range(entry.batch.last - n + 1, entry.batch.last + 1)
                rows += Store.batch_rows(
                    entry.batch, list(zip(seqs, entry.applied, strict=True)), now_ms
                )
                events += [
                    {"type": "delta", "origin": d.origin, "entity": d.entity, "field": d.field}
                    for d in entry.applied
                ]
            elif isinstance(entry, SnapshotStored):
                rows += Store.snapshot_rows(encode_state(self.state), entry.vv.items())
            elif isinstance(entry, Compacted):
                rows += Store.compact_rows(entry.origin, entry.floor)
            elif isinstance(entry, ProofStored):
                rows += Store.proof_rows(entry.key, entry.batch)
        try:
            await self.store.write_rows(rows)
        except Exception as exc:
            self.fail(exc)
            raise
        if any(e["entity"].startswith("_models/") for e in events):
            self.shared_models.adopt(self.state)
        for event in events:
            self.publish(event)

    # ------------------------------------------------------------ outgoing

    def take_outgoing(self, peer: str | None) -> list[Outgoing]:
        """Engine messages for ``peer`` (or for everyone, with ``None``)."""
        assert self.engine is not None
        self._pending.extend(self.engine.messages_to_send())
        if peer is None:
            out, self._pending = self._pending, []
            return out
        out = [o for o in self._pending if o.peer == peer]
        self._pending = [o for o in self._pending if o.peer != peer]
        return out

    def requeue(self, out: Outgoing) -> None:
        self._pending.append(out)

    # ------------------------------------------------------------ live feed

    def publish(self, event: dict[str, Any]) -> None:
        for queue in list(self.feed):
            if queue.qsize() < 1000:
                queue.put_nowait(event)
