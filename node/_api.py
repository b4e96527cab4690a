"""The node's REST API and live feed (aiohttp).

JSON for people; request bodies may also be msgpack (``Content-Type:
application/msgpack``). Every refusal is a JSON object ``{"error", "reason"}``
with the right status: 400 malformed, 401 no or bad token, 403 wrong role,
404 unknown, 409 a resolution that no longer covers the conflict, 413 too
large, 422 a well-formed request the model's rules refuse.

A shared field is read with a ``context`` (an opaque token, like an ETag) and
written back with it: a stale context does not overwrite what its reader did
not see — it creates a conflict for review instead.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import msgpack
import msgspec
from aiohttp import web

from twinmesh import __version__
from twinmesh.crdt import (
    CausalContext,
    Conflict,
    Delta,
    Dot,
    Entity,
    FieldKind,
    FieldSpec,
    LocalProtocolError,
    MVRegister,
    Sibling,
    state_digest,
)

from ._api_models import add_model_routes
from ._api_telemetry import add_telemetry_routes
from ._auth import require_role
from ._entity_ids import EntityIdError, check_entity_id
from ._models import AUDIT_ENTITY
from ._openapi import openapi_document
from ._tokens import Role, TokenIssuer
from .cosim._api import add_routes as add_cosim_routes
from .scoring._api import add_scoring_routes

if TYPE_CHECKING:
    from ._node import Node

__all__ = ["api_app", "decode_context", "encode_context"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# ------------------------------------------------------------------ helpers


def encode_context(ctx: CausalContext) -> str:
    vv: list[Any] = []
    for r, n in ctx.vv_items():
        vv += [r, n]
    cloud: list[Any] = []
    for d in ctx.cloud_sorted():
        cloud += [d.replica, d.counter]
    raw = msgpack.packb([vv, cloud])
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_context(token: Any) -> CausalContext:
    if not isinstance(token, str) or len(token) > 64 * 1024:
        raise web.HTTPBadRequest(
            text=json.dumps({"error": "bad-context", "reason": "context must be a token string"}),
            content_type="application/json",
        )
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        vv, cloud = msgpack.unpackb(raw)
        pairs = [(vv[i], vv[i + 1]) for i in range(0, len(vv), 2)]
        dots = [Dot(cloud[i], cloud[i + 1]) for i in range(0, len(cloud), 2)]
        for r, n in pairs:
            if not isinstance(r, str) or not isinstance(n, int) or n < 1:
                raise ValueError("bad entry")
        return CausalContext(dict(pairs), dots)
    except Exception:
        raise web.HTTPBadRequest(
            text=json.dumps(
                {
                    "error": "bad-context",
                    "reason": "context token does not decode; read the field again",
                }
            ),
            content_type="application/json",
        ) from None


def _error(status: int, error: str, reason: str) -> web.Response:
    return web.json_response({"error": error, "reason": reason}, status=status)


def _sibling_json(s: Sibling) -> dict[str, Any]:
    return {
        "value": s.value,
        "origin": s.origin,
        "dot": str(s.dot),
        "author": s.author,
        "wall_time_ms": s.time.wall_ms,
        "hlc": [s.time.wall_ms, s.time.logical],
    }


def _conflict_json(c: Conflict) -> dict[str, Any]:
    return {
        "entity": c.entity,
        "field": c.field,
        "model": c.model,
        "home": c.home,
        "siblings": [_sibling_json(s) for s in c.siblings],
        "provisional": {"value": c.provisional.value, "dot": str(c.provisional.dot)},
        "policy": c.policy.value,
        "context": encode_context(c.context),
    }


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def _field_json(entity: Entity, name: str, spec: FieldSpec) -> dict[str, Any]:
    state = entity.field(name)
    item: dict[str, Any] = {"kind": spec.kind.value, "value": _jsonable(entity.value(name))}
    if isinstance(state, MVRegister):
        item["context"] = encode_context(state.context())
        item["policy"] = spec.policy.value
        item["conflict"] = state.is_conflict()
        item["siblings"] = len(state.siblings)
    return item


#: The JSON of a field never written, per (model, field): the same for every
#: entity of the model, and most of a twin's fields are unwritten, so a write's
#: response rebuilds only what holds state (an unwritten text field would
#: otherwise build a Yrs document per response). Read-only once made.
_UNWRITTEN: dict[tuple[str, str, FieldSpec], dict[str, Any]] = {}


def _entity_json(entity: Entity) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    written = entity.fields
    model = entity.header.model
    specs = entity.schema.fields
    for name in sorted(specs):
        spec = specs[name]
        if name in written:
            fields[name] = _field_json(entity, name, spec)
            continue
        key = (model, name, spec)
        item = _UNWRITTEN.get(key)
        if item is None:
            item = _UNWRITTEN[key] = _field_json(entity, name, spec)
        fields[name] = item
    h = entity.header
    return {"id": h.id, "model": h.model, "home": h.home, "fields": fields}


def _written(body: dict[str, Any], delta: Delta) -> dict[str, Any]:
    """The response to a register write also names the write's dot: a client
    keeping a history (the chaos checker, an audit tool) learns which sibling
    is its own without racing a read against other writers."""
    if isinstance(delta.state, MVRegister):
        (dot,) = delta.state.siblings
        body["written"] = {"field": delta.field, "dot": str(dot)}
    return body


_json_encode = msgspec.json.Encoder().encode
#: Request bodies: msgspec parses into the same dicts and lists as
#: ``json.loads`` at a fraction of its cost (a write's body was 2% of the
#: loop's time), and is stricter: ``NaN``/``Infinity`` are not JSON.
_json_decode = msgspec.json.Decoder().decode


def _entity_response(
    entity: Entity, *, status: int = 200, written: Delta | None = None
) -> web.Response:
    """An entity as the API's JSON, encoded by msgspec (a write's response is
    built for every acknowledged write; ``json.dumps`` was a fifth of it);
    ``written`` adds the write's dot (:func:`_written`)."""
    body = _entity_json(entity)
    if written is not None:
        body = _written(body, written)
    return web.Response(body=_json_encode(body), status=status, content_type="application/json")


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        # aiohttp's own 413 is plain text; say it in the API's JSON error shape.
        exc.text = json.dumps({"error": "body-too-large", "reason": exc.text or "body too large"})
        exc.content_type = "application/json"
        raise
    ctype = request.content_type
    try:
        if ctype == "application/msgpack":
            data = msgpack.unpackb(raw, max_ext_len=0)
        else:
            data = _json_decode(raw or b"null")
    except Exception as exc:
        raise web.HTTPBadRequest(
            text=json.dumps({"error": "malformed-body", "reason": f"body does not parse: {exc}"}),
            content_type="application/json",
        ) from None
    if not isinstance(data, dict):
        raise web.HTTPBadRequest(
            text=json.dumps({"error": "malformed-body", "reason": "body must be an object"}),
            content_type="application/json",
        )
    return data


