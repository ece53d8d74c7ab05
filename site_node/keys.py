"""A site's two key pairs and their fingerprints.

- The node authentication key (ECDSA P-384, OpenSSH format, as Flower's SuperNode reads it):
  the SuperLink admits only nodes whose public key the coordinator registered.
- The receipt-signing key (Ed25519, PEM): the site signs its privacy receipts with it; the
  coordinator keeps the public half to verify them.

Fingerprints are SHA-256 digests: of the node key's OpenSSH blob written the way OpenSSH writes
them (``SHA256:`` + unpadded base64, what ``ssh-keygen -lf node.pub`` prints), and of the raw
receipt key in hex (what the audit tools print).
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from consortium.certificates import write_secret


class KeyProblem(Exception):
    """A key file that is missing, unreadable or of the wrong kind."""


def generate_node_key(private_path: Path, public_path: Path, comment: str) -> None:
    """Generate the node authentication key pair (ECDSA P-384, OpenSSH format).

    The private key is written with mode 0600; the public key (one OpenSSH line, with
    ``comment`` appended) is world-readable.
    """
    key = ec.generate_private_key(ec.SECP384R1())
    write_secret(
        private_path,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        ),
    )
    line = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    public_path.write_bytes(line + b" " + comment.encode() + b"\n")


def generate_receipt_key(private_path: Path, public_path: Path) -> None:
    """Generate the receipt-signing key pair (Ed25519, PEM); private key mode 0600."""
    key = ed25519.Ed25519PrivateKey.generate()
    write_secret(
        private_path,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    public_path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def _ssh_style(digest: bytes) -> str:
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def load_node_public_key(path: Path) -> ec.EllipticCurvePublicKey:
    """Read a node public key (OpenSSH line) and check that it is ECDSA on a NIST curve."""
    try:
        key = serialization.load_ssh_public_key(Path(path).read_bytes())
    except FileNotFoundError as err:
        raise KeyProblem(f"node public key not found: {path}") from err
    except (ValueError, TypeError, UnsupportedAlgorithm) as err:
        raise KeyProblem(f"{path} is not an OpenSSH public key: {err}") from err
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise KeyProblem(f"{path} is not an ECDSA key (Flower needs ECDSA, e.g. P-384)")
    return key


def load_receipt_public_key(path: Path) -> ed25519.Ed25519PublicKey:
    """Read a receipt-signing public key (PEM) and check that it is Ed25519."""
    try:
        key = serialization.load_pem_public_key(Path(path).read_bytes())
    except FileNotFoundError as err:
        raise KeyProblem(f"receipt public key not found: {path}") from err
    except (ValueError, UnsupportedAlgorithm) as err:
        raise KeyProblem(f"{path} is not a PEM public key: {err}") from err
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise KeyProblem(f"{path} is not an Ed25519 public key")
    return key


def node_key_fingerprint(key: ec.EllipticCurvePublicKey) -> str:
    """SHA-256 fingerprint of the OpenSSH key blob, as ``ssh-keygen -lf`` prints it."""
    line = key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    blob = base64.b64decode(line.split()[1])
    return _ssh_style(hashlib.sha256(blob).digest())


def receipt_key_fingerprint(key: ed25519.Ed25519PublicKey) -> str:
    """SHA-256 of the raw 32-byte Ed25519 public key, hex (as the audit tools print it)."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()
