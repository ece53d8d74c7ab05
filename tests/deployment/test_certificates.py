"""The consortium CA, the SuperLink certificate and the checks run before serving."""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from consortium.deployment import certificates as c
from site_node.deployment.tls import CertificateProblem, check_ca


def _write(tmp: Path, ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate,
           key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> tuple[Path, Path, Path]:
    c.write_certificate(tmp / "ca.crt", ca_cert)
    c.write_certificate(tmp / "s.crt", cert)
    c.write_private_key(tmp / "s.key", key)
    return tmp / "ca.crt", tmp / "s.crt", tmp / "s.key"


def test_server_certificate_has_the_sans_and_verifies(tmp_path: Path) -> None:
    ca_key, ca_cert = c.create_ca("test CA")
    key, cert = c.issue_server_certificate(ca_key, ca_cert, ["link.example"], ["10.0.0.5"])
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["link.example"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.0.0.5")]
    paths = _write(tmp_path, ca_key, ca_cert, key, cert)
    assert c.check_server_chain(*paths) == cert
    assert (tmp_path / "s.key").stat().st_mode & 0o777 == 0o600


def test_expired_certificate_is_named(tmp_path: Path) -> None:
    ca_key, ca_cert = c.create_ca("test CA")
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=30)
    key, cert = c.issue_server_certificate(ca_key, ca_cert, ["localhost"], [], 1, past)
    with pytest.raises(c.CertificateProblem, match="server certificate expired"):
        c.check_server_chain(*_write(tmp_path, ca_key, ca_cert, key, cert))


def test_certificate_from_another_ca_is_named(tmp_path: Path) -> None:
    ca_key, ca_cert = c.create_ca("test CA")
    other_key, other_ca = c.create_ca("other CA")
    key, cert = c.issue_server_certificate(other_key, other_ca, ["localhost"], [])
    with pytest.raises(c.CertificateProblem, match="was not issued by the CA"):
        c.check_server_chain(*_write(tmp_path, ca_key, ca_cert, key, cert))


def test_mismatched_key_is_named(tmp_path: Path) -> None:
    ca_key, ca_cert = c.create_ca("test CA")
    _, cert = c.issue_server_certificate(ca_key, ca_cert, ["localhost"], [])
    other_key, _ = c.issue_server_certificate(ca_key, ca_cert, ["localhost"], [])
    with pytest.raises(c.CertificateProblem, match="does not match"):
        c.check_server_chain(*_write(tmp_path, ca_key, ca_cert, other_key, cert))


def test_leaf_certificate_is_not_a_ca(tmp_path: Path) -> None:
    ca_key, ca_cert = c.create_ca("test CA")
    _, cert = c.issue_server_certificate(ca_key, ca_cert, ["localhost"], [])
    with pytest.raises(CertificateProblem, match="not a CA"):
        check_ca(cert)
    key, cert = c.issue_server_certificate(ca_key, ca_cert, ["localhost"], [])
    _, leaf, leaf_key = _write(tmp_path, ca_key, ca_cert, key, cert)
    with pytest.raises(CertificateProblem, match="not a CA"):
        c.check_server_chain(leaf, leaf, leaf_key)  # a leaf given as the CA


def test_a_certificate_needs_a_name_and_the_fingerprint_is_sha256() -> None:
    ca_key, ca_cert = c.create_ca("test CA")
    with pytest.raises(CertificateProblem, match="at least one host name or IP"):
        c.issue_server_certificate(ca_key, ca_cert, [], [])
    fp = c.sha256_fingerprint(ca_cert)
    assert len(fp.split(":")) == 32 and fp == fp.upper()
