"""Files for the gossip signing identities (Ed25519), kept beside the fleet CA.

The fleet signing key vouches for each node's signing key (see
``twinmesh.sync.Identity``); it lives with the CA key and never on a node.
A node gets its own signing key, its credential and the fleet public key.
"""

from __future__ import annotations

import os
from pathlib import Path

import msgpack
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from twinmesh.crdt import LocalProtocolError
from twinmesh.sync import FleetAuthority, Identity, MemberCredential

__all__ = [
    "FLEET_SIGNING_KEY",
    "FLEET_SIGNING_PUB",
    "TOKEN_SECRET",
    "ensure_fleet_signing_key",
    "ensure_token_secret",
    "issue_signing_identity",
    "load_fleet_public_key",
    "load_identity",
]

FLEET_SIGNING_KEY = "fleet-signing.key"
FLEET_SIGNING_PUB = "fleet-signing.pub"
NODE_SIGNING_KEY = "signing.key"
NODE_CREDENTIAL = "credential.msgpack"


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
    finally:
        os.close(fd)


def _raw_private(key: Ed25519PrivateKey) -> bytes:
    from cryptography.hazmat.primitives.serialization import NoEncryption, PrivateFormat

    return key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())


def ensure_fleet_signing_key(ca_dir: Path) -> bytes:
    """Create the fleet signing key once; return the fleet public key."""
    key_path = ca_dir / FLEET_SIGNING_KEY
    if not key_path.exists():
        key = Ed25519PrivateKey.generate()
        _write_private(key_path, _raw_private(key))
        (ca_dir / FLEET_SIGNING_PUB).write_bytes(
            key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        )
    return load_fleet_public_key(ca_dir / FLEET_SIGNING_PUB)


TOKEN_SECRET = "token-secret"


def ensure_token_secret(ca_dir: Path) -> Path:
    """The fleet's API token secret (HMAC key), created once, mode 0600."""
    path = ca_dir / TOKEN_SECRET
    if not path.exists():
        _write_private(path, os.urandom(32))
    return path


def _fleet_authority(ca_dir: Path) -> FleetAuthority:
    return FleetAuthority.from_private_bytes((ca_dir / FLEET_SIGNING_KEY).read_bytes())


def issue_signing_identity(ca_dir: Path, node: str, out_dir: Path) -> None:
    """Give ``node`` a signing key and a fleet-vouched credential in ``out_dir``."""
    ensure_fleet_signing_key(ca_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if (out_dir / NODE_SIGNING_KEY).exists():
        raise LocalProtocolError(f"{node} already has a signing key in {out_dir}")
    key = Ed25519PrivateKey.generate()
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    credential = _fleet_authority(ca_dir).issue(node, public)
    _write_private(out_dir / NODE_SIGNING_KEY, _raw_private(key))
    (out_dir / NODE_CREDENTIAL).write_bytes(
        msgpack.packb([credential.replica, credential.public_key, credential.fleet_signature])
    )
    (out_dir / FLEET_SIGNING_PUB).write_bytes((ca_dir / FLEET_SIGNING_PUB).read_bytes())


def load_fleet_public_key(path: Path) -> bytes:
    data = path.read_bytes()
    if len(data) != 32:
        raise LocalProtocolError(f"{path} is not a 32-byte Ed25519 public key")
    return data


def load_identity(node: str, directory: Path) -> Identity:
    try:
        raw = (directory / NODE_SIGNING_KEY).read_bytes()
        replica, public, signature = msgpack.unpackb((directory / NODE_CREDENTIAL).read_bytes())
    except (OSError, ValueError) as exc:
        raise LocalProtocolError(
            f"cannot load the signing identity in {directory}: {exc}"
        ) from None
    credential = MemberCredential(replica=replica, public_key=public, fleet_signature=signature)
    return Identity(
        replica=node, private_key=Ed25519PrivateKey.from_private_bytes(raw), credential=credential
    )