def _need(data: dict[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    if key not in data:
        raise web.HTTPBadRequest(
            text=json.dumps({"error": "malformed-body", "reason": f"missing '{key}'"}),
            content_type="application/json",
        )
    value = data[key]
    if not isinstance(value, kind):
        raise web.HTTPBadRequest(
            text=json.dumps({"error": "malformed-body", "reason": f"'{key}' has the wrong type"}),
            content_type="application/json",
        )
    return value


# ------------------------------------------------------------------ app


def api_app(node: Node, tokens: TokenIssuer) -> web.Application:
    routes = web.RouteTableDef()
    metrics = node.metrics

    @web.middleware
    async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        route = (
            request.match_info.route.resource.canonical
            if request.match_info.route.resource
            else "?"
        )
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            response = exc
            if exc.content_type != "application/json":
                response = _error(exc.status, "http", exc.reason)
        except LocalProtocolError as exc:
            response = _error(422, "refused", exc.reason)
        key = (route, response.status)
        metrics.api_requests[key] = metrics.api_requests.get(key, 0) + 1
        metrics.api_seconds[route] = (
            metrics.api_seconds.get(route, 0.0) + time.perf_counter() - started
        )
        if response.status >= 400 and isinstance(response, web.Response) and response.body:
            try:
                err = json.loads(bytes(response.body)).get("error", "error")
            except Exception:
                err = "error"
            metrics.refuse(metrics.api_refusals, str(err))
        return response

    def require(request: web.Request, role: Role) -> str:
        return require_role(request, tokens, node, role)

    def entity_or_404(entity_id: str) -> Entity:
        entity = node.state.entities.get(entity_id)
        if entity is None:
            raise web.HTTPNotFound(
                text=json.dumps({"error": "unknown-entity", "reason": f"no entity {entity_id!r}"}),
                content_type="application/json",
            )
        return entity

    # -------------------------------------------------------------- reads

    @routes.get("/openapi.json")
    async def openapi(request: web.Request) -> web.Response:
        return web.json_response(openapi_document(__version__))

    @routes.get("/v1/digest")
    async def digest(request: web.Request) -> web.Response:
        require(request, Role.VIEWER)
        assert node.engine is not None
        return web.json_response(
            {
                "node": node.config.name,
                "digest": state_digest(node.state),
                "vv": dict(node.engine.vv),
            }
        )

    @routes.get("/v1/entities")
    async def list_entities(request: web.Request) -> web.Response:
        require(request, Role.VIEWER)
        model = request.query.get("model")
        return web.json_response(
            {
                "entities": [
                    {"id": e.id, "model": e.header.model, "home": e.header.home}
                    for e in node.state
                    if model is None or e.header.model == model
                ]
            }
        )

    @routes.get("/v1/models")
    async def list_models(request: web.Request) -> web.Response:
        require(request, Role.VIEWER)
        return web.json_response(
            {
                "models": {
                    m: {
                        n: {
                            "kind": f.kind.value,
                            "type": f.value_type.value,
                            "policy": f.policy.value,
                        }
                        for n, f in sorted(s.fields.items())
                    }
                    for m, s in sorted(node.schemas.items())
                },
                # Replicated documents this node could not adopt, and why.
                "refused": dict(sorted(node.shared_models.refused.items())),
            }
        )

    @routes.get("/v1/entities/{entity:.+}")
    async def get_entity(request: web.Request) -> web.Response:
        require(request, Role.VIEWER)
        return _entity_response(entity_or_404(request.match_info["entity"]))

    @routes.get("/v1/conflicts")
    async def list_conflicts(request: web.Request) -> web.Response:
        require(request, Role.VIEWER)
        return web.json_response({"conflicts": [_conflict_json(c) for c in node.state.conflicts()]})

    @routes.get("/v1/conflict")
    async def get_conflict(request: web.Request) -> web.Response:
        require(request, Role.VIEWER)
        entity = entity_or_404(request.query.get("entity", ""))
        field = request.query.get("field", "")
        for c in node.state.conflicts():
            if c.entity == entity.id and c.field == field:
                return web.json_response(_conflict_json(c))
        return _error(404, "no-conflict", f"{entity.id}.{field} has no open conflict")

    @routes.get("/v1/audit")
    async def audit(request: web.Request) -> web.Response:
        require(request, Role.VIEWER)
        events = []
        for e in node.state:
            if e.header.model == "dtmi:twinmesh:fleet:Audit;1":
                events += [dict(v, id=k) for k, v in e.value("events").items()]
        events.sort(key=lambda ev: (ev.get("at_ms", 0), ev["id"]))
        return web.json_response({"events": events})

    @routes.get("/v1/fleet")
    async def fleet(request: web.Request) -> web.Response:
        require(request, Role.VIEWER)
        engine = node.engine
        assert engine is not None
        now = node.monotonic()  # engine contact times are monotonic
        lag = engine.lag()
        members = []
        for name, last in engine.last_contact().items():
            they_lack, we_lack = lag.get(name, (0, 0))
            members.append(
                {
                    "name": name,
                    "address": engine.members[name].address,
                    "reachable": last is not None
                    and now - last < 3 * node.config.gossip_interval + 2,
                    "last_contact_s_ago": None if last is None else round(now - last, 3),
                    "deltas_it_lacks_from_us": they_lack,
                    "deltas_we_lack_from_it": we_lack,
                }
            )
        return web.json_response(
            {
                "node": node.config.name,
                "role": node.config.role,
                "vv": dict(engine.vv),
                "members": members,
            }
        )

    # -------------------------------------------------------------- writes

    @routes.post("/v1/entities")
    async def create_entity(request: web.Request) -> web.Response:
        author = require(request, Role.OPERATOR)
        data = await _body(request)
        entity_id = _need(data, "id", str)
        model = _need(data, "model", str)
        try:
            check_entity_id(entity_id, home=node.config.name)
        except EntityIdError as exc:
            return _error(422, "bad-entity-id", exc.reason)
        if model not in node.schemas:
            return _error(422, "unknown-model", f"unknown model {model!r}")
        if entity_id in node.state.entities:
            return _error(409, "exists", f"entity {entity_id!r} already exists")
        await node.write(lambda s: s.create(entity_id, model, author=author))
        return _entity_response(node.state.entity(entity_id), status=201)

    @routes.put("/v1/entities/{entity:.+}/fields/{field}")
    async def write_field(request: web.Request) -> web.Response:
        author = require(request, Role.OPERATOR)
        entity = entity_or_404(request.match_info["entity"])
        name = request.match_info["field"]
        data = await _body(request)
        value = _need(data, "value", object)
        ctx = decode_context(data["context"]) if data.get("context") is not None else None
        if name not in entity.schema.fields:
            return _error(
                422, "unknown-field", f"model {entity.header.model} has no field {name!r}"
            )
        spec = entity.schema.fields[name]
        if spec.kind is FieldKind.SHARED and ctx is None and "context" not in data:
            return _error(
                400,
                "context-required",
                "shared fields are written with the context you read (use null to write blind)",
            )
        now_ms = int(node.clock() * 1000)
        delta, _ = await node.write(
            lambda s: s.write(entity.id, name, value, author=author, now_ms=now_ms, context=ctx)
        )
        return _entity_response(entity, written=delta)

    @routes.post("/v1/entities/{entity:.+}/fields/{field}/ops")
    async def field_op(request: web.Request) -> web.Response:
        author = require(request, Role.OPERATOR)
        entity = entity_or_404(request.match_info["entity"])
        name = request.match_info["field"]
        data = await _body(request)
        op = _need(data, "op", str)
        if op == "add":
            element = _need(data, "element", (str, int))
            await node.write(lambda s: s.add(entity.id, name, element, author=author))
        elif op == "remove":
            element = _need(data, "element", (str, int))
            await node.write(lambda s: s.remove(entity.id, name, element, author=author))
        elif op == "increment":
            amount = _need(data, "amount", int)
            await node.write(lambda s: s.increment(entity.id, name, amount, author=author))
        elif op == "append":
            key = _need(data, "id", str)
            event = _need(data, "event", object)
            await node.write(lambda s: s.append(entity.id, name, key, event, author=author))
        elif op == "edit":
            index = _need(data, "index", int)
            delete = data.get("delete", 0)
            insert = data.get("insert", "")
            if not isinstance(delete, int) or not isinstance(insert, str):
                return _error(400, "malformed-body", "'delete' is an integer, 'insert' a string")
            await node.write(
                lambda s: s.edit_text(
                    entity.id, name, index=index, delete=delete, insert=insert, author=author
                )
            )
        else:
            return _error(
                400, "unknown-op", f"op must be add, remove, increment, append or edit; not {op!r}"
            )
        return _entity_response(entity)

    @routes.post("/v1/conflict/resolve")
    async def resolve(request: web.Request) -> web.Response:
        author = require(request, Role.REVIEWER)
        data = await _body(request)
        entity = entity_or_404(_need(data, "entity", str))
        name = _need(data, "field", str)
        value = _need(data, "value", object)
        reason = _need(data, "reason", str).strip()
        if not reason:
            return _error(400, "reason-required", "a resolution needs a reason for the audit log")
        ctx = decode_context(_need(data, "context", str))
        state = entity.fields.get(name)
        if not isinstance(state, MVRegister) or not state.is_conflict():
            return _error(404, "no-conflict", f"{entity.id}.{name} has no open conflict")
        missing = [str(s.dot) for s in state.sorted_siblings() if s.dot not in ctx]
        if missing:
            return _error(
                409,
                "stale-resolution",
                f"the resolution does not cover sibling(s) {', '.join(missing)}; "
                "read the conflict again",
            )
        siblings = [_sibling_json(s) for s in state.sorted_siblings()]
        now_ms = int(node.clock() * 1000)
        audit_event = {
            "kind": "resolution",
            "entity": entity.id,
            "field": name,
            "value": value,
            "reason": reason,
            "by": author,
            "at_node": node.config.name,
            "at_ms": now_ms,
            "siblings": siblings,
        }
        # One unit: a crash must never keep the resolution without its audit entry.
        (delta, _), *_ = await node.write_many(
            lambda s, _: s.resolve(
                entity.id, name, value, covering=ctx, author=author, now_ms=now_ms
            ),
            lambda s, seqs: s.append(
                AUDIT_ENTITY(node.config.name),
                "events",
                f"{node.config.name}:{seqs[0]}",
                audit_event,
                author=author,
            ),
        )
        return _entity_response(entity, written=delta)

    # -------------------------------------------------------------- ops

    @routes.get("/metrics")
    async def prometheus(request: web.Request) -> web.Response:
        from ._metrics import render_metrics

        return web.Response(text=render_metrics(node), content_type="text/plain")

    @routes.get("/v1/feed")
    async def feed(request: web.Request) -> web.StreamResponse:
        require(request, Role.VIEWER)
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        node.feed.add(queue)
        try:
            await response.write(b": twinmesh live feed\n\n")
            while True:
                try:
                    event = await asyncio.wait_for(queue.get(), timeout=15)
                    await response.write(f"data: {json.dumps(event)}\n\n".encode())
                except TimeoutError:
                    await response.write(b": keep-alive\n\n")
                    continue
                if event.get("type") == "shutdown":
                    break
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            node.feed.discard(queue)
        return response

    @routes.post("/v1/members")
    async def add_member(request: web.Request) -> web.Response:
        """Admins point the node at a (new) member's gossip address. Its key
        is learned from gossip and must be vouched for by the fleet key."""
        require(request, Role.ADMIN)
        data = await _body(request)
        name = _need(data, "name", str)
        url = _need(data, "url", str)
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,62}", name):
            return _error(400, "bad-name", f"{name!r} is not a node name (a-z, 0-9, '-')")
        if not url.startswith("https://") or len(url) > 512:
            return _error(400, "bad-url", "gossip is mutual TLS: the url must be https://HOST:PORT")
        if name == node.config.name:
            return _error(422, "self", "a node is not its own peer")
        assert node.engine is not None
        node.engine.members_hint(name, url)
        return web.json_response({"name": name, "url": url, "status": "dialling"})

    @routes.get("/healthz")
    async def health(request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "node": node.config.name})

    async def end_feeds(app: web.Application) -> None:
        # Runs before aiohttp waits for open handlers: an open feed would
        # otherwise hold a SIGTERM shutdown for aiohttp's whole timeout (60 s).
        for queue in list(node.feed):
            queue.put_nowait({"type": "shutdown", "node": node.config.name})

    add_telemetry_routes(routes, node, require)
    add_model_routes(routes, node, require)
    add_scoring_routes(routes, node, require)

    @web.middleware
    async def settled(request: web.Request, handler: Handler) -> web.StreamResponse:
        # A read never hands out a context covering a write that is not yet
        # durable (issue 17): a crash could take that write back and a later
        # write reuse its dot. Node.settled: no such write is in memory.
        if request.method == "GET" and request.path != "/v1/feed":
            await node.settled()
        return await handler(request)

    app = web.Application(
        middlewares=[observe, settled], client_max_size=node.config.max_body_bytes
    )
    add_cosim_routes(app, node, tokens)
    app.add_routes(routes)
    app.on_shutdown.append(end_feeds)
    from .web import add_routes as add_web_routes  # late: node/web imports this module

    add_web_routes(app, node, tokens)  # pages for people, lifecycle (node/web)
    return app
