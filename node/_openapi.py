"""The node's OpenAPI 3.1 document, served at ``/openapi.json``."""

from __future__ import annotations

from typing import Any

from ._entity_ids import ENTITY_ID_PATTERN
from .cosim._api import OPENAPI_PATHS as COSIM_PATHS

__all__ = ["openapi_document"]

_ERROR = {
    "type": "object",
    "required": ["error", "reason"],
    "properties": {"error": {"type": "string"}, "reason": {"type": "string"}},
}


def _responses(ok: str, *codes: int) -> dict[str, Any]:
    out: dict[str, Any] = {"200": {"description": ok}}
    text = {
        400: "malformed request",
        401: "missing, forged or expired token",
        403: "the token's role may not do this",
        404: "unknown entity or conflict; no telemetry on this node",
        409: "conflicts with the current state (exists; stale resolution)",
        413: "body over the limit",
        422: "refused by the model's rules",
    }
    for code in codes:
        out[str(code)] = {
            "description": text[code],
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
    return out


def _op(
    summary: str,
    role: str | None,
    ok: str,
    *codes: int,
    body: dict[str, Any] | None = None,
    params: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": _responses(ok, *codes)}
    if role is not None:
        op["security"] = [{"bearer": []}]
        op["description"] = f"Needs the `{role}` role or higher."
    if body is not None:
        op["requestBody"] = {
            "required": True,
            "content": {
                "application/json": {"schema": body},
                "application/msgpack": {"schema": body},
            },
        }
    if params:
        op["parameters"] = params
    return op


def _path_param(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


def _query_param(name: str, required: bool = True) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "schema": {"type": "string"}}


def _scoring_paths(*args: Any) -> dict[str, Any]:
    from .scoring._api import openapi_paths

    return openapi_paths(*args)


def openapi_document(version: str) -> dict[str, Any]:
    from .web._openapi import web_paths  # late: node/web imports the API module

    auth = (401, 403)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "twinmesh node API",
            "version": version,
            "description": "Twins, the conflict review queue, fleet status and the live feed.",
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Error": _ERROR},
        },
        "paths": {
            "/v1/entities": {
                "get": _op(
                    "List entities",
                    "viewer",
                    "the entities",
                    *auth,
                    params=[_query_param("model", False)],
                ),
                "post": _op(
                    "Create an entity at this node (its home); the id is SITE/NAME... with"
                    " SITE this node's name (docs/architecture.md, 'Entity ids')",
                    "operator",
                    "created",
                    400,
                    *auth,
                    409,
                    422,
                    body={
                        "type": "object",
                        "required": ["id", "model"],
                        "properties": {
                            "id": {
                                "type": "string",
                                "pattern": ENTITY_ID_PATTERN,
                                "maxLength": 256,
                            },
                            "model": {"type": "string"},
                        },
                    },
                ),
            },
            "/v1/entities/{entity}": {
                "get": _op(
                    "Read an entity: every field's value, and each shared field's context token",
                    "viewer",
                    "the entity",
                    *auth,
                    404,
                    params=[_path_param("entity")],
                ),
            },
            "/v1/entities/{entity}/fields/{field}": {
                "put": _op(
                    "Write a register or text field with the context you read",
                    "operator",
                    "the entity after the write; a shared field's write also returns written.dot",
                    400,
                    *auth,
                    404,
                    413,
                    422,
                    body={
                        "type": "object",
                        "required": ["value"],
                        "properties": {"value": {}, "context": {"type": ["string", "null"]}},
                    },
                    params=[_path_param("entity"), _path_param("field")],
                ),
            },
            "/v1/entities/{entity}/fields/{field}/ops": {
                "post": _op(
                    "Set add/remove, counter increment, log append, text edit",
                    "operator",
                    "the entity after the operation",
                    400,
                    *auth,
                    404,
                    422,
                    body={
                        "type": "object",
                        "required": ["op"],
                        "properties": {
                            "op": {"enum": ["add", "remove", "increment", "append", "edit"]},
                            "element": {},
                            "amount": {"type": "integer"},
                            "id": {"type": "string"},
                            "event": {},
                            "index": {"type": "integer"},
                            "delete": {"type": "integer"},
                            "insert": {"type": "string"},
                        },
                    },
                    params=[_path_param("entity"), _path_param("field")],
                ),
            },
            "/v1/models": {
                "get": _op("The models this node knows", "viewer", "models", *auth),
                "post": _op(
                    "Register DTDL v3 Interfaces (an object or an array); replicated to the fleet",
                    "admin",
                    "registered (201) or already known (200)",
                    400,
                    *auth,
                    409,
                    413,
                    422,
                    body={"type": ["object", "array"]},
                ),
            },
            "/v1/models/{dtmi}": {
                "get": _op(
                    "One model's DTDL document and its versions",
                    "viewer",
                    "the model",
                    *auth,
                    404,
                    params=[_path_param("dtmi")],
                )
            },
            "/v1/conflicts": {"get": _op("The review queue", "viewer", "open conflicts", *auth)},
            "/v1/conflict": {
                "get": _op(
                    "One conflict with all its siblings",
                    "viewer",
                    "the conflict",
                    *auth,
                    404,
                    params=[_query_param("entity"), _query_param("field")],
                ),
            },
            "/v1/conflict/resolve": {
                "post": _op(
                    "Resolve a conflict; the context must cover every sibling and a reason is "
                    "required (it goes to the audit log)",
                    "reviewer",
                    "the entity after resolution",
                    400,
                    *auth,
                    404,
                    409,
                    422,
                    body={
                        "type": "object",
                        "required": ["entity", "field", "value", "context", "reason"],
                        "properties": {
                            "entity": {"type": "string"},
                            "field": {"type": "string"},
                            "value": {},
                            "context": {"type": "string"},
                            "reason": {"type": "string", "minLength": 1},
                        },
                    },
                ),
            },
            "/v1/members": {
                "post": _op(
                    "Point this node at a member's gossip address (its key comes from gossip, "
                    "vouched for by the fleet key)",
                    "admin",
                    "dialling",
                    400,
                    *auth,
                    422,
                    body={
                        "type": "object",
                        "required": ["name", "url"],
                        "properties": {"name": {"type": "string"}, "url": {"type": "string"}},
                    },
                ),
            },
            "/v1/audit": {"get": _op("Audit log (resolutions)", "viewer", "events", *auth)},
            "/v1/fleet": {
                "get": _op(
                    "Fleet status: every member, reachability, lag", "viewer", "members", *auth
                )
            },
            "/v1/digest": {
                "get": _op(
                    "State digest: equal digests mean equal replicated state",
                    "viewer",
                    "the digest",
                    *auth,
                )
            },
            "/v1/feed": {
                "get": _op("Live feed (server-sent events)", "viewer", "event stream", *auth)
            },
            "/v1/adapters": {
                "get": _op(
                    "Plant adapters: connection state and counts", "viewer", "adapters", *auth, 404
                )
            },
            "/v1/telemetry": {
                "get": _op(
                    "Telemetry tags: model spec and newest sample", "viewer", "tags", *auth, 404
                )
            },
            "/v1/telemetry/samples": {
                "get": _op(
                    "Raw samples of one tag by source time, or of all tags after a cursor",
                    "viewer",
                    "samples with quality flags",
                    400,
                    *auth,
                    404,
                    params=[
                        _query_param("entity", False),
                        _query_param("name", False),
                        _query_param("from", False),
                        _query_param("to", False),
                        _query_param("after", False),
                        _query_param("limit", False),
                        _query_param("order", False),
                    ],
                )
            },
            "/v1/telemetry/events": {
                "get": _op(
                    "Data-quality events (stale, stuck)",
                    "viewer",
                    "events",
                    400,
                    *auth,
                    404,
                    params=[_query_param("after", False), _query_param("limit", False)],
                )
            },
            "/v1/telemetry/rejects": {
                "get": _op(
                    "Adapter input refused, with reasons",
                    "viewer",
                    "rejects",
                    400,
                    *auth,
                    404,
                    params=[_query_param("after", False), _query_param("limit", False)],
                )
            },
            "/v1/telemetry/aggregates": {
                "get": _op(
                    "Per-minute or per-hour aggregates of one tag",
                    "viewer",
                    "aggregates",
                    400,
                    *auth,
                    404,
                    params=[
                        _query_param("entity"),
                        _query_param("name"),
                        _query_param("resolution", False),
                        _query_param("from", False),
                        _query_param("to", False),
                    ],
                )
            },
            **_scoring_paths(_op, _path_param, _query_param, auth),
            "/metrics": {"get": _op("Prometheus metrics", None, "text exposition format")},
            "/healthz": {"get": _op("Liveness", None, "ok")},
            "/openapi.json": {"get": _op("This document", None, "OpenAPI 3.1")},
            **web_paths(),  # node/web and node/commands
            **COSIM_PATHS,
        },
    }
