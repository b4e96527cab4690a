"""HTTP for commands: ``POST /v1/commands``, ``POST /v1/commands/approve``,
``GET /v1/commands?entity=ID``. Refusals are ``{"error", "reason"}`` (422 for a
command the safety rules refuse, 403 for a role that may not)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from aiohttp import web

from .._tokens import Role, TokenError, TokenIssuer
from ._record import CommandError

if TYPE_CHECKING:
    from .._node import Node

__all__ = ["add_command_routes"]


def _error(status: int, error: str, reason: str) -> web.Response:
    return web.json_response({"error": error, "reason": reason}, status=status)


def add_command_routes(app: web.Application, node: Node, tokens: TokenIssuer) -> None:
    def claims(request: web.Request) -> Any:
        header = request.headers.get("Authorization", "")
        try:
            return tokens.check(header.removeprefix("Bearer ").strip(), now=node.clock())
        except TokenError as exc:
            return _error(401, "unauthenticated", exc.reason)

    async def body(request: web.Request) -> dict[str, Any] | web.Response:
        try:
            data = json.loads(await request.read() or b"null")
        except ValueError as exc:
            return _error(400, "malformed-body", f"body does not parse: {exc}")
        if not isinstance(data, dict):
            return _error(400, "malformed-body", "body must be an object")
        return data

    async def issue(request: web.Request) -> web.Response:
        who = claims(request)
        if isinstance(who, web.Response):
            return who
        if who.role < Role.OPERATOR:
            return _error(403, "forbidden", "sending a command needs the operator role")
        data = await body(request)
        if isinstance(data, web.Response):
            return data
        entity, command = data.get("entity"), data.get("command")
        if not isinstance(entity, str) or not isinstance(command, str):
            return _error(400, "malformed-body", "give entity and command (strings) and value")
        for key in ("ramp_s", "ttl_s"):
            if data.get(key) is not None and (
                isinstance(data[key], bool) or not isinstance(data[key], int | float)
            ):
                return _error(400, "malformed-body", f"{key} must be a number of seconds")
        try:
            event = await node.commands.issue(
                entity,
                command,
                data.get("value"),
                by=who.subject,
                role=who.role,
                ramp_s=data.get("ramp_s"),
                ttl_s=data.get("ttl_s"),
            )
        except CommandError as exc:
            return _error(422, "command-refused", exc.reason)
        return web.json_response(event, status=202)

    async def approve(request: web.Request) -> web.Response:
        who = claims(request)
        if isinstance(who, web.Response):
            return who
        data = await body(request)
        if isinstance(data, web.Response):
            return data
        if not isinstance(data.get("id"), str):
            return _error(400, "malformed-body", "give the command's id")
        try:
            await node.commands.approve(data["id"], by=who.subject, role=who.role)
        except CommandError as exc:
            status = 403 if "role" in exc.reason or "cannot also" in exc.reason else 422
            return _error(status, "approval-refused", exc.reason)
        return web.json_response({"id": data["id"], "approved_by": who.subject})

    async def listing(request: web.Request) -> web.Response:
        who = claims(request)
        if isinstance(who, web.Response):
            return who
        entity = request.query.get("entity", "")
        return web.json_response(
            {
                "commands": node.commands.history(entity),
                "desired": node.commands.desired_view(entity),
            }
        )

    app.router.add_post("/v1/commands", issue)
    app.router.add_post("/v1/commands/approve", approve)
    app.router.add_get("/v1/commands", listing)
