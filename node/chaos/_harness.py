"""Run a scenario on real node processes: fleet, faults, clients, final heal,
convergence, final state, checker.

Phases (times relative to the start of the safety phase):

1. set-up: ``fleet up`` with the scenario's node names and clock offsets, the
   links' baseline profiles on the proxies, the workload's entities created at
   their home plants and replicated everywhere;
2. safety phase (``duration`` s): the plan's steps fire on time while the
   clients run their schedule;
3. final heal: clients stop (operations in flight finish or time out), every
   link is restored, every crashed node is running again;
4. liveness: the node digests are polled until they agree (or a limit of
   several times the stated bound passes); then each node's final state is
   read and the history checked.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import re
import signal
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import aiohttp

from twinmesh.sim._faults import FaultRecord
from twinmesh.sim._scenario import Scenario

from ..fleet._launch import READY_TIMEOUT
from ._backends import ProxyBackend
from ._check import Convergence, FieldFinal, NodeFinal, Outcome, check
from ._history import History
from ._plan import Plan, compile_plan, round_goal
from ._workload import COUNTER_FIELD, LOG_FIELD, MAPPED_KINDS, MODEL, Clients, schedule_ops

__all__ = ["ChaosResult", "convergence_bound", "run_chaos"]


def convergence_bound(interval: float, nodes: int) -> float:
    """Seconds from the final heal until every node must agree.

    A node's engine retries a peer it lost after an exponential back-off of
    up to ``max(10 * interval, 5 s)`` and waits ``max(3 * interval, 2 s)`` for
    a reply (``node/_node.py``); after that, epidemic spread takes
    ceil(log2 N) + 2 rounds, doubled for catch-up in several batches.
    """
    backoff_max = max(10 * interval, 5.0)
    reply_timeout = max(3 * interval, 2.0)
    return backoff_max + reply_timeout + 2 * round_goal(nodes) * interval


@dataclass(slots=True)
class ChaosResult:
    scenario: Scenario
    plan: Plan
    seed: int
    interval: float
    outcome: Outcome
    history: History
    finals: dict[str, NodeFinal]
    wall_seconds: float
    safety_seconds: float
    liveness_seconds: float | None
    bound_seconds: float
    converged_at: dict[str, float | None]
    crashes: dict[str, list[list[float]]]
    faults: list[FaultRecord]
    conflicts_at_heal: int
    proxy_stats: dict[str, Any]
    command: str
    directory: Path
    unmapped_workload: tuple[str, ...]
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.outcome.ok


class _Fleet:
    """The running fleet as the harness drives it (fleet.json kept current)."""

    def __init__(self, directory: Path, info: dict[str, Any], spawn: Any) -> None:
        self.dir = directory
        self.info = info
        self.nodes = {n["name"]: n for n in info["nodes"]}
        self.apis = {n: v["api"] for n, v in self.nodes.items()}
        self.spawn = spawn  # (node_dir, config, name) -> (process, ready file)
        self.down: set[str] = set()

    def _save(self) -> None:
        (self.dir / "fleet.json").write_text(json.dumps(self.info, indent=2))

    def kill(self, name: str) -> None:
        pid = int(self.nodes[name]["pid"])
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)  # reap: the node is our child (fleet up started it)
        self.down.add(name)

    def stop(self, name: str) -> None:
        pid = int(self.nodes[name]["pid"])
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                break
            if done:
                break
            time.sleep(0.02)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        self.down.add(name)

    def start(self, name: str) -> None:
        node = self.nodes[name]
        proc, ready = self.spawn(self.dir / name, Path(node["config"]), name)
        deadline = time.monotonic() + READY_TIMEOUT
        while not ready.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not restart; see {self.dir / name / 'node.log'}")
            time.sleep(0.02)
        node["pid"] = proc.pid
        self.down.discard(name)
        self._save()

    def set_offset(self, name: str, offset: float) -> None:
        path = Path(self.nodes[name]["config"])
        text = re.sub(r"(?m)^clock_offset = .*\n", "", path.read_text())
        text = text.replace("[node]\n", f"[node]\nclock_offset = {float(offset)!r}\n", 1)
        path.write_text(text)


async def _get(session: aiohttp.ClientSession, url: str, token: str) -> Any:
    async with session.get(url, headers={"Authorization": f"Bearer {token}"}) as resp:
        resp.raise_for_status()
        return await resp.json()


async def _digests(
    session: aiohttp.ClientSession, fleet: _Fleet, token: str
) -> dict[str, str | None]:
    async def one(name: str) -> str | None:
        try:
            return str((await _get(session, fleet.apis[name] + "/v1/digest", token))["digest"])
        except (aiohttp.ClientError, TimeoutError, KeyError):
            return None

    names = sorted(fleet.apis)
    return dict(zip(names, await asyncio.gather(*(one(n) for n in names)), strict=True))


async def _final_state(
    session: aiohttp.ClientSession, fleet: _Fleet, token: str, entities: list[str]
) -> dict[str, NodeFinal]:
    out: dict[str, NodeFinal] = {}
    for name, api in sorted(fleet.apis.items()):
        digest = (await _get(session, api + "/v1/digest", token))["digest"]
        conflicts = (await _get(session, api + "/v1/conflicts", token))["conflicts"]
        by_key = {(c["entity"], c["field"]): c for c in conflicts}
        fields: dict[tuple[str, str], FieldFinal] = {}
        counters: dict[tuple[str, str], int] = {}
        logs: dict[tuple[str, str], frozenset[str]] = {}
        for entity in entities:
            data = await _get(session, f"{api}/v1/entities/{entity}", token)
            for fname, item in data["fields"].items():
                key = (entity, fname)
                if item["kind"] == "shared":
                    if key in by_key:
                        sib = tuple((s["dot"], s["value"]) for s in by_key[key]["siblings"])
                    elif item.get("siblings"):
                        sib = ((None, item["value"]),)
                    else:
                        sib = ()
                    fields[key] = FieldFinal(siblings=sib, context=item.get("context"))
                elif fname == COUNTER_FIELD:
                    counters[key] = int(item["value"] or 0)
                elif fname == LOG_FIELD:
                    logs[key] = frozenset(str(k) for k in (item["value"] or {}))
        out[name] = NodeFinal(
            digest=digest,
            fields=fields,
            counters=counters,
            logs=logs,
            queue=frozenset(by_key),
        )
    return out


async def _run(
    scenario: Scenario,
    *,
    directory: Path,
    duration: float,
    seed: int,
    interval: float,
    max_rate: float,
    command: str,
    say: Any,
    burst: int = 24,
    backend: Any = None,
) -> ChaosResult:
    wall_start = time.monotonic()
    backend = backend or ProxyBackend()
    plan = compile_plan(scenario, duration=duration, seed=seed, min_period=4 * interval)
    plan = replace(plan, mapping=backend.mapping(scenario, plan.mapping))
    sc = plan.scenario
    unmapped = tuple(k for k, v in sc.workload.mix.items() if v and k not in MAPPED_KINDS)
    info = await asyncio.to_thread(
        backend.up,
        directory,
        plant_names=list(sc.fleet.plants),
        interval=interval,
        seed=seed,
        clock_offsets=plan.initial_offsets,
    )
    fleet = _Fleet(directory.resolve(), info, backend.spawn)
    tokens = info["tokens"]
    viewer = tokens["viewer"]
    entities = [a for p in sc.fleet.plants for a in sc.fleet.assets(p)]
    timeout = aiohttp.ClientTimeout(total=10)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session:
            await backend.apply(session, plan.initial_links.items())
            for entity in entities:
                home = entity.split("/", 1)[0]
                async with session.post(
                    fleet.apis[home] + "/v1/entities",
                    json={"id": entity, "model": MODEL},
                    headers={"Authorization": f"Bearer {tokens['operator']}"},
                ) as resp:
                    if resp.status != 201:
                        raise RuntimeError(f"creating {entity} at {home}: {await resp.text()}")
            say(f"  {len(fleet.apis)} nodes up; {len(entities)} pumps created at their homes")
            setup_deadline = time.monotonic() + 60
            while True:
                d = await _digests(session, fleet, viewer)
                if None not in d.values() and len(set(d.values())) == 1:
                    break
                if time.monotonic() > setup_deadline:
                    raise RuntimeError("the fleet did not converge on its set-up writes")
                await asyncio.sleep(0.1)
            history = History()
            t0 = time.monotonic()
            ops = schedule_ops(
                sc, duration=plan.duration, scale=plan.scale, seed=seed, max_rate=max_rate
            )
            crashes: dict[str, list[list[float]]] = {}

            # One lock per node: a restart (seconds) must not hold up the
            # next step elsewhere, but one node's kill/restart stay in order.
            locks = {n: asyncio.Lock() for n in fleet.apis}

            async def process_step(step: Any) -> None:
                node = step.node
                assert node is not None
                async with locks[node]:
                    now = time.monotonic() - t0
                    if step.kind == "crash":
                        # Killed mid-write: a burst of writes is in flight at the kill,
                        # so some outcomes are unknown (committed, or not, unanswered).
                        clients.burst(node, entities, n=burst, seed=len(crashes))
                        await asyncio.sleep(0.02)
                        await asyncio.to_thread(fleet.kill, node)
                        crashes.setdefault(node, []).append([now, math.inf])
                        say(f"  {now:6.2f}s kill -9 {node}")
                    elif step.kind == "restart":
                        await asyncio.to_thread(fleet.start, node)
                        spans = crashes.get(node)
                        if spans:
                            spans[-1][1] = time.monotonic() - t0
                        say(f"  {time.monotonic() - t0:6.2f}s {node} restarted")
                    elif step.kind == "clock":
                        await asyncio.to_thread(fleet.stop, node)
                        fleet.set_offset(node, step.offset)
                        await asyncio.to_thread(fleet.start, node)
                        say(f"  {now:6.2f}s {node} clock offset {step.offset:+g} s (restarted)")

            async def executor() -> None:
                pending = []
                for step in plan.steps:
                    delay = t0 + step.at - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    if step.kind == "links":
                        await backend.apply(session, step.links)
                    else:
                        pending.append(asyncio.create_task(process_step(step)))
                        await asyncio.sleep(0)  # let it take its node's lock in order
                await asyncio.gather(*pending)

            say(
                f"  safety phase {plan.duration:.1f} s: {len(plan.steps)} fault steps, "
                f"{len(ops)} planned operations"
            )
            clients = Clients(fleet.apis, tokens, history, t0)
            async with clients:
                runner = asyncio.create_task(executor())
                await clients.run(ops, frozenset(entities), plan.duration)
                remaining = t0 + plan.duration - time.monotonic()
                if remaining > 0:
                    await asyncio.sleep(remaining)
                await runner
            safety = time.monotonic() - t0
            # Final heal: every link restored, every node running.
            await backend.heal(session)
            for name in sorted(fleet.down):
                await asyncio.to_thread(fleet.start, name)
                spans = crashes.get(name)
                if spans and spans[-1][1] == math.inf:
                    spans[-1][1] = time.monotonic() - t0
            heal = time.monotonic()
            heal_t = heal - t0
            queue_sizes = []
            for api in fleet.apis.values():
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    queue_sizes.append(
                        len((await _get(session, api + "/v1/conflicts", viewer))["conflicts"])
                    )
            bound = convergence_bound(interval, len(fleet.apis))
            seen: dict[str, list[tuple[float, str | None]]] = {n: [] for n in fleet.apis}
            converged = False
            while time.monotonic() - heal < 3 * bound:
                d = await _digests(session, fleet, viewer)
                now = time.monotonic() - t0
                for n, v in d.items():
                    seen[n].append((now, v))
                if None not in d.values() and len(set(d.values())) == 1:
                    converged = True
                    break
                await asyncio.sleep(0.05)
            liveness = time.monotonic() - heal if converged else None
            converged_at: dict[str, float | None] = {}
            final_digest = seen[next(iter(seen))][-1][1] if converged else None
            for n, samples in seen.items():
                t_conv = None
                for t, v in reversed(samples):
                    if v != final_digest:
                        break
                    t_conv = t
                converged_at[n] = t_conv if converged else None
            finals = await _final_state(session, fleet, viewer, entities)
            stats = await backend.counters(session)
    finally:
        await asyncio.to_thread(backend.down, directory)
    outcome = check(
        history,
        finals,
        Convergence(converged=converged, seconds_after_heal=liveness, bound_seconds=bound),
    )
    records = list(plan.records)
    del heal_t
    return ChaosResult(
        scenario=sc,
        plan=plan,
        seed=seed,
        interval=interval,
        outcome=outcome,
        history=history,
        finals=finals,
        wall_seconds=time.monotonic() - wall_start,
        safety_seconds=safety,
        liveness_seconds=liveness,
        bound_seconds=bound,
        converged_at=converged_at,
        crashes=crashes,
        faults=records,
        conflicts_at_heal=max(queue_sizes, default=0),
        proxy_stats=stats,
        command=command,
        directory=directory,
        unmapped_workload=unmapped,
    )


def run_chaos(
    scenario: Scenario,
    *,
    directory: Path,
    duration: float = 20.0,
    seed: int | None = None,
    interval: float = 0.3,
    max_rate: float = 4.0,
    command: str = "",
    say: Any = print,
    backend: Any = None,
) -> ChaosResult:
    """Run ``scenario`` on real processes in ``directory``; see the module docstring."""
    return asyncio.run(
        _run(
            scenario,
            directory=directory,
            duration=duration,
            seed=scenario.seed if seed is None else seed,
            interval=interval,
            max_rate=max_rate,
            command=command,
            say=say,
            backend=backend,
        )
    )
