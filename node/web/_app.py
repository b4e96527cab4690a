"""Wiring the pages into a node's API app: templates, sessions, access, headers.

Every page handler is wrapped by :meth:`Pages.page` (viewer or higher, signed
in) and every form handler by :meth:`Pages.action` (signed in, CSRF token and
origin checked, the action's role checked *on the server*: a hidden button is
not an access control). Refusals are pages that say why, with the right
status. Handlers return responses instead of raising ``HTTPException``: the
API's error middleware turns raised exceptions into JSON.
"""

from __future__ import annotations

import datetime as dt
import functools
import urllib.parse
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp_jinja2
import jinja2
from aiohttp import web

from .._tokens import Role, TokenIssuer
from ._fleet import FleetWatch
from ._session import Session, SessionError, Sessions

if TYPE_CHECKING:
    from .._node import Node

__all__ = ["Pages"]

HERE = Path(__file__).resolve().parent
PageHandler = Callable[[web.Request, Session], Awaitable[web.StreamResponse]]
ActionHandler = Callable[[web.Request, Session, dict[str, str]], Awaitable[web.StreamResponse]]

# No inline script or style anywhere: an injected <script> cannot run even if
# escaping ever failed (defence in depth, CSP level 2).
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


def _ts(value: float | int | None, ms: bool = False) -> str:
    if value is None:
        return "never"
    t = value / 1000 if ms else value
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _ago(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    s = max(0.0, seconds)
    if s < 60:
        return f"{s:.0f} s ago" if s >= 10 else f"{s:.1f} s ago"
    if s < 3600:
        return f"{s / 60:.0f} min ago"
    if s < 86400:
        return f"{s / 3600:.1f} h ago"
    return f"{s / 86400:.1f} days ago"


def _duration(seconds: float | None) -> str:
    return "—" if seconds is None else _ago(seconds).removesuffix(" ago")


def _q(value: Any) -> str:
    return urllib.parse.quote(str(value), safe="")


class Pages:
    def __init__(self, app: web.Application, node: Node, tokens: TokenIssuer) -> None:
        self.node = node
        self.sessions = Sessions(tokens, node.clock)
        self.watch = FleetWatch(node)
        self.streams: set[web.StreamResponse] = set()
        self.closing = False
        env = aiohttp_jinja2.setup(
            app,
            loader=jinja2.FileSystemLoader(str(HERE / "templates")),
            autoescape=True,  # entity ids, notes, reasons are attacker-controlled
            trim_blocks=True,
            lstrip_blocks=True,
        )
        env.filters.update(ts=_ts, ago=_ago, duration=_duration, q=_q)
        env.globals["Role"] = Role
        app.on_startup.append(self._startup)
        app.on_shutdown.append(self._shutdown)

    async def _startup(self, app: web.Application) -> None:
        await self.watch.start()

    async def _shutdown(self, app: web.Application) -> None:
        self.closing = True
        self.watch.changed.set()
        await self.watch.stop()

    # ---------------------------------------------------------- responses

    def render(
        self,
        template: str,
        request: web.Request,
        session: Session | None,
        status: int = 200,
        **context: Any,
    ) -> web.Response:
        base = {
            "session": session,
            "me": self.node.config.name,
            "node_role": self.node.config.role,
            "now": self.node.clock(),
            "path": request.path,
        }
        base.update(context)
        response = aiohttp_jinja2.render_template(template, request, base, status=status)
        response.headers.update(SECURITY_HEADERS)
        return response

    def refuse(
        self, request: web.Request, session: Session | None, status: int, title: str, reason: str
    ) -> web.Response:
        return self.render("error.html", request, session, status, title=title, reason=reason)

    @staticmethod
    def redirect(location: str) -> web.Response:
        return web.Response(status=303, headers={"Location": location, **SECURITY_HEADERS})

    def _role_refusal(self, request: web.Request, session: Session, role: Role) -> web.Response:
        return self.refuse(
            request,
            session,
            403,
            "Not allowed",
            f"This needs the {role.name.lower()} role; you are signed in as "
            f"{session.subject} with the {session.role.name.lower()} role.",
        )

    # ---------------------------------------------------------- access

    def page(self, role: Role = Role.VIEWER) -> Callable[[PageHandler], Any]:
        def wrap(fn: PageHandler) -> Any:
            @functools.wraps(fn)
            async def handler(request: web.Request) -> web.StreamResponse:
                session = self.sessions.get(request)
                if session is None:
                    return self.redirect("/ui/login?next=" + _q(request.path_qs))
                if not session.can(role):
                    return self._role_refusal(request, session, role)
                return await fn(request, session)

            return handler

        return wrap

    def action(self, role: Role) -> Callable[[ActionHandler], Any]:
        def wrap(fn: ActionHandler) -> Any:
            @functools.wraps(fn)
            async def handler(request: web.Request) -> web.StreamResponse:
                session = self.sessions.get(request)
                if session is None:
                    return self.refuse(
                        request, None, 401, "Signed out", "Sign in again, then repeat this."
                    )
                try:
                    raw = await request.post()
                except Exception:
                    return self.refuse(request, session, 400, "Bad form", "The form did not parse.")
                form = {k: v for k, v in raw.items() if isinstance(v, str)}
                try:
                    Sessions.check_form(request, session, form)
                except SessionError as exc:
                    return self.refuse(request, session, 403, "Form refused", exc.reason)
                if not session.can(role):
                    return self._role_refusal(request, session, role)
                return await fn(request, session, form)

            return handler

        return wrap
