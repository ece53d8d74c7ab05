"""The consortium's private certificate authority and the SuperLink's TLS certificate.

Everything is composed from `cryptography` primitives: an ECDSA P-384 CA, a server certificate
signed by it whose subject alternative names are the host names and IP addresses the sites dial,
and checks (chain, expiry, key match) run before the SuperLink starts so that a broken certificate
is reported in words rather than as a TLS failure at every site.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from site_node.deployment.tls import (
    CertificateProblem,
    check_ca,
    check_validity,
    load_certificate,
)
from site_node.protocol.keys import write_secret

__all__ = ["CertificateProblem", "check_server_chain", "create_ca", "issue_server_certificate",
           "write_certificate", "write_private_key"]

log = logging.getLogger(__name__)

CA_DAYS = 3650
SERVER_DAYS = 825


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "hospital-consortium"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def create_ca(
    common_name: str, days: int = CA_DAYS
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """Create a self-signed certificate authority.

    Parameters
    ----------
    common_name : str
        The CA's subject common name.
    days : int
        Validity in days from now.

    Returns
    -------
    tuple
        The CA private key (ECDSA P-384) and its self-signed certificate.
    """
    key = ec.generate_private_key(ec.SECP384R1())
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA384())
    )
    return key, cert


def _san(hosts: Sequence[str], ips: Sequence[str]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = [x509.DNSName(h) for h in hosts]
    names += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    return x509.SubjectAlternativeName(names)


def issue_server_certificate(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    hosts: Sequence[str],
    ips: Sequence[str],
    days: int = SERVER_DAYS,
    not_before: dt.datetime | None = None,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """Issue the SuperLink's TLS server certificate, signed by the consortium CA.

    Parameters
    ----------
    ca_key, ca_cert
        The issuing CA.
    hosts, ips : Sequence[str]
        DNS names and IP addresses the sites use to reach the SuperLink (the SANs).
    days : int
        Validity in days from ``not_before``.
    not_before : datetime, optional
        Start of validity (default: now); tests use a past date to make an expired certificate.

    Returns
    -------
    tuple
        The server private key and certificate.
    """
    if not hosts and not ips:
        raise CertificateProblem("the server certificate needs at least one host name or IP")
    key = ec.generate_private_key(ec.SECP384R1())
    start = not_before or _now() - dt.timedelta(minutes=5)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(hosts[0] if hosts else ips[0]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=days))
        .add_extension(_san(hosts, ips), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .sign(ca_key, hashes.SHA384())
    )
    return key, cert


def write_private_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    """Write a private key as unencrypted PKCS#8 PEM, readable by its owner only (0600)."""
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    write_secret(path, pem)


def write_certificate(path: Path, cert: x509.Certificate) -> None:
    """Write a certificate as PEM (world-readable: certificates are public)."""
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def check_server_chain(ca_path: Path, cert_path: Path, key_path: Path) -> x509.Certificate:
    """Check the SuperLink's certificate before serving with it.

    Checks that the CA is a valid CA, the server certificate is within its validity period and
    signed by that CA, and the private key belongs to the certificate.

    Returns
    -------
    x509.Certificate
        The server certificate.

    Raises
    ------
    CertificateProblem
        Naming the first problem found.
    """
    ca_cert, cert = load_certificate(ca_path), load_certificate(cert_path)
    check_ca(ca_cert)
    check_validity(cert, "server certificate")
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature) as err:
        raise CertificateProblem(
            f"server certificate {cert_path} was not issued by the CA {ca_path}"
        ) from err
    try:
        key = serialization.load_pem_private_key(Path(key_path).read_bytes(), password=None)
    except (FileNotFoundError, ValueError, TypeError) as err:
        raise CertificateProblem(f"cannot read the server private key {key_path}: {err}") from err
    if key.public_key() != cert.public_key():
        raise CertificateProblem(f"private key {key_path} does not match certificate {cert_path}")
    return cert


def sha256_fingerprint(cert: x509.Certificate) -> str:
    """The certificate's SHA-256 fingerprint as colon-separated hex."""
    return cert.fingerprint(hashes.SHA256()).hex(":").upper()
