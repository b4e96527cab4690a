"""The co-simulation part of the REST API (and its OpenAPI paths).

* ``GET /v1/assets/{id}/cosim`` — state, FMUs with versions and hashes, last
  step, real-time factor, held inputs, the newest observed/expected/residual
  values and lineage (viewer). Expected and residual *series* are ordinary
  telemetry: ``GET /v1/telemetry/samples?entity=..&name=current.residual``.
* ``GET /v1/assets/{id}/cosim/lineage?ts=`` — what produced the expected
  values at one source time: FMUs, system file, the input samples used; from
  the lineage store, so also for values stored before a restart.
* ``POST /v1/assets/{id}/whatif`` — a bounded what-if run on a copy (operator).
* ``GET /v1/fmus``, ``POST /v1/fmus`` (admin), ``GET /v1/fmus/{sha256}``,
  ``POST /v1/fmus/{sha256}/fetch`` (admin) — the fleet's FMU registry
  (node/cosim/_registry.py).
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

from aiohttp import web

from .._auth import require_role
from .._tokens import Role, TokenIssuer
from ._whatif import WhatIfError

if TYPE_CHECKING:
    from .._node import Node

__all__ = ["OPENAPI_PATHS", "add_routes"]


def _error(status: int, error: str, reason: str) -> web.Response:
    return web.json_response({"error": error, "reason": reason}, status=status)


def _require(request: web.Request, tokens: TokenIssuer, node: Node, role: Role) -> str:
    return require_role(request, tokens, node, role)


def _finite(x: Any) -> Any:
    """JSON has no NaN/Infinity: say null."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_finite(v) for v in x]
    return x


def add_routes(app: web.Application, node: Node, tokens: TokenIssuer) -> None:
    routes = web.RouteTableDef()

    def not_cosimulated(entity: str) -> web.Response:
        if node.cosim is None:
            return _error(
                404, "no-cosim", "this node co-simulates nothing (no [cosim] in its config)"
            )
        return _error(404, "not-co-simulated", f"{entity} has no system file on this node")

    @routes.get("/v1/assets/{entity:.+}/cosim/lineage")
    async def lineage(request: web.Request) -> web.Response:
        _require(request, tokens, node, Role.VIEWER)
        entity = request.match_info["entity"]
        cosim = node.cosim
        if cosim is None:
            return not_cosimulated(entity)
        raw = request.query.get("ts")
        ts: float | None = None
        if raw is not None:
            try:
                ts = float(raw)
            except ValueError:
                return _error(400, "bad-query", f"ts must be a number, found {raw[:40]!r}")
            if not math.isfinite(ts):
                return _error(400, "bad-query", f"ts must be a finite number, found {raw[:40]!r}")
        # From the lineage store: points of earlier runs (before a restart or an FMU
        # switch) are found too, each with the system and FMUs of its own run.
        found = await cosim.lineage_points(entity, ts)
        c = cosim.couplings.get(entity)
        if c is None and not found:
            return not_cosimulated(entity)
        if ts is not None and not found:
            return _error(404, "no-lineage", f"no expected value at {ts} is still kept")
        current = (
            {
                "system": {
                    "name": c.system.name,
                    "version": c.system.version,
                    "path": str(c.system.path),
                    "sha256": c.system.sha256,
                },
                "fmus": [{"instance": n, **e.info.json()} for n, e in c.system.fmus.items()],
            }
            if c is not None
            else {"system": None, "fmus": []}
        )
        return web.json_response(_finite({"entity": entity, **current, "points": found}))

    @routes.get("/v1/assets/{entity:.+}/cosim")
    async def status(request: web.Request) -> web.Response:
        _require(request, tokens, node, Role.VIEWER)
        entity = request.match_info["entity"]
        body = node.cosim.status(entity) if node.cosim else None
        if body is None:
            return not_cosimulated(entity)
        return web.json_response(_finite(body))

    @routes.post("/v1/assets/{entity:.+}/whatif")
    async def whatif(request: web.Request) -> web.Response:
        _require(request, tokens, node, Role.OPERATOR)
        entity = request.match_info["entity"]
        if node.cosim is None:
            return not_cosimulated(entity)
        try:
            body = json.loads(await request.read() or b"null")
        except ValueError as exc:
            return _error(400, "malformed-body", f"body is not JSON: {exc}")
        if not isinstance(body, dict):
            return _error(400, "malformed-body", "body must be an object")
        try:
            result = await node.cosim.whatif(entity, body)
        except WhatIfError as exc:
            node.cosim.whatif_refusals += 1
            return _error(exc.status, exc.error, exc.reason)
        return web.json_response(_finite(result))

    from ._registry import add_registry_routes

    add_registry_routes(routes, node, lambda r, role: _require(r, tokens, node, role))
    app.add_routes(routes)


