"""Errors, split by whose fault they are (the h11 / wsproto convention).

``LocalProtocolError``: we (the caller of this library) asked for something the
rules forbid — writing an unknown field, a single-writer field from the wrong
replica, a resolution that does not cover every sibling. Fix the calling code
or refuse the user's request.

``RemoteProtocolError``: bytes or messages from a peer are malformed or break a
rule. The peer is at fault; the receiver refuses the input and keeps running.
Both carry a human-readable ``reason``.
"""

from __future__ import annotations

__all__ = ["LocalProtocolError", "RemoteProtocolError", "TwinmeshError"]


class TwinmeshError(Exception):
    """Base class for every error twinmesh raises on purpose."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class LocalProtocolError(TwinmeshError):
    """Our own misuse of the API: the request breaks a rule and nothing was changed."""


class RemoteProtocolError(TwinmeshError):
    """A peer sent input we refuse (malformed, forged, out of bounds); nothing was changed.

    ``kind`` names the class of refusal for counters and for the peer's answer
    (``"sequence-gap"``, ``"unsolicited-snapshot"``, ...): a typed field, so
    nobody has to parse it back out of the human-readable ``reason``."""

    def __init__(self, reason: str, *, kind: str = "malformed-message") -> None:
        super().__init__(reason)
        self.kind = kind
