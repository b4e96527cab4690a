"""Signing in to the pages: a token once, then a session cookie; CSRF on every form.

A person pastes an API token (the same signed, role-carrying tokens as the
REST API, ``node/_tokens.py``) into the sign-in form. The node checks it and
keeps a server-side session: the cookie holds only a random session id, so the
token never sits in the browser and a stolen page cannot read the cookie
(``HttpOnly``). ``SameSite=Strict`` keeps the cookie off cross-site requests,
and every form also carries the session's CSRF token (the synchronizer token
pattern, OWASP CSRF Prevention Cheat Sheet), checked in constant time; a
request whose ``Origin`` names another site is refused as well.

Sessions live in memory: a restarted node asks people to sign in again,
which is the safe default for a plant floor terminal.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from .._tokens import Role, TokenError, TokenIssuer

__all__ = ["COOKIE", "MAX_SESSION_S", "Session", "SessionError", "Sessions"]

COOKIE = "twinmesh_session"
MAX_SESSION_S = 12 * 3600  # a shift; never longer than the token itself
MAX_SESSIONS = 10_000


class SessionError(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True, kw_only=True)
class Session:
    id: str
    subject: str
    role: Role
    expires: float
    csrf: str

    def can(self, role: Role) -> bool:
        return self.role >= role


class Sessions:
    def __init__(self, tokens: TokenIssuer, clock: Callable[[], float]) -> None:
        self._tokens = tokens
        self._clock = clock
        self._by_id: dict[str, Session] = {}

    def sign_in(self, token: str) -> Session:
        now = self._clock()
        try:
            claims = self._tokens.check(token.strip(), now=now)
        except TokenError as exc:
            raise SessionError(f"that token was refused: {exc.reason}") from None
        self._purge(now)
        if len(self._by_id) >= MAX_SESSIONS:
            raise SessionError("too many open sessions on this node; try again later")
        session = Session(
            id=secrets.token_urlsafe(32),
            subject=claims.subject,
            role=claims.role,
            expires=min(float(claims.expires), now + MAX_SESSION_S),
            csrf=secrets.token_urlsafe(32),
        )
        self._by_id[session.id] = session
        return session

    def get(self, request: web.Request) -> Session | None:
        sid = request.cookies.get(COOKIE)
        if not sid:
            return None
        session = self._by_id.get(sid)
        if session is None:
            return None
        if self._clock() >= session.expires:
            del self._by_id[sid]
            return None
        return session

    def sign_out(self, session: Session) -> None:
        self._by_id.pop(session.id, None)

    def _purge(self, now: float) -> None:
        for sid in [k for k, s in self._by_id.items() if now >= s.expires]:
            del self._by_id[sid]

    def set_cookie(
        self, request: web.Request, response: web.StreamResponse, session: Session
    ) -> None:
        response.set_cookie(
            COOKIE,
            session.id,
            max_age=max(1, int(session.expires - self._clock())),
            httponly=True,
            samesite="Strict",
            secure=request.secure,
            path="/",
        )

    @staticmethod
    def check_form(request: web.Request, session: Session, form: dict[str, str]) -> None:
        """Refuse a POST that did not come from our own page (CSRF)."""
        check_origin(request)
        sent = form.get("csrf", "")
        if not sent or not hmac.compare_digest(sent.encode(), session.csrf.encode()):
            raise SessionError(
                "this form is out of date or did not come from this node's pages; reload and retry"
            )


def check_origin(request: web.Request) -> None:
    """A browser names the page's origin on a POST; it must be this node."""
    origin = request.headers.get("Origin")
    if origin is None:  # not a browser, or an old one: the CSRF token still has to match
        return
    expected = f"{request.scheme}://{request.host}"
    if origin != expected:
        raise SessionError(f"refused a form posted from another site ({origin[:80]})")
