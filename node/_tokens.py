"""API tokens: stateless, signed, expiring, each carrying one role.

A token is ``tm1.<role>.<subject>.<expires>.<mac>`` where ``mac`` is
HMAC-SHA256 over the rest under the fleet's token secret. Any node of the
fleet can check any token without a database; a forged token fails the MAC,
an expired one fails the clock. Roles are ordered: admin ⊇ approver ⊇
reviewer ⊇ operator ⊇ viewer (a reviewer may also write fields; an approver
may also approve a high-risk command someone else issued; only admins manage
members).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from enum import IntEnum

__all__ = ["Role", "TokenClaims", "TokenError", "TokenIssuer"]


class Role(IntEnum):
    VIEWER = 1
    OPERATOR = 2
    REVIEWER = 3
    APPROVER = 4  # approves high-risk commands issued by another person
    ADMIN = 5

    @classmethod
    def parse(cls, name: str) -> Role:
        try:
            return cls[name.upper()]
        except KeyError:
            raise TokenError(f"unknown role {name!r}") from None


class TokenError(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenClaims:
    role: Role
    subject: str
    expires: int  # unix seconds


_CACHE = 4096
_SUBJECT = re.compile(r"^[A-Za-z0-9_@-]{1,64}$")


class TokenIssuer:
    def __init__(self, secret: bytes) -> None:
        if len(secret) < 16:
            raise ValueError("the token secret must be at least 16 bytes")
        self._secret = secret
        # Tokens whose signature verified, with their claims: checking the
        # MAC is a pure function of the exact token string, so a client's
        # token is verified once, not on every request (expiry is still
        # checked every time). Bounded: cleared when it grows past _CACHE.
        self._verified: dict[str, TokenClaims] = {}

    def _mac(self, body: str) -> str:
        digest = hmac.new(self._secret, body.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def issue(self, role: Role, subject: str, expires: int) -> str:
        if not _SUBJECT.match(subject):
            raise TokenError("subjects are 1..64 letters, digits, '_', '@' or '-'")
        body = f"tm1.{role.name.lower()}.{subject}.{expires}"
        return f"{body}.{self._mac(body)}"

    def check(self, token: str, *, now: float) -> TokenClaims:
        claims = self._verified.get(token)
        if claims is None:
            claims = self._verify(token)
            if len(self._verified) >= _CACHE:
                self._verified.clear()
            self._verified[token] = claims
        if now >= claims.expires:
            raise TokenError("token expired")
        return claims

    def _verify(self, token: str) -> TokenClaims:
        parts = token.split(".")
        if len(parts) != 5 or parts[0] != "tm1":
            raise TokenError("malformed token")
        body = ".".join(parts[:4])
        if not hmac.compare_digest(self._mac(body), parts[4]):
            raise TokenError("token signature does not verify")
        role = Role.parse(parts[1])
        try:
            expires = int(parts[3])
        except ValueError:
            raise TokenError("malformed token expiry") from None
        return TokenClaims(role=role, subject=parts[2], expires=expires)
