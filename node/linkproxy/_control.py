"""HTTP control API of a :class:`ProxyHub`, so another process can break and heal links.

    GET  /links          every link: addresses, faults, counters
    GET  /links/{name}   one link
    POST /links/{name}   partial fault update, e.g. {"down": true} or {"delay_ms": 150}
    POST /links          the same update applied to every link (split or heal the WAN)

The API has no authentication, so it binds to loopback only: whoever can reach
it can partition the fleet.
"""

from __future__ import annotations

import ipaddress
import json
from types import TracebackType
from typing import Any

from aiohttp import web

from twinmesh.crdt._errors import LocalProtocolError

from ._faults import FaultError
from ._hub import LinkConfigError, ProxyHub

__all__ = ["ControlServer", "control_app"]

_HUB_KEY = web.AppKey("hub", ProxyHub)


def _error(status: int, reason: str) -> web.Response:
    return web.json_response({"error": reason}, status=status)


async def _json_body(request: web.Request) -> Any:
    text = await request.text()
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise web.HTTPBadRequest(
            text=json.dumps({"error": f"body is not valid JSON: {exc}"}),
            content_type="application/json",
        ) from exc


async def _list_links(request: web.Request) -> web.Response:
    return web.json_response({"links": request.app[_HUB_KEY].describe_all()})


async def _get_link(request: web.Request) -> web.Response:
    hub = request.app[_HUB_KEY]
    try:
        return web.json_response(hub.describe(request.match_info["name"]))
    except LinkConfigError as exc:
        return _error(404, exc.reason)


async def _post_link(request: web.Request) -> web.Response:
    hub = request.app[_HUB_KEY]
    name = request.match_info["name"]
    try:
        hub.link(name)
    except LinkConfigError as exc:
        return _error(404, exc.reason)
    try:
        hub.update([name], await _json_body(request))
    except FaultError as exc:
        return _error(400, exc.reason)
    return web.json_response(hub.describe(name))


async def _post_all(request: web.Request) -> web.Response:
    hub = request.app[_HUB_KEY]
    try:
        hub.update(list(hub.links), await _json_body(request))
    except FaultError as exc:
        return _error(400, exc.reason)
    return web.json_response({"links": hub.describe_all()})


def control_app(hub: ProxyHub) -> web.Application:
    app = web.Application()
    app[_HUB_KEY] = hub
    app.router.add_get("/links", _list_links)
    app.router.add_post("/links", _post_all)
    app.router.add_get("/links/{name}", _get_link)
    app.router.add_post("/links/{name}", _post_link)
    return app


def _require_loopback(host: str) -> None:
    if host == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise LocalProtocolError(
            f"the link control API has no authentication and binds to loopback only, not {host!r}"
        )


class ControlServer:
    """Serves :func:`control_app` on loopback; ``port=0`` picks a free port."""

    def __init__(self, hub: ProxyHub, *, host: str = "127.0.0.1", port: int = 0) -> None:
        _require_loopback(host)
        self._app = control_app(hub)
        self._host, self._port = host, port
        self._runner: web.AppRunner | None = None
        self._address: tuple[str, int] | None = None

    async def start(self) -> None:
        if self._runner is not None:
            raise LocalProtocolError("control server is already started")
        runner = web.AppRunner(self._app, access_log=None)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self._host, self._port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        host, port = runner.addresses[0][:2]
        self._address = (str(host), int(port))

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    @property
    def address(self) -> tuple[str, int]:
        if self._address is None:
            raise LocalProtocolError("control server is not started")
        return self._address

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    async def __aenter__(self) -> ControlServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
