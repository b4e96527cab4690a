"""Fleet CA: certificate contents, file modes, refusals, and the ``twinmesh ca`` CLI."""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from twinmesh.node.security import (
    CAError,
    init_ca,
    issue_node,
    load_ca,
    node_uri,
    validate_node_name,
)
from twinmesh.node.security.cli import register


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="twinmesh")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return int(args.handler(args))


def test_ca_certificate_is_a_pathlen0_p256_ca(tmp_path: Path) -> None:
    now = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    ca = init_ca(tmp_path / "ca", fleet="acme", now=now)
    cert = _cert(ca.cert_path)
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert cert.public_key().curve.name == "secp256r1"  # type: ignore[union-attr]
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length == 0
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.key_cert_sign and ku.value.crl_sign
    assert not ku.value.digital_signature
    assert cert.issuer == cert.subject
    cert.verify_directly_issued_by(cert)
    assert cert.not_valid_before_utc <= now < cert.not_valid_after_utc
    assert cert.not_valid_after_utc - now > dt.timedelta(days=3000)
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)[0].value == "acme"
    assert _mode(ca.key_path) == 0o600
    assert load_ca(ca.directory)[0].fleet == "acme"


def test_ca_init_refuses_to_overwrite(tmp_path: Path) -> None:
    ca = init_ca(tmp_path)
    before = ca.key_path.read_bytes()
    with pytest.raises(CAError, match="already exists"):
        init_ca(tmp_path)
    assert ca.key_path.read_bytes() == before


def test_node_certificate_names_the_node_and_is_signed_by_the_ca(tmp_path: Path) -> None:
    ca = init_ca(tmp_path)
    creds = issue_node(tmp_path, "plant-a", ips=("10.0.0.7", "::1"), dns=("plant-a.example",))
    assert creds.cert_path == tmp_path / "nodes" / "plant-a" / "cert.pem"
    assert creds.key_path == tmp_path / "nodes" / "plant-a" / "key.pem"
    assert _mode(creds.key_path) == 0o600
    assert creds.ca_cert_path.read_bytes() == ca.cert_path.read_bytes()

    cert = _cert(creds.cert_path)
    cert.verify_directly_issued_by(_cert(ca.cert_path))
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "plant-a"
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [node_uri("plant-a")]
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == ["urn:twinmesh:node:plant-a"]
    assert san.get_values_for_type(x509.DNSName) == ["plant-a.example"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("10.0.0.7"),
        ipaddress.ip_address("::1"),
    ]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert cert.not_valid_after_utc <= _cert(ca.cert_path).not_valid_after_utc


def test_node_defaults_to_loopback_sans(tmp_path: Path) -> None:
    init_ca(tmp_path)
    cert = _cert(issue_node(tmp_path, "central").cert_path)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]


@pytest.mark.parametrize(
    "name",
    ["", "Plant-A", "-plant", "plant_a", "plant.a", "a" * 64, "plant a", "pläntа", "../etc"],
)
def test_bad_node_names_are_refused(tmp_path: Path, name: str) -> None:
    init_ca(tmp_path)
    with pytest.raises(CAError, match="invalid node name"):
        issue_node(tmp_path, name)
    assert not (tmp_path / "nodes").exists()


@pytest.mark.parametrize("name", ["a", "0", "plant-a", "a" * 63, "x1-2-3"])
def test_good_node_names(name: str) -> None:
    assert validate_node_name(name) == name


def test_issue_refusals(tmp_path: Path) -> None:
    with pytest.raises(CAError, match="no fleet CA"):
        issue_node(tmp_path, "plant-a")
    init_ca(tmp_path)
    with pytest.raises(CAError, match="invalid IP"):
        issue_node(tmp_path, "plant-a", ips=("300.1.1.1",))
    with pytest.raises(CAError, match="invalid DNS"):
        issue_node(tmp_path, "plant-a", dns=("bad name",))
    creds = issue_node(tmp_path, "plant-a")
    before = creds.key_path.read_bytes()
    with pytest.raises(CAError, match="already has credentials"):
        issue_node(tmp_path, "plant-a")
    assert creds.key_path.read_bytes() == before


def test_cli_init_and_issue(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ca_dir = tmp_path / "fleet"
    assert _run_cli(["ca", "init", "--dir", str(ca_dir), "--name", "acme"]) == 0
    assert "created fleet CA 'acme'" in capsys.readouterr().out
    assert _mode(ca_dir / "ca-key.pem") == 0o600

    assert _run_cli(["ca", "init", "--dir", str(ca_dir)]) == 1
    assert "already exists" in capsys.readouterr().err

    argv = [
        "ca",
        "issue",
        "plant-a",
        "--dir",
        str(ca_dir),
        "--ip",
        "127.0.0.1",
        "--dns",
        "localhost",
    ]
    assert _run_cli(argv) == 0
    assert "issued node 'plant-a'" in capsys.readouterr().out
    assert _mode(ca_dir / "nodes" / "plant-a" / "key.pem") == 0o600

    assert _run_cli(argv) == 1
    assert "already has credentials" in capsys.readouterr().err

    assert _run_cli(["ca", "issue", "Plant_A", "--dir", str(ca_dir)]) == 1
    assert "invalid node name 'Plant_A'" in capsys.readouterr().err


def test_cli_issue_without_ca(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run_cli(["ca", "issue", "plant-a", "--dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "no fleet CA" in err and "twinmesh ca init" in err


def test_cli_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run_cli(["ca"]) == 2
    assert "init" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        _run_cli(["ca", "issue", "plant-a"])  # --dir is required
    assert exc.value.code == 2
