"""One node's API over HTTP (stdlib only), and where its URL and token come from."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from twinmesh.crdt import LocalProtocolError

__all__ = ["ApiError", "NodeClient", "client_from_args"]

TIMEOUT = 10.0


class ApiError(LocalProtocolError):
    """The node refused a request (its status and reason), or could not be reached."""

    def __init__(self, reason: str, *, status: int | None = None, error: str = "") -> None:
        super().__init__(reason)
        self.status = status
        self.error = error


class NodeClient:
    """Calls one node's ``/v1`` API with one bearer token."""

    def __init__(self, url: str, token: str, *, timeout: float = TIMEOUT) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def call(self, method: str, path: str, body: Any = None) -> Any:
        req = urllib.request.Request(
            self.url + path,
            data=None if body is None else json.dumps(body).encode(),
            method=method,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            text = exc.read().decode(errors="replace")
            try:
                payload = json.loads(text)
                error, reason = str(payload.get("error", "")), str(payload.get("reason", text))
            except (ValueError, AttributeError):
                error, reason = "", text
            raise ApiError(
                f"{method} {path}: {exc.code} {error}: {reason}", status=exc.code, error=error
            ) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ApiError(f"{self.url} not reachable ({reason}); is the node up?") from None

    # ---------------------------------------------------------------- the loop

    def create(self, entity_id: str, model: str) -> dict[str, Any]:
        return self.call("POST", "/v1/entities", {"id": entity_id, "model": model})  # type: ignore[no-any-return]

    def entity(self, entity_id: str) -> dict[str, Any]:
        return self.call("GET", f"/v1/entities/{_quote(entity_id)}")  # type: ignore[no-any-return]

    def write(self, entity_id: str, field: str, value: Any, context: str | None) -> dict[str, Any]:
        path = f"/v1/entities/{_quote(entity_id)}/fields/{urllib.parse.quote(field, safe='')}"
        return self.call("PUT", path, {"value": value, "context": context})  # type: ignore[no-any-return]

    def conflicts(self) -> list[dict[str, Any]]:
        return self.call("GET", "/v1/conflicts")["conflicts"]  # type: ignore[no-any-return]

    def conflict(self, entity_id: str, field: str) -> dict[str, Any]:
        query = urllib.parse.urlencode({"entity": entity_id, "field": field})
        return self.call("GET", f"/v1/conflict?{query}")  # type: ignore[no-any-return]

    def resolve(
        self, entity_id: str, field: str, value: Any, context: str, reason: str
    ) -> dict[str, Any]:
        body = {"entity": entity_id, "field": field, "value": value, "context": context}
        return self.call("POST", "/v1/conflict/resolve", {**body, "reason": reason})  # type: ignore[no-any-return]


def _quote(entity_id: str) -> str:
    # Entity ids keep their '/' in the path (the API routes /v1/entities/{id:.+}).
    return urllib.parse.quote(entity_id, safe="/")


def client_from_args(
    *, url: str | None, token: str | None, fleet_dir: str | None, node: str | None, role: str
) -> NodeClient:
    """A client from ``--url``/``--token`` (or TWINMESH_URL/TWINMESH_TOKEN), else ``fleet.json``.

    From a fleet directory the node defaults to ``central`` and the token to
    the fleet's token for ``role`` (the least role the command needs).
    """
    url = url or os.environ.get("TWINMESH_URL") or None
    token = token or os.environ.get("TWINMESH_TOKEN") or None
    if url is None or token is None:
        directory = Path(fleet_dir or ".twinmesh-fleet")
        path = directory / "fleet.json"
        try:
            fleet = json.loads(path.read_text())
        except FileNotFoundError:
            raise ApiError(
                f"no {path}: give --url and --token, or --dir of a fleet ('twinmesh fleet up')"
            ) from None
        except (OSError, ValueError) as exc:
            raise ApiError(f"{path}: cannot read: {exc}") from None
        name = node or "central"
        apis = {n["name"]: n["api"] for n in fleet.get("nodes", [])}
        if url is None:
            if name not in apis:
                raise ApiError(f"no node {name!r} in {path} (nodes: {', '.join(apis)})")
            url = apis[name]
        if token is None:
            token = fleet.get("tokens", {}).get(role)
            if token is None:
                raise ApiError(f"{path} has no {role} token")
    return NodeClient(url, token)
