"""Key files: created 0600, never overwritten, refused when readable by others; fingerprints."""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from site_node.protocol import keys
from site_node.protocol.errors import KeyFileError


def mode(path: Path) -> int:
    return os.stat(path).st_mode & 0o777


def test_write_secret_is_0600_and_never_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "new" / "secret"
    keys.write_secret(path, b"x")
    assert mode(path) == 0o600 and mode(path.parent) == 0o700
    with pytest.raises(FileExistsError):
        keys.write_secret(path, b"y")
    assert path.read_bytes() == b"x"


def test_signing_key_file_is_0600_and_a_readable_one_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "k" / "receipt-key.pem"
    key = keys.generate_signing_key(path)
    assert mode(path) == 0o600
    pub = keys.public_path(path)
    assert pub.name == "receipt-key.pub.pem" and pub.is_file()
    loaded = keys.load_signing_key(path)
    assert keys.fingerprint(loaded.public_key()) == keys.fingerprint(key.public_key())
    assert keys.fingerprint(keys.load_public_key_file(pub)) == keys.fingerprint(key.public_key())
    with pytest.raises(FileExistsError):
        keys.generate_signing_key(path)
    path.chmod(0o644)
    with pytest.raises(KeyFileError, match="chmod 600"):
        keys.load_signing_key(path)


def test_fingerprint_is_sha256_of_the_raw_public_key() -> None:
    pub = Ed25519PrivateKey.from_private_bytes(bytes(range(32))).public_key()
    assert keys.fingerprint(pub) == \
        "56475aa75463474c0285df5dbf2bcab73da651358839e9b77481b2eab107708c"
    assert keys.load_public_pem(keys.public_pem(pub)).public_bytes_raw() == pub.public_bytes_raw()


def test_bad_key_files_raise_key_file_error_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="not found"):
        keys.load_signing_key(tmp_path / "missing.pem")
    garbage = tmp_path / "garbage.pem"
    keys.write_secret(garbage, b"not a key")
    with pytest.raises(KeyFileError, match=r"garbage\.pem: cannot read private key"):
        keys.load_signing_key(garbage)
    node_key, node_pub = tmp_path / "node.key", tmp_path / "node.pub"
    keys.generate_node_key(node_key, node_pub, comment="c")
    with pytest.raises(KeyFileError):
        keys.load_signing_key(node_key)  # an ECDSA key in OpenSSH format is no receipt key
    with pytest.raises(KeyFileError, match="not a PEM public key"):
        keys.load_public_pem("nope", "site hungary")
    with pytest.raises(KeyFileError, match="cannot read public key"):
        keys.load_public_key_file(tmp_path / "missing.pub.pem")


def test_a_non_ed25519_public_key_is_refused(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    pem = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    with pytest.raises(KeyFileError, match="not an Ed25519 public key"):
        keys.load_public_pem(pem, "x")


def test_node_keys_are_ecdsa_p384_openssh_with_ssh_keygen_fingerprints(tmp_path: Path) -> None:
    private, public = tmp_path / "node.key", tmp_path / "node.pub"
    keys.generate_node_key(private, public, comment="site-node:hungary")
    assert mode(private) == 0o600
    line = public.read_text()
    assert line.startswith("ecdsa-sha2-nistp384 ") and line.endswith(" site-node:hungary\n")
    key = keys.load_node_public_key(public)
    blob = base64.b64decode(line.split()[1])
    expected = "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    assert keys.node_key_fingerprint(key) == expected
    if shutil.which("ssh-keygen"):
        out = subprocess.run(["ssh-keygen", "-lf", str(public)], capture_output=True,
                             text=True, check=True).stdout
        assert out.split()[1] == expected
    with pytest.raises(FileExistsError):
        keys.generate_node_key(private, public, comment="again")


def test_node_public_key_errors(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="not found"):
        keys.load_node_public_key(tmp_path / "none.pub")
    bad = tmp_path / "bad.pub"
    bad.write_text("ssh-nothing AAAA\n")
    with pytest.raises(KeyFileError, match="not an OpenSSH public key"):
        keys.load_node_public_key(bad)
    ed = Ed25519PrivateKey.generate().public_key()
    from cryptography.hazmat.primitives import serialization

    bad.write_bytes(ed.public_bytes(serialization.Encoding.OpenSSH,
                                    serialization.PublicFormat.OpenSSH))
    with pytest.raises(KeyFileError, match="not an ECDSA key"):
        keys.load_node_public_key(bad)
