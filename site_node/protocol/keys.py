"""Every key file of the product and its fingerprint, in one place.

- **Signing keys** (Ed25519, PKCS#8 PEM; the public half beside it as ``NAME.pub.pem``): a
  site's receipt key, and the consortium's audit-log key. Fingerprint: SHA-256 of the raw 32-byte
  public key, hex (what the audit tools print).
- **Node keys** (ECDSA P-384, OpenSSH format, as Flower's SuperNode reads them): the SuperLink
  admits only nodes whose public key the coordinator enrolled. Fingerprint: what
  ``ssh-keygen -lf`` prints (``SHA256:`` + unpadded base64 of the key blob's SHA-256).

Private keys are created with mode 0600 and never overwritten, and appear whole or not at all
(:func:`write_secret`); ``ensure_*`` creates a key or loads the one another process created at the
same moment. A private key readable by group or others is refused. Loading raises
:class:`KeyFileError`, naming the file.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import secrets
from collections.abc import Callable
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from site_node.protocol.errors import KeyFileError

log = logging.getLogger(__name__)


def private_dir(path: Path) -> Path:
    """Create ``path`` and each missing parent with mode 0700 (existing directories are kept).

    ``Path.mkdir(mode=..., parents=True)`` applies the mode to the last directory only; every
    directory this product creates for keys, ledgers and stores is private to the user.
    """
    path = Path(path)
    missing = []
    current = path
    while not current.exists():
        missing.append(current)
        current = current.parent
    for directory in reversed(missing):
        directory.mkdir(mode=0o700, exist_ok=True)
    return path


def write_secret(path: Path, data: bytes) -> None:
    """Create ``path`` with mode 0600 holding ``data``; refuse to overwrite an existing file.

    The file appears whole or not at all: ``data`` is written to a private temporary file
    beside it, flushed, and then hard-linked into place (``os.link`` fails if ``path`` exists,
    even when another process created it a moment ago).

    Raises
    ------
    FileExistsError
        If ``path`` exists.
    """
    path = Path(path)
    private_dir(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_public(path: Path, data: bytes) -> None:
    """Write a public file atomically (temporary file, then ``os.replace``)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(6)}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


# -- Ed25519 signing keys -----------------------------------------------------------------------


def public_path(private_path: Path) -> Path:
    """Where the public half of a signing key file lives (``NAME.pem`` -> ``NAME.pub.pem``)."""
    return private_path.with_name(private_path.name.removesuffix(".pem") + ".pub.pem")


def public_pem(key: Ed25519PublicKey) -> str:
    """A public key as SubjectPublicKeyInfo PEM text."""
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def fingerprint(key: Ed25519PublicKey) -> str:
    """SHA-256 of the raw 32-byte public key, hex."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def _signing_pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def generate_signing_key(private_path: Path) -> Ed25519PrivateKey:
    """Create a new Ed25519 key at ``private_path`` (0600) and its public half beside it.

    Raises
    ------
    FileExistsError
        If ``private_path`` exists (a key is never overwritten).
    """
    key = Ed25519PrivateKey.generate()
    write_secret(private_path, _signing_pem(key))
    write_public(public_path(private_path), public_pem(key.public_key()).encode("ascii"))
    log.info("created Ed25519 key %s (fingerprint %s)", private_path,
             fingerprint(key.public_key()))
    return key


def ensure_signing_key(private_path: Path) -> Ed25519PrivateKey:
    """The Ed25519 key at ``private_path``, created first if there is none.

    Create-or-load: of several processes creating it at once, one key is written (whole) and
    every process gets that one; the public half beside it is (re)written from it.
    """
    try:
        return generate_signing_key(private_path)
    except FileExistsError:
        key = load_signing_key(private_path)
    write_public(public_path(private_path), public_pem(key.public_key()).encode("ascii"))
    return key


def _read_private(path: Path, load: Callable[..., object]) -> object:
    """A private key file read with ``load``; refuses one readable by group or others."""
    try:
        if path.stat().st_mode & 0o077:
            raise KeyFileError(f"{path}: private key is readable by others; chmod 600 it")
        return load(path.read_bytes(), password=None)
    except FileNotFoundError:
        raise KeyFileError(f"{path}: private key not found") from None
    except (OSError, ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise KeyFileError(f"{path}: cannot read private key: {exc}") from None


def load_signing_key(path: Path) -> Ed25519PrivateKey:
    """Read an Ed25519 private key file; refuses one readable by group or others."""
    path = Path(path)
    key = _read_private(path, serialization.load_pem_private_key)
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{path}: not an Ed25519 private key")
    return key


def load_public_pem(text: str | bytes, source: str = "public key") -> Ed25519PublicKey:
    """Parse an Ed25519 public key (PEM); raises :class:`KeyFileError` naming ``source``."""
    data = text.encode() if isinstance(text, str) else text
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise KeyFileError(f"{source}: not a PEM public key: {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise KeyFileError(f"{source}: not an Ed25519 public key ({type(key).__name__})")
    return key


def load_public_key_file(path: Path) -> Ed25519PublicKey:
    """Read an Ed25519 public key file (PEM)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read public key: {exc.strerror or exc}") from None
    return load_public_pem(data, str(path))


# -- ECDSA node authentication keys --------------------------------------------------------------


def _node_public_line(key: ec.EllipticCurvePrivateKey, comment: str) -> bytes:
    line = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return line + b" " + comment.encode() + b"\n"


def generate_node_key(private_path: Path, public_path_: Path, comment: str) -> None:
    """Generate a node authentication key pair (ECDSA P-384, OpenSSH format).

    The private key is written with mode 0600; the public key (one OpenSSH line, with
    ``comment`` appended) is world-readable.

    Raises
    ------
    FileExistsError
        If ``private_path`` exists (a key is never overwritten).
    """
    key = ec.generate_private_key(ec.SECP384R1())
    write_secret(private_path, key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption()))
    write_public(public_path_, _node_public_line(key, comment))


def load_node_private_key(path: Path) -> ec.EllipticCurvePrivateKey:
    """Read a node private key (OpenSSH format); refuses one readable by group or others."""
    path = Path(path)
    key = _read_private(path, serialization.load_ssh_private_key)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise KeyFileError(f"{path}: not an ECDSA private key")
    return key


def ensure_node_key(private_path: Path, public_path_: Path, comment: str) -> None:
    """The node key pair at ``private_path``, generated first if there is none (create-or-load,
    as :func:`ensure_signing_key`); the public line is (re)written from the private key."""
    try:
        generate_node_key(private_path, public_path_, comment)
    except FileExistsError:
        write_public(public_path_, _node_public_line(load_node_private_key(private_path),
                                                     comment))


def load_node_public_key(path: Path) -> ec.EllipticCurvePublicKey:
    """Read a node public key (OpenSSH line) and check that it is ECDSA on a NIST curve."""
    try:
        key = serialization.load_ssh_public_key(Path(path).read_bytes())
    except FileNotFoundError:
        raise KeyFileError(f"node public key not found: {path}") from None
    except (OSError, ValueError, TypeError, UnsupportedAlgorithm) as err:
        raise KeyFileError(f"{path} is not an OpenSSH public key: {err}") from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise KeyFileError(f"{path} is not an ECDSA key (Flower needs ECDSA, e.g. P-384)")
    return key


def node_key_fingerprint(key: ec.EllipticCurvePublicKey) -> str:
    """SHA-256 fingerprint of the OpenSSH key blob, as ``ssh-keygen -lf`` prints it."""
    line = key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    blob = base64.b64decode(line.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
