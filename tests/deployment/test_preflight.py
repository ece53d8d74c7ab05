"""A site's checks before starting: wrong CA, expired certificate, unreachable, not TLS."""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from consortium.deployment import certificates as c
from site_node.deployment.preflight import probe_superlink, split_address
from site_node.deployment.processes import free_port
from site_node.errors import PreflightError


def _tls_server(tmp: Path, expired: bool = False) -> tuple[Path, int, threading.Event]:
    ca_key, ca_cert = c.create_ca("test CA")
    start = dt.datetime.now(dt.UTC) - dt.timedelta(days=10) if expired else None
    key, cert = c.issue_server_certificate(ca_key, ca_cert, ["localhost"], ["127.0.0.1"],
                                           1 if expired else 30, start)
    c.write_certificate(tmp / "ca.crt", ca_cert)
    c.write_certificate(tmp / "s.crt", cert)
    c.write_private_key(tmp / "s.key", key)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tmp / "s.crt", tmp / "s.key")
    sock = socket.create_server(("127.0.0.1", 0))
    port, stop = sock.getsockname()[1], threading.Event()

    def serve() -> None:
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except TimeoutError:
                continue
            try:
                with ctx.wrap_socket(conn, server_side=True):
                    pass
            except (ssl.SSLError, OSError):
                pass
        sock.close()

    threading.Thread(target=serve, daemon=True).start()
    return tmp / "ca.crt", port, stop


@pytest.fixture
def good_server(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    ca, port, stop = _tls_server(tmp_path)
    yield ca, port
    stop.set()


def test_good_server_passes(good_server: tuple[Path, int]) -> None:
    ca, port = good_server
    probe_superlink(f"127.0.0.1:{port}", ca)
    probe_superlink(f"localhost:{port}", ca)


def test_wrong_ca_is_named(good_server: tuple[Path, int], tmp_path: Path) -> None:
    _, port = good_server
    _, other = c.create_ca("someone else")
    c.write_certificate(tmp_path / "other.crt", other)
    with pytest.raises(PreflightError, match="wrong CA file"):
        probe_superlink(f"127.0.0.1:{port}", tmp_path / "other.crt")


def test_expired_server_certificate_is_named(tmp_path: Path) -> None:
    ca, port, stop = _tls_server(tmp_path, expired=True)
    try:
        with pytest.raises(PreflightError, match="has expired"):
            probe_superlink(f"127.0.0.1:{port}", ca)
    finally:
        stop.set()


def test_unreachable_is_named(good_server: tuple[Path, int]) -> None:
    ca, _ = good_server
    with pytest.raises(PreflightError, match="unreachable"):
        probe_superlink(f"127.0.0.1:{free_port()}", ca)


def test_plaintext_server_is_named(good_server: tuple[Path, int]) -> None:
    ca, _ = good_server
    plain = socket.create_server(("127.0.0.1", 0))
    port = plain.getsockname()[1]

    def answer() -> None:
        conn, _ = plain.accept()
        conn.recv(1024)
        conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        conn.close()

    threading.Thread(target=answer, daemon=True).start()
    try:
        with pytest.raises(PreflightError, match="does not speak TLS"):
            probe_superlink(f"127.0.0.1:{port}", ca)
    finally:
        plain.close()


def test_ca_file_that_is_not_a_ca(tmp_path: Path) -> None:
    ca_key, ca_cert = c.create_ca("test CA")
    _, leaf = c.issue_server_certificate(ca_key, ca_cert, ["localhost"], [])
    c.write_certificate(tmp_path / "leaf.crt", leaf)
    with pytest.raises(PreflightError, match="not a CA"):
        probe_superlink("127.0.0.1:1", tmp_path / "leaf.crt")


def test_superlink_address_must_be_host_and_port() -> None:
    assert split_address("[::1]:9093") == ("::1", 9093)
    assert split_address("link.example:9093") == ("link.example", 9093)
    with pytest.raises(PreflightError, match="HOST:PORT"):
        split_address("link.example")
