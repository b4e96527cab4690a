"""Pages for people, served by every node beside its JSON API.

``add_routes(app, node, tokens)`` (one line in ``api_app``) adds:

* ``/ui/...`` — server-rendered pages (Jinja2 through aiohttp-jinja2): fleet
  (live over server-sent events), assets, asset, review queue, conflict,
  alerts, work orders, models/FMUs, audit; sign-in with an API token once, then
  a session cookie (``_session.py``);
* ``POST /v1/lifecycle`` — a lifecycle transition through the table in
  ``node/lifecycle`` (operator role);
* ``/v1/commands`` (node/commands/_api.py): issue, approve, list;
* a guard on the JSON API: a decommissioned (archived) twin's fields are read-only.

No build step and nothing fetched at run time: the CSS and the one small script
(``static/live.js``, the fleet page's live rows) ship in the package.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from aiohttp import web

from .._tokens import Role, TokenError, TokenIssuer
from ..commands._api import add_command_routes
from ..lifecycle import LifecycleError
from ._app import Pages
from ._asset import add_asset_pages
from ._pages import add_pages

if TYPE_CHECKING:
    from .._node import Node

__all__ = ["add_routes"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json_error(status: int, error: str, reason: str) -> web.Response:
    return web.json_response({"error": error, "reason": reason}, status=status)


def add_routes(app: web.Application, node: Node, tokens: TokenIssuer) -> None:
    pages = Pages(app, node, tokens)
    add_pages(app, pages)
    add_asset_pages(app, pages)
    app["twinmesh.web.pages"] = pages

    @web.middleware
    async def archived_guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        # ISO 23247 archive: a decommissioned twin keeps its history and is read-only.
        path = request.path
        if request.method in ("PUT", "POST") and path.startswith("/v1/entities/"):
            entity_id = path[len("/v1/entities/") :].split("/fields/", 1)[0]
            if "/fields/" in path and node.lifecycle.archived(entity_id):
                return _json_error(
                    422,
                    "archived",
                    f"{entity_id} is decommissioned: its twin is archived and read-only",
                )
        return await handler(request)

    app.middlewares.append(archived_guard)

    async def lifecycle(request: web.Request) -> web.Response:
        header = request.headers.get("Authorization", "")
        try:
            claims = tokens.check(header.removeprefix("Bearer ").strip(), now=node.clock())
        except TokenError as exc:
            return _json_error(401, "unauthenticated", exc.reason)
        if claims.role < Role.OPERATOR:
            return _json_error(403, "forbidden", "a lifecycle change needs the operator role")
        try:
            data = json.loads(await request.read() or b"null")
        except ValueError as exc:
            return _json_error(400, "malformed-body", f"body does not parse: {exc}")
        if not isinstance(data, dict) or not all(
            isinstance(data.get(k), str) for k in ("entity", "to", "reason")
        ):
            return _json_error(400, "malformed-body", "give entity, to and reason, each a string")
        try:
            event = await node.lifecycle.transition(
                data["entity"], data["to"], author=claims.subject, reason=data["reason"]
            )
        except LifecycleError as exc:
            return _json_error(422, "illegal-transition", exc.reason)
        return web.json_response(event)

    app.router.add_post("/v1/lifecycle", lifecycle)
    add_command_routes(app, node, tokens)
