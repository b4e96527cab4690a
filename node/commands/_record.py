"""A command as it travels: what, for which twin, by whom, until when — signed.

A person issues a command at any node; that node signs the record with its
Ed25519 identity key (the same fleet-vouched key that signs its gossip
batches, ``twinmesh.sync.Identity``) and appends it to a grow-only log that
gossip carries to the asset's home plant. The home verifies the signature
against the issuer's fleet-vouched credential before acting, so a forged
record, a record altered in transit or one injected on the broker side
(seed 000: broker injection, compromised analytics) does nothing.

The signed bytes are a msgpack array in a fixed field order behind a domain
tag: a signature over a command can never be confused with one over a gossip
batch or an approval. ``id`` (128 random bits) is the at-most-once key: the
home runs each id once, whatever log entry or replay carries it.
"""

from __future__ import annotations

import math
import re
import secrets
from dataclasses import dataclass
from typing import Any

import msgpack
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from twinmesh.sync import verify_signature

__all__ = ["Approval", "CommandError", "CommandRecord", "new_command_id"]

_COMMAND_TAG = b"twinmesh-command-v1"
_APPROVAL_TAG = b"twinmesh-approval-v1"
_ID = re.compile(r"^[0-9a-f]{32}$")


class CommandError(Exception):
    """A command refused or malformed; ``reason`` says why in plain words."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def new_command_id() -> str:
    return secrets.token_hex(16)


def _need(d: dict[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    value = d.get(key)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise CommandError(f"command record: {key!r} is missing or has the wrong type")
    return value


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandRecord:
    id: str
    entity: str
    command: str
    value: float
    ramp_s: float  # the time the issuer allows for the change (rate = |Δ| / ramp_s)
    issuer_node: str
    by: str
    role: str
    issued_ms: int
    expires_ms: int
    high_risk: bool

    def signing_bytes(self) -> bytes:
        return _COMMAND_TAG + msgpack.packb(
            [
                self.id,
                self.entity,
                self.command,
                float(self.value),
                float(self.ramp_s),
                self.issuer_node,
                self.by,
                self.role,
                self.issued_ms,
                self.expires_ms,
                self.high_risk,
            ]
        )

    def sign(self, key: Ed25519PrivateKey) -> bytes:
        return key.sign(self.signing_bytes())

    def verify(self, public_key: bytes, signature: bytes) -> bool:
        return verify_signature(public_key, signature, self.signing_bytes())

    def to_event(self, signature: bytes) -> dict[str, Any]:
        return {
            "kind": "command",
            "id": self.id,
            "entity": self.entity,
            "command": self.command,
            "value": float(self.value),
            "ramp_s": float(self.ramp_s),
            "issuer_node": self.issuer_node,
            "by": self.by,
            "role": self.role,
            "issued_ms": self.issued_ms,
            "expires_ms": self.expires_ms,
            "high_risk": self.high_risk,
            "signature": signature.hex(),
        }

    @classmethod
    def from_event(cls, d: Any) -> tuple[CommandRecord, bytes]:
        """Parse a log entry; ``CommandError`` for anything malformed (it came from
        the network, so it may be anything)."""
        if not isinstance(d, dict):
            raise CommandError("command record: not an object")
        cid = _need(d, "id", str)
        if not _ID.match(cid):
            raise CommandError("command record: the id is not 32 hex digits")
        value = _need(d, "value", (int, float))
        ramp = _need(d, "ramp_s", (int, float))
        if not math.isfinite(value) or not math.isfinite(ramp) or ramp < 0:
            raise CommandError("command record: value and ramp must be finite numbers")
        try:
            signature = bytes.fromhex(_need(d, "signature", str))
        except ValueError:
            raise CommandError("command record: the signature is not hex") from None
        record = cls(
            id=cid,
            entity=_need(d, "entity", str),
            command=_need(d, "command", str),
            value=float(value),
            ramp_s=float(ramp),
            issuer_node=_need(d, "issuer_node", str),
            by=_need(d, "by", str),
            role=_need(d, "role", str),
            issued_ms=_need(d, "issued_ms", int),
            expires_ms=_need(d, "expires_ms", int),
            high_risk=bool(d.get("high_risk", False)),
        )
        return record, signature


@dataclass(frozen=True, slots=True, kw_only=True)
class Approval:
    """A second person's approval of one high-risk command, signed by their node."""

    command_id: str
    by: str
    role: str
    at_node: str
    at_ms: int

    def signing_bytes(self) -> bytes:
        return _APPROVAL_TAG + msgpack.packb(
            [self.command_id, self.by, self.role, self.at_node, self.at_ms]
        )

    def sign(self, key: Ed25519PrivateKey) -> bytes:
        return key.sign(self.signing_bytes())

    def verify(self, public_key: bytes, signature: bytes) -> bool:
        return verify_signature(public_key, signature, self.signing_bytes())

    def to_event(self, signature: bytes) -> dict[str, Any]:
        return {
            "kind": "approval",
            "command_id": self.command_id,
            "by": self.by,
            "role": self.role,
            "at_node": self.at_node,
            "at_ms": self.at_ms,
            "signature": signature.hex(),
        }

    @classmethod
    def from_event(cls, d: Any) -> tuple[Approval, bytes]:
        if not isinstance(d, dict):
            raise CommandError("approval: not an object")
        try:
            signature = bytes.fromhex(_need(d, "signature", str))
        except ValueError:
            raise CommandError("approval: the signature is not hex") from None
        return (
            cls(
                command_id=_need(d, "command_id", str),
                by=_need(d, "by", str),
                role=_need(d, "role", str),
                at_node=_need(d, "at_node", str),
                at_ms=_need(d, "at_ms", int),
            ),
            signature,
        )
