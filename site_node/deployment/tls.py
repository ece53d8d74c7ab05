"""Reading and checking TLS certificates (the CA a site trusts, the SuperLink's certificate).

Composed from ``cryptography``'s x509 API. The consortium issues certificates
(``consortium.deployment.certificates``); both sides check them with these functions so that a
broken certificate is reported in words rather than as a TLS failure.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from cryptography import x509

from site_node.errors import PreflightError


class CertificateProblem(PreflightError, ValueError):
    """A certificate or key that cannot be used, with a message naming the problem."""


def load_certificate(path: Path) -> x509.Certificate:
    """Read a PEM certificate, or raise :class:`CertificateProblem` naming the file."""
    try:
        return x509.load_pem_x509_certificate(Path(path).read_bytes())
    except FileNotFoundError as err:
        raise CertificateProblem(f"certificate file not found: {path}") from err
    except (OSError, ValueError) as err:
        raise CertificateProblem(f"not a PEM certificate: {path}") from err


def check_validity(cert: x509.Certificate, label: str, now: dt.datetime | None = None) -> None:
    """Raise :class:`CertificateProblem` if ``cert`` is expired or not yet valid."""
    now = now or dt.datetime.now(dt.UTC)
    if now > cert.not_valid_after_utc:
        end = cert.not_valid_after_utc
        raise CertificateProblem(f"{label} expired on {end:%Y-%m-%d %H:%M} UTC")
    if now < cert.not_valid_before_utc:
        raise CertificateProblem(
            f"{label} is not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC")


def check_ca(ca_cert: x509.Certificate, label: str = "CA certificate") -> None:
    """Raise :class:`CertificateProblem` unless ``ca_cert`` is a currently valid CA."""
    try:
        basic = ca_cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        basic = None
    if basic is None or not basic.ca:
        raise CertificateProblem(f"{label} is not a CA certificate (basicConstraints CA=false)")
    check_validity(ca_cert, label)
