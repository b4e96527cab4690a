"""Who a replica is, and how its writes are authenticated end to end.

Each replica signs its own delta batches with Ed25519 (RFC 8032). A relay
forwards the signed bytes untouched, so it can neither forge nor alter
another replica's writes. Which public key belongs to which replica is
vouched for by the fleet key: a member's *credential* is the fleet key's
signature over its id and public key, so a member learned through gossip is
trusted only if the fleet vouched for it. (The node additionally binds the
replica id to its mTLS certificate.)

Batches, not deltas, are signed: verification runs at roughly 16k/s on our
2-core machines, so a signature per delta would cap gossip there.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import msgpack
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from twinmesh.crdt import LocalProtocolError

__all__ = [
    "FleetAuthority",
    "Identity",
    "MemberCredential",
    "credential_bytes",
    "verify_signature",
]


def _private_from(rng: random.Random | None) -> Ed25519PrivateKey:
    if rng is None:
        return Ed25519PrivateKey.generate()
    return Ed25519PrivateKey.from_private_bytes(rng.randbytes(32))


def _raw_public(key: Ed25519PublicKey) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def credential_bytes(replica: str, public_key: bytes) -> bytes:
    """What the fleet key signs to vouch for a member."""
    return msgpack.packb(["twinmesh/member", 1, replica, public_key], use_bin_type=True)  # type: ignore[no-any-return]


def verify_signature(public_key: bytes, signature: bytes, data: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, data)
    except (InvalidSignature, ValueError):
        return False
    return True


@dataclass(frozen=True, slots=True, kw_only=True)
class MemberCredential:
    """A replica's id and public key, vouched for by the fleet key."""

    replica: str
    public_key: bytes
    fleet_signature: bytes

    def verify(self, fleet_public_key: bytes) -> bool:
        return verify_signature(
            fleet_public_key, self.fleet_signature, credential_bytes(self.replica, self.public_key)
        )


class FleetAuthority:
    """Holds the fleet signing key and issues member credentials.

    In a deployment it lives with the fleet CA (``twinmesh ca``); in the
    simulator one is made from the master seed.
    """

    __slots__ = ("_key", "public_key")

    def __init__(self, rng: random.Random | None = None) -> None:
        self._key = _private_from(rng)
        self.public_key = _raw_public(self._key.public_key())

    @classmethod
    def from_private_bytes(cls, raw: bytes) -> FleetAuthority:
        """The authority whose 32-byte Ed25519 private key is ``raw``."""
        authority = cls.__new__(cls)
        authority._key = Ed25519PrivateKey.from_private_bytes(raw)
        authority.public_key = _raw_public(authority._key.public_key())
        return authority

    def issue(self, replica: str, public_key: bytes) -> MemberCredential:
        sig = self._key.sign(credential_bytes(replica, public_key))
        return MemberCredential(replica=replica, public_key=public_key, fleet_signature=sig)

    def new_identity(self, replica: str, rng: random.Random | None = None) -> Identity:
        key = _private_from(rng)
        credential = self.issue(replica, _raw_public(key.public_key()))
        return Identity(replica=replica, private_key=key, credential=credential)


class Identity:
    """This replica: its id, its signing key and its credential."""

    __slots__ = ("credential", "private_key", "replica")

    def __init__(
        self, *, replica: str, private_key: Ed25519PrivateKey, credential: MemberCredential
    ) -> None:
        if credential.replica != replica:
            raise LocalProtocolError(f"credential names {credential.replica}, not {replica}")
        if credential.public_key != _raw_public(private_key.public_key()):
            raise LocalProtocolError("credential does not match the private key")
        self.replica = replica
        self.private_key = private_key
        self.credential = credential

    @property
    def public_key(self) -> bytes:
        return self.credential.public_key

    def sign(self, data: bytes) -> bytes:
        return self.private_key.sign(data)
