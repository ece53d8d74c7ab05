"""Checks a site runs before starting its SuperNode, so that problems come back in words.

A SuperNode that cannot verify the SuperLink only retries and logs a transport error. Here the
CA file is checked with `cryptography`, then one TLS handshake is made with the standard
library's ``ssl`` against the SuperLink, with the same trust anchor and host name the SuperNode
will use, and the outcome is translated: unreachable, wrong CA, expired certificate, host name
not in the certificate, or a server that does not speak TLS at all.
"""

from __future__ import annotations

import logging
import socket
import ssl
from pathlib import Path

from site_node.deployment.tls import CertificateProblem, check_ca, load_certificate
from site_node.errors import PreflightError

log = logging.getLogger(__name__)


def split_address(address: str) -> tuple[str, int]:
    """``HOST:PORT`` (IPv6 as ``[::1]:PORT``) to ``(host, port)``."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise PreflightError(f"SuperLink address must be HOST:PORT, got {address!r}")
    return host.strip("[]"), int(port)


def check_ca_file(ca_cert: Path) -> None:
    """The CA file exists, is a CA certificate, and is within its validity period."""
    try:
        check_ca(load_certificate(ca_cert), label=f"CA certificate {ca_cert}")
    except CertificateProblem as err:
        raise PreflightError(str(err)) from err


def _explain_verify(err: ssl.SSLCertVerificationError, address: str, ca: Path) -> str:
    why = (err.verify_message or str(err)).lower()
    if "expired" in why:
        return f"the SuperLink's certificate at {address} has expired; tell the coordinator"
    if "not yet valid" in why:
        return f"the SuperLink's certificate at {address} is not valid yet (check clocks)"
    if "hostname" in why or "ip address mismatch" in why:
        return (
            f"the SuperLink's certificate is not issued for {address.rpartition(':')[0]} "
            f"(host name/IP not in its SANs): {err.verify_message}"
        )
    return (
        f"the SuperLink at {address} presented a certificate that {ca} does not vouch for "
        f"(wrong CA file?): {err.verify_message}"
    )


def probe_superlink(address: str, ca_cert: Path, timeout_s: float = 5.0) -> None:
    """One TLS handshake with the SuperLink, verified against ``ca_cert``.

    Raises
    ------
    PreflightError
        If the server is unreachable, not TLS, or its certificate does not verify.
    """
    check_ca_file(ca_cert)
    host, port = split_address(address)
    context = ssl.create_default_context(cafile=str(ca_cert))
    try:
        with (
            socket.create_connection((host, port), timeout=timeout_s) as raw,
            context.wrap_socket(raw, server_hostname=host),
        ):
            return
    except ssl.SSLCertVerificationError as err:
        raise PreflightError(_explain_verify(err, address, ca_cert)) from err
    except ssl.SSLError as err:
        raise PreflightError(
            f"{address} does not speak TLS ({err.reason or err}); is it the consortium's "
            "SuperLink, and was it started without --insecure?"
        ) from err
    except (ConnectionRefusedError, TimeoutError, socket.gaierror, OSError) as err:
        raise PreflightError(f"the SuperLink at {address} is unreachable: {err}") from err
