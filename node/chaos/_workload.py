"""The real workload: a seeded schedule of operations, and the HTTP clients
that run it against the nodes and record the history.

The schedule is drawn from the scenario's ``[workload]`` (rates, mix,
contested fields) with its own PRNG stream, so a seed gives the same
operations at the same times. Of the simulator's operation kinds, the real
run issues those whose outcome a history can pin down from the HTTP API:
``shared`` (read, then write with the context read), ``stale`` (read, wait,
write with the old context), ``resolve``, ``counter`` and ``log``; contested
fields are written on their writers' own schedule. The other kinds are listed
in the report as not exercised.

Every client talks to its node's API directly (a plant's people are on the
plant's LAN); only node-to-node gossip crosses the faulty links.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import time
from dataclasses import dataclass
from typing import Any

import aiohttp

from twinmesh.sim._rng import derive_seed
from twinmesh.sim._scenario import Scenario

from ._history import Event, History

__all__ = [
    "COUNTER_FIELD",
    "LOG_FIELD",
    "MAPPED_KINDS",
    "MODEL",
    "Clients",
    "PlannedOp",
    "schedule_ops",
]

MODEL = "dtmi:twinmesh:demo:Pump;1"  # the simulator's pump, shipped with every node
COUNTER_FIELD = "starts"
LOG_FIELD = "alerts"
# Fields whose written values are unique per write, so a value names its write.
_FREE_FIELDS = ("maintenance_date", "owner", "value", "vibration_limit")
_LIFECYCLE = ("in-service", "degraded", "out-of-service")
MAPPED_KINDS = ("shared", "stale", "resolve", "counter", "log")
REQUEST_TIMEOUT = 4.0


@dataclass(frozen=True, slots=True, kw_only=True)
class PlannedOp:
    at: float
    node: str
    kind: str  # shared | stale | resolve | counter | log
    entity: str = ""
    field: str = ""
    think: float = 0.0


def schedule_ops(
    scenario: Scenario, *, duration: float, scale: float, seed: int, max_rate: float
) -> list[PlannedOp]:
    """Operations over ``duration`` real seconds. Rates are the scenario's
    divided by ``scale`` (so each fault window sees as many operations as in
    the simulated run), capped at ``max_rate`` per node per second."""
    rng = random.Random(derive_seed(seed, "chaos-workload"))
    w = scenario.workload
    fleet = scenario.fleet
    assets = [a for p in fleet.plants for a in fleet.assets(p)]
    weights = [w.mix.get(k, 0.0) for k in MAPPED_KINDS]
    if not any(weights):
        weights = [1.0, 0, 0, 0, 0]
    out: list[PlannedOp] = []
    think_max = max(0.2, min(w.think_time * scale, duration / 4))
    for node in fleet.nodes:
        rate = w.central_rate if node == fleet.central else w.rate
        rate = min(rate / scale, max_rate) if rate > 0 else 0.0
        t = 0.0
        while rate > 0:
            t += rng.expovariate(rate)
            if t >= duration:
                break
            kind = rng.choices(MAPPED_KINDS, weights)[0]
            entity = rng.choice(assets)
            fname = rng.choice(_FREE_FIELDS) if kind in ("shared", "stale") else ""
            if kind == "counter":
                fname = COUNTER_FIELD
            elif kind == "log":
                fname = LOG_FIELD
            think = rng.uniform(0.1, think_max) if kind == "stale" else 0.0
            out.append(
                PlannedOp(at=t, node=node, kind=kind, entity=entity, field=fname, think=think)
            )
    for c in w.contested:
        every = max(c.every * scale, 0.5)
        until = duration if c.until is None else min(duration, c.until * scale)
        t = c.start * scale
        while t < until:
            for writer in c.writers:
                jitter = rng.uniform(0.0, min(0.2, every / 4))
                out.append(
                    PlannedOp(
                        at=t + jitter, node=writer, kind="shared", entity=c.asset, field=c.field
                    )
                )
            t += every
    out.sort(key=lambda o: (o.at, o.node))
    return out


def _value_for(fname: str, n: int) -> Any:
    if fname == "maintenance_date":
        return (dt.date(2030, 1, 1) + dt.timedelta(days=n)).isoformat()
    if fname == "vibration_limit":
        return round(1.0 + n / 1000, 3)
    if fname == "owner":
        return f"owner-{n}"
    if fname == "lifecycle":
        return _LIFECYCLE[n % len(_LIFECYCLE)]
    return n


class _Refused(Exception):
    """The node answered with a refusal: the operation certainly did not happen."""


class _Sent:
    """Whether any attempt of one call put its request on the wire."""

    __slots__ = ("sent",)

    def __init__(self) -> None:
        self.sent = False


async def _on_headers_sent(
    _session: aiohttp.ClientSession, ctx: Any, _params: aiohttp.TraceRequestHeadersSentParams
) -> None:
    if isinstance(ctx.trace_request_ctx, _Sent):
        ctx.trace_request_ctx.sent = True


def _sent_tracer() -> aiohttp.TraceConfig:
    """aiohttp resends an idempotent request (PUT is one) once after the server
    drops the connection. When a node is killed after committing a write but
    before answering, the resend meets a closed port: "connection refused",
    although the first attempt took effect. So "refused" is only certain when
    no attempt ever sent its headers; this tracer records whether one did."""
    tracer = aiohttp.TraceConfig()
    tracer.on_request_headers_sent.append(_on_headers_sent)
    return tracer


class Clients:
    """Runs planned operations against the nodes' APIs and records the history."""

    def __init__(
        self, apis: dict[str, str], tokens: dict[str, str], history: History, t0: float
    ) -> None:
        self.apis = apis
        self.tokens = tokens
        self.history = history
        self.t0 = t0
        self._n = 0
        self._session: aiohttp.ClientSession | None = None
        self.tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> Clients:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT),
            # A fresh connection per request: a killed node's pooled sockets
            # would otherwise turn "refused" (fail) into "reset" (unknown).
            connector=aiohttp.TCPConnector(force_close=True),
            trace_configs=[_sent_tracer()],
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    def now(self) -> float:
        return time.monotonic() - self.t0

    def _unique(self) -> int:
        self._n += 1
        return self._n

    async def _call(
        self, node: str, method: str, path: str, role: str, body: Any = None
    ) -> dict[str, Any]:
        """The JSON answer; _Refused for a definite refusal (connection refused,
        4xx); any other exception means the outcome is unknown."""
        assert self._session is not None
        url = self.apis[node] + path
        headers = {"Authorization": f"Bearer {self.tokens[role]}"}
        sent = _Sent()
        try:
            async with self._session.request(
                method, url, json=body, headers=headers, trace_request_ctx=sent
            ) as resp:
                data = await resp.json(content_type=None)
                if 400 <= resp.status < 500:
                    raise _Refused(f"{resp.status} {data.get('error')}: {data.get('reason')}")
                if resp.status >= 500:
                    raise RuntimeError(f"{resp.status}")
                return data  # type: ignore[no-any-return]
        except aiohttp.ClientConnectorError as exc:
            if sent.sent:
                # An earlier attempt reached the node, which then went down:
                # the refusal is the resend's, the outcome is unknown.
                raise RuntimeError(f"sent, then connection refused ({exc.os_error})") from None
            # Nothing was sent: the node is down (or not yet up after a restart).
            raise _Refused(f"connection refused ({exc.os_error})") from None

    def _event(
        self, op: int, type_: str, f: str, node: str, entity: str, fld: str, **kw: Any
    ) -> None:
        self.history.add(
            Event(
                op=op,
                type=type_,
                f=f,
                process=f"client-{node}",
                node=node,
                entity=entity,
                field=fld,
                time=round(self.now(), 4),
                **kw,
            )
        )

    async def _op(self, f: str, node: str, entity: str, fld: str, call: Any, **invoke: Any) -> Any:
        """Record invoke, await ``call``, record ok/fail/info; return the answer or None."""
        op = self.history.new_op()
        self._event(op, "invoke", f, node, entity, fld, **invoke)
        try:
            data = await call
        except _Refused as exc:
            self._event(op, "fail", f, node, entity, fld, error=str(exc))
            return None
        except (TimeoutError, aiohttp.ClientError, RuntimeError, ValueError) as exc:
            self._event(op, "info", f, node, entity, fld, error=f"{type(exc).__name__}: {exc}")
            return None
        written = data.get("written") if isinstance(data, dict) else None
        dot = written.get("dot") if isinstance(written, dict) else None
        extra: dict[str, Any] = {}
        if f == "read":
            item = data.get("fields", {}).get(fld, {})
            extra = {"value": item.get("value"), "context": item.get("context")}
        self._event(op, "ok", f, node, entity, fld, dot=dot, **extra)
        return data

    async def read(self, node: str, entity: str, fld: str) -> str | None:
        data = await self._op(
            "read", node, entity, fld, self._call(node, "GET", f"/v1/entities/{entity}", "viewer")
        )
        if data is None:
            return None
        ctx = data.get("fields", {}).get(fld, {}).get("context")
        return ctx if isinstance(ctx, str) else None

    async def write(self, node: str, entity: str, fld: str, ctx: str | None) -> None:
        value = _value_for(fld, self._unique())
        body = {"value": value, "context": ctx}
        path = f"/v1/entities/{entity}/fields/{fld}"
        await self._op(
            "write",
            node,
            entity,
            fld,
            self._call(node, "PUT", path, "operator", body),
            value=value,
            context=ctx,
        )

    async def shared(self, p: PlannedOp) -> None:
        ctx = await self.read(p.node, p.entity, p.field)
        if ctx is not None:
            await self.write(p.node, p.entity, p.field, ctx)

    async def stale(self, p: PlannedOp) -> None:
        ctx = await self.read(p.node, p.entity, p.field)
        if ctx is None:
            return
        await asyncio.sleep(p.think)  # think: others may write meanwhile
        await self.write(p.node, p.entity, p.field, ctx)

    async def resolve(self, p: PlannedOp, entities: frozenset[str]) -> None:
        try:
            data = await self._call(p.node, "GET", "/v1/conflicts", "viewer")
        except (_Refused, TimeoutError, aiohttp.ClientError, RuntimeError, ValueError):
            return
        mine = [c for c in data.get("conflicts", []) if c.get("entity") in entities]
        if not mine:
            return
        c = mine[self._unique() % len(mine)]
        value = _value_for(c["field"], self._unique())
        body = {
            "entity": c["entity"],
            "field": c["field"],
            "value": value,
            "context": c["context"],
            "reason": "chaos reviewer",
        }
        await self._op(
            "resolve",
            p.node,
            c["entity"],
            c["field"],
            self._call(p.node, "POST", "/v1/conflict/resolve", "reviewer", body),
            value=value,
            context=c["context"],
            covers=tuple(s["dot"] for s in c.get("siblings", [])),
        )

    async def counter(self, p: PlannedOp) -> None:
        body = {"op": "increment", "amount": 1}
        path = f"/v1/entities/{p.entity}/fields/{p.field}/ops"
        await self._op(
            "increment",
            p.node,
            p.entity,
            p.field,
            self._call(p.node, "POST", path, "operator", body),
            value=1,
        )

    async def log(self, p: PlannedOp) -> None:
        entry = f"{p.node}-{self._unique()}"
        body = {"op": "append", "id": entry, "event": {"by": p.node}}
        path = f"/v1/entities/{p.entity}/fields/{p.field}/ops"
        await self._op(
            "append",
            p.node,
            p.entity,
            p.field,
            self._call(p.node, "POST", path, "operator", body),
            value=entry,
        )

    def start(self, p: PlannedOp, entities: frozenset[str]) -> None:
        run = {
            "shared": self.shared,
            "stale": self.stale,
            "counter": self.counter,
            "log": self.log,
        }
        coro = self.resolve(p, entities) if p.kind == "resolve" else run[p.kind](p)
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def burst(self, node: str, entities: list[str], *, n: int, seed: int) -> None:
        """Start ``n`` operations at ``node`` at once (a crash is about to land)."""
        rng = random.Random(derive_seed(seed, f"chaos-burst/{node}"))
        kinds = ("shared", "shared", "counter", "log")
        for _ in range(n):
            kind = rng.choice(kinds)
            fname = {"counter": COUNTER_FIELD, "log": LOG_FIELD}.get(kind) or rng.choice(
                _FREE_FIELDS
            )
            p = PlannedOp(
                at=self.now(), node=node, kind=kind, entity=rng.choice(entities), field=fname
            )
            self.start(p, frozenset(entities))

    async def run(self, ops: list[PlannedOp], entities: frozenset[str], until: float) -> None:
        """Start each operation at its time (they overlap, as users do)."""
        for p in ops:
            if p.at >= until:
                break
            delay = p.at - self.now()
            if delay > 0:
                await asyncio.sleep(delay)
            self.start(p, entities)
        if self.tasks:
            await asyncio.gather(*list(self.tasks), return_exceptions=True)
