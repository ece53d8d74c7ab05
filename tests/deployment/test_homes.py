"""Consortium and site homes: layout, permissions, refusal to overwrite, fingerprints."""

from __future__ import annotations

import base64
import hashlib
import tomllib
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from consortium.home import HomeError, init_home, load_home
from site_node import keys
from site_node.home import SiteHomeError, init_site_home, load_site_home


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_consortium_home(tmp_path: Path) -> None:
    home = init_home(tmp_path / "c", hosts=["link.example"], ips=["10.1.2.3"], port=9100)
    assert _mode(home.root) == 0o700
    for secret in (home.ca_key, home.server_key, home.signing_key):
        assert _mode(secret) == 0o600
    assert home.policy.read_text().startswith("# Consortium policy")
    assert load_home(home.root) == home
    assert home.address == "link.example:9100"
    flwr = tomllib.loads((home.flwr_home / "config.toml").read_text())
    conn = flwr["superlink"][home.federation]
    assert conn == {"address": "link.example:9100", "root-certificates": str(home.ca_cert)}
    with pytest.raises(HomeError, match="refusing to overwrite"):
        init_home(home.root)


def test_site_home_keys_and_permissions(tmp_path: Path) -> None:
    site = init_site_home(tmp_path / "s", "cleveland")
    assert _mode(site.root) == 0o700
    assert _mode(site.node_key) == 0o600 and _mode(site.receipt_key) == 0o600
    private = serialization.load_ssh_private_key(site.node_key.read_bytes(), None)
    assert private.curve.name == "secp384r1"  # type: ignore[union-attr]
    assert site.node_pub.read_text().startswith("ecdsa-sha2-nistp384 ")
    assert load_site_home(site.root) == site
    with pytest.raises(SiteHomeError, match="refusing to overwrite"):
        init_site_home(site.root, "cleveland")


def test_node_fingerprint_matches_ssh_keygen_format(tmp_path: Path) -> None:
    site = init_site_home(tmp_path / "s", "hungary")
    blob = base64.b64decode(site.node_pub.read_text().split()[1])
    expected = "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    assert site.fingerprints()["node"] == expected


def test_wrong_key_kinds_are_named(tmp_path: Path) -> None:
    site = init_site_home(tmp_path / "s", "hungary")
    with pytest.raises(keys.KeyProblem, match="not an OpenSSH public key"):
        keys.load_node_public_key(site.receipt_pub)
    with pytest.raises(keys.KeyProblem, match="not a PEM public key"):
        keys.load_receipt_public_key(site.node_pub)
