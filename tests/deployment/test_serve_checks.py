"""`consortium serve` refuses a broken certificate or a busy port before starting anything."""

from __future__ import annotations

import datetime as dt
import socket
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from consortium.deployment import certificates as c
from consortium.deployment import superlink
from consortium.deployment.setup import Deployment, init_deployment
from consortium.errors import SuperLinkError
from consortium.home import open_home
from site_node.deployment.processes import free_port
from site_node.deployment.tls import load_certificate


def _deployment(tmp: Path) -> Deployment:
    return init_deployment(open_home(tmp / "c"), port=free_port())


def test_expired_superlink_certificate_is_refused(tmp_path: Path) -> None:
    dep = _deployment(tmp_path)
    home = dep.home
    ca_key = serialization.load_pem_private_key(home.ca_key.read_bytes(), None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=5)
    key, cert = c.issue_server_certificate(
        ca_key, load_certificate(home.ca_cert), ["localhost"], [], 1, past
    )
    home.server_key.unlink()
    c.write_private_key(home.server_key, key)
    c.write_certificate(home.server_cert, cert)
    with pytest.raises(SuperLinkError, match="expired"):
        superlink.preflight(dep)


def test_busy_port_is_refused(tmp_path: Path) -> None:
    dep = _deployment(tmp_path)
    with (
        socket.create_server((dep.bind_host, dep.port)),
        pytest.raises(SuperLinkError, match="already in use"),
    ):
        superlink.preflight(dep)


def test_insecure_command_has_no_tls_and_tls_command_has_auth(tmp_path: Path) -> None:
    dep = _deployment(tmp_path)
    secure = superlink.command(dep)
    assert "--enable-supernode-auth" in secure and "--insecure" not in secure
    assert secure[secure.index("--ssl-certfile") + 1] == str(dep.home.server_cert)
    assert secure[secure.index("--database") + 1] == str(dep.home.database)
    insecure = superlink.command(dep, insecure=True)
    assert "--insecure" in insecure and "--enable-supernode-auth" not in insecure
    assert not any(a.startswith("--ssl") for a in insecure)


def test_the_superlink_and_its_serverapp_use_the_consortium_home(tmp_path: Path) -> None:
    dep = _deployment(tmp_path)
    env = superlink.server_env(dep)
    assert env["HOSPITAL_CONSORTIUM_HOME"] == str(dep.home.root)
    assert env["FLWR_HOME"] == str(dep.home.flwr_home)
