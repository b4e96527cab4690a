"""OpenAPI paths of node/web (pages, lifecycle) and node/commands, merged into
``/openapi.json`` by ``node/_openapi.py``. Pages answer ``text/html`` and use the
session cookie from ``/ui/login``, not a bearer token."""

from __future__ import annotations

from typing import Any

__all__ = ["web_paths"]

_ERROR = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}


def _page(summary: str, *, post: bool = False, params: tuple[str, ...] = ()) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "description": "A page for people (HTML). Needs a signed-in session; forms also "
        "need the session's CSRF token and the role the action names.",
        "responses": {
            "200": {"description": "the page", "content": {"text/html": {}}},
            "303": {"description": "redirect (to sign in, or to the result)"},
            "403": {"description": "wrong role, or a form without this session's CSRF token"},
        },
    }
    if post:
        op["requestBody"] = {
            "required": True,
            "content": {"application/x-www-form-urlencoded": {"schema": {"type": "object"}}},
        }
    if params:
        op["parameters"] = [
            {"name": p, "in": "query", "required": False, "schema": {"type": "string"}}
            for p in params
        ]
    return op


def _json(summary: str, role: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "description": f"Needs the `{role}` role or higher.",
        "security": [{"bearer": []}],
        "responses": {
            "200": {"description": "done"},
            "400": {"description": "malformed request", "content": _ERROR},
            "401": {"description": "missing, forged or expired token", "content": _ERROR},
            "403": {"description": "the token's role may not do this", "content": _ERROR},
            "422": {"description": "refused (safety rules, lifecycle table)", "content": _ERROR},
        },
    }
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    return op


def _obj(*required: str, **props: str) -> dict[str, Any]:
    return {
        "type": "object",
        "required": list(required),
        "properties": {k: {"type": v} for k, v in props.items()},
    }


def web_paths() -> dict[str, Any]:
    return {
        "/": {"get": _page("Redirect to the fleet page")},
        "/ui": {"get": _page("Redirect to the fleet page")},
        "/ui/": {"get": _page("Redirect to the fleet page")},
        "/ui/login": {
            "get": _page("Sign-in form", params=("next",)),
            "post": _page("Sign in with an API token; sets the session cookie", post=True),
        },
        "/ui/logout": {"post": _page("Sign out (ends the session on the node)", post=True)},
        "/ui/fleet": {"get": _page("Fleet: connection state, lag, freshness per node")},
        "/ui/fleet/live": {"get": _page("The fleet table's rows as server-sent events")},
        "/ui/assets": {"get": _page("Twins on this node", params=("q", "plant"))},
        "/ui/asset": {"get": _page("One twin", params=("id", "series", "window", "at", "notice"))},
        "/ui/asset/lifecycle": {"post": _page("Change a twin's lifecycle (operator)", post=True)},
        "/ui/asset/command": {"post": _page("Send a command (operator)", post=True)},
        "/ui/asset/approve": {"post": _page("Approve a high-risk command (approver)", post=True)},
        "/ui/review": {"get": _page("Review queue", params=("plant", "asset", "field", "age"))},
        "/ui/conflict": {"get": _page("One conflict", params=("entity", "field", "done"))},
        "/ui/conflict/resolve": {"post": _page("Resolve a conflict (reviewer)", post=True)},
        "/ui/alerts": {"get": _page("Alerts", params=("plant", "entity", "severity", "state"))},
        "/ui/alert": {"get": _page("One alert", params=("id",))},
        "/ui/workorders": {"get": _page("Work orders", params=("plant", "entity", "state"))},
        "/ui/models": {"get": _page("Model and FMU registries")},
        "/ui/audit": {"get": _page("Audit log", params=("entity",))},
        "/ui/static/{name}": {
            "get": {
                "summary": "The pages' CSS and script",
                "parameters": [
                    {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "responses": {"200": {"description": "the file"}, "404": {"description": "none"}},
            }
        },
        "/v1/lifecycle": {
            "post": _json(
                "Move a twin through the ISO 23247 lifecycle table",
                "operator",
                _obj("entity", "to", "reason", entity="string", to="string", reason="string"),
            )
        },
        "/v1/commands": {
            "get": _json("A twin's commands and its desired vs reported state", "viewer"),
            "post": _json(
                "Issue a command (signed here, executed at the asset's home)",
                "operator",
                _obj(
                    "entity",
                    "command",
                    "value",
                    entity="string",
                    command="string",
                    value="number",
                    ramp_s="number",
                    ttl_s="number",
                ),
            ),
        },
        "/v1/commands/approve": {
            "post": _json(
                "Approve a high-risk command someone else issued",
                "approver",
                _obj("id", id="string"),
            )
        },
    }
