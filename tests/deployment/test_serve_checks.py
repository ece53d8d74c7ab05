"""`consortium serve` refuses a broken certificate or a busy port before starting anything."""

from __future__ import annotations

import datetime as dt
import socket
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from consortium import certificates as c
from consortium import superlink
from consortium.home import init_home
from consortium.processes import free_port


def test_expired_superlink_certificate_is_refused(tmp_path: Path) -> None:
    home = init_home(tmp_path / "c", port=free_port())
    ca_key = serialization.load_pem_private_key(home.ca_key.read_bytes(), None)
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=5)
    key, cert = c.issue_server_certificate(
        ca_key, c.load_certificate(home.ca_cert), ["localhost"], [], 1, past  # type: ignore[arg-type]
    )
    home.server_key.unlink()
    c.write_private_key(home.server_key, key)
    c.write_certificate(home.server_cert, cert)
    with pytest.raises(superlink.SuperLinkError, match="expired"):
        superlink.preflight(home)


def test_busy_port_is_refused(tmp_path: Path) -> None:
    home = init_home(tmp_path / "c", port=free_port())
    with (
        socket.create_server((home.bind_host, home.port)),
        pytest.raises(superlink.SuperLinkError, match="already in use"),
    ):
        superlink.preflight(home)


def test_insecure_command_has_no_tls_and_tls_command_has_auth(tmp_path: Path) -> None:
    home = init_home(tmp_path / "c", port=free_port())
    secure = superlink.command(home)
    assert "--enable-supernode-auth" in secure and "--insecure" not in secure
    assert "--ssl-certfile" in secure
    assert "--insecure" in superlink.command(home, insecure=True)
