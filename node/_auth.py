"""The one bearer-token check every API route uses (core routes and the
routes each node/ subpackage adds): 401 without a valid token, 403 naming the
role needed and the role held."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from aiohttp import web

from ._tokens import Role, TokenError, TokenIssuer

if TYPE_CHECKING:
    from ._node import Node

__all__ = ["require_role"]


def require_role(request: web.Request, tokens: TokenIssuer, node: Node, role: Role) -> str:
    """The subject of the request's token, if it holds at least ``role``."""
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer "):
        raise web.HTTPUnauthorized(
            text=json.dumps({"error": "unauthenticated", "reason": "missing bearer token"}),
            content_type="application/json",
        )
    try:
        claims = tokens.check(header[7:].strip(), now=node.clock())
    except TokenError as exc:
        raise web.HTTPUnauthorized(
            text=json.dumps({"error": "unauthenticated", "reason": exc.reason}),
            content_type="application/json",
        ) from None
    if claims.role < role:
        raise web.HTTPForbidden(
            text=json.dumps(
                {
                    "error": "forbidden",
                    "reason": f"this needs the {role.name.lower()} role; "
                    f"the token has {claims.role.name.lower()}",
                }
            ),
            content_type="application/json",
        )
    return claims.subject
