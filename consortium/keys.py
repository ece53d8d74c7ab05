"""Ed25519 signing keys of the sites and the consortium, as PEM files.

A private key is written PKCS#8 PEM with mode 0600, its public key next to it as ``.pub.pem``.
A key's fingerprint is the SHA-256 of its raw 32-byte public key, in hex; auditors compare
fingerprints out of band.

Embedded simulation default: each site's receipt key lives in its state directory
(``<home>/sites/<site>/receipt-key.pem``), the consortium's audit key in the consortium home
(``<home>/consortium-key.pem``); ``<home>`` is ``$HOSPITAL_CONSORTIUM_HOME`` or
``~/.hospital-consortium``. Deployment enrols site public keys explicitly (docs/audit.md).

Standard library and ``cryptography`` only: the dashboard may import this module.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

log = logging.getLogger(__name__)

HOME_ENV = "HOSPITAL_CONSORTIUM_HOME"
SITE_KEY_FILE = "receipt-key.pem"
CONSORTIUM_KEY_FILE = "consortium-key.pem"


class KeyFileError(Exception):
    """A key file is unreadable, not an Ed25519 key, or too widely readable."""


def consortium_home() -> Path:
    """The consortium's home directory."""
    return Path(os.environ.get(HOME_ENV) or "~/.hospital-consortium").expanduser().resolve()


def default_store_path() -> Path:
    """The run store in the consortium home (``runs.sqlite``)."""
    return consortium_home() / "runs.sqlite"


def site_state_dir(site: str, home: Path | None = None) -> Path:
    """A site's state directory in the embedded simulation default."""
    return (home or consortium_home()) / "sites" / site


def public_path(private_path: Path) -> Path:
    """Where the public key of a private key file lives."""
    return private_path.with_name(private_path.name.removesuffix(".pem") + ".pub.pem")


def key_from_seed(seed: bytes) -> Ed25519PrivateKey:
    """A deterministic key from a 32-byte seed (known-answer tests only)."""
    return Ed25519PrivateKey.from_private_bytes(seed)


def public_pem(key: Ed25519PublicKey) -> str:
    """A public key as SubjectPublicKeyInfo PEM text."""
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def load_public_pem(text: str | bytes) -> Ed25519PublicKey:
    """Parse a PEM public key; raises :class:`KeyFileError` unless it is Ed25519."""
    data = text.encode() if isinstance(text, str) else text
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError as exc:
        raise KeyFileError(f"not a PEM public key: {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise KeyFileError(f"not an Ed25519 public key: {type(key).__name__}")
    return key


def fingerprint(key: Ed25519PublicKey) -> str:
    """SHA-256 of the raw 32-byte public key, hex."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def _write_private(path: Path, key: Ed25519PrivateKey) -> None:
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    public_path(path).write_text(public_pem(key.public_key()))
    log.info("created Ed25519 key %s (fingerprint %s)", path, fingerprint(key.public_key()))


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """Read a private key file; refuses one readable by group or others."""
    if path.stat().st_mode & 0o077:
        raise KeyFileError(f"{path}: private key is readable by others; chmod 600 it")
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise KeyFileError(f"{path}: cannot read private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{path}: not an Ed25519 private key")
    return key


def load_or_create_key(path: Path) -> Ed25519PrivateKey:
    """The key at ``path``, generated first if there is none."""
    path = Path(path).expanduser()
    if not path.exists():
        with contextlib.suppress(FileExistsError):  # another process created it first
            _write_private(path, Ed25519PrivateKey.generate())
    return load_private_key(path)
