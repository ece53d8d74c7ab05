"""The consortium home set up for deployment, and site homes: layout, permissions, refusal to
overwrite, fingerprints."""

from __future__ import annotations

import base64
import hashlib
import tomllib
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from consortium.deployment.setup import init_deployment, load_deployment
from consortium.errors import HomeError
from consortium.home import HOME_ENV, consortium_home, default_store_path, open_home
from policies.errors import InvalidSiteId
from site_node.errors import SiteHomeError
from site_node.home import (
    HOME_ENV as SITE_HOME_ENV,
)
from site_node.home import (
    default_site_home,
    demo_site_home,
    ensure_site_home,
    init_site_home,
    load_site_home,
)
from site_node.protocol import keys
from site_node.protocol.errors import KeyFileError


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_one_consortium_home_holds_store_key_and_deployment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(HOME_ENV, str(tmp_path / "c"))
    assert consortium_home() == tmp_path / "c"
    assert default_store_path() == tmp_path / "c" / "runs.sqlite"
    dep = init_deployment(open_home(), hosts=["link.example"], ips=["10.1.2.3"], port=9100)
    home = dep.home
    assert home.root == tmp_path / "c" and home.store == default_store_path()
    assert _mode(home.root) == 0o700
    for secret in (home.ca_key, home.server_key, home.signing_key_file):
        assert _mode(secret) == 0o600
    assert home.policy.read_text().startswith("# Consortium policy")
    assert load_deployment(home) == dep
    assert dep.address == "link.example:9100" and dep.bind_host == "127.0.0.1"
    flwr = tomllib.loads((home.flwr_home / "config.toml").read_text())
    assert flwr["superlink"]["default"] == dep.federation
    conn = flwr["superlink"][dep.federation]
    assert conn == {"address": "link.example:9100", "root-certificates": str(home.ca_cert)}
    with pytest.raises(HomeError, match="refusing to overwrite"):
        init_deployment(home)


def test_init_keeps_the_consortium_key_of_a_home_that_already_ran(tmp_path: Path) -> None:
    home = open_home(tmp_path / "c")
    before = keys.fingerprint(home.signing_key().public_key())  # e.g. a simulated run
    init_deployment(home)
    assert keys.fingerprint(home.signing_key().public_key()) == before


def test_a_home_not_set_up_for_deployment_says_so(tmp_path: Path) -> None:
    with pytest.raises(HomeError, match="consortium init"):
        load_deployment(open_home(tmp_path / "c"))
    with pytest.raises(HomeError, match="at least one --host or --ip"):
        init_deployment(open_home(tmp_path / "d"), hosts=[], ips=[])


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
    with pytest.raises(SiteHomeError, match="belongs to site 'cleveland'"):
        ensure_site_home(site.root, "hungary")


def test_site_home_location_and_id_rule(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SITE_HOME_ENV, str(tmp_path / "site"))
    assert default_site_home() == tmp_path / "site"
    assert demo_site_home("hungary") == tmp_path / "site" / "demo" / "hungary"
    with pytest.raises(InvalidSiteId):
        demo_site_home("../hungary")
    with pytest.raises(InvalidSiteId):
        init_site_home(tmp_path / "x", "Hungary")
    assert not (tmp_path / "x").exists()


def test_node_fingerprint_matches_ssh_keygen_format(tmp_path: Path) -> None:
    site = init_site_home(tmp_path / "s", "hungary")
    blob = base64.b64decode(site.node_pub.read_text().split()[1])
    expected = "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    assert site.fingerprints()["node"] == expected


def test_wrong_key_kinds_are_named(tmp_path: Path) -> None:
    site = init_site_home(tmp_path / "s", "hungary")
    with pytest.raises(KeyFileError, match="not an OpenSSH public key"):
        keys.load_node_public_key(site.receipt_pub)
    with pytest.raises(KeyFileError, match="not a PEM public key"):
        keys.load_public_key_file(site.node_pub)
