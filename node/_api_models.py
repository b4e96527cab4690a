"""The model-registry part of the REST API: register DTDL models, read them back.

``POST /v1/models`` (admin) takes a DTDL v3 document — one Interface object or
an array of them, as in a model file — validates it against the registry,
and replicates every new Interface to the fleet (node/_shared_models.py).
Invalid models are refused with *every* error, each naming the element
path, the rule, what was expected and what was found, like a compiler. A
document that changes a registered model in place is a 409: new versions
get new DTMIs.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ._shared_models import model_entity
from ._tokens import Role
from .dtdl import DtdlError, DtdlValidationError, ModelConflictError

if TYPE_CHECKING:
    from ._node import Node

__all__ = ["add_model_routes"]


def _error_json(e: DtdlError) -> dict[str, str]:
    return {
        "path": e.path,
        "rule": e.rule,
        "expected": e.expected,
        "found": e.found,
        "message": e.message,
        "source": e.source,
    }


def add_model_routes(
    routes: web.RouteTableDef, node: Node, require: Callable[[web.Request, Role], str]
) -> None:
    @routes.post("/v1/models")
    async def register_models(request: web.Request) -> web.Response:
        subject = require(request, Role.ADMIN)
        raw = await request.read()
        try:
            content: Any = json.loads(raw)
        except ValueError as exc:
            return web.json_response(
                {"error": "malformed-body", "reason": f"body is not JSON: {exc}"}, status=400
            )
        if not isinstance(content, dict | list):
            return web.json_response(
                {"error": "malformed-body", "reason": "a DTDL document is an object or an array"},
                status=400,
            )
        try:
            new, unchanged = node.shared_models.register(content)
        except ModelConflictError as exc:
            return web.json_response(
                {
                    "error": "model-changed",
                    "reason": f"{', '.join(exc.dtmis)}: a registered model never changes;"
                    " publish a new version (a new DTMI)",
                    "errors": [_error_json(e) for e in exc.errors],
                },
                status=409,
            )
        except DtdlValidationError as exc:
            return web.json_response(
                {
                    "error": "invalid-model",
                    "reason": str(exc),
                    "errors": [_error_json(e) for e in exc.errors],
                },
                status=422,
            )
        except ValueError as exc:
            return web.json_response({"error": "model-too-large", "reason": str(exc)}, status=413)
        if new:
            await node.write_many(
                *node.shared_models.mutators(
                    node.state, new, subject, lambda: int(node.clock() * 1000)
                )
            )
        return web.json_response(
            {"registered": [i.id for i in new], "unchanged": [i.id for i in unchanged]},
            status=201 if new else 200,
        )

    @routes.get("/v1/models/{dtmi}")
    async def get_model(request: web.Request) -> web.Response:
        require(request, Role.VIEWER)
        dtmi = request.match_info["dtmi"]
        registry = node.shared_models.registry
        if dtmi not in registry:
            reason = node.shared_models.refused.get(dtmi)
            return web.json_response(
                {
                    "error": "unknown-model",
                    "reason": f"{dtmi} was replicated but refused here: {reason}"
                    if reason
                    else f"no model {dtmi} here (versions known: "
                    f"{', '.join(i.id for i in registry.versions(dtmi)) or 'none'})",
                },
                status=404,
            )
        iface = registry.get(dtmi)
        return web.json_response(
            {
                "id": iface.id,
                "shipped": dtmi in node.shared_models.shipped,
                "replicated": model_entity(dtmi) in node.state.entities,
                "versions": [i.id for i in registry.versions(dtmi)],
                "document": json.loads(iface.canonical_json),
            }
        )