def _op(summary: str, role: str, ok: str, *codes: int, body: bool = False) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "security": [{"bearer": []}],
        "description": f"Needs the `{role}` role or higher.",
        "responses": {"200": {"description": ok}}
        | {
            str(c): {
                "description": "refused",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            }
            for c in codes
        },
    }
    if body:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    return op


_ID = [{"name": "entity", "in": "path", "required": True, "schema": {"type": "string"}}]
_SHA = [{"name": "sha256", "in": "path", "required": True, "schema": {"type": "string"}}]

OPENAPI_PATHS: dict[str, Any] = {
    "/v1/assets/{entity}/cosim": {
        "get": {
            **_op(
                "Co-simulation of an asset: state, FMUs and versions, last step, real-time"
                " factor, held inputs, newest observed/expected/residual values",
                "viewer",
                "the co-simulation status",
                401,
                403,
                404,
            ),
            "parameters": _ID,
        }
    },
    "/v1/assets/{entity}/cosim/lineage": {
        "get": {
            **_op(
                "Lineage of expected values: FMUs (name, version, sha256), system file, input"
                " samples used",
                "viewer",
                "lineage records",
                400,
                401,
                403,
                404,
            ),
            "parameters": [*_ID, {"name": "ts", "in": "query", "schema": {"type": "number"}}],
        }
    },
    "/v1/assets/{entity}/whatif": {
        "post": {
            **_op(
                "Run the asset's system from its current state over a horizon with changed inputs"
                ' ({telemetry: {scale|offset|value: x}}) or parameters ({"fmu.var": x}); on a'
                " copy, bounded in horizon, CPU and wall time",
                "operator",
                "trajectories, final values, outputs leaving their model's range",
                400,
                401,
                403,
                404,
                409,
                422,
                body=True,
            ),
            "parameters": _ID,
        }
    },
    "/v1/fmus": {
        "get": _op(
            "The fleet's FMU registry, which FMU versions every plant runs (version skew)"
            " and the FMU switches each plant recorded",
            "viewer",
            "registered FMUs, deployments per plant, skew",
            401,
            403,
        ),
        "post": {
            **_op(
                "Register an FMU (the archive as the body, application/octet-stream);"
                " content-addressed by sha256, replicated to the fleet",
                "admin",
                "registered (201) or already known (200)",
                400,
                401,
                403,
                413,
                422,
            ),
            "requestBody": {
                "required": True,
                "content": {
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
                },
            },
        },
    },
    "/v1/fmus/{sha256}": {
        "get": {
            **_op(
                "One registered FMU, and whether its binary is here",
                "viewer",
                "the FMU",
                401,
                403,
                404,
            ),
            "parameters": _SHA,
        }
    },
    "/v1/fmus/{sha256}/fetch": {
        "post": {
            **_op(
                "Fetch a registered FMU's binary from a peer over mutual TLS,"
                " verified against its hash",
                "admin",
                "stored",
                401,
                403,
                404,
                422,
                502,
            ),
            "parameters": _SHA,
        }
    },
}
