"""The fleet certificate authority: one self-signed CA per fleet, one leaf per node.

Why a private CA and not the system trust store: nodes authenticate *each other*
(mutual TLS), and the only question a node asks of a peer certificate is "did
our fleet issue this to node N?". A public CA cannot answer that, and trusting
the system store would let any publicly valid certificate in.

Identity lives in a URI subject-alternative name ``urn:twinmesh:node:NODE``
rather than in the common name: RFC 6125 deprecates CN matching, and a URI SAN
cannot be confused with the DNS/IP SANs that TLS hostname verification uses.
The DNS/IP SANs are still issued so a client can verify *where* it connected,
while the URI SAN says *who* answered.

Keys are ECDSA P-256: every OpenSSL that Python's ``ssl`` links against accepts
it for both server and client authentication in TLS 1.2 and 1.3, which is not
true of Ed25519 everywhere. Private keys are stored unencrypted (a node must
start unattended after a reboot) and protected by file mode 0600 instead.

Layout of a CA directory::

    DIR/ca.pem                  fleet CA certificate (public; every node needs it)
    DIR/ca-key.pem              fleet CA private key (0600; needed only to issue)
    DIR/nodes/NODE/cert.pem     node certificate
    DIR/nodes/NODE/key.pem      node private key (0600)
    DIR/nodes/NODE/ca.pem       copy of the CA certificate, so one folder is all a plant needs
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from twinmesh.crdt._errors import LocalProtocolError

__all__ = [
    "CA_CERT_FILE",
    "CA_KEY_FILE",
    "NODE_NAME_PATTERN",
    "NODE_URI_PREFIX",
    "CAError",
    "FleetCA",
    "NodeCredentials",
    "init_ca",
    "issue_node",
    "load_ca",
    "node_uri",
    "validate_node_name",
]

CA_CERT_FILE = "ca.pem"
CA_KEY_FILE = "ca-key.pem"
NODE_URI_PREFIX = "urn:twinmesh:node:"
# DNS-label shaped so a node name is safe in a path, a URI, a hostname and a log line.
NODE_NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_FLEET_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$")

# Issued certificates start a little in the past: nodes with skewed clocks (which
# the simulator deliberately tests) must not reject a certificate issued "in the future".
_BACKDATE = dt.timedelta(minutes=10)
DEFAULT_CA_DAYS = 3650
DEFAULT_NODE_DAYS = 825


class CAError(LocalProtocolError):
    """A CA operation was refused (bad name, missing CA, would overwrite); nothing was written."""


@dataclass(frozen=True, slots=True, kw_only=True)
class FleetCA:
    directory: Path
    cert_path: Path
    key_path: Path
    fleet: str


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeCredentials:
    node: str
    cert_path: Path
    key_path: Path
    ca_cert_path: Path


def validate_node_name(name: str) -> str:
    if not NODE_NAME_PATTERN.fullmatch(name):
        raise CAError(
            f"invalid node name {name!r}: use 1-63 characters of a-z, 0-9 and '-', "
            "starting with a letter or digit"
        )
    return name


def node_uri(name: str) -> str:
    return NODE_URI_PREFIX + validate_node_name(name)


def _utcnow(now: dt.datetime | None) -> dt.datetime:
    if now is None:
        return dt.datetime.now(dt.UTC)
    if now.tzinfo is None:
        raise CAError("'now' must be timezone-aware")
    return now


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Create ``path`` exclusively with ``mode``; never follows or replaces an existing file.

    The mode is given to ``open`` (so a key is never world-readable, not even for an
    instant) and set again with ``fchmod`` so the result does not depend on the umask.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), mode)
    try:
        os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
    finally:
        os.close(fd)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def init_ca(
    directory: str | os.PathLike[str],
    *,
    fleet: str = "twinmesh",
    now: dt.datetime | None = None,
    days: int = DEFAULT_CA_DAYS,
) -> FleetCA:
    """Create a new fleet CA in ``directory``; refuses if one is already there."""
    if not _FLEET_NAME_PATTERN.fullmatch(fleet):
        raise CAError(
            f"invalid fleet name {fleet!r}: use 1-64 characters of letters, digits, "
            "space, '.', '_' and '-'"
        )
    if days < 1:
        raise CAError(f"validity must be at least 1 day, got {days}")
    root = Path(directory)
    cert_path, key_path = root / CA_CERT_FILE, root / CA_KEY_FILE
    for existing in (cert_path, key_path):
        if existing.exists():
            raise CAError(
                f"a fleet CA already exists in {root} ({existing.name}); refusing to overwrite it"
            )
    root.mkdir(mode=0o700, parents=True, exist_ok=True)

    start = _utcnow(now) - _BACKDATE
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "twinmesh"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, fleet),
            x509.NameAttribute(NameOID.COMMON_NAME, f"twinmesh fleet CA {fleet}"),
        ]
    )
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=days))
        # pathlen 0: the fleet CA signs node certificates only, never another CA.
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        # An AKI on the root too: OpenSSL's X509_STRICT (default from Python 3.13) wants it.
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    # Key first: if writing the certificate fails we remove the key, so a half-made
    # CA never blocks a retry and never lingers as an orphaned secret.
    _write_new(key_path, _key_pem(key), 0o600)
    try:
        _write_new(cert_path, _cert_pem(cert), 0o644)
    except BaseException:
        with contextlib.suppress(OSError):
            key_path.unlink()
        raise
    return FleetCA(directory=root, cert_path=cert_path, key_path=key_path, fleet=fleet)


def load_ca(
    directory: str | os.PathLike[str],
) -> tuple[FleetCA, x509.Certificate, ec.EllipticCurvePrivateKey]:
    """Load the CA in ``directory`` with its certificate and private key."""
    root = Path(directory)
    cert_path, key_path = root / CA_CERT_FILE, root / CA_KEY_FILE
    missing = [p.name for p in (cert_path, key_path) if not p.is_file()]
    if missing:
        raise CAError(
            f"no fleet CA in {root} (missing {', '.join(missing)}); "
            f"run 'twinmesh ca init --dir {root}' first"
        )
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise CAError(f"cannot read the fleet CA in {root}: {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CAError(f"the fleet CA key in {key_path} is not an ECDSA key")
    if cert.public_key() != key.public_key():
        raise CAError(f"{cert_path.name} and {key_path.name} in {root} do not belong together")
    fleet_attrs = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
    fleet = str(fleet_attrs[0].value) if fleet_attrs else "twinmesh"
    return FleetCA(directory=root, cert_path=cert_path, key_path=key_path, fleet=fleet), cert, key


def issue_node(
    directory: str | os.PathLike[str],
    node: str,
    *,
    ips: tuple[str, ...] = (),
    dns: tuple[str, ...] = (),
    now: dt.datetime | None = None,
    days: int = DEFAULT_NODE_DAYS,
) -> NodeCredentials:
    """Issue a certificate for ``node`` signed by the CA in ``directory``.

    ``ips`` and ``dns`` become SANs for hostname verification; when both are empty
    the node is issued for ``localhost`` and ``127.0.0.1`` (a local fleet).
    """
    validate_node_name(node)
    if days < 1:
        raise CAError(f"validity must be at least 1 day, got {days}")
    try:
        ip_addresses = [ipaddress.ip_address(ip) for ip in ips]
    except ValueError as exc:
        raise CAError(f"invalid IP address: {exc}") from exc
    for name in dns:
        # Hostname SANs are IA5 strings; anything outside LDH labels would be refused by peers.
        if not re.fullmatch(
            r"(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.?)+", name
        ):
            raise CAError(f"invalid DNS name {name!r}")
    if not ips and not dns:
        ip_addresses = [ipaddress.ip_address("127.0.0.1")]
        dns = ("localhost",)

    ca, ca_cert, ca_key = load_ca(directory)
    node_dir = ca.directory / "nodes" / node
    if node_dir.exists():
        raise CAError(
            f"node {node!r} already has credentials in {node_dir}; "
            "remove that folder first to issue new ones"
        )
    start = _utcnow(now) - _BACKDATE
    # A leaf must not outlive its CA: peers would reject the chain at that point anyway.
    end = min(start + dt.timedelta(days=days), ca_cert.not_valid_after_utc)
    if end <= start:
        raise CAError(f"the fleet CA in {ca.directory} has expired")

    key = ec.generate_private_key(ec.SECP256R1())
    san: list[x509.GeneralName] = [x509.UniformResourceIdentifier(node_uri(node))]
    san += [x509.DNSName(name) for name in dns]
    san += [x509.IPAddress(ip) for ip in ip_addresses]
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "twinmesh"),
                    x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ca.fleet),
                    x509.NameAttribute(NameOID.COMMON_NAME, node),
                ]
            )
        )
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        # Every node is both a gossip server and a gossip client.
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        # Critical SAN would be required only with an empty subject; ours names the node.
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )

    node_dir.parent.mkdir(mode=0o755, exist_ok=True)
    try:
        node_dir.mkdir(mode=0o700)
    except FileExistsError as exc:  # lost a race with a concurrent issue of the same node
        raise CAError(f"node {node!r} already has credentials in {node_dir}") from exc
    creds = NodeCredentials(
        node=node,
        cert_path=node_dir / "cert.pem",
        key_path=node_dir / "key.pem",
        ca_cert_path=node_dir / "ca.pem",
    )
    try:
        _write_new(creds.key_path, _key_pem(key), 0o600)
        _write_new(creds.cert_path, _cert_pem(cert), 0o644)
        _write_new(creds.ca_cert_path, _cert_pem(ca_cert), 0o644)
    except BaseException:
        # A half-written node folder would block the retry ("already has credentials").
        for path in (creds.key_path, creds.cert_path, creds.ca_cert_path):
            with contextlib.suppress(OSError):
                path.unlink()
        with contextlib.suppress(OSError):
            node_dir.rmdir()
        raise
    return creds
